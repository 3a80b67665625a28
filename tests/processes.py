"""Real uvicorn processes of one issuer, for tests of what several instances do together."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_issuer(database_url: str, signing_key: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SPC_TEST_DATABASE_URL": database_url, "SPC_TEST_SIGNING_KEY": str(signing_key),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "issuer_asgi:create_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def wait_until_serving(process: subprocess.Popen[bytes], port: int, *, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise RuntimeError(f"the issuer process exited ({process.returncode}):\n{output}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the issuer process did not listen on port {port} within {timeout} s")


def stop(process: subprocess.Popen[bytes]) -> str:
    """Stop a process (SIGTERM, then SIGKILL) and return what it printed."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.stdout.read().decode(errors="replace") if process.stdout else ""


@contextlib.contextmanager
def issuer_processes(database_url: str, signing_key: Path, count: int = 2,
                     *, wait: bool = True) -> Iterator[list[str]]:
    """Start ``count`` issuer processes at the same moment on one database; yield their base URLs."""
    ports = [free_port() for _ in range(count)]
    processes = [start_issuer(database_url, signing_key, port) for port in ports]
    logs: list[str] = []
    try:
        if wait:
            for process, port in zip(processes, ports, strict=True):
                wait_until_serving(process, port)
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        logs = [stop(p) for p in processes]
        for log in logs:
            # Nothing an instance logged may be a traceback: every failure is an answer.
            assert "Traceback" not in log, log

