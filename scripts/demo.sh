#!/usr/bin/env bash
# Set up the virtualenv and start the two-origin demo (a bank and a shop).
# Extra arguments go to `python -m example_merchant` (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m example_merchant "$@"
