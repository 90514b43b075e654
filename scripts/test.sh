#!/usr/bin/env bash
# Every test: Rust unit tests (once), #[pg_test] on every supported PostgreSQL (cargo pgrx test),
# pgspot on the install and upgrade scripts, then the end-to-end tests under pg_test/ against
# clusters the harness starts itself with pgmart preloaded, on PostgreSQL 15 and 18.
#
#   scripts/test.sh                 unit tests; #[pg_test] on 15..18; pgspot; end-to-end on 15 and 18
#   PG=17 scripts/test.sh           one version only: unit tests, #[pg_test] and end-to-end on 17
#   E2E="15 16 17 18" scripts/test.sh   end-to-end on these versions instead (about 5 min each)
#
# Every failure names its version ("FAILED on PostgreSQL 17: ..."); the other versions still run
# and the script exits non-zero at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export USER="${USER:-root}"
export CARGO_PGRX_TEST_RUNAS="${CARGO_PGRX_TEST_RUNAS:-postgres}"

if [ -n "${PG:-}" ]; then
    scripts/pgversions.sh pg_config "$PG" >/dev/null # an unknown version stops here
    VERSIONS=("$PG")
    E2E_VERSIONS=("$PG")
else
    mapfile -t VERSIONS < <(scripts/pgversions.sh list | cut -d' ' -f1)
    read -r -a E2E_VERSIONS <<<"${E2E:-15 18}"
fi

# initdb refuses root: the test cluster's data directory belongs to postgres.
T="${CARGO_TARGET_DIR:-target}"
mkdir -p "$T/test-pgdata"
chown -R postgres: "$T/test-pgdata"
chmod o+rx target . 2>/dev/null || true

FAILED=()
failed() {
    echo "FAILED on PostgreSQL $1: $2"
    FAILED+=("PostgreSQL $1: $2")
}

# Rust unit tests run with the first version's #[pg_test]s; on the others only the #[pg_test]s
# (their test names are <module>::tests::tests::pg_<name>).
filter=""
for v in "${VERSIONS[@]}"; do
    if [ -z "$filter" ]; then
        echo "== Rust unit tests and #[pg_test] on PostgreSQL $v =="
    else
        echo "== #[pg_test] on PostgreSQL $v =="
    fi
    # shellcheck disable=SC2086  # $filter is empty or one word
    cargo pgrx test "pg$v" $filter || failed "$v" "#[pg_test]"
    filter="tests::pg_"
done

echo "== upgrade scripts: generated, and pgspot finds nothing in them or in the install script =="
cargo pgrx schema pg15 --pg-config /usr/bin/pg_config -o "$T/pgmart-schema.sql" >/dev/null
.venv/bin/python scripts/make_upgrade.py "$T/pgmart-schema.sql" --check || FAILED+=("sql/pgmart--A--B.sql is stale")
# The one procedure commits between sets, so it cannot pin search_path with SET: its body is
# qualified instead. An upgrade step runs where pgmart's schemas already exist (created by the
# extension): pgspot reads it after a prelude that says so. Released install scripts
# (sql/pgmart--0.1.0.sql) stay as shipped.
printf 'CREATE SCHEMA pgmart;\nCREATE SCHEMA pgmart_metrics;\n' >"$T/pgspot-prelude.sql"
spot() { # one pgspot run; fails unless its last line counts nothing
    .venv/bin/pgspot --proc-without-search-path 'pgmart.run_partition_maintenance_proc()' "$@" >"$T/pgspot.txt" 2>&1 || true
    grep -q "Errors: 0 Warnings: 0 Unknown: 0" <(grep . "$T/pgspot.txt" | tail -1) ||
        { cat "$T/pgspot.txt"; echo "FAILED: pgspot on ${*: -1}"; FAILED+=("pgspot on ${*: -1}"); }
}
spot "$T/pgmart-schema.sql"
for f in sql/pgmart--*--*.sql; do spot -a "$T/pgspot-prelude.sql" "$f"; done

for v in "${E2E_VERSIONS[@]}"; do
    echo "== install into PostgreSQL $v ($(scripts/pgversions.sh pg_config "$v")) =="
    if ! bash scripts/install.sh "$(scripts/pgversions.sh pg_config "$v")" >/dev/null; then
        failed "$v" "scripts/install.sh"
        continue
    fi
    echo "== end-to-end tests (pg_test/) on PostgreSQL $v =="
    PGMART_PG="$v" .venv/bin/python -m pytest pg_test -q -m "not bench" -p no:cacheprovider ||
        failed "$v" "end-to-end tests (PGMART_PG=$v pytest pg_test)"
done

if [ "${#FAILED[@]}" -gt 0 ]; then
    echo "== FAILED =="
    printf '  %s\n' "${FAILED[@]}"
    exit 1
fi
echo "== all tests passed (#[pg_test] on ${VERSIONS[*]}; end-to-end on ${E2E_VERSIONS[*]}) =="
