"""The OpenAPI document against the live app: schemathesis with all its checks (issue 13, item 5).

A real issuer process (uvicorn, its own lifespan and SQLite database) serves
``/openapi.json``; ``schemathesis run --checks all`` generates requests from
it, valid and invalid, sends them and checks every answer against the
document: statuses, content types, schemas, headers (``Allow`` on a 405),
valid requests accepted and invalid ones refused, authentication enforced.
Any failure fails the test, with schemathesis's report.

The merchant key goes with every request; the credential, registration and
enrolment-link operations, which take only an admin key, get the admin key instead. One merchant without
payees: the document lists every merchant's payees, the API takes only the
caller's own, so with one merchant the two agree.

A deeper run than CI's: ``SPC_SCHEMATHESIS_EXAMPLES=250 SPC_SCHEMATHESIS_SEED=7 pytest
tests/test_openapi_schemathesis.py`` (examples per operation, and another seed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from factories import API_KEY, MERCHANT_ORIGIN
from processes import free_port, stop, wait_until_serving

TESTS = Path(__file__).resolve().parent
ADMIN_KEY = "admin-key-0123456789abcdefghijkl"
EXAMPLES_PER_OPERATION = int(os.environ.get("SPC_SCHEMATHESIS_EXAMPLES", "40"))

APP = f'''
from factories import make_config
from spc_embed import Issuer, Merchant

def create_app():
    merchant = Merchant(id="merchant", name="Test Merchant", origins=({MERCHANT_ORIGIN!r},), api_keys=({API_KEY!r},))
    return Issuer(make_config({{database!r}}, merchants=(merchant,), admin_api_keys=({ADMIN_KEY!r},))).app
'''

# What no schema can state: a credential whose id equals its rawId, whose clientDataJSON and signature verify,
# a signed link that is the issuer's. Schema-valid requests to these operations carry made-up assertions and
# tokens, which the issuer refuses as it must (400 invalid_credential or verification failed, 401 bad link),
# so those statuses are the expected refusals there; every other check applies to them in full.
CONFIG = f'''
headers = {{ apiKey = "{API_KEY}" }}

[[operations]]
include-path-regex = "^/(credentials|registration/|enrollment/links)"
headers = {{ apiKey = "{ADMIN_KEY}" }}

[[operations]]
include-path-regex = "^/(transaction/finalize|pay/finalize|enroll/options|enroll/verify|registration/finalize)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]

# A link carries its fields in a token of at most 4096 characters: long non-ASCII names or a large data: icon,
# each valid alone, can together exceed it (400 enrollment_link_too_long), a limit on the whole no schema states.
[[operations]]
include-path-regex = "^/enrollment/links$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404"]
'''


@pytest.fixture
def issuer_url(tmp_path: Path):
    (tmp_path / "schemathesis_issuer.py").write_text(APP.format(database=str(tmp_path / "spc.db")))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), str(TESTS),
                                                                       os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "schemathesis_issuer:create_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        wait_until_serving(process, port)
        yield f"http://127.0.0.1:{port}"
    finally:
        output = stop(process)
        assert "Traceback" not in output, output


def test_schemathesis_all_checks_find_nothing(issuer_url: str, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    result = subprocess.run(
        [command, "--config-file", str(config), "run", f"{issuer_url}/openapi.json", "--url", issuer_url,
         "--checks", "all", "--max-examples", str(EXAMPLES_PER_OPERATION), "--workers", "1",
         "--seed", os.environ.get("SPC_SCHEMATHESIS_SEED", "20261201"), "--no-color",
         # Hypothesis's own generation health checks (too slow, too many filtered) measure this machine's load,
         # not the API: they stay out of the verdict.
         "--suppress-health-check", "all"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
