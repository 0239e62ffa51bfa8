#!/bin/bash
# LocalStack "ready" hook, run inside the LocalStack container once it serves requests: the login
# queue and its dead-letter queue, the login-etl function from bootstrap.zip, and the event source
# mapping between them, all as template.yaml makes them. It runs localstack/deploy.py, the same
# script `make demo-sqs` runs on the host without Docker. Safe to run again (it updates what exists).
set -euo pipefail

# As `make demo-sqs`: a bad message reaches the dead-letter queue after 2 receives, 3 s apart.
export VISIBILITY_TIMEOUT=3 MAX_RECEIVE_COUNT=2
# Local only, as in `make demo`: the compose database's password and a made-up masking key.
export DATABASE_URL="postgres://login_etl:login_etl@postgres:5432/login_etl?sslmode=disable"
export MASKING_KEY="demo-only-masking-key--not-a-secret--never-deploy"
export LOCALSTACK_ENDPOINT_URL=http://localhost:4566
export LOGIN_ETL_TEMPLATE=/opt/login-etl-src/template.yaml LOGIN_ETL_EVENTS=/opt/login-etl-src/events

# LocalStack's own Python has boto3 and PyYAML.
python3 /opt/login-etl-src/localstack/deploy.py deploy /opt/login-etl/bootstrap.zip
