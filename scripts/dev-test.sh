#!/usr/bin/env bash
# Developer loop: run a subset of tests, serialised with every other checkout on this machine
# (cargo pgrx test and the e2e tests install pgmart into the one system PostgreSQL).
#   scripts/dev-test.sh [cargo-test-filter] [pytest-args...]
#   scripts/dev-test.sh partitions pg_test/test_partitions.py
set -euo pipefail
cd "$(dirname "$0")/.."
export USER="${USER:-root}" CARGO_PGRX_TEST_RUNAS=postgres
T="${CARGO_TARGET_DIR:-target}"
filter="${1:-}"; shift || true
exec flock -o /tmp/pgmart-install.lock bash -c '
  set -euo pipefail
  mkdir -p "'"$T"'/test-pgdata" && chown -R postgres: "'"$T"'/test-pgdata"
  cargo pgrx test pg15 '"${filter:+$filter}"'
  if [ $# -gt 0 ]; then
    cargo pgrx install --pg-config /usr/bin/pg_config >/dev/null
    .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
  fi
' bash "$@"
