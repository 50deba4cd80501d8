#!/usr/bin/env bash
# The main job: a demo migration on the local stack (bundled Supabase Storage
# server + SeaweedFS + the local PostgreSQL): plan -> run -> verify.
# Extra arguments go to `migrate demo` (see `migrate demo --help`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"
exec migrate demo "$@"
