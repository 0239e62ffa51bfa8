#!/usr/bin/env python3
"""Writes the sample SQS events in events/ and the outcome each one must have (events/expected.json).

Each file is an SqsEvent exactly as the event source mapping hands it to the function, so
`cargo lambda invoke login-etl --data-file events/<file>` sends what Lambda would. The script is
deterministic (a fixed seed, no clock), so running it again writes byte-identical files; the test
`tests/it/events.rs` checks both that the checked-in files are what this script writes and that the
function gives each file the outcome recorded in the manifest.

    python3 scripts/gen_events.py              # rewrite events/
    python3 scripts/gen_events.py --out DIR    # write into DIR instead
"""

import argparse
import base64
import hashlib
import json
import random
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

SEED = 20241125
REGION = "us-east-1"
ACCOUNT = "123456789012"
QUEUE = "login-queue"
FIFO_QUEUE = "login-queue.fifo"
# The IAM identity of the producer (an IAM role session, as SQS reports it).
SENDER_ID = "AROAZ4LOGINSERVICE7QX:login-service"
MANIFEST = "expected.json"

APP_VERSIONS = ["2.3.0", "0.96", "2.00", "9.10", "3.7"]
# How often each version shows up in the stream: most users run the newest one.
APP_VERSION_WEIGHTS = [50, 15, 15, 10, 10]
LOCALES = ["RU", "US", "PH", "BR", "IN", "DE", "MX", "ID"]
WRONG_MESSAGE_TYPE = {"foo": "oops_wrong_msg_type", "bar": "123"}


def millis(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp() * 1000)


def body_of(fields) -> str:
    """A JSON body formatted as the producers format it."""
    return json.dumps(fields)


