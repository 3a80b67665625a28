#!/usr/bin/env bash
# Set up everything the suite needs, check spc_embed/ with ruff and mypy --strict
# (configured in pyproject.toml), then run all tests, the real-browser and
# PostgreSQL ones included. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --browser --postgres
.venv/bin/python -m ruff check spc_embed
.venv/bin/python -m mypy
exec .venv/bin/python -m pytest "$@"
