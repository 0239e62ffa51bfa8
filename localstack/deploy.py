#!/usr/bin/env python3
"""Deploys login-etl to a LocalStack, as template.yaml deploys it to AWS, and feeds it the sample
stream. The same commands run in both places LocalStack runs: the Docker path (the init hooks in
localstack/init/, inside the LocalStack container) and the host path without Docker
(`make demo-sqs`, LocalStack's Lambda with the local executor of localstack/executor/).

    deploy.py deploy CODE        # queue, dead-letter queue, function, event source mapping
    deploy.py send [EVENT_FILE...]   # the bodies of the files' Records (default: events/stream-*)
    deploy.py report             # depth of the queue, and the dead letters (login bodies not shown)

CODE is the zip `make build` writes (target/lambda/login-etl/bootstrap.zip) or a directory holding
`bootstrap`. The queue's visibility timeout and maxReceiveCount, the function's memory and timeout,
and the mapping's BatchSize, MaximumBatchingWindowInSeconds, MaximumConcurrency and
ReportBatchItemFailures are read from template.yaml (its on-demand scaling mode, whatever its
ScalingMode says: see template_settings); VISIBILITY_TIMEOUT and MAX_RECEIVE_COUNT
override the first two (a demo wants a bad message in the dead-letter queue within seconds, not
after 5 x 240 s). The function's settings come from DATABASE_URL and MASKING_KEY (LocalStack is
local: its configuration holds them in the clear, which a deployed function never does).
Idempotent: it updates what exists. Needs boto3 and PyYAML (LocalStack's own Python has both).
"""

import json
import os
import sys
import time
import zipfile
from pathlib import Path

import boto3
import yaml

HERE = Path(__file__).resolve().parent
TEMPLATE = Path(os.environ.get("LOGIN_ETL_TEMPLATE", HERE.parent / "template.yaml"))
EVENTS = Path(os.environ.get("LOGIN_ETL_EVENTS", HERE.parent / "events"))
FUNCTION = os.environ.get("FUNCTION_NAME", "login-etl")
QUEUE = os.environ.get("QUEUE_NAME", "login-queue")
DLQ = f"{QUEUE}-dlq"
ROLE = "arn:aws:iam::000000000000:role/login-etl"
NOT_A_LOGIN_MARK = '"user_id"'


def log(message):
    print(f"login-etl localstack: {message}", flush=True)


def client(service):
    endpoint = os.environ.get("LOCALSTACK_ENDPOINT_URL") or os.environ.get(
        "AWS_ENDPOINT_URL", "http://localhost:4566"
    )
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


class _CloudFormationLoader(yaml.SafeLoader):
    """PyYAML's safe loader, taking CloudFormation's short tags (!Ref, !GetAtt, ...) as plain
    values: only literal settings are read here."""


_CloudFormationLoader.add_multi_constructor(
    "!", lambda loader, suffix, node: None if not isinstance(node, yaml.ScalarNode) else node.value
)


def template_settings():
    """The settings a LocalStack deployment copies from template.yaml.

    The mapping is always made in template.yaml's on-demand scaling mode (MaximumConcurrency),
    even where its ScalingMode says "provisioned": LocalStack's mapping is not known to implement
    provisioned pollers (docs/ESM.md), and the demo and the tests need no more than one poller
    anyway. Nor is MetricsConfig sent: those metrics go to CloudWatch, which nothing here reads.
    So MinimumPollers, MaximumPollers and MetricsConfig are left unread on purpose."""
    template = yaml.load(TEMPLATE.read_text(), Loader=_CloudFormationLoader)
    parameters = {name: spec.get("Default") for name, spec in template["Parameters"].items()}
    resources = template["Resources"]
    queue = resources["LoginQueue"]["Properties"]
    function = resources["LoginEtlFunction"]["Properties"]
    event = function["Events"]["LoginQueue"]["Properties"]
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"], "template.yaml changed"
    return {
        "scaling_mode": parameters["ScalingMode"],
        "visibility_timeout": int(os.environ.get("VISIBILITY_TIMEOUT", queue["VisibilityTimeout"])),
        "max_receive_count": int(os.environ.get("MAX_RECEIVE_COUNT", parameters["MaxReceiveCount"])),
        "memory_size": int(function["MemorySize"]),
        "timeout": int(function["Timeout"]),
        "batch_size": int(parameters["BatchSize"]),
        "batching_window": int(parameters["MaximumBatchingWindowInSeconds"]),
        "maximum_concurrency": int(parameters["MaximumConcurrency"]),
    }


def architecture(code: Path) -> str:
    """The architecture the bootstrap was built for: byte 18 of its ELF header names it."""
    if code.is_dir():
        header = (code / "bootstrap").read_bytes()[:20]
    else:
        with zipfile.ZipFile(code) as archive:
            header = archive.open("bootstrap").read(20)
    return {0xB7: "arm64", 0x3E: "x86_64"}[header[18]]


def code_of(code: Path) -> dict:
    if code.is_dir():
        # LocalStack's hot reloading: the function runs the directory's files as they are.
        return {"S3Bucket": "hot-reload", "S3Key": str(code)}
    return {"ZipFile": code.read_bytes()}


