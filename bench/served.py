"""The payment path served for real: uvicorn processes loaded by wrk, against a hand-written reference.

One run starts, each as its own uvicorn process (uvloop, httptools, no access log, on 127.0.0.1):

- ``hello``: Starlette answering ``GET /`` (for scale);
- ``reference``: what an issuer's engineer would write by hand, a Starlette POST route that parses one
  WebAuthn assertion and verifies it with py_webauthn, no database (``bench/served_apps.py``);
- the issuer (``spc_embed.Issuer(config).app``), once per ``--workers`` count, each on a fresh SQLite file
  in a temporary directory (PostgreSQL: ``--database-url``, or a throwaway cluster the script starts and removes).

A cardholder (``--cardholders N``: several) is enrolled through the real ``/enroll/options`` and
``/enroll/verify`` over HTTP with the software authenticator of ``tests/softauthn.py``; with several workers
everything goes through HTTP, nothing touches the database in this process. Then, for each ``--connections`` count, wrk (``bench/served.lua``)
loads, one after the other so each ratio compares numbers taken minutes apart at most:

- ``hello`` and ``reference`` with one fixed request (the reference's assertion is valid every time: it has
  no state);
- ``POST /transaction/initialize`` with a new transaction id on every request (thread id + counter, in Lua);
- ``POST /transaction/finalize`` with pre-signed, single-use SPC assertions: transactions are initialized over
  HTTP beforehand and one assertion is signed per transaction; each wrk thread sends its own share of these
  bodies, each exactly once, and stops when its share runs out (the run is then marked and retried once with
  a longer list).

It prints requests/s, p50, p99 (wrk's latency histogram), the non-2xx count and the ratio to the reference at
the same connection count, then a markdown table. With ``--rounds N`` each connection count's runs (the
reference, the issuer's, the reference again) are repeated N times, each round's ratios taken against its own
reference runs, and a second table gives each endpoint's median ratio over the rounds with its range: on a
machine whose speed drifts from minute to minute, one pair of runs can be off by a fifth either way. Any
non-2xx answer, socket error or exhausted body list is reported loudly and makes the exit status 2: a
benchmark of error answers measures nothing.

Every wrk run holds ``/tmp/spc-bench.lock`` (``flock``), so benchmarks of different people on one machine do
not overlap; every process started here is stopped on exit, error or Ctrl-C. Installs Debian's ``wrk`` with
apt, and uvloop + httptools into this Python, when missing.

    .venv/bin/python bench/served.py [--duration 6] [--connections 16,64] [--workers 1[,2]] [--rounds 1]
                                     [--cardholders 1]
                                     [--database sqlite|postgresql [--database-url postgresql://...]] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import fcntl
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(BENCH))

LOCK = "/tmp/spc-bench.lock"
LUA = BENCH / "served.lua"
WRK_THREADS = 2
WRK_TIMEOUT = "10s"  # a slow answer is a latency, not a socket timeout (wrk's default is 2 s)
LOCK_WAIT_S = 900
PREP_CONCURRENCY = 32
WARM_REQUESTS = 50
NOISY_SHARE = 0.25  # other processes using more than this share of the machine during a run: marked noisy


ENDPOINT_NAMES = {"hello": 'Starlette "hello" (for scale)',
                  "reference": "reference: Starlette + py_webauthn verify, no database",
                  "initialize": "`POST /transaction/initialize`",
                  "finalize": "`POST /transaction/finalize` (pre-signed, each used once)"}


class BenchError(Exception):
    """A problem that makes the numbers meaningless: reported and the run stops."""


# Installing what the harness needs


def sh(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), text=True, **kwargs)


def reference_assertion() -> tuple[dict[str, Any], str]:
    """The reference's one credential and one assertion, which it verifies every time (it keeps no state).

    Returns the assertion (AuthenticationResponseJSON) and ``SPC_BENCH_REFERENCE`` for ``served_apps.reference_app``.
    """
    from factories import ISSUER_ORIGIN
    from payment_helpers import RP_ID
    from softauthn import SoftAuthenticator, b64url, cose_key

    auth, challenge = SoftAuthenticator(), secrets.token_bytes(32)
    created = auth.create(rp_id=RP_ID, challenge=b64url(challenge), origin=ISSUER_ORIGIN,
                          user_handle=secrets.token_bytes(16))
    credential_id = bytes(next(iter(auth.credentials)))
    assert created["rawId"] == b64url(credential_id)
    assertion = auth.get(credential_id=credential_id, challenge=b64url(challenge), origin=ISSUER_ORIGIN,
                         sign_count=0)
    public_key = cose_key(auth.credentials[credential_id].private_key.public_key())
    return assertion, json.dumps({"public_key": b64url(public_key), "challenge": b64url(challenge), "rp_id": RP_ID,
                                  "origin": ISSUER_ORIGIN})


def ensure_debian_tool(name: str) -> str:
    """The path of ``name`` (``wrk``, ``valgrind``), installed first with apt from the Debian package of that name."""
    found = shutil.which(name)
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print(f"{name} is missing: installing Debian's package (apt-get install -y {name})", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if sh([*sudo, "apt-get", "install", "-y", name], env=env).returncode != 0:
        print("apt-get install failed; running apt-get update once and trying again", flush=True)
        sh([*sudo, "apt-get", "update"], env=env, check=True)
        sh([*sudo, "apt-get", "install", "-y", name], env=env, check=True)
    found = shutil.which(name)
    if not found:
        raise BenchError(f"{name} is still not on PATH after apt-get install {name}")
    return found


def ensure_uvicorn_speedups() -> None:
    """uvloop and httptools, which uvicorn only uses when installed (``--loop uvloop --http httptools``)."""
    missing = [name for name in ("uvloop", "httptools") if not _importable(name)]
    if missing:
        print(f"{' and '.join(missing)} missing: pip install {' '.join(missing)}", flush=True)
        sh([sys.executable, "-m", "pip", "install", "--quiet", *missing], check=True)


def _importable(module: str) -> bool:
    return sh([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


# Processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Processes:
    """Every process this run starts, each in its own process group, so stopping one stops its workers too."""

    def __init__(self) -> None:
        self.groups: list[subprocess.Popen[Any]] = []

    def start(self, command: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        process = subprocess.Popen(list(command), start_new_session=True, **kwargs)
        self.groups.append(process)
        return process

    def stop(self, process: subprocess.Popen[Any], *, grace: float = 10.0) -> None:
        """SIGTERM to the process group, SIGKILL to what is left after ``grace`` seconds."""
        if process in self.groups:
            self.groups.remove(process)
        pgid = process.pid  # start_new_session: the group id is the leader's pid
        _signal_group(pgid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 3
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_group(pgid, signal.SIGKILL)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            print(f"warning: process {process.pid} did not exit after SIGKILL", file=sys.stderr)

    def stop_all(self) -> None:
        for process in reversed(list(self.groups)):
            self.stop(process)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is still in the group."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def start_server(processes: Processes, name: str, factory: str, *, env: dict[str, str], workers: int,
                 logs: Path, probe: str, attempts: int = 3) -> Server:
    """uvicorn on a free port of 127.0.0.1; returns once ``probe`` answers (any HTTP status)."""
    for attempt in range(attempts):
        port = free_port()
        log = logs / f"{name}.log"
        command = [
            sys.executable, "-m", "uvicorn", "--factory", f"served_apps:{factory}", "--app-dir", str(BENCH),
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
            "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
        ]
        with log.open("ab") as out:
            process = processes.start(command, cwd=ROOT, env={**os.environ, **env}, stdout=out,
                                      stderr=subprocess.STDOUT)
        server = Server(name, process, port, log)
        try:
            wait_ready(server, probe)
        except BenchError:
            processes.stop(process)
            if "address already in use" in server.log_tail().lower() and attempt + 1 < attempts:
                continue
            raise
        if workers > 1:
            time.sleep(2.0)  # the first answer proves one worker; give the others their start-up too
        return server
    raise AssertionError("unreachable")


def wait_ready(server: Server, probe: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.base_url + probe, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.1)
    raise BenchError(f"{server.name} did not answer {probe} within {timeout:.0f} s:\n{server.log_tail()}")


# A small HTTP/1.1 client for preparation: many requests over a few keep-alive connections, fast enough
# that preparing tens of thousands of transactions is limited by the server, not by the client.


def http_request(method: str, path: str, body: bytes, headers: dict[str, str], port: int) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    if body:
        lines.append("Content-Type: application/json")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> tuple[int, bytes, bool]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    length, close = 0, False
    for line in header_lines:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value == "close":
            close = True
        elif name == "transfer-encoding":
            raise BenchError(f"unexpected Transfer-Encoding {value!r} from the server")
    body = await reader.readexactly(length) if length else b""
    return status, body, close


def send_all(port: int, requests: Sequence[bytes], concurrency: int = PREP_CONCURRENCY,
             timeout: float = 60.0) -> list[tuple[int, bytes]]:
    """Send each request exactly once (never retried), ``concurrency`` at a time; answers in order."""

    async def run() -> list[tuple[int, bytes]]:
        results: list[tuple[int, bytes]] = [(0, b"")] * len(requests)
        indexes = iter(range(len(requests)))

        async def worker() -> None:
            reader = writer = None
            try:
                for index in indexes:
                    if writer is None:
                        reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    assert reader is not None
                    status, body, close = await asyncio.wait_for(_exchange(reader, writer, requests[index]),
                                                                 timeout)
                    results[index] = (status, body)
                    if close:
                        writer.close()
                        writer = None
            finally:
                if writer is not None:
                    writer.close()

        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(requests)))))
        return results

    return asyncio.run(run())


def require_2xx(what: str, answers: Iterable[tuple[int, bytes]]) -> None:
    bad = [(status, body) for status, body in answers if not 200 <= status < 300]
    if bad:
        status, body = bad[0]
        raise BenchError(f"{what}: {len(bad)} answers were not 2xx, the first {status}: "
                         f"{body[:300].decode(errors='replace')}")


# How busy the machine was with other people's work during a run


class CpuMonitor:
    """Samples, four times a second, the machine's busy CPU time and the CPU time of this run's own processes
    (the servers and wrk, by process group, and this harness), so each run can say how much of the machine
    processes it did not start took meanwhile: the machine is shared, and that is the noise in a number."""

    INTERVAL = 0.25

    def __init__(self, processes: Processes, database_is_postgres: bool) -> None:
        self.processes = processes
        self.database_is_postgres = database_is_postgres
        self.tick = os.sysconf("SC_CLK_TCK")
        self.cpus = os.cpu_count() or 1
        self.samples: list[tuple[float, float, float]] = []  # (time.time(), machine busy s, ours s)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="cpu-monitor", daemon=True)

    def __enter__(self) -> CpuMonitor:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=2)

    def _loop(self) -> None:
        while not self.stopping.wait(self.INTERVAL):
            try:
                self.samples.append(self._sample())
            except (OSError, ValueError, IndexError):
                pass

    def _sample(self) -> tuple[float, float, float]:
        now = time.time()
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:9]]
        busy = (sum(fields) - fields[3] - fields[4]) / self.tick  # all but idle and iowait
        groups = {process.pid for process in list(self.processes.groups)}
        ours = 0
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            command, rest = data.rsplit(b")", 1)
            stat = rest.split()
            if int(stat[2]) in groups or (self.database_is_postgres and command.endswith(b"(postgres")):
                ours += int(stat[11]) + int(stat[12])
        own = os.times()
        return now, busy, ours / self.tick + own.user + own.system

    def busy_share(self, start: float, end: float) -> float | None:
        """Share of the machine (0..1) busy between ``start`` and ``end``, whoever used it."""
        inside = [sample for sample in self.samples if start <= sample[0] <= end]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < 0.5:
            return None
        (t0, busy0, _), (t1, busy1, _) = inside[0], inside[-1]
        return min(1.0, (busy1 - busy0) / ((t1 - t0) * self.cpus))

    def other_share(self, start: float, end: float) -> float | None:
        """Share of the machine (0..1) used by processes not started here, between ``start`` and ``end``."""
        inside = [sample for sample in self.samples if start <= sample[0] <= end]
        if len(inside) < 2:
            return None
        (t0, busy0, ours0), (t1, busy1, ours1) = inside[0], inside[-1]
        if t1 - t0 < 0.5:
            return None
        return max(0.0, ((busy1 - busy0) - (ours1 - ours0)) / ((t1 - t0) * self.cpus))


# wrk


@dataclass
class Result:
    endpoint: str
    workers: int
    connections: int
    note: str = ""
    round: int = 1
    requests: int = 0
    duration_s: float = 0.0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    statuses: dict[int, int] = field(default_factory=dict)
    socket_errors: dict[str, int] = field(default_factory=dict)
    samples: dict[int, str] = field(default_factory=dict)
    ran_out: int = 0
    threads: int = 0
    bodies: int = 0
    sent: int = 0
    reference_rps: float | None = None
    one_worker_rps: float | None = None
    retried: bool = False
    lock_wait_s: float = 0.0
    other_share: float | None = None
    busy_share: float | None = None  # the whole machine's, during the run: 100% leaves a second worker nothing
    server_cpu_s: float | None = None  # CPU time of the server's processes (master and workers) during the run

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def cpu_us(self) -> float | None:
        """Server CPU per request, µs: what a request costs, whatever else shares the machine."""
        return self.server_cpu_s * 1e6 / self.requests if self.server_cpu_s is not None and self.requests else None

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values())

    def other_load(self) -> str:
        if self.other_share is None:
            return "?"
        return f"{self.other_share:.0%}" + (" (noisy)" if self.noisy else "")

    def machine_busy(self) -> str:
        return "?" if self.busy_share is None else f"{self.busy_share:.0%}"

    @property
    def noisy(self) -> bool:
        return self.other_share is not None and self.other_share > NOISY_SHARE

    @property
    def ok(self) -> bool:
        return self.non_2xx == 0 and self.errors == 0 and not self.ran_out

    def problems(self) -> list[str]:
        found = []
        if self.non_2xx:
            counts = ", ".join(f"{n} x {status}" for status, n in sorted(self.statuses.items())
                               if not 200 <= status < 300)
            found.append(f"{self.non_2xx} non-2xx answers ({counts})")
            found += [f"  first {status}: {body}" for status, body in sorted(self.samples.items())]
        if self.errors:
            found.append("socket errors: " + ", ".join(f"{k} {v}" for k, v in self.socket_errors.items() if v))
        if self.ran_out:
            found.append(f"{self.ran_out} of {self.threads} wrk threads ran out of single-use bodies "
                         f"({self.bodies} prepared): requests/s is a lower bound")
        return found


_LINE = re.compile(r"^SPCBENCH (.*)$", re.MULTILINE)
_SAMPLE = re.compile(r"^SPCBENCH_SAMPLE (\d+) (.*)$", re.MULTILINE)


def lock_is_busy() -> bool:
    with open(LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def wait_for_free_lock(timeout: float = LOCK_WAIT_S) -> float:
    """Wait (without taking it) until no benchmark holds the lock: preparation loads the machine too, and
    prepared transactions should not age while someone else's benchmark runs."""
    started = time.monotonic()
    if lock_is_busy():
        print(f"    waiting for {LOCK} to be free before preparing ...", flush=True)
        while lock_is_busy() and time.monotonic() < started + timeout:
            time.sleep(0.5)
    return time.monotonic() - started


