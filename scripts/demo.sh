#!/usr/bin/env bash
# `make demo`: a throwaway local cluster with pgmart preloaded, a small realistic dataset, jobs
# registered, the background worker doing the work, and what happened printed.
# `make demo-stop` (or `scripts/demo.sh stop`) stops it and removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=/usr/lib/postgresql/15/bin
DIR="${PGMART_DEMO_DIR:-/tmp/pgmart-demo}"
PORT="${PGMART_DEMO_PORT:-5499}"
PSQL=(psql -X -q -h "$DIR" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1)

stop() {
    if [ -f "$DIR/data/postmaster.pid" ]; then
        runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$DIR"
}

if [ "${1:-}" = "stop" ]; then
    stop
    echo "demo cluster stopped and removed"
    exit 0
fi

stop
mkdir -p "$DIR" && chown postgres: "$DIR"
runuser -u postgres -- "$BIN/initdb" -D "$DIR/data" -A trust -U postgres --no-sync >/dev/null
cat >> "$DIR/data/postgresql.conf" <<CONF
port = $PORT
unix_socket_directories = '$DIR'
listen_addresses = ''
shared_preload_libraries = 'pgmart'
pgmart.naptime = '1s'
max_worker_processes = 16
CONF
runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w start >/dev/null
echo "== a throwaway cluster with pgmart preloaded on port $PORT =="

"${PSQL[@]}" -f scripts/demo.sql

echo
echo "== waiting 8 seconds: the pgmart scheduler runs the jobs, no client involved =="
sleep 8
"${PSQL[@]}" -f scripts/demo_report.sql

cat <<MSG

The demo cluster is still running.
  connect: psql -h $DIR -p $PORT -U postgres
  stop:    make demo-stop
MSG
