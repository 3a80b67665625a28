#!/usr/bin/env bash
# Set up everything the suite needs, then run all tests, the real-browser and
# PostgreSQL ones included. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --browser --postgres
exec .venv/bin/python -m pytest "$@"