def group_cpu_seconds(group: int) -> float:
    """User and system CPU time of every live process in one process group (a server and its workers)."""
    total = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    stat = handle.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(stat[2]) == group:
                total += int(stat[11]) + int(stat[12])
    return total / os.sysconf("SC_CLK_TCK")


def run_wrk(processes: Processes, result: Result, url: str, lua_args: Sequence[str], *, duration: int,
            headers: dict[str, str], logs: Path, monitor: CpuMonitor, server: Server | None = None) -> Result:
    """One wrk run under the shared lock; fills ``result`` from the script's done() line."""
    threads = min(WRK_THREADS, result.connections)
    # The shell prints when the lock was taken, so time spent waiting for someone else's benchmark shows.
    command = ["flock", "-w", str(LOCK_WAIT_S), LOCK, "sh", "-c", 'echo "SPCBENCH_LOCKED $(date +%s.%N)"; exec "$@"',
               "sh", "wrk", f"-t{threads}", f"-c{result.connections}",
               f"-d{duration}s", f"--timeout={WRK_TIMEOUT}", "--latency", "-s", str(LUA),
               *(f"-H{name}: {value}" for name, value in headers.items()), url, "--", *lua_args]
    if lock_is_busy():
        print(f"    waiting for {LOCK} (another benchmark is running) ...", flush=True)
    asked = time.time()
    # Counted from before the lock is taken: a server idle while waiting adds (almost) nothing.
    cpu_before = group_cpu_seconds(server.process.pid) if server is not None else None
    process = processes.start(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=LOCK_WAIT_S + duration + 120)
    finally:
        if process.poll() is None:
            processes.stop(process, grace=1)
        elif process in processes.groups:
            processes.groups.remove(process)
    finished = time.time()
    tag = f"{result.endpoint}-w{result.workers}-c{result.connections}"
    (logs / f"wrk-{tag}.txt").write_text(" ".join(command) + "\n\n" + out + "\n--- stderr\n" + err)
    match = _LINE.search(out)
    if process.returncode != 0 or not match:
        raise BenchError(f"wrk failed (exit {process.returncode}) for {tag}:\n{out[-2000:]}\n{err[-2000:]}")
    locked = re.search(r"^SPCBENCH_LOCKED ([0-9.]+)$", out, re.MULTILINE)
    result.lock_wait_s = max(0.0, float(locked.group(1)) - asked) if locked else 0.0
    result.other_share = monitor.other_share(asked + result.lock_wait_s + 0.5, finished)
    result.busy_share = monitor.busy_share(asked + result.lock_wait_s + 0.5, finished)
    if result.lock_wait_s > 1:
        print(f"    (waited {result.lock_wait_s:.0f} s for {LOCK})", flush=True)
    if server is not None and cpu_before is not None:
        result.server_cpu_s = group_cpu_seconds(server.process.pid) - cpu_before
    values = dict(part.split("=", 1) for part in match.group(1).split())
    result.requests = int(values["requests"])
    result.duration_s = int(values["duration_us"]) / 1e6
    result.p50_ms = int(values["p50_us"]) / 1000
    result.p99_ms = int(values["p99_us"]) / 1000
    result.statuses = {int(s): int(n) for s, n in (p.split(":") for p in values["statuses"].split(",") if p)}
    result.socket_errors = {k: int(values[k]) for k in ("connect", "read", "write", "timeout")}
    result.samples = {int(status): body for status, body in _SAMPLE.findall(out)}
    result.threads = int(values["threads"])
    result.ran_out = int(values["ran_out_threads"])
    result.sent = int(values["sent"])
    counted = sum(result.statuses.values())
    if counted != result.requests:
        raise BenchError(f"{tag}: wrk counted {result.requests} answers but the script saw {counted}")
    return result