def wait_until(what, check, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    sys.exit(f"login-etl localstack: {what} did not happen within {seconds} s")


def deploy(code_path: str):
    code = Path(code_path).resolve()
    if not code.exists():
        sys.exit(f"login-etl localstack: {code} is missing: run `make build` (the arm64 zip) first")
    settings = template_settings()
    sqs, lam = client("sqs"), client("lambda")

    dlq_url = sqs.create_queue(QueueName=DLQ, Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(settings["max_receive_count"])}
    queue_attributes = {
        "VisibilityTimeout": str(settings["visibility_timeout"]),
        "RedrivePolicy": json.dumps(redrive),
    }
    queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes=queue_attributes)
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    log(
        f"queue {QUEUE} (visibility timeout {settings['visibility_timeout']} s) and {DLQ} "
        f"(after {settings['max_receive_count']} receives)"
    )

    arch = architecture(code)
    environment = {"Variables": {"DATABASE_URL": os.environ["DATABASE_URL"], "MASKING_KEY": os.environ["MASKING_KEY"]}}
    if "RUST_LOG" in os.environ:
        environment["Variables"]["RUST_LOG"] = os.environ["RUST_LOG"]
    configuration = dict(
        Runtime="provided.al2023",
        Handler="bootstrap",
        Role=ROLE,
        Timeout=settings["timeout"],
        MemorySize=settings["memory_size"],
        Environment=environment,
    )
    try:
        lam.get_function(FunctionName=FUNCTION)
        log(f"updating function {FUNCTION} ({arch}) from {code}")
        lam.update_function_code(FunctionName=FUNCTION, Architectures=[arch], **code_of(code))
        lam.get_waiter("function_updated_v2").wait(FunctionName=FUNCTION)
        lam.update_function_configuration(FunctionName=FUNCTION, **configuration)
        lam.get_waiter("function_updated_v2").wait(FunctionName=FUNCTION)
    except lam.exceptions.ResourceNotFoundException:
        log(f"creating function {FUNCTION}: provided.al2023, {arch}, from {code}")
        lam.create_function(FunctionName=FUNCTION, Architectures=[arch], Code=code_of(code), **configuration)
    lam.get_waiter("function_active_v2").wait(FunctionName=FUNCTION)

    mapping = dict(
        BatchSize=settings["batch_size"],
        MaximumBatchingWindowInSeconds=settings["batching_window"],
        FunctionResponseTypes=["ReportBatchItemFailures"],
        ScalingConfig={"MaximumConcurrency": settings["maximum_concurrency"]},
    )
    existing = lam.list_event_source_mappings(FunctionName=FUNCTION, EventSourceArn=queue_arn)["EventSourceMappings"]
    if existing:
        uuid = existing[0]["UUID"]
        lam.update_event_source_mapping(UUID=uuid, **mapping)
    else:
        uuid = lam.create_event_source_mapping(FunctionName=FUNCTION, EventSourceArn=queue_arn, **mapping)["UUID"]
    wait_until(
        "the event source mapping's start",
        lambda: lam.get_event_source_mapping(UUID=uuid)["State"] == "Enabled",
    )
    log(
        f"event source mapping {QUEUE} -> {FUNCTION}: BatchSize {settings['batch_size']}, "
        f"window {settings['batching_window']} s, MaximumConcurrency {settings['maximum_concurrency']}, "
        "ReportBatchItemFailures"
    )
    if settings["scaling_mode"] != "on-demand":
        log(f"template.yaml's ScalingMode is {settings['scaling_mode']}: LocalStack gets the on-demand mode all the same")
    log(f"ready: {queue_url} (dead letters: {dlq_url})")


def stream_files():
    return sorted(EVENTS.glob("stream-*.json"))


def send(files):
    paths = [Path(f) for f in files] or stream_files()
    bodies = [record["body"] for path in paths for record in json.loads(path.read_text())["Records"]]
    sqs = client("sqs")
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start : start + 10])]
        failed = sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed", [])
        if failed:
            sys.exit(f"login-etl localstack: SQS refused {len(failed)} message(s): {failed}")
    log(f"sent {len(bodies)} messages from {len(paths)} event files to {QUEUE}")


def depth(sqs, url):
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return [int(attributes[n]) for n in names]


def report():
    sqs = client("sqs")
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    visible, in_flight = depth(sqs, url)
    print(f"  {QUEUE}: {visible} visible, {in_flight} in flight")
    dlq_url = sqs.get_queue_url(QueueName=DLQ)["QueueUrl"]
    letters = []
    while True:
        got = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                  VisibilityTimeout=300).get("Messages", [])
        if not got:
            break
        letters += got
    print(f"  {DLQ}: {len(letters)} message(s)")
    for message in letters:
        # A dead letter that is a login event holds PII: only its id is shown.
        body = message["Body"]
        shown = body if NOT_A_LOGIN_MARK not in body else "(a login event: body not shown)"
        print(f"    {message['MessageId']}  {shown}")


def drain(expected_rows_query_seconds=300):
    """Waits until the queue holds nothing visible or in flight."""
    sqs = client("sqs")
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    wait_until("the queue's draining", lambda: depth(sqs, url) == [0, 0], expected_rows_query_seconds)


if __name__ == "__main__":
    command, *arguments = sys.argv[1:] or ["help"]
    if command == "deploy" and len(arguments) == 1:
        deploy(arguments[0])
    elif command == "send":
        send(arguments)
    elif command == "report":
        report()
    elif command == "drain":
        drain()
    else:
        sys.exit(__doc__)
