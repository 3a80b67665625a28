#!/usr/bin/env bash
# Set up everything the suite needs, check the code with ruff and spc_embed/ with mypy --strict
# (configured in pyproject.toml), then run all tests, the real-browser and
# PostgreSQL ones included. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --browser --postgres
.venv/bin/python -m ruff check  # every Python file of the project (.venv and other defaults excluded)
.venv/bin/python -m mypy
exec .venv/bin/python -m pytest "$@"
