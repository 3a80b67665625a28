"""The README's Quick start, run as written: keys made, app.py written, uvicorn serving it.

Only two things differ from a reader's machine: ``pip install`` lines are not
run (the package under test is this checkout, already installed), and the
port is a free one instead of 8000.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
from processes import free_port, stop, wait_until_serving

README = Path(__file__).resolve().parent.parent / "README.md"


def quick_start_blocks() -> list[tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quick start (issuer)", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(sh|python)\n(.*?)```", section, re.DOTALL)


def setup_shell(blocks: list[tuple[str, str]]) -> str:
    """The shell steps before serving, as one script that prints the environment they made."""
    lines = [line for kind, code in blocks[:4] if kind == "sh" for line in code.splitlines()
             if not line.startswith(("pip install", "uvicorn "))]
    return "set -euo pipefail\n" + "\n".join(lines) + "\nenv -0\n"


def run_quick_start(directory: Path, app_source: str | None = None
                    ) -> tuple[subprocess.Popen[bytes], int, dict[str, str]]:
    blocks = quick_start_blocks()
    # Install, keys, app.py, serve; the snippets after them show other uses of the same issuer.
    blocks = blocks[:4]
    assert [kind for kind, _ in blocks] == ["sh", "sh", "python", "sh"], blocks
    made = subprocess.run(["bash", "-c", setup_shell(blocks)], cwd=directory, capture_output=True, check=True,
                          env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    env = dict(item.split("=", 1) for item in made.stdout.decode().split("\0") if "=" in item)
    (directory / "app.py").write_text(app_source or blocks[2][1])
    serve = blocks[3][1].strip()
    assert serve == "uvicorn app:app --port 8000", serve
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "app:app", "--port", str(port)], cwd=directory,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return process, port, env


def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    process, port, env = run_quick_start(tmp_path)
    try:
        wait_until_serving(process, port)
        health = httpx.get(f"http://127.0.0.1:{port}/spc/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert (tmp_path / "spc.db").is_file()
        initialized = httpx.post(f"http://127.0.0.1:{port}/spc/transaction/initialize",
                                 headers={"apiKey": env["SHOP_API_KEY"]}, json={
                                     "user_id": "customer-42", "transaction_id": "order-1",
                                     "transaction_data": {"amount": "21.50", "currency": "EUR",
                                                          "payee_name": "Example Shop",
                                                          "payee_origin": "https://shop.example"}})
        assert initialized.status_code == 200, initialized.text
    finally:
        output = stop(process)
    assert "Traceback" not in output, output


def test_a_database_path_that_cannot_be_opened_stops_the_app_at_startup_naming_it(tmp_path: Path) -> None:
    app_source = quick_start_blocks()[2][1].replace("Path('spc.db')", "Path('missing-directory/spc.db')")
    assert "missing-directory" in app_source
    process, _, _ = run_quick_start(tmp_path, app_source)
    try:
        process.wait(30)
    finally:
        output = stop(process)
    assert process.returncode != 0
    assert str(tmp_path / "missing-directory" / "spc.db") in output, output
