#!/usr/bin/env bash
# `make bench`: the benchmarks behind BENCHMARKS.md, in one command. It starts a durable
# throw-away PostgreSQL (fsync and synchronous_commit on, unlike the tests' server) unless
# DATABASE_URL is set, runs the criterion benchmark of the pure core and the end-to-end ingest
# benchmark, and stops what it started. Options after `--` go to the ingest benchmark, e.g.
# `make bench ARGS="--runs 9"` or `bash scripts/bench.sh --quick`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

step "durable throw-away PostgreSQL"
export PG_DURABLE=1
ensure_postgres

step "pure core: parse + validate + mask, records per second on one core (criterion)"
cargo bench --bench core

step "end to end: handler against binary COPY in the same run; cold start; peak RSS"
cargo bench --bench ingest -- "$@"
