#!/usr/bin/env bash
# `make bench`: the benchmarks behind docs/benchmarks.md, in one command. It starts a durable
# throw-away PostgreSQL (fsync and synchronous_commit on, unlike the tests' server) unless
# DATABASE_URL is set, runs the criterion benchmark of the pure core, the end-to-end ingest
# benchmark, the partitioned-against-unpartitioned table benchmark and the capacity benchmark
# (concurrent instances, direct and through a PgBouncer it starts), draws docs/capacity.png,
# writes the tables of docs/benchmarks.md from the benchmarks' CSVs (scripts/bench_tables.py),
# runs the Lambda shapes benchmark (scripts/bench_shapes.sh: CPU caps like memory sizes, a delay
# proxy, the Python anchor; docs/shapes.png and its tables), and stops what it started. Options
# after `--` go to the ingest benchmark, e.g. `make bench ARGS="--runs 9"` or
# `bash scripts/bench.sh --quick`; --quick also goes to the partitions, capacity and shapes
# benchmarks, and CAPACITY_ARGS to capacity alone, e.g.
# `make bench CAPACITY_ARGS="--runs 5 --seconds 5"`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

# The CSVs the benchmarks below write (target/ingest.csv, target/ingest-binary.csv, ...), which
# the step before the shapes renders into docs/benchmarks.md.
result_csvs() {
  shopt -s nullglob
  results=(target/{ingest,partitions,capacity}*.csv)
  shopt -u nullglob
}
# An earlier run's go first: a part this run leaves out (--no-lambda-binary) keeps its table in
# the page as it is.
result_csvs
rm -f "${results[@]}"

step "durable throw-away PostgreSQL"
export PG_DURABLE=1
ensure_postgres

step "pure core: parse + validate + mask, records per second on one core (criterion)"
cargo bench --bench core

step "end to end: handler against binary COPY in the same run; cold start; peak RSS"
cargo bench --bench ingest -- "$@"

step "partitions: user_logins partitioned by day against one table, writes and retention"
partition_args=()
for arg in "$@"; do
  if [ "$arg" = --quick ]; then partition_args+=(--quick); fi
done
cargo bench --bench partitions -- "${partition_args[@]}"

step "capacity: concurrent instances, direct and through PgBouncer"
ensure_pgbouncer
capacity_args=()
for arg in "$@"; do
  if [ "$arg" = --quick ]; then capacity_args+=(--quick); fi
done
# shellcheck disable=SC2206 # CAPACITY_ARGS is a list of words
capacity_args+=(${CAPACITY_ARGS:-})
# The benchmark starts and stops its PgBouncer in this directory; should it be killed, the
# pidfile lets the exit trap stop PgBouncer all the same.
bouncer_dir="$(mktemp -d "${TMPDIR:-/tmp}/login-etl-capacity-pgbouncer.XXXXXX")"
chmod 755 "$bouncer_dir"
on_exit "[ ! -f \"$bouncer_dir/pgbouncer.pid\" ] || kill \"\$(cat \"$bouncer_dir/pgbouncer.pid\")\" 2>/dev/null; rm -rf \"$bouncer_dir\""
CAPACITY_PGBOUNCER_DIR="$bouncer_dir" cargo bench --bench capacity -- --csv target/capacity.csv "${capacity_args[@]}"

step "capacity: docs/capacity.png from target/capacity.csv (matplotlib in .venv-bench)"
ensure_pip_tool .venv-bench python3 "matplotlib==3.11.2"
"$ROOT/.venv-bench/bin/python" scripts/plot_capacity.py target/capacity.csv docs/capacity.png

# Before the shapes, which need root: the tables of what has run are written even if they fail.
step "docs/benchmarks.md: the ingest, partitions and capacity tables from their CSVs"
result_csvs
python3 scripts/bench_tables.py docs/benchmarks.md "${results[@]}"

step "Lambda shapes (scripts/bench_shapes.sh), on the same PostgreSQL"
shapes_args=()
for arg in "$@"; do
  if [ "$arg" = --quick ]; then shapes_args+=(--quick); fi
done
bash scripts/bench_shapes.sh "${shapes_args[@]}"
