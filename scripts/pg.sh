#!/usr/bin/env bash
# A throw-away PostgreSQL cluster on a free loopback port, trust auth, for tests and the demo.
#   eval "$(scripts/pg.sh start)"   # exports DATABASE_URL, PG_TEST_DIR, PGHOST, PGPORT, PGUSER
#   scripts/pg.sh stop "$PG_TEST_DIR"
# A caller that must be able to clean up while the start is still running (a Ctrl-C during
# initdb) makes the directory itself and passes it, empty, as PG_START_DIR; lib.sh does. A start
# that fails or is interrupted stops the server and removes the directory before it exits.
# initdb refuses to run as root, so as root the cluster belongs to the `postgres` OS user.
# Set PG_DURABLE=1 for fsync and synchronous_commit on (benchmarks); tests run without them.
set -euo pipefail

pg_bin() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -z "$dir" ]; then
    echo "pg.sh: PostgreSQL server binaries not found; installing postgresql from Debian" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    dir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  fi
  echo "$dir"
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop_cluster() {
  local dir="$1" bin
  bin="$(pg_bin)"
  as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}

# The EXIT trap of a start that did not finish. pg_ctl runs the server in a session of its own, so
# a Ctrl-C that stops pg_ctl leaves the server starting; it writes postmaster.pid (which pg_ctl
# stop needs) within moments, hence the short wait.
abandon_start() {
  local i
  if [ "$launched" = 1 ]; then
    for ((i = 0; i < 20; i++)); do
      [ -f "$dir/data/postmaster.pid" ] && break
      sleep 0.1
    done
  fi
  stop_cluster "$dir"
}

case "${1:-}" in
start)
  bin="$(pg_bin)"
  if [ -n "${PG_START_DIR:-}" ]; then
    dir="$PG_START_DIR"
    if [ ! -d "$dir" ] || [ -n "$(ls -A "$dir")" ]; then
      echo "pg.sh: PG_START_DIR must be an empty directory: $dir" >&2
      exit 2
    fi
  else
    dir="$(mktemp -d "${TMPDIR:-/tmp}/login-etl-pg.XXXXXX")"
  fi
  launched=0
  trap abandon_start EXIT
  # On Ctrl-C, stop at once: no log of the step it interrupted.
  trap 'exit 130' INT
  trap 'exit 143' TERM
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    chown postgres "$dir"
  fi
  chmod 755 "$dir"
  port="${PG_PORT:-$(free_port)}"
  as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  [ "${PG_DURABLE:-0}" = 1 ] && durability=""
  launched=1
  # shellcheck disable=SC2086
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 $durability ${PG_EXTRA_OPTS:-}" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres login_etl
  echo "export PG_TEST_DIR=$dir PG_BIN=$bin PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=login_etl"
  echo "export DATABASE_URL=postgres://postgres@127.0.0.1:$port/login_etl?sslmode=disable"
  trap - EXIT
  ;;
stop)
  stop_cluster "${2:?usage: pg.sh stop DIR}"
  ;;
*)
  echo "usage: pg.sh start | pg.sh stop DIR" >&2
  exit 2
  ;;
esac
