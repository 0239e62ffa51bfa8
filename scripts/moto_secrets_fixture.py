"""Fills a fresh moto server (the AWS API emulator from PyPI, `make test` installs it into
.venv-moto) with what tests/it/secrets.rs reads: secrets in every shape the function must handle,
and two IAM users, one allowed to read secrets and one not. Prints them as JSON.

The server must be started with INITIAL_NO_AUTH_ACTION_COUNT=CALLS (below): moto checks IAM
permissions only after that many requests, so these set-up calls pass and every later one is
authorised as AWS would.

usage: moto_secrets_fixture.py ENDPOINT DATABASE_URL MASKING_KEY
"""

import json
import sys

import boto3

# The number of requests this script makes.
CALLS = 8


def main() -> None:
    endpoint, database_url, masking_key = sys.argv[1:4]
    admin = {
        "endpoint_url": endpoint,
        "region_name": "eu-west-1",
        "aws_access_key_id": "fixture",
        "aws_secret_access_key": "fixture",
    }
    secrets = boto3.client("secretsmanager", **admin)
    iam = boto3.client("iam", **admin)
    arns = {
        name: secrets.create_secret(Name=name, SecretString=value)["ARN"]
        for name, value in [
            ("login-etl", json.dumps({"DATABASE_URL": database_url, "MASKING_KEY": masking_key})),
            ("not-json", "postgres://not-a-json-object"),
            ("no-masking-key", json.dumps({"DATABASE_URL": database_url})),
        ]
    }
    keys = {}
    for user in ["function", "stranger"]:
        iam.create_user(UserName=user)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        keys[user] = {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    iam.put_user_policy(
        UserName="function",
        PolicyName="read-secrets",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}
                ],
            }
        ),
    )
    print(json.dumps({"arns": arns, "keys": keys}))


if __name__ == "__main__":
    main()
