#!/usr/bin/env bash
# Set up a fresh machine for spc-embed: the system packages the tests need and
# a virtualenv with the Python deps.
# Usage: scripts/setup.sh [--browser] [--postgres]
#   --browser   also install Debian's Chromium and certutil (the real-browser tests)
#   --postgres  also install Debian's PostgreSQL server binaries (the PostgreSQL tests;
#               the suite makes its own throwaway cluster, no service is started)
set -euo pipefail
cd "$(dirname "$0")/.."

browser=0 postgres=0
for arg in "$@"; do
  case "$arg" in
    --browser) browser=1 ;;
    --postgres) postgres=1 ;;
    *) echo "usage: scripts/setup.sh [--browser] [--postgres]" >&2; exit 2 ;;
  esac
done

# initdb and pg_ctl of any installed PostgreSQL major version: where `pg_config --bindir`
# says (libpq-dev's pg_config may point at a version whose server is absent), else the
# newest /usr/lib/postgresql/<version>/bin. tests/postgres.py searches the same way.
# $SPC_PG_BINDIR, when set, is the only place looked at.
have_postgres() {
  local dir dirs
  if [ -n "${SPC_PG_BINDIR:-}" ]; then
    dirs=("$SPC_PG_BINDIR")
  else
    dirs=("$(pg_config --bindir 2>/dev/null || true)" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV))
  fi
  for dir in "${dirs[@]}"; do
    [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ] || continue
    # PostgreSQL refuses to run as root: as root the tests run it as the `postgres` user.
    [ "$(id -u)" -ne 0 ] || id postgres >/dev/null 2>&1 || return 1
    return 0
  done
  return 1
}

packages=()
if [ "$browser" = 1 ] && ! { command -v chromium && command -v certutil; } >/dev/null 2>&1; then
  packages+=(chromium libnss3-tools)
fi
if [ "$postgres" = 1 ] && ! have_postgres; then
  packages+=(postgresql)
fi

no_main_cleanup() {
  $sudo rm -f "$nomain"
  $sudo rmdir "$(dirname "$nomain")" 2>/dev/null || true  # if we made it and it is empty
}

if [ "${#packages[@]}" -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  nomain=""
  if [ "$postgres" = 1 ] && [ ! -e /etc/postgresql-common/createcluster.d/spc-embed-no-main.conf ]; then
    # Debian's package would create and start a `main` cluster on port 5432: the tests
    # need only the binaries. postgresql-common reads createcluster.d when it configures
    # the server package; the file is removed again once the install is done.
    nomain=/etc/postgresql-common/createcluster.d/spc-embed-no-main.conf
    $sudo mkdir -p "$(dirname "$nomain")"
    echo "create_main_cluster = false" | $sudo tee "$nomain" >/dev/null
    trap 'no_main_cleanup' EXIT
  fi
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
  if [ -n "$nomain" ]; then no_main_cleanup; trap - EXIT; fi
  if [ "$postgres" = 1 ] && ! have_postgres; then
    echo "setup.sh: installed postgresql but found no initdb/pg_ctl (or no postgres user)" >&2
    exit 1
  fi
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test,demo,bench]"
