#!/usr/bin/env bash
# Set up a fresh machine for spc-embed: the system packages the browser tests
# need (Debian's Chromium and certutil) and a virtualenv with the Python deps.
# Usage: scripts/setup.sh [--browser]   (--browser also installs Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--browser" ] && ! { command -v chromium && command -v certutil; } >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium libnss3-tools >/dev/null
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test,demo]"
