#!/bin/bash
# LocalStack "ready" hook, after 10-deploy.sh: sends the sample stream (the bodies of
# events/stream-*.json: 99 logins and one message that is not a login) to login-queue, as
# `make demo-sqs` does. The function stores the logins; the other message fails, is received
# again and then waits in login-queue-dlq. Run it again to send them again:
#   docker compose -f localstack/docker-compose.yml exec localstack /etc/localstack/init/ready.d/20-send-events.sh
set -euo pipefail
export LOCALSTACK_ENDPOINT_URL=http://localhost:4566 LOGIN_ETL_EVENTS=/opt/login-etl-src/events
python3 /opt/login-etl-src/localstack/deploy.py send
echo "login-etl init: sent; watch the rows arrive in the output of the \`rows\` service"