# The benchmark


TRANSACTION_DATA = {"amount": "100.00", "currency": "EUR", "payee_name": "Test Merchant",
                    "payee_origin": "https://merchant.test", "order": "B-1"}


@dataclass
class IssuerServer:
    workers: int
    server: Server
    cardholders: list[tuple[str, Any]]  # (user id, SoftAuthenticator holding the enrolled credential)


class Bench:
    def __init__(self, args: argparse.Namespace, processes: Processes, work: Path) -> None:
        self.args = args
        self.processes = processes
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir()
        self.run_tag = secrets.token_hex(4)
        self.results: list[Result] = []
        self.round = 1  # of --rounds: each round has its own reference runs, and its ratios use them
        self.issuers: list[IssuerServer] = []
        self.counter = 0
        self.prep_lock_wait_s = 0.0
        self.monitor = CpuMonitor(processes, args.database == "postgresql")

    def unique(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.run_tag}-{self.counter}"

    # Setting up

    def start(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from factories import API_KEY
        from softauthn import SoftAuthenticator

        self.api_key = API_KEY
        key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        self.signing_key_file = self.work / "signing-key.pem"
        self.signing_key_file.write_bytes(key)

        assertion, reference_spec = reference_assertion()
        self.reference_body = self.work / "reference.json"
        self.reference_body.write_text(json.dumps({"transaction_id": "reference", "credential": assertion},
                                                  separators=(",", ":")))
        reference_env = {"SPC_BENCH_REFERENCE": reference_spec}

        print("starting servers ...", flush=True)
        self.hello = start_server(self.processes, "hello", "hello_app", env={}, workers=1, logs=self.logs,
                                  probe="/")
        self.reference = start_server(self.processes, "reference", "reference_app", env=reference_env,
                                      workers=1, logs=self.logs, probe="/verify")
        for workers in self.args.workers:
            if self.args.database == "sqlite":
                database_url = f"sqlite:///{self.work / f'issuer-w{workers}.db'}"
            else:
                database_url = self.args.database_url
            env = {"SPC_BENCH_DATABASE_URL": database_url, "SPC_BENCH_SIGNING_KEY_FILE": str(self.signing_key_file)}
            server = start_server(self.processes, f"issuer-w{workers}", "issuer_app", env=env, workers=workers,
                                  logs=self.logs, probe="/.well-known/jwks.json")
            issuer = IssuerServer(workers, server, [(self.unique(f"bench-w{workers}"), SoftAuthenticator())
                                              for _ in range(self.args.cardholders)])
            self.enroll(issuer, database_url)
            self.issuers.append(issuer)
        self.check_reference()

    def enroll(self, issuer: IssuerServer, database_url: str) -> None:
        """Through the real /enroll/options and /enroll/verify, with the tests' helper, over HTTP."""
        import httpx
        from payment_helpers import enroll
        from served_apps import issuer_config

        from spc_embed import Issuer as SPCIssuer

        # The bank's backend mints the enrolment link in its own process, with the same configuration.
        links = SPCIssuer(issuer_config(database_url, self.signing_key_file.read_text()))
        with httpx.Client(base_url=issuer.server.base_url, timeout=30) as client:
            try:
                for user_id, auth in issuer.cardholders:
                    enroll(client, links, auth, user_id=user_id)
            except AssertionError as exc:
                raise BenchError(
                    f"enrolment on {issuer.server.name} failed: {exc}\n{issuer.server.log_tail()}") from exc

    def check_reference(self) -> None:
        body = self.reference_body.read_bytes()
        answers = send_all(self.reference.port, [http_request("POST", "/verify", body, {}, self.reference.port)],
                           concurrency=1)
        require_2xx("the reference endpoint", answers)
        if json.loads(answers[0][1]).get("verified") is not True:
            raise BenchError(f"the reference did not verify its assertion: {answers[0][1]!r}")

    # Loading

    def run(self) -> None:
        """Per connection count and round: the reference, hello (first round only), each issuer's initialize
        and finalize, and the reference again; ratios use the faster of the round's two reference runs (the
        less disturbed one), so a reference slowed by someone else's work does not flatter the issuer."""
        args = self.args
        for connections in args.connections:
            for self.round in range(1, args.rounds + 1):
                of_rounds = f", round {self.round} of {args.rounds}" if args.rounds > 1 else ""
                print(f"\n== {connections} connections, {args.duration} s each{of_rounds} ==", flush=True)
                self.load_static("reference", self.reference, "POST", "/verify", self.reference_body, connections)
                if self.round == 1:
                    self.load_static("hello", self.hello, "GET", "/", None, connections)
                for issuer in self.issuers:
                    self.load_initialize(issuer, connections)
                    self.load_finalize(issuer, connections)
                self.load_static("reference", self.reference, "POST", "/verify", self.reference_body, connections,
                                 note=" (again, after)")
                best = self.reference_rps(connections)
                for result in self.results:
                    if result.connections == connections and result.round == self.round:
                        result.reference_rps = best

    def report(self, result: Result) -> Result:
        result.round = self.round
        result.reference_rps = self.reference_rps(result.connections) or result.rps
        if result.workers != 1:
            result.one_worker_rps = next((r.rps for r in self.results if r.endpoint == result.endpoint
                                          and r.round == result.round
                                          and r.connections == result.connections and r.workers == 1), None)
        self.results.append(result)
        ratio = f"  {result.rps / result.reference_rps:.3f}x the reference so far" if result.reference_rps else ""
        print(f"  {result.endpoint + result.note:<26} w{result.workers} c{result.connections:<3} "
              f"{result.rps:>8,.0f} req/s  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms  "
              f"non-2xx {result.non_2xx}  other load {result.other_load()}  machine busy {result.machine_busy()}{ratio}"
              + (f"  server CPU {result.cpu_us:,.0f} µs/request" if result.cpu_us else ""), flush=True)
        for line in result.problems():
            print(f"  !!! {result.endpoint} at {result.connections} connections: {line}", flush=True)
        return result

    def load_static(self, name: str, server: Server, method: str, path: str, body_file: Path | None,
                    connections: int, note: str = "") -> Result:
        body = body_file.read_bytes() if body_file else b""
        require_2xx(f"{name} warm-up", send_all(server.port, [http_request(method, path, body, {}, server.port)]
                                                * WARM_REQUESTS))
        lua = [method, "static", *([str(body_file)] if body_file else [])]
        result = run_wrk(self.processes, Result(name, 1, connections, note=note), server.base_url + path, lua,
                         duration=self.args.duration, headers={}, logs=self.logs, monitor=self.monitor, server=server)
        return self.report(result)

    def reference_rps(self, connections: int) -> float | None:
        """The faster reference run at this connection count in this round (so far)."""
        return max((r.rps for r in self.results if r.endpoint == "reference" and r.connections == connections
                    and r.round == self.round), default=None)

    def initialize_request(self, issuer: IssuerServer, transaction_id: str, user_id: str) -> bytes:
        body = json.dumps({"user_id": user_id, "transaction_id": transaction_id,
                           "transaction_data": TRANSACTION_DATA}, separators=(",", ":")).encode()
        return http_request("POST", "/transaction/initialize", body, {"apiKey": self.api_key}, issuer.server.port)

    def load_initialize(self, issuer: IssuerServer, connections: int) -> Result:
        port = issuer.server.port
        user_id = issuer.cardholders[0][0]
        warm = [self.initialize_request(issuer, self.unique("warm"), user_id) for _ in range(WARM_REQUESTS)]
        require_2xx(f"initialize warm-up on {issuer.server.name}", send_all(port, warm))
        template = self.work / "initialize-template.json"
        template.write_text(json.dumps({"user_id": user_id, "transaction_id": "@ID@",
                                        "transaction_data": TRANSACTION_DATA}, separators=(",", ":")))
        result = run_wrk(self.processes, Result("initialize", issuer.workers, connections),
                         issuer.server.base_url + "/transaction/initialize",
                         ["POST", "unique", str(template), self.unique("i")], duration=self.args.duration,
                         headers={"apiKey": self.api_key}, logs=self.logs, monitor=self.monitor,
                         server=issuer.server)
        return self.report(result)

    def finalize_bodies(self, issuer: IssuerServer, count: int) -> list[str]:
        """Initialize ``count`` transactions over HTTP and sign one SPC assertion for each."""
        from payment_helpers import spc_assertion

        started = time.monotonic()
        ids = [self.unique("f") for _ in range(count)]
        holders = [issuer.cardholders[n % len(issuer.cardholders)] for n in range(count)]
        answers = send_all(issuer.server.port, [self.initialize_request(issuer, transaction_id, user_id)
                                                for transaction_id, (user_id, _) in zip(ids, holders, strict=True)])
        require_2xx(f"initializing transactions for finalize on {issuer.server.name}", answers)
        initialized = time.monotonic()
        bodies = []
        for transaction_id, (_, auth), (_, answer) in zip(ids, holders, answers, strict=True):
            # signCount 0, as synced passkeys send: the counter check cannot refuse bodies that arrive out of order.
            credential = spc_assertion(auth, json.loads(answer), sign_count=0)
            bodies.append(json.dumps({"transaction_id": transaction_id, "credential": credential},
                                     separators=(",", ":")))
        print(f"    prepared {count} single-use finalize bodies: initialize {initialized - started:.1f} s, "
              f"sign {time.monotonic() - initialized:.1f} s", flush=True)
        return bodies

    def finalize_size(self, issuer: IssuerServer, connections: int) -> int:
        """Enough bodies for the run: finalize does the reference's work and more, and is not expected to be
        more than 1.5 times as fast as initialize (a run that runs out is retried once); ``--max-prepared`` caps the preparation time."""
        reference = self.reference_rps(connections) or math.inf
        initialize = next((r.rps for r in self.results if r.endpoint == "initialize" and r.round == self.round
                           and r.connections == connections and r.workers == issuer.workers), math.inf)
        expected = min(reference * 1.15, initialize * 1.5)
        if not math.isfinite(expected):
            expected = 1000.0
        return min(self.args.max_prepared, max(500, math.ceil(expected * self.args.duration)))

    def load_finalize(self, issuer: IssuerServer, connections: int) -> Result:
        size = self.finalize_size(issuer, connections)
        for attempt in (1, 2):
            result = self.finalize_once(issuer, connections, size)
            if not result.ran_out or attempt == 2 or size >= self.args.max_prepared:
                result.retried = attempt == 2
                return self.report(result)
            # The reference's rate is a ceiling: finalize does its work and more.
            ceiling = math.ceil(1.15 * (self.reference_rps(connections) or 0) * self.args.duration)
            size = min(self.args.max_prepared, max(size * 3, ceiling))
            print(f"    finalize ran out of bodies ({result.ran_out} of {result.threads} threads, {result.bodies} "
                  f"bodies): trying again with {size}", flush=True)
        raise AssertionError("unreachable")

    def finalize_once(self, issuer: IssuerServer, connections: int, size: int) -> Result:
        port = issuer.server.port
        self.prep_lock_wait_s += wait_for_free_lock()
        bodies = self.finalize_bodies(issuer, size + WARM_REQUESTS)
        warm, bodies = bodies[:WARM_REQUESTS], bodies[WARM_REQUESTS:]
        require_2xx(f"finalize warm-up on {issuer.server.name} (fresh single-use assertions)", send_all(port, [
            http_request("POST", "/transaction/finalize", body.encode(), {"apiKey": self.api_key}, port)
            for body in warm]))
        threads = min(WRK_THREADS, connections)
        directory = self.work / f"finalize-{self.unique('bodies')}"
        directory.mkdir()
        for thread in range(threads):
            (directory / f"{thread}.txt").write_text("\n".join(bodies[thread::threads]) + "\n")
        result = run_wrk(self.processes, Result("finalize", issuer.workers, connections),
                         issuer.server.base_url + "/transaction/finalize", ["POST", "list", str(directory)],
                         duration=self.args.duration, headers={"apiKey": self.api_key}, logs=self.logs,
                         monitor=self.monitor, server=issuer.server)
        result.bodies = len(bodies)
        shutil.rmtree(directory)
        return result

    # The summary

    def table(self) -> str:
        multi = len(self.args.workers) > 1
        rounds = self.args.rounds > 1
        head = ["endpoint", "workers", "connections", *(["round"] if rounds else []), "requests/s", "p50 ms",
                "p99 ms", "non-2xx", "vs reference", *(["vs 1 worker"] if multi else []), "server CPU µs/request",
                "CPU vs reference", "other load", "machine busy"]
        rows = []
        for r in self.results:
            flag = "" if r.ok else " **!!**"
            ratio = f"{r.rps / r.reference_rps:.3f}" if r.reference_rps else ""
            errors = str(r.non_2xx) + (f" (+{r.errors} socket errors)" if r.errors else "")
            cells = [ENDPOINT_NAMES[r.endpoint] + r.note + flag, str(r.workers), str(r.connections)]
            cells += [str(r.round)] if rounds else []
            cells += [f"{r.rps:,.0f}", f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}", errors, ratio]
            if multi:
                cells.append(f"{r.rps / r.one_worker_rps:.2f}" if r.one_worker_rps else "")
            # The cheapest reference request of this connection count and round against this one: like
            # "vs reference", but from CPU time, which other processes on the machine do not change much.
            reference_cpu = self.reference_cpu_us(r)
            cells.append(f"{r.cpu_us:,.0f}" if r.cpu_us else "?")
            cells.append(f"{reference_cpu / r.cpu_us:.3f}" if reference_cpu and r.cpu_us else "")
            cells.append(r.other_load())
            cells.append(r.machine_busy())
            rows.append(cells)
        return markdown_table(head, rows)

    def reference_cpu_us(self, result: Result) -> float | None:
        """The cheapest reference request's CPU in the result's connection count and round."""
        return min((x.cpu_us for x in self.results if x.endpoint == "reference" and x.cpu_us
                    and x.connections == result.connections and x.round == result.round), default=None)

    def medians(self) -> str:
        """With several rounds: each issuer endpoint's median over the rounds, and the range its ratio spans."""
        head = ["endpoint", "workers", "connections", "rounds", "vs reference, median", "lowest", "highest",
                "p99 ms, median", "CPU vs reference, median"]
        rows = []
        groups: dict[tuple[str, int, int], list[Result]] = {}
        for r in self.results:
            if r.endpoint in ("initialize", "finalize") and r.reference_rps:
                groups.setdefault((r.endpoint, r.workers, r.connections), []).append(r)
        for (endpoint, workers, connections), runs in groups.items():
            ratios = [r.rps / r.reference_rps for r in runs if r.reference_rps]
            cpu = [reference / r.cpu_us for r in runs if r.cpu_us and (reference := self.reference_cpu_us(r))]
            rows.append([
                ENDPOINT_NAMES[endpoint], str(workers), str(connections), str(len(runs)),
                f"{statistics.median(ratios):.3f}", f"{min(ratios):.3f}", f"{max(ratios):.3f}",
                f"{statistics.median(r.p99_ms for r in runs):.1f}",
                f"{statistics.median(cpu):.3f}" if cpu else "?"])
        return markdown_table(head, rows)


def markdown_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows])


