#!/usr/bin/env python3
"""The queue side of `make demo-sqs`, with boto3 against SQS_ENDPOINT_URL (LocalStack).

    demo_sqs.py create QUEUE VISIBILITY_S MAX_RECEIVES   # queue + QUEUE-dlq; prints the queue URL
    demo_sqs.py send QUEUE_URL [EVENT_FILE...]             # bodies of the files' Records, in order
    demo_sqs.py report QUEUE_URL                           # depth of the queue and its DLQ's content

Without event files, `send` makes the sample stream itself: 99 logins and one message that is
not a login event. Bodies are never printed, except of dead letters that are not logins.
"""

import json
import os
import random
import sys
import uuid

import boto3

NOT_A_LOGIN = '{"foo": "oops_wrong_msg_type", "bar": "123"}'


def sqs():
    return boto3.client(
        "sqs",
        endpoint_url=os.environ["SQS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def create(name, visibility, max_receives):
    client = sqs()
    dlq_url = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)})
    url = client.create_queue(
        QueueName=name,
        Attributes={"VisibilityTimeout": str(visibility), "RedrivePolicy": redrive},
    )["QueueUrl"]
    print(url)


def generated_stream():
    rng = random.Random(7)
    versions = ["2.3.0", "0.96", "2.00", "9.10", "3.7"]
    bodies = []
    for _ in range(99):
        bodies.append(json.dumps({
            "user_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "app_version": rng.choice(versions),
            "device_type": rng.choice(["android", "ios"]),
            "ip": ".".join(str(rng.randint(1, 254)) for _ in range(4)),
            "locale": rng.choice(["RU", "US", "BR", None]),
            "device_id": f"{rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
        }))
    bodies.insert(rng.randint(0, 99), NOT_A_LOGIN)
    return bodies


def send(url, files):
    if files:
        bodies = [r["body"] for f in files for r in json.load(open(f))["Records"]]
        source = f"the bodies of {len(files)} event files"
    else:
        bodies = generated_stream()
        source = "a generated stream (events/ has no stream files)"
    client = sqs()
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start:start + 10])]
        failed = client.send_message_batch(QueueUrl=url, Entries=entries).get("Failed", [])
        if failed:
            sys.exit(f"SendMessageBatch failed: {failed}")
    print(f"  sent {len(bodies)} messages: {source}")


def depth(client, url):
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
             "ApproximateNumberOfMessagesDelayed"]
    attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return [int(attributes[n]) for n in names]


def report(url):
    client = sqs()
    visible, in_flight, delayed = depth(client, url)
    print(f"  {url.rsplit('/', 1)[1]}: {visible} visible, {in_flight} in flight, {delayed} delayed")
    dlq_url = client.get_queue_url(QueueName=url.rsplit("/", 1)[1] + "-dlq")["QueueUrl"]
    letters = []
    while True:
        got = client.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                     VisibilityTimeout=300,
                                     MessageSystemAttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
        if not got:
            break
        letters += got
    print(f"  {dlq_url.rsplit('/', 1)[1]}: {len(letters)} message(s)")
    for m in letters:
        body = m["Body"]
        shown = body if '"user_id"' not in body else "(a login event: body not shown)"
        print(f"    {m['MessageId']}  {shown}")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "create":
        create(args[0], int(args[1]), int(args[2]))
    elif command == "send":
        send(args[0], args[1:])
    elif command == "report":
        report(args[0])
    else:
        sys.exit(__doc__)
