#!/usr/bin/env bash
# `make demo-sqs`: the real queue flow on this machine, without Docker, through LocalStack's own
# Lambda service and its own SQS event source mapping. The arm64 zip users deploy (`make build`)
# runs as a local process under qemu through the project's runtime executor (localstack/executor).
# localstack/deploy.py creates login-queue, its dead-letter queue, the function and the mapping
# as template.yaml does (the same script the Docker path's init hooks run), sends the sample
# stream (the bodies of events/stream-*.json: 99 logins and one message that is not a login),
# waits until the queue is drained, shows the rows and the dead-letter queue, and stops everything.
#   DEMO_ROWS=all make demo-sqs    # print every row, not the first few
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
trap 'exit 130' INT TERM # bash skips the EXIT trap (our clean-up) on a signal unless we exit

ROWS_SHOWN="${DEMO_ROWS:-12}"
# template.yaml's 240 s visibility timeout and 5 receives would keep the bad message out of the
# dead-letter queue for 20 minutes: the demo shortens both (everything else as template.yaml).
export VISIBILITY_TIMEOUT=3 MAX_RECEIVE_COUNT=2

on_exit 'echo; echo "==> cleaned up: LocalStack, its function and the throw-away PostgreSQL stopped"'

step "set up: cargo-lambda, qemu (arm64), LocalStack with the local executor (.venv-localstack), a throw-away PostgreSQL"
ensure_cargo_lambda
ensure_qemu_arm64
ensure_localstack
# The demo writes sample rows and queues, so never into what the caller's environment names.
unset DATABASE_URL SQS_ENDPOINT_URL LOCALSTACK_ENDPOINT_URL
ensure_postgres
for file in migrations/*.sql; do
  PGOPTIONS="--client-min-messages=warning" psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -f "$file"
done

step "build the arm64 zip users deploy (make build; a few minutes the first time)"
build_arm64_zip

STATE="$(mktemp -d "${TMPDIR:-/tmp}/login-etl-demo-sqs.XXXXXX")"
on_exit "rm -rf \"$STATE\""
export LOGIN_ETL_LOG_DIR="$STATE"

step "start LocalStack: SQS, and Lambda running functions as local processes"
start_localstack

step "deploy with LocalStack's APIs (localstack/deploy.py, demo-only MASKING_KEY)"
MASKING_KEY="$DEMO_MASKING_KEY" .venv-localstack/bin/python localstack/deploy.py deploy target/lambda/login-etl/bootstrap.zip

step "send the sample stream; LocalStack's mapping invokes the function until the queue is empty"
.venv-localstack/bin/python localstack/deploy.py send
started=$SECONDS
.venv-localstack/bin/python localstack/deploy.py drain
echo "  drained in $((SECONDS - started)) s; the function's own summary of each batch:"
grep -h 'batch processed' "$STATE"/*.log | sed -e 's/^.*batch processed/    batch processed/' | head -n 20 || true

step "the queues now"
.venv-localstack/bin/python localstack/deploy.py report

show_sample_rows "$ROWS_SHOWN"
rows="$(psql -X -At "$DATABASE_URL" -c 'SELECT count(*) FROM user_logins')"
echo "user_logins holds $rows rows; every other message is in login-queue-dlq (above)."
