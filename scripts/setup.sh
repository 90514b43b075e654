#!/usr/bin/env bash
# Install what pgmart needs on Debian 12 (as root), skipping whatever is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PGRX_VERSION=0.18.1
PKGS=(postgresql-15 postgresql-server-dev-15 postgresql-15-partman postgresql-contrib libclang-dev clang sudo pkg-config make)

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

if ! grep -q '^pg15' "${PGRX_HOME:-$HOME/.pgrx}/config.toml" 2>/dev/null; then
    echo "setup: cargo pgrx init against the system PostgreSQL 15"
    cargo pgrx init --pg15 /usr/bin/pg_config
fi

if ! .venv/bin/python -c 'import psycopg, pytest' 2>/dev/null; then
    echo "setup: creating .venv for the end-to-end tests"
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check 'psycopg[binary]>=3.1' 'pytest>=7'
fi
