"""The three apps that ``bench/served.py`` serves with uvicorn, one process each.

uvicorn imports this module by name (``--app-dir bench --factory served_apps:<factory>``)
in every worker, so everything a worker needs comes from environment variables the
harness sets; nothing is shared in memory with the harness:

- ``issuer_app``: the real issuer (``spc_embed.Issuer(config).app``, mounted at the
  root), the test suite's configuration (``tests/factories.py``) with the database from
  ``SPC_BENCH_DATABASE_URL`` and the result-signing key from ``SPC_BENCH_SIGNING_KEY_FILE``
  (one key for every worker, so each process signs with the same key), made ready to serve
  as ``spc-embed serve`` does (``spc_embed.cli.ready_to_serve``: ``gc.freeze()`` at the end of
  start-up); with ``SPC_BENCH_AS_MOUNTED=1`` the app as it is, as a host gets it that does not.
- ``reference_app``: what an issuer's engineer would write by hand: one Starlette POST
  route that parses one WebAuthn assertion and verifies it with py_webauthn against a
  public key held in memory; no database. ``SPC_BENCH_REFERENCE`` is a JSON object with
  ``public_key`` (COSE, base64url), ``challenge`` (base64url), ``rp_id`` and ``origin``.
- ``hello_app``: Starlette answering ``GET /`` with a short text, for scale.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def issuer_config(database_url: str, signing_key_pem: str) -> Any:
    """The benchmark issuer's configuration: the tests' config, default TTLs and durability."""
    from factories import make_config

    return make_config("unused", database_url=database_url, signing_keys=(signing_key_pem,))


def issuer_app() -> Any:
    from spc_embed import Issuer
    from spc_embed.cli import ready_to_serve

    signing_key = Path(os.environ["SPC_BENCH_SIGNING_KEY_FILE"]).read_text(encoding="ascii")
    app = Issuer(issuer_config(os.environ["SPC_BENCH_DATABASE_URL"], signing_key)).app
    if os.environ.get("SPC_BENCH_AS_MOUNTED"):  # what a host gets that does not freeze its start-up objects
        return app
    return ready_to_serve(app)  # as `spc-embed serve` serves it


def _b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def reference_app() -> Starlette:
    from webauthn import verify_authentication_response
    from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidJSONStructure

    spec = json.loads(os.environ["SPC_BENCH_REFERENCE"])
    public_key = _b64decode(spec["public_key"])
    challenge = _b64decode(spec["challenge"])

    async def verify(request: Request) -> Response:
        try:
            body = await request.json()
            verified = verify_authentication_response(
                credential=body["credential"], expected_challenge=challenge, expected_rp_id=spec["rp_id"],
                expected_origin=spec["origin"], credential_public_key=public_key,
                credential_current_sign_count=0, require_user_verification=True,
            )
        except (ValueError, KeyError, TypeError, InvalidAuthenticationResponse, InvalidJSONStructure) as exc:
            return JSONResponse({"verified": False, "message": str(exc)}, status_code=400)
        return JSONResponse({"verified": True, "sign_count": verified.new_sign_count})

    return Starlette(routes=[Route("/verify", verify, methods=["POST"])])


def hello_app() -> Starlette:
    async def hello(request: Request) -> Response:
        return PlainTextResponse("hello")

    return Starlette(routes=[Route("/", hello, methods=["GET"])])
