"""Run LocalStack's `provided.*` Lambda functions as local processes, without Docker.

LocalStack's Lambda service picks an executor per execution environment through the plux entry
point group `localstack.lambda.runtime_executor`; this package registers `local` there
(`LAMBDA_RUNTIME_EXECUTOR=local`). See README.md for what it implements and where it differs
from AWS.
"""
