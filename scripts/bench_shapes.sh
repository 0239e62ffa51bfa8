#!/usr/bin/env bash
# `make bench-shapes` (and the last step of `make bench`): the Lambda shapes benchmark
# (benches/shapes): the release binary and the Python anchor (benches/python_anchor) under the
# CPU of each Lambda memory size, through a delay proxy, on a durable throw-away PostgreSQL
# unless DATABASE_URL is set; writes target/shapes.csv and target/shapes-budget.csv (the Rust
# function's time budget per cell), draws docs/shapes.png and docs/budget.png and writes the
# shapes tables of docs/benchmarks.md (scripts/bench_tables.py). Needs root
# (a cgroup under /sys/fs/cgroup/cpu). Options go to the benchmark, e.g. `--quick`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

step "durable throw-away PostgreSQL"
export PG_DURABLE=1
ensure_postgres

step "the Python anchor: aws-lambda-powertools and psycopg in .venv-anchor (pyenv's Python 3.13)"
# Lambda's python3.13 runtime; the pins live in the anchor's requirements file.
mapfile -t anchor_packages < <(grep -v '^#' benches/python_anchor/requirements.txt | grep .)
ensure_pip_tool .venv-anchor "$(python313)" "${anchor_packages[@]}"

step "Lambda shapes: records/s, billed duration, cost, RSS, cold start per memory size and round trip"
cargo bench --bench shapes -- --csv target/shapes.csv "$@"

step "Lambda shapes: docs/shapes.png and docs/budget.png from the CSVs (matplotlib in .venv-bench)"
ensure_pip_tool .venv-bench python3 "matplotlib==3.11.2"
"$ROOT/.venv-bench/bin/python" scripts/plot_shapes.py target/shapes.csv docs/shapes.png
"$ROOT/.venv-bench/bin/python" scripts/plot_budget.py target/shapes-budget.csv docs/budget.png

step "docs/benchmarks.md: the Lambda shapes tables from target/shapes.csv and target/shapes-budget.csv"
python3 scripts/bench_tables.py docs/benchmarks.md target/shapes.csv target/shapes-budget.csv