class Generator:
    """Makes SQS records; every random choice comes from one seeded RNG, in a fixed order."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.sequence = 18849496460467696128  # FIFO SequenceNumbers grow from here

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def device_id(self) -> str:
        r = self.rng.randint
        return f"{r(100, 999)}-{r(10, 99)}-{r(1000, 9999)}"

    def ipv4(self) -> str:
        r = self.rng.randint
        return f"{r(11, 223)}.{r(0, 255)}.{r(0, 255)}.{r(1, 254)}"

    def ipv6(self) -> str:
        groups = [f"{self.rng.getrandbits(16):x}" for _ in range(4)]
        return "2001:db8:" + ":".join(groups) + "::" + f"{self.rng.getrandbits(16):x}"

    def login(self, **overrides) -> dict:
        """A valid login event; `overrides` replace fields."""
        fields = {
            "user_id": self.uuid(),
            "app_version": self.rng.choices(APP_VERSIONS, APP_VERSION_WEIGHTS)[0],
            "device_type": self.rng.choice(["android", "ios"]),
            "ip": self.ipv4(),
            "locale": self.rng.choice(LOCALES),
            "device_id": self.device_id(),
        }
        fields.update(overrides)
        return fields

    def record(self, body: str, sent_ms: int, queue: str = QUEUE, group: str = "") -> dict:
        """One record of an SqsEvent, with the attributes the event source mapping sets."""
        attributes = {"ApproximateReceiveCount": "1", "SentTimestamp": str(sent_ms)}
        if queue.endswith(".fifo"):
            self.sequence += self.rng.randint(1, 5000) * 10**6
            attributes["SequenceNumber"] = str(self.sequence)
            attributes["MessageGroupId"] = group
        attributes["SenderId"] = SENDER_ID
        if queue.endswith(".fifo"):
            # Content-based deduplication: SQS uses the SHA-256 of the body.
            attributes["MessageDeduplicationId"] = hashlib.sha256(body.encode()).hexdigest()
        attributes["ApproximateFirstReceiveTimestamp"] = str(sent_ms + self.rng.randint(3, 900))
        return {
            "messageId": self.uuid(),
            "receiptHandle": "AQEB" + base64.b64encode(self.rng.randbytes(150)).decode(),
            "body": body,
            "attributes": attributes,
            "messageAttributes": {},
            "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
            "awsRegion": REGION,
        }

    def later(self, sent_ms: int) -> int:
        return sent_ms + self.rng.randint(150, 2500)


class Batch:
    """One events/ file: its records and what must happen to each of them."""

    def __init__(self, name: str):
        self.name = name
        self.records = []
        self.failed = []  # (messageId, why) in delivery order

    def add(self, record: dict, fails_because: str = "") -> None:
        self.records.append(record)
        if fails_because:
            self.failed.append((record["messageId"], fails_because))

    def expected(self) -> dict:
        return {
            "received": len(self.records),
            "stored": len(self.records) - len(self.failed),
            "failed": [{"messageId": m, "why": why} for m, why in self.failed],
        }


def clean_batch(gen: Generator) -> Batch:
    """Valid logins in the shapes real traffic has; every one becomes a row."""
    batch = Batch("clean-batch.json")
    sent = millis("2024-11-25T09:14:05.120")
    bodies = [
        gen.login(app_version="2.3.0", ip="199.172.111.135", locale="RU", device_id="593-47-5928"),
        gen.login(app_version="0.96", locale=None),
        gen.login(app_version="2.00", device_type="ios"),
        # The same address spelled two ways: both rows get the same mask.
        gen.login(app_version="9.10", ip="2001:DB8:0:0:0:0:0:1", locale="US"),
        gen.login(app_version="3.7", ip="2001:db8::1", locale=None),
        # Surrounding whitespace is not part of a device id.
        gen.login(app_version="2.3.0", device_id="  593-47-5928 "),
    ]
    for fields in bodies:
        batch.add(gen.record(body_of(fields), sent))
        sent = gen.later(sent)
    return batch


def stream(gen: Generator, messages: int = 100, per_file: int = 10) -> list:
    """A realistic stretch of traffic: returning users, null locales, every app_version seen in
    production, IPv6 now and then, one message that is not a login event at all. It runs across
    UTC midnight, so create_date (the day each message was sent) changes half-way."""
    users = []
    for _ in range(24):
        users.append(
            {
                "user_id": gen.uuid(),
                "device_type": gen.rng.choices(["android", "ios"], [60, 40])[0],
                "device_id": gen.device_id(),
                "ip": gen.ipv6() if gen.rng.random() < 0.12 else gen.ipv4(),
                "locale": None if gen.rng.random() < 0.4 else gen.rng.choice(LOCALES),
                "app_version": gen.rng.choices(APP_VERSIONS, APP_VERSION_WEIGHTS)[0],
            }
        )
    wrong_type_at = gen.rng.randrange(messages)
    batches = [Batch(f"stream-{n + 1:02}.json") for n in range(messages // per_file)]
    sent = millis("2024-11-25T23:58:02.500")
    for i in range(messages):
        batch = batches[i // per_file]
        if i == wrong_type_at:
            batch.add(gen.record(body_of(WRONG_MESSAGE_TYPE), sent), "not a login event")
        else:
            user = gen.rng.choice(users)
            if gen.rng.random() < 0.15:  # a phone that moved to another network
                user["ip"] = gen.ipv4()
            login = {k: user[k] for k in ("user_id", "app_version", "device_type", "ip", "locale", "device_id")}
            batch.add(gen.record(body_of(login), sent))
        sent = gen.later(sent)
    return batches


def bad_input(gen: Generator) -> Batch:
    """One message of every kind the function refuses, between valid ones that must still be
    stored. The reasons are what the function reports, in words."""
    batch = Batch("bad-input.json")
    sent = millis("2024-11-26T08:30:00.000")

    def login_without(field: str) -> dict:
        fields = gen.login()
        del fields[field]
        return fields

    truncated = body_of(gen.login())[:57]
    duplicate_user_id = body_of(gen.login()).replace("{", '{"user_id": "someone-else", ', 1)
    cases = [
        (body_of(gen.login()), ""),
        ("user 8cf1 logged in from android", "not JSON"),
        (truncated, "JSON cut off"),
        ("  \n", "blank body"),
        (body_of(WRONG_MESSAGE_TYPE), "not a login event (no user_id)"),
        (body_of([gen.login()]), "a JSON array, not an object"),
        ("42", "a JSON number, not an object"),
        (body_of(login_without("ip")), "ip missing"),
        (body_of(gen.login(device_id=None)), "device_id null"),
        (body_of(gen.login(app_version=2.3)), "app_version is a number, not a string"),
        (body_of(gen.login(user_id=31337)), "user_id is a number, not a string"),
        (body_of(gen.login(device_type="")), "device_type empty"),
        (body_of(gen.login(user_id="u" * 129)), "user_id longer than varchar(128)"),
        (body_of(gen.login(device_type="android-" + "x" * 25)), "device_type longer than varchar(32)"),
        (body_of(gen.login(locale="en-US-x-" + "y" * 25)), "locale longer than varchar(32)"),
        (body_of(gen.login(device_id="9" * 257)), "device_id longer than 256 characters"),
        (body_of(gen.login(ip="999.1.2.3")), "ip not an address"),
        (body_of(gen.login(ip="edge-proxy.internal")), "ip a host name"),
        (body_of(gen.login(app_version="2.3.0-beta")), "app_version not numeric"),
        (body_of(gen.login(app_version="1.2.3.4")), "app_version with four parts"),
        (body_of(gen.login(app_version="1000.0")), "app_version part above 999"),
        (body_of(gen.login(user_id="ab\u0000cd")), "NUL character in user_id"),
        (duplicate_user_id, "user_id given twice"),
        # Valid after all: unknown fields are ignored and locale may be left out.
        (body_of({**login_without("locale"), "session": "s-1", "retries": 0}), ""),
        (body_of(gen.login(locale=None)), ""),
    ]
    for body, why in cases:
        batch.add(gen.record(body, sent), why)
        sent = gen.later(sent)
    return batch


def fifo_batch(gen: Generator) -> Batch:
    """A FIFO queue with one message group (one user): order matters within a group, so after the
    group's first failure that message and every later one of the group are reported (SQS then
    redelivers them in order); other groups would go on."""
    batch = Batch("fifo-batch.json")
    sent = millis("2024-11-26T12:00:00.000")
    user = gen.login(locale=None)
    failed = False
    for i in range(6):
        if i == 2:
            fields, why = gen.login(user_id=user["user_id"], ip="not-an-ip"), "ip not an address"
            failed = True
        else:
            fields = gen.login(user_id=user["user_id"], device_id=user["device_id"], locale=None)
            why = "held back: an earlier message of its FIFO message group failed" if failed else ""
        batch.add(gen.record(body_of(fields), sent, FIFO_QUEUE, group=user["user_id"]), why)
        sent = gen.later(sent)
    return batch


def generate() -> list:
    gen = Generator(SEED)
    return [clean_batch(gen), *stream(gen), bad_input(gen), fifo_batch(gen)]


def write(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "about": "Written by scripts/gen_events.py: the outcome of each file when it is the first "
        "batch a fresh user_logins table sees. tests/it/events.rs checks every file against it.",
        "files": {},
    }
    for batch in generate():
        text = json.dumps({"Records": batch.records}, indent=2) + "\n"
        (out / batch.name).write_text(text, encoding="utf-8")
        manifest["files"][batch.name] = batch.expected()
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parent.parent / "events"
    parser.add_argument("--out", type=Path, default=default, help="directory to write (default: events/)")
    args = parser.parse_args()
    write(args.out)
    print(f"wrote {len(generate())} event files and {MANIFEST} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
