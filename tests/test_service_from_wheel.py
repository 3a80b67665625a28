"""From the built wheel to a working issuer service, with real processes (issue 13, "Done when").

Builds the wheel, installs it into a fresh virtualenv (its dependencies from
the package index, as a user's ``pip install`` would), then, in a directory
that is not the checkout: ``spc-embed keys`` -> the configuration it printed ->
``spc-embed check`` -> ``spc-embed db init`` -> ``spc-embed serve``, a
whole payment through ``scripts/server_to_server.py`` against it, the JWKS
and ``/healthz``. About 10 s
here with the index's wheels cached; every step has a timeout so that a
missing network fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from processes import free_port, stop, wait_until_serving

from spc_embed import Issuer
from spc_embed.config_file import load_config_file

ROOT = Path(__file__).resolve().parent.parent
MERCHANT_ORIGIN = "https://shop.example"


def run(*command: str | Path, cwd: Path, env: dict[str, str], timeout: float = 60) -> str:
    result = subprocess.run([str(part) for part in command], check=False, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def test_a_fresh_virtualenv_serves_a_working_issuer_from_the_wheel(tmp_path: Path) -> None:
    # Nothing of the checkout or of the test's own virtualenv may leak into the installed command.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env = {k: v for k, v in env.items() if not k.startswith("SPC_")}
    wheels, venv, site = tmp_path / "wheels", tmp_path / "venv", tmp_path / "site"
    site.mkdir()
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, ROOT, cwd=tmp_path, env=env)
    (wheel,) = wheels.glob("spc_embed-*.whl")
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=env)
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel, cwd=tmp_path, env=env, timeout=180)
    command = venv / "bin" / "spc-embed"
    installed = run(venv / "bin" / "python", "-c", "import spc_embed; print(spc_embed.__file__)", cwd=site, env=env)
    assert Path(installed.strip()).is_relative_to(venv)

    # 1. Keys, and the configuration they come in, completed with the issuer's identity and database.
    printed = run(command, "keys", "--signing-key-out", "jwt-signing-key.pem", "--merchant-id", "shop",
                  "--merchant-origin", MERCHANT_ORIGIN, "--format", "toml", cwd=site, env=env)
    port = free_port()
    issuer_toml = site / "issuer.toml"
    issuer_toml.write_text(
        'rp_id = "localhost"\nrp_name = "Wheel Bank"\n'
        f'origin = "http://localhost:{port}"\ndatabase_url = "sqlite:///{site / "spc.db"}"\n' + printed
    )
    config = load_config_file(issuer_toml)
    api_key_line = next(line for line in printed.splitlines() if line.startswith("api_keys = "))
    api_key = api_key_line.split('"')[1]

    # 2. Check, then the schema step, as at deploy time.
    assert "is valid" in run(command, "check", "--config", "issuer.toml", "--mount-path", "/spc", cwd=site, env=env)
    assert "is ready (schema version" in run(command, "db", "init", "--config", "issuer.toml", cwd=site, env=env)

    # 3. Serve, and pay through it.
    server = subprocess.Popen(
        [str(command), "serve", "--config", "issuer.toml", "--port", str(port), "--mount-path", "/spc"],
        cwd=site, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        wait_until_serving(server, port)
        base_url = f"http://localhost:{port}/spc"
        enrollment_url = Issuer(config, mount_path="/spc").enrollment_url(
            user_id="customer-42", user_name="alice@example.com", user_display_name="Alice",
            instrument_name="Wheel Visa ****1234", instrument_icon="https://bank.example/card.png",
            merchant_origin=MERCHANT_ORIGIN,
        )
        flow = run(sys.executable, ROOT / "scripts" / "server_to_server.py", "--base-url", base_url,
                   "--api-key", api_key, "--tenant-id", "shop", "--merchant-origin", MERCHANT_ORIGIN,
                   "--user-id", "customer-42", "--enrollment-url", enrollment_url, cwd=tmp_path, env=os.environ.copy())
        assert "5. verified against the JWKS: sub=customer-42 aud=shop" in flow, flow
        assert "6. replaying the same assertion: HTTP 4" in flow, flow

        health = httpx.get(f"{base_url}/healthz", timeout=10)
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        jwks = httpx.get(f"{base_url}/.well-known/jwks.json", timeout=10)
        assert jwks.status_code == 200
        (published,) = jwks.json()["keys"]
        key = serialization.load_pem_private_key((site / "jwt-signing-key.pem").read_bytes(), password=None)
        assert jwt.PyJWK(published).key.public_numbers() == key.public_key().public_numbers()
    finally:
        log = stop(server)
    # A graceful stop: uvicorn finishes the lifespan, then re-raises the SIGTERM it caught.
    assert server.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in log, log
    assert "Traceback" not in log, log
    assert '"POST /spc/transaction/finalize HTTP/1.1" 200' in log
