#!/usr/bin/env bash
# `make test`: sets up and runs every test, on a fresh machine too. It installs what it needs
# (cargo-lambda in .venv), starts a throw-away PostgreSQL unless DATABASE_URL is given, and
# stops everything it started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

step "make check: format, lint, unit, property and tidy tests"
bash scripts/check.sh

step "deploy files, offline: template.yaml (sam validate --lint, cfn-lint after the SAM transform, in both scaling modes), localstack/"
ensure_sam_tools
# cfn-lint on the SAM template alone misses errors inside the generated function and event source
# mapping, hence the second pass on the transformed template. No AWS credentials are needed.
TEMPLATE_JSON="$(mktemp "${TMPDIR:-/tmp}/login-etl-template.XXXXXX")"
RENDERED_DIR="$(mktemp -d "${TMPDIR:-/tmp}/login-etl-rendered.XXXXXX")"
on_exit "rm -rf \"$TEMPLATE_JSON\" \"$RENDERED_DIR\""
AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 .venv-sam/bin/sam validate --lint --template-file template.yaml
.venv-sam/bin/python scripts/sam_to_cfn.py template.yaml "$TEMPLATE_JSON"
.venv-sam/bin/cfn-lint --format parseable -- "$TEMPLATE_JSON"
# What cfn-lint cannot see: the mapping in each ScalingMode (pollers or MaximumConcurrency, never
# both; its metrics on), AWS's ranges for the scaling parameters, the dashboard's body. It renders
# each mode as deployed, and cfn-lint checks the renderings too; a mode leaves the other mode's
# parameters unused, hence W2001 (unused parameter) ignored there.
python3 scripts/check_template.py "$TEMPLATE_JSON" "$RENDERED_DIR"
.venv-sam/bin/cfn-lint --format parseable --ignore-checks W2001 -- "$RENDERED_DIR"/*.json
.venv-sam/bin/python scripts/check_localstack.py
# No secret value in the function's configuration: secrets are read at start (SECRET_ARN).
if grep -nE 'resolve:secretsmanager|^ +(DATABASE_URL|MASKING_KEY|MASKING_KEY_PREVIOUS|RECOVERY_KEY|PGPASSWORD):' template.yaml; then
  echo "template.yaml puts a secret in the function's environment (above); name the secret with SECRET_ARN instead" >&2
  exit 1
fi
# `make build` (the arm64 zip) takes minutes, so only its premise is checked here: for aarch64,
# OpenSSL is built from source, as there is none to link against when cross-compiling.
vendored="$(cargo tree --quiet --target aarch64-unknown-linux-gnu --edges normal,build --invert openssl-src --depth 0)"
if [[ "$vendored" != *openssl-src* ]]; then
  echo "OpenSSL is not vendored for aarch64, so make build would fail to link (see Cargo.toml)" >&2
  exit 1
fi

step "set up: PostgreSQL, PgBouncer, moto's Secrets Manager, cargo-lambda, qemu (arm64), LocalStack, cargo-nextest"
ensure_postgres
ensure_pgbouncer
ensure_moto
ensure_cargo_lambda
ensure_qemu_arm64
ensure_localstack
# nextest runs each test in a process of its own, which the suite is written for (tests/it/main.rs:
# tests of one module share files named after the process); installed once, from source, if missing
# (a few minutes).
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

step "migrations apply twice with psql"
for _ in 1 2; do
  for file in migrations/*.sql; do
    PGOPTIONS="--client-min-messages=warning" psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -f "$file"
  done
done

step "build the Lambda binary, login-etl-dlq, login-etl-pii, and the arm64 zip users deploy (make build)"
cargo build --bin login-etl
cargo build -p login-etl-dlq  # the dead-letter tool the queue tests run
cargo build -p login-etl-pii  # the PII tool the recovery and partition tests run
build_arm64_zip               # LocalStack's Lambda runs it through qemu (tests/it/sqs_e2e.rs)

step "the Python tests: the local runtime executor's (LocalStack's Lambda without Docker: timeouts, crashes, init errors, shutdown), make bench's tables (scripts/bench_tables.py)"
.venv-localstack/bin/python -m pytest -q -p no:cacheprovider localstack/executor/tests scripts/test_bench_tables.py

# Every log line the function writes during the suite is kept here and scanned for PII below:
# from cargo lambda watch, and from LocalStack's Lambda (the executor copies them here).
LOGIN_ETL_LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/login-etl-logs.XXXXXX")"
export LOGIN_ETL_LOG_DIR
on_exit "rm -rf \"$LOGIN_ETL_LOG_DIR\""

step "start LocalStack: its SQS, and its Lambda service and event source mapping through the local executor"
ensure_localstack_running

step "tests (unit, PostgreSQL integration, PgBouncer, Lambda runtime emulator, LocalStack's Lambda and SQS end to end)"
tests_status=0
cargo nextest run --workspace --no-fail-fast || tests_status=$?

step "no PII in any captured log line"
# It runs after failed tests too. It fails if it finds PII, or if no "message not stored" line
# was captured (then it would prove nothing).
# tests/**/*.rs: the test sources at any depth, whatever the folder layout.
shopt -s globstar
scan_status=0
python3 scripts/scan_logs_for_pii.py "$LOGIN_ETL_LOG_DIR" events/*.json tests/**/*.rs || scan_status=$?
echo
if [ "$tests_status" -ne 0 ] || [ "$scan_status" -ne 0 ]; then
  [ "$tests_status" -eq 0 ] || echo "make test: tests failed (exit status $tests_status); see their output above" >&2
  [ "$scan_status" -eq 0 ] || echo "make test: the PII scan failed (above)" >&2
  exit $((tests_status != 0 ? tests_status : scan_status))
fi
echo "make test: format, lint, deploy-file checks, migrations, all tests and the PII scan passed"
