#!/usr/bin/env bash
# `make demo-sqs`: the real queue flow on this machine, without Docker. LocalStack's SQS holds
# login-queue (dead-letter queue after 2 receives); login-etl-esm plays the Lambda event source
# mapping; the function runs under `cargo lambda watch` on a throw-away PostgreSQL. It sends the
# sample stream (the bodies of events/stream-*.json: 99 logins and one message that is not a
# login), drains the queue, shows the rows and the dead-letter queue, and stops everything.
#   DEMO_ROWS=all make demo-sqs    # print every row, not the first few
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
trap 'exit 130' INT TERM # bash skips the EXIT trap (our clean-up) on a signal unless we exit

ROWS_SHOWN="${DEMO_ROWS:-12}"
# Short, so the bad message reaches the dead-letter queue within seconds (2 receives).
VISIBILITY_S=3
MAX_RECEIVES=2
# LocalStack takes any credentials; never let the SDK probe the EC2 metadata address.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

on_exit 'echo; echo "==> cleaned up: LocalStack, the function and the throw-away PostgreSQL stopped"'

step "set up: cargo-lambda, LocalStack (.venv-localstack), a throw-away PostgreSQL, the binaries"
ensure_cargo_lambda
ensure_localstack
# The demo writes sample rows and queues, so never into what the caller's environment names.
unset DATABASE_URL SQS_ENDPOINT_URL
ensure_postgres
cargo build --bin login-etl
cargo build -p login-etl-esm
ESM="${CARGO_TARGET_DIR:-target}/debug/login-etl-esm"

STATE="$(mktemp -d "${TMPDIR:-/tmp}/login-etl-demo-sqs.XXXXXX")"
on_exit "rm -rf \"$STATE\""
LOG="$STATE/function.log"
PORT="$(free_port)"

step "start LocalStack's SQS"
start_localstack_sqs

step "start login-etl under cargo lambda watch on 127.0.0.1:$PORT (AUTO_MIGRATE=true, demo-only MASKING_KEY)"
MASKING_KEY="$DEMO_MASKING_KEY" AUTO_MIGRATE=true start_function_watch "$PORT" "$LOG" \
  || { tail -n 30 "$LOG" >&2; exit 1; }
# One empty invocation starts the function (and applies the migrations) before any message's
# visibility timeout starts running.
python3 - "$PORT" <<'PY' || { tail -n 30 "$LOG" >&2; exit 1; }
import sys, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/2015-03-31/functions/login-etl/invocations"
urllib.request.urlopen(urllib.request.Request(url, data=b'{"Records":[]}'), timeout=600).read()
PY

step "create login-queue (visibility timeout ${VISIBILITY_S}s) and login-queue-dlq (after $MAX_RECEIVES receives); send the stream"
QUEUE_URL="$(.venv-localstack/bin/python scripts/demo_sqs.py create login-queue "$VISIBILITY_S" "$MAX_RECEIVES")"
echo "  $QUEUE_URL"
shopt -s nullglob
.venv-localstack/bin/python scripts/demo_sqs.py send "$QUEUE_URL" events/stream-*.json

step "login-etl-esm --drain: one line per batch; it exits once the queue is empty"
"$ESM" --queue-url "$QUEUE_URL" --endpoint-url "$SQS_ENDPOINT_URL" \
  --function-url "http://127.0.0.1:$PORT" --batch-size 10 --max-concurrency 5 --drain

step "the queues now"
.venv-localstack/bin/python scripts/demo_sqs.py report "$QUEUE_URL"

show_sample_rows "$ROWS_SHOWN"
rows="$(psql -X -At "$DATABASE_URL" -c 'SELECT count(*) FROM user_logins')"
echo "user_logins holds $rows rows; every other message is in login-queue-dlq (above)."
