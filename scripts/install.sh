#!/usr/bin/env bash
# Build pgmart and install it into one PostgreSQL: scripts/install.sh [PG_CONFIG] [cargo pgrx install flags]
# (default: Debian's PostgreSQL 15). Besides what `cargo pgrx install` puts there (the library, the
# control file, this version's install script and every sql/pgmart--A--B.sql upgrade step), the
# install scripts of released versions go along, kept as shipped: a database can then be given an
# older pgmart (CREATE EXTENSION pgmart VERSION '0.1.0', to restore a dump taken on it) and updated.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG="${1:-/usr/bin/pg_config}"
shift || true
cargo pgrx install --pg-config "$PG_CONFIG" "$@"
ext="$("$PG_CONFIG" --sharedir)/extension"
for f in sql/pgmart--*.sql; do
    case "$(basename "$f")" in
        pgmart--*--*) ;;                            # upgrade steps: cargo pgrx installs them
        *) install -m 644 "$f" "$ext/" ;;
    esac
done
