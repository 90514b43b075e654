#!/usr/bin/env bash
# Every test: Rust unit tests and #[pg_test] (cargo pgrx test), then the end-to-end tests under
# pg_test/ against clusters the harness starts itself with pgmart preloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
export USER="${USER:-root}"
export CARGO_PGRX_TEST_RUNAS="${CARGO_PGRX_TEST_RUNAS:-postgres}"

# initdb refuses root: the test cluster's data directory belongs to postgres.
T="${CARGO_TARGET_DIR:-target}"
mkdir -p "$T/test-pgdata"
chown -R postgres: "$T/test-pgdata"
chmod o+rx target . 2>/dev/null || true

echo "== unit tests and #[pg_test] =="
cargo pgrx test pg15

echo "== install into the system PostgreSQL 15 =="
cargo pgrx install --pg-config /usr/bin/pg_config >/dev/null

echo "== pgspot: the install and upgrade scripts resolve nothing through a caller's search_path =="
cargo pgrx schema pg15 --pg-config /usr/bin/pg_config -o "$T/pgmart-schema.sql" >/dev/null
# The one procedure commits between sets, so it cannot pin search_path with SET: its body is
# qualified instead. Released scripts (sql/pgmart--0.1.0.sql) are checked as shipped elsewhere.
.venv/bin/pgspot --proc-without-search-path 'pgmart.run_partition_maintenance_proc()' "$T/pgmart-schema.sql" \
    $(ls sql/pgmart--*--*.sql 2>/dev/null) | tee "$T/pgspot.txt" | tail -3
grep -q "Errors: 0 Warnings: 0 Unknown: 0" "$T/pgspot.txt" || { cat "$T/pgspot.txt"; exit 1; }

echo "== end-to-end tests (pg_test/) =="
.venv/bin/python -m pytest pg_test -q -m "not bench" -p no:cacheprovider