def parse_list(value: str) -> list[int]:
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {value!r}") from exc
    if not numbers or any(n < 1 for n in numbers):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {value!r}")
    return numbers


def git_commit() -> str:
    out = sh(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True).stdout.strip()
    dirty = sh(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True)
    return out + ("+changes" if dirty.stdout.strip() else "")


@contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so the ``finally`` that stops the servers runs."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def throwaway_postgres() -> Any:
    """A PostgreSQL cluster of the test suite's kind (tests/postgres.py), with an empty database "spcbench"."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from postgres import PostgresCluster

    cluster = PostgresCluster()
    cluster.init()
    cluster.start()
    cluster.create_database("spcbench")
    print(f"PostgreSQL {cluster.version}: a throwaway cluster at {cluster.host}:{cluster.port}", flush=True)
    return cluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=6, help="seconds per wrk run (default 6)")
    parser.add_argument("--connections", type=parse_list, default=[16, 64], help="e.g. 16,64 (default)")
    parser.add_argument("--workers", type=parse_list, default=[1],
                        help="uvicorn workers of the issuer; a list (1,2) benchmarks each, side by side")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--database-url", help="postgresql://user:password@host:port/database (with "
                        "--database postgresql); the database is shared, every id is unique to the run")
    parser.add_argument("--cardholders", type=int, default=1,
                        help="enrolled cardholders the finalize bodies are spread over (default 1; on PostgreSQL "
                        "one cardholder makes every finalize update the same credential row)")
    parser.add_argument("--max-prepared", type=int, default=60000,
                        help="at most this many single-use finalize bodies per run (default 60000)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat each connection count's runs this many times, alternating the reference and the "
                        "issuer, and print the median ratio over the rounds as well (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, database)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.database == "postgresql":
        if args.database_url and not args.database_url.startswith(("postgresql://", "postgres://")):
            parser.error("--database-url must be postgresql://... (or leave it out for a throwaway cluster)")
    elif args.database_url:
        parser.error("--database-url is for --database postgresql (SQLite uses a fresh file per run)")

    processes = Processes()
    work = Path(tempfile.mkdtemp(prefix="spc-served-bench-"))
    started = time.monotonic()
    load_before = os.getloadavg()
    status = 0
    bench = Bench(args, processes, work)
    cluster = None
    try:
        with terminate_on_sigterm():
            ensure_debian_tool("wrk")
            ensure_uvicorn_speedups()
            if args.database == "postgresql" and not args.database_url:
                cluster = throwaway_postgres()
                args.database_url = cluster.url("spcbench")
            with bench.monitor:
                bench.start()
                bench.run()
    except (BenchError, subprocess.CalledProcessError) as exc:
        print(f"\n!!! benchmark failed: {exc}", file=sys.stderr, flush=True)
        status = 1
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the servers", file=sys.stderr, flush=True)
        status = 130
    finally:
        processes.stop_all()
        if cluster is not None:
            cluster.destroy()
        if args.keep or status == 1:
            print(f"logs and database kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if bench.results:
        database = "SQLite (durable defaults)" if args.database == "sqlite" else "PostgreSQL"
        print(f"\n{datetime.date.today()}, commit {git_commit()}, {database}, {os.cpu_count()} cores, "
              f"uvicorn (uvloop, httptools), wrk {WRK_THREADS} threads, {args.duration} s per run; load average "
              f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after; {time.monotonic() - started:.0f} s "
              f"(of which {sum(r.lock_wait_s for r in bench.results) + bench.prep_lock_wait_s:.0f} s waiting for "
              f"other benchmarks)\n")
        print(bench.table())
        if args.rounds > 1:
            print(f"\nOver {args.rounds} rounds, each with its own reference runs:\n\n{bench.medians()}\n")
        print("\nvs reference: against the faster of the two reference runs at that connection count"
              + (" in that round" if args.rounds > 1 else "") + ". server CPU: "
              "user and system time of the server's processes (all workers) per request; CPU vs reference: the "
              "cheapest reference request's CPU over this one's (the PostgreSQL server's own CPU is not in it). "
              "other load: "
              "CPU that processes this run did not start took during the wrk run, as a share of the machine"
              + (" (the PostgreSQL server's counted as ours)" if args.database == "postgresql" else "")
              + "; machine busy: the whole machine's CPU in use during the run (servers, database, wrk and others)"
              + (f"; finalize bodies spread over {args.cardholders} cardholders" if args.cardholders > 1 else "")
              + ".")
        noisy = [r for r in bench.results if r.noisy]
        if noisy:
            print(f"noisy: {len(noisy)} of {len(bench.results)} runs shared the machine with more than "
                  f"{NOISY_SHARE:.0%} of other load; rerun when it is quieter before trusting a ratio.")
        bad = [r for r in bench.results if not r.ok]
        if bad:
            print("\n!!! NOT TRUSTWORTHY: " + "; ".join(
                f"{r.endpoint} w{r.workers} c{r.connections}: {r.problems()[0]}" for r in bad), flush=True)
            status = status or 2
    return status


if __name__ == "__main__":
    sys.exit(main())
