#!/bin/bash
# LocalStack "ready" hook, run inside the LocalStack container once it serves requests: the login
# queue and its dead-letter queue, the login-etl function from bootstrap.zip, and the event source
# mapping between them with ReportBatchItemFailures. Safe to run again (it updates what exists).
set -euo pipefail

ZIP=/opt/login-etl/bootstrap.zip
FUNCTION=login-etl
QUEUE=login-queue
DLQ=login-queue-dlq
MAX_RECEIVE_COUNT=3
FUNCTION_TIMEOUT=10
# At least 6 x the function timeout, as on AWS (template.yaml).
VISIBILITY_TIMEOUT=60
# Local only, as in `make demo`: the compose database's password and a made-up masking key.
DATABASE_URL="postgres://login_etl:login_etl@postgres:5432/login_etl?sslmode=disable"
MASKING_KEY="demo-only-masking-key--not-a-secret--never-deploy"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

log() { echo "login-etl init: $*"; }

if [ ! -f "$ZIP" ]; then
  log "$ZIP is missing: run \`make build\` in the repository, then \`docker compose up\` again" >&2
  exit 1
fi

# Declare the architecture the binary was built for: byte 18 of its ELF header names the machine.
ARCH="$(python3 - "$ZIP" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as archive:
    header = archive.open("bootstrap").read(20)
print({0xB7: "arm64", 0x3E: "x86_64"}[header[18]])
PY
)"

log "queues $QUEUE and $DLQ (maxReceiveCount $MAX_RECEIVE_COUNT)"
dlq_url="$(awslocal sqs create-queue --queue-name "$DLQ" \
  --attributes MessageRetentionPeriod=1209600 --query QueueUrl --output text)"
dlq_arn="$(awslocal sqs get-queue-attributes --queue-url "$dlq_url" \
  --attribute-names QueueArn --query Attributes.QueueArn --output text)"
# RedrivePolicy is a JSON document inside a string attribute, hence the escaped quotes.
cat >"$WORK/queue-attributes.json" <<JSON
{
  "VisibilityTimeout": "$VISIBILITY_TIMEOUT",
  "RedrivePolicy": "{\"deadLetterTargetArn\":\"$dlq_arn\",\"maxReceiveCount\":\"$MAX_RECEIVE_COUNT\"}"
}
JSON
queue_url="$(awslocal sqs create-queue --queue-name "$QUEUE" \
  --attributes "file://$WORK/queue-attributes.json" --query QueueUrl --output text)"
queue_arn="$(awslocal sqs get-queue-attributes --queue-url "$queue_url" \
  --attribute-names QueueArn --query Attributes.QueueArn --output text)"

# The URL holds `=` and `?`, which the CLI's shorthand syntax would split: pass JSON.
cat >"$WORK/environment.json" <<JSON
{"Variables": {"DATABASE_URL": "$DATABASE_URL", "MASKING_KEY": "$MASKING_KEY"}}
JSON

if awslocal lambda get-function --function-name "$FUNCTION" >/dev/null 2>&1; then
  log "updating function $FUNCTION ($ARCH)"
  awslocal lambda update-function-code --function-name "$FUNCTION" \
    --zip-file "fileb://$ZIP" --architectures "$ARCH" >/dev/null
  awslocal lambda wait function-updated-v2 --function-name "$FUNCTION"
  awslocal lambda update-function-configuration --function-name "$FUNCTION" \
    --environment "file://$WORK/environment.json" --timeout "$FUNCTION_TIMEOUT" >/dev/null
else
  log "creating function $FUNCTION: provided.al2023, $ARCH, from $ZIP"
  awslocal lambda create-function --function-name "$FUNCTION" \
    --runtime provided.al2023 --handler bootstrap --architectures "$ARCH" \
    --zip-file "fileb://$ZIP" --role "arn:aws:iam::000000000000:role/$FUNCTION" \
    --timeout "$FUNCTION_TIMEOUT" --memory-size 256 \
    --environment "file://$WORK/environment.json" >/dev/null
fi
awslocal lambda wait function-active-v2 --function-name "$FUNCTION"

mappings="$(awslocal lambda list-event-source-mappings --function-name "$FUNCTION" \
  --event-source-arn "$queue_arn" --query 'length(EventSourceMappings)' --output text)"
if [ "$mappings" = 0 ]; then
  log "event source mapping $QUEUE -> $FUNCTION with ReportBatchItemFailures"
  awslocal lambda create-event-source-mapping --function-name "$FUNCTION" \
    --event-source-arn "$queue_arn" --batch-size 10 --maximum-batching-window-in-seconds 1 \
    --function-response-types ReportBatchItemFailures >/dev/null
fi
log "ready: $queue_url (dead letters: $dlq_url)"
