# The README's commands (make demo, make test, make demo-sqs), and a few more for day-to-day work.
.PHONY: demo demo-sqs check test bench bench-shapes lint build sam-tools rds-ca

demo:  ## run the main job: throw-away Postgres, the function under cargo lambda watch, sample events
	bash scripts/demo.sh

demo-sqs:  ## the real queue flow: the arm64 zip on LocalStack's Lambda, its SQS and event source mapping, Postgres, the DLQ
	bash scripts/demo-sqs.sh

check:  ## no services, installs nothing: format, lint, unit, property and tidy tests (under 2 minutes once built)
	bash scripts/check.sh

test:  ## set up and pass every test (make check first)
	bash scripts/test.sh

bench:  ## the benchmarks of docs/benchmarks.md on a durable throw-away Postgres (how long: docs/benchmarks.md)
	bash scripts/bench.sh $(ARGS)

bench-shapes:  ## Lambda shapes alone: Rust and the Python anchor under memory-size CPU caps and a delayed network (how long: docs/benchmarks.md)
	bash scripts/bench_shapes.sh $(ARGS)

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

sam-tools:  ## what the SAM deploy (README, docs/deploy.md) runs: the AWS SAM CLI (with cfn-lint) in .venv-sam, cargo-lambda in .venv
	bash -euo pipefail -c 'source scripts/lib.sh; ensure_sam_tools; ensure_cargo_lambda'

build:  ## the deployable zip for arm64: target/lambda/login-etl/bootstrap.zip (a few minutes the first time)
	bash -c 'source scripts/lib.sh && build_arm64_zip'

rds-ca:  ## the RDS certificate bundle for sslmode=verify-full, into target/rds-ca/ (template.yaml's layer; needs internet)
	mkdir -p target/rds-ca
	curl --fail --silent --show-error --location -o target/rds-ca/global-bundle.pem \
	  https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
	@grep -c 'BEGIN CERTIFICATE' target/rds-ca/global-bundle.pem | sed 's/$$/ certificates in target\/rds-ca\/global-bundle.pem/'
