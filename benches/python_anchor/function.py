"""The same job as login-etl, as a Python user would write it: the anchor of benches/shapes.

aws-lambda-powertools' BatchProcessor validates and masks each record (a record that raises is
reported in batchItemFailures), then one psycopg `executemany` with ON CONFLICT (message_id) DO
NOTHING (the table's unique key is (message_id, create_date) since it is partitioned by day)
writes the batch in a transaction on a connection opened at init. It writes the rows the
Rust function writes (docs/database.md, "From a message to a row"), so the benchmark can check both
left the same table; a database error fails the whole batch, as the Rust function does.
"""

import hashlib
import hmac
import ipaddress
import json
import os
from datetime import datetime, timezone

import psycopg
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

MASKING_KEY = os.environ["MASKING_KEY"].encode()
# The key id the Rust function records when MASKING_KEY_ID is unset.
MASK_KEY_ID = "k1"
LIMITS = {"user_id": 128, "device_type": 32, "app_version": 32, "ip": 64, "device_id": 256}

connection = psycopg.connect(os.environ["DATABASE_URL"])
processor = BatchProcessor(event_type=EventType.SQS)
rows: list[tuple] = []

INSERT = """
    INSERT INTO user_logins (user_id, device_type, masked_ip, masked_device_id, locale,
                             app_version, create_date, message_id, mask_key_id)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (message_id, create_date) DO NOTHING
"""


def mask(value: str) -> str:
    return hmac.new(MASKING_KEY, value.encode(), hashlib.sha256).hexdigest()


def text(login: dict, field: str, limit: int, required: bool = True) -> str | None:
    value = login.get(field)
    if value is None or (not required and isinstance(value, str) and not value.strip()):
        if required:
            raise ValueError(f"required field `{field}` is missing")
        return None
    if not isinstance(value, str):
        raise ValueError(f"`{field}` is not a string")
    value = value.strip()
    if not value:
        raise ValueError(f"`{field}` is empty")
    if len(value) > limit:
        raise ValueError(f"`{field}` is longer than {limit} characters")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):
        raise ValueError(f"`{field}` has a control character")
    return value


def app_version(value: str) -> int:
    parts = value.split(".")
    if len(parts) > 3 or not all(1 <= len(p) <= 3 and p.isascii() and p.isdigit() for p in parts):
        raise ValueError("`app_version` is not like 2.3.0")
    encoded = 0
    for part in parts + ["0"] * (3 - len(parts)):
        encoded = encoded * 1000 + int(part)
    return encoded


def canonical_ip(value: str) -> str:
    address = ipaddress.ip_address(value)
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def record_handler(record: SQSRecord) -> None:
    login = json.loads(record.body)
    if not isinstance(login, dict):
        raise ValueError("message body is not a JSON object")
    sent = int(record.attributes.sent_timestamp)
    rows.append(
        (
            text(login, "user_id", LIMITS["user_id"]),
            text(login, "device_type", LIMITS["device_type"]),
            mask(canonical_ip(text(login, "ip", LIMITS["ip"]))),
            mask(text(login, "device_id", LIMITS["device_id"])),
            text(login, "locale", 32, required=False),
            app_version(text(login, "app_version", LIMITS["app_version"])),
            datetime.fromtimestamp(sent / 1000, tz=timezone.utc).date(),
            record.message_id,
            MASK_KEY_ID,
        )
    )


def lambda_handler(event, context):
    rows.clear()
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    with connection.transaction(), connection.cursor() as cursor:
        cursor.executemany(INSERT, rows)
    return response
