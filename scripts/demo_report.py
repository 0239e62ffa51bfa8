#!/usr/bin/env python3
"""Prints one batch of `make demo` readably: what the function answered, and why each failed
message failed (the reasons come from the function's own log lines, which name the messageId and
the rule, never a value). Compares the outcome with events/expected.json.

    demo_report.py EVENT_FILE RESPONSE_FILE LOG_FILE LOG_OFFSET [--redelivery]

Exit status: 0 when the outcome is the expected one, 1 when it is not, 2 when the function gave
no usable answer.
"""

import argparse
import json
import sys
import time
from pathlib import Path

MANIFEST = Path(__file__).resolve().parent.parent / "events" / "expected.json"


def log_records(log_file: Path, offset: int):
    """The JSON log lines the function wrote since `offset`; other lines are skipped."""
    with open(log_file, "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        fields = record.get("fields", record)  # tracing's JSON nests the event's fields
        if isinstance(fields, dict):
            yield fields


def wait_for_summary(log_file: Path, offset: int):
    """The function logs its summary before it answers, but the emulator relays its output a
    moment later: wait briefly for the line."""
    for _ in range(40):
        records = list(log_records(log_file, offset))
        if any(r.get("message") == "batch processed" for r in records):
            return records
        time.sleep(0.05)
    return list(log_records(log_file, offset))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("event_file", type=Path)
    parser.add_argument("response_file", type=Path)
    parser.add_argument("log_file", type=Path)
    parser.add_argument("log_offset", type=int)
    parser.add_argument("--redelivery", action="store_true", help="the file was sent before")
    args = parser.parse_args()

    name = args.event_file.name
    received = len(json.loads(args.event_file.read_text())["Records"])
    raw = args.response_file.read_text().strip()
    try:
        response = json.loads(raw)
        failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    except (ValueError, KeyError, TypeError):
        print(f"  {name:<18} the function gave no batch response: {raw[:300] or '(nothing)'}")
        return 2

    records = wait_for_summary(args.log_file, args.log_offset)
    reasons = {r.get("message_id"): r.get("reason", "?") for r in records if r.get("message") == "message not stored"}
    summary = next((r for r in records if r.get("message") == "batch processed"), {})
    stored = summary.get("stored", received - len(failed) if not args.redelivery else 0)
    duplicates = summary.get("duplicates", 0)

    expected = json.loads(MANIFEST.read_text())["files"].get(name)
    if expected is None:
        verdict, ok = "no entry in events/expected.json", False
    else:
        want_failed = sorted(f["messageId"] for f in expected["failed"])
        want_stored = 0 if args.redelivery else expected["stored"]
        ok = sorted(failed) == want_failed and stored == want_stored
        verdict = "as expected" if ok else f"NOT as expected (events/expected.json: {want_stored} stored, {len(want_failed)} failed)"

    parts = [f"{stored} stored"]
    if duplicates:
        parts.append(f"{duplicates} already stored")
    if failed:
        parts.append(f"{len(failed)} failed")
    print(f"  {name:<18} {received:>3} messages -> {', '.join(parts):<38} {verdict}")
    # The failed messageIds (what SQS redelivers), grouped by why they failed.
    by_reason = {}
    for message_id in failed:
        by_reason.setdefault(reasons.get(message_id, "(no reason logged)"), []).append(message_id)
    for reason, ids in sorted(by_reason.items(), key=lambda item: -len(item[1])):
        print(f"      {len(ids):>2} x {reason}")
        for message_id in ids:
            print(f"           {message_id}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
