#!/usr/bin/env bash
# Create the project's virtual environment (.venv) and install migrate with its
# dev extra into it, once. Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MIGRATE_VENV:-$root/.venv}"
stamp="$venv/.migrate-installed"
if [ ! -x "$venv/bin/python" ]; then
  echo "Creating the virtual environment in $venv" >&2
  python3 -m venv "$venv"
fi
# Reinstall when pyproject.toml changed since the last install.
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  echo "Installing migrate and its dev tools into $venv (first run only; log: $venv/install.log)" >&2
  if ! { "$venv/bin/python" -m pip install --disable-pip-version-check --upgrade pip \
         && "$venv/bin/python" -m pip install --disable-pip-version-check -e "$root[dev]"; } >"$venv/install.log" 2>&1; then
    tail -n 30 "$venv/install.log" >&2
    echo "scripts/bootstrap.sh: installing failed; the full log is $venv/install.log" >&2
    exit 1
  fi
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
