"""An issuer app for uvicorn processes started by tests: ``uvicorn --factory issuer_asgi:create_app``.

Every process started with the same environment is the same issuer (same
secrets, same signing key, same database), as instances behind a load
balancer would be:

    SPC_TEST_DATABASE_URL   the shared database
    SPC_TEST_SIGNING_KEY    a file with the PEM signing key all instances share
"""

from __future__ import annotations

import os
from pathlib import Path

from factories import make_config
from starlette.applications import Starlette

from spc_embed import Issuer


def create_issuer() -> Issuer:
    config = make_config(
        "unused.db", database_url=os.environ["SPC_TEST_DATABASE_URL"],
        signing_keys=(Path(os.environ["SPC_TEST_SIGNING_KEY"]).read_text(),),
    )
    return Issuer(config)


def create_app() -> Starlette:
    return create_issuer().app
