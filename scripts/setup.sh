#!/usr/bin/env bash
# Install what pgmart needs on Debian 12 (as root), skipping whatever is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PGRX_VERSION=0.18.1
PKGS=(postgresql-15 postgresql-server-dev-15 postgresql-15-partman postgresql-15-cron postgresql-contrib libclang-dev clang sudo pkg-config make
      # the shared libraries of the PostgreSQL 16..18 builds that scripts/pgversions.sh unpacks
      libssl3 libgssapi-krb5-2 liblz4-1 libzstd1 libxml2 libreadline8 zlib1g)

missing=()
for p in "${PKGS[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
    echo "setup: installing cargo-pgrx $PGRX_VERSION"
    cargo install cargo-pgrx --version "=$PGRX_VERSION" --locked
fi

if ! .venv/bin/python -c 'import psycopg, pytest, asyncpg' 2>/dev/null || [ ! -x .venv/bin/pgspot ]; then
    echo "setup: creating .venv for the end-to-end tests"
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check 'psycopg[binary]>=3.1' 'pytest>=7' 'pgspot==0.9.4' 'asyncpg>=0.29'
fi

# Mermaid's own parser (npm) for the lineage diagrams' test, under Node.
if ! command -v npm >/dev/null; then
    echo "setup: installing nodejs and npm"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -f pg_test/mermaid/node_modules/mermaid/package.json ] || [ ! -f pg_test/mermaid/node_modules/jsdom/package.json ]; then
    echo "setup: installing mermaid and jsdom (npm) for the lineage tests"
    (cd pg_test/mermaid && npm ci --no-audit --no-fund --silent)
fi

# dbt, the anchor of snapshots: pg_test/test_snapshots.py and bench_snapshots.py run real `dbt snapshot`
# beside pgmart (dbt-core 1.11 runs on the Python here; 1.12 was not tried).
if ! .venv/bin/python -c 'import dbt.adapters.postgres' 2>/dev/null || [ ! -x .venv/bin/dbt ]; then
    echo "setup: installing dbt-core and dbt-postgres into .venv"
    .venv/bin/pip install -q --disable-pip-version-check 'dbt-core==1.11.16' 'dbt-postgres==1.11.0'
fi

# PostgreSQL 16, 17 and 18 (Debian 12 has only 15), cached outside the work tree.
bash scripts/pgversions.sh ensure

# `cargo pgrx init` rewrites config.toml whole, so it gets every version at once; run it when any
# version is missing there, or points elsewhere than scripts/pgversions.sh says, or is gone.
init_args=()
need_init=
while read -r v pgc; do
    init_args+=("--pg$v" "$pgc")
    if ! grep -qxF "pg$v = \"$pgc\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml" 2>/dev/null || [ ! -x "$pgc" ]; then
        need_init=1
    fi
done < <(bash scripts/pgversions.sh list)
if [ -n "$need_init" ]; then
    echo "setup: cargo pgrx init ${init_args[*]}"
    cargo pgrx init "${init_args[@]}" >/dev/null
fi
