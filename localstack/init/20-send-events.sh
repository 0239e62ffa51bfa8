#!/bin/bash
# LocalStack "ready" hook, after 10-deploy.sh: sends the message bodies of the sample events
# (events/, mounted at /opt/events) to login-queue, ten per SendMessageBatch, as producers would.
# The function stores the valid ones; the others fail, are received again and, after
# maxReceiveCount receives, wait in login-queue-dlq. Run it again to send them again:
#   docker compose -f localstack/docker-compose.yml exec localstack /etc/localstack/init/ready.d/20-send-events.sh
set -euo pipefail

QUEUE=login-queue
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if ! queue_url="$(awslocal sqs get-queue-url --queue-name "$QUEUE" --query QueueUrl --output text)"; then
  echo "login-etl init: queue $QUEUE does not exist; see the output of 10-deploy.sh" >&2
  exit 1
fi

# One file of entries per SendMessageBatch call. The FIFO sample belongs to a .fifo queue (it
# needs MessageGroupId), and expected.json is not an event: both are left out.
python3 - "$WORK" /opt/events <<'PY'
import json, pathlib, sys
out, events = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
bodies = []
for path in sorted(events.glob("*.json")):
    if path.name in ("expected.json", "fifo-batch.json"):
        continue
    bodies += [record["body"] for record in json.loads(path.read_text())["Records"]]
for start in range(0, len(bodies), 10):
    entries = [{"Id": f"m{i}", "MessageBody": body} for i, body in enumerate(bodies[start:start + 10])]
    (out / f"batch-{start // 10:04}.json").write_text(json.dumps(entries))
print(f"login-etl init: sending {len(bodies)} messages to login-queue")
PY

for batch in "$WORK"/batch-*.json; do
  # shellcheck disable=SC2016 # a JMESPath literal, not a shell expansion
  failed="$(awslocal sqs send-message-batch --queue-url "$queue_url" --entries "file://$batch" \
    --query 'length(Failed || `[]`)' --output text)"
  if [ "$failed" != 0 ]; then
    echo "login-etl init: SQS refused $failed message(s) of $(basename "$batch")" >&2
  fi
done
echo "login-etl init: sent; watch the rows arrive in the output of the \`rows\` service"
