"""LocalStack's own SQS event source mapping driving a local function (ReportBatchItemFailures)."""

import json
import time


def test_partial_batch_failure_deletes_the_others_and_redelivers_the_failed_one(toy):
    sqs = toy.ls.client("sqs")
    lam = toy.lam
    suffix = toy.state_dir.parent.name[-12:].replace("_", "-")
    dlq_url = sqs.create_queue(QueueName=f"toy-dlq-{suffix}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=f"toy-queue-{suffix}",
        Attributes={
            # Short, so the failed message is visible again within the test; LocalStack's
            # visibility expires about 1 s late.
            "VisibilityTimeout": "2",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]

    name = toy.create()
    bodies = [json.dumps({"n": 1}), json.dumps({"n": 2, "bad": True}), json.dumps({"n": 3})]
    sent = {}
    for body in bodies:
        sent[sqs.send_message(QueueUrl=queue_url, MessageBody=body)["MessageId"]] = body
    bad_id = next(mid for mid, body in sent.items() if "bad" in body)

    mapping = lam.create_event_source_mapping(
        EventSourceArn=queue_arn,
        FunctionName=name,
        BatchSize=10,
        MaximumBatchingWindowInSeconds=1,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    try:
        seen: list[str] = []
        dead: list[dict] = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            seen_file = toy.state_dir / "sqs-seen"
            seen = [json.loads(line)["id"] for line in seen_file.read_text().splitlines()] if (
                seen_file.exists()
            ) else []
            dead = sqs.receive_message(
                QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            if dead:
                break
        assert [m["MessageId"] for m in dead] == [bad_id], (seen, dead)
        # The failed message came back (received twice, reported twice), then went to the DLQ.
        assert seen.count(bad_id) == 2, seen
        # The others succeeded on their first delivery and were deleted.
        for mid in sent:
            if mid != bad_id:
                assert seen.count(mid) == 1, seen
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        assert attributes == {
            "ApproximateNumberOfMessages": "0",
            "ApproximateNumberOfMessagesNotVisible": "0",
        }
    finally:
        lam.delete_event_source_mapping(UUID=mapping["UUID"])
        sqs.delete_queue(QueueUrl=queue_url)
        sqs.delete_queue(QueueUrl=dlq_url)
