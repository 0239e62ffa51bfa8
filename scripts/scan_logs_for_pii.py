#!/usr/bin/env python3
"""Fails if any log line the test suite captured holds personal data.

Usage: scan_logs_for_pii.py LOG_DIR [EVENT_FILES...]

What counts as PII here: any IPv4 address other than loopback/unspecified, anything shaped like an
SSN (our device ids are), and every ip, device_id and whole message body found in the given SQS
event files and in the test sources. The scan must have something to scan: a run that captured
no "message not stored" line proves nothing, so it fails too.
"""
import json
import pathlib
import re
import sys

IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
SSN_SHAPED = re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")
HARMLESS_IPS = {"127.0.0.1", "0.0.0.0"}


def known_values(paths):
    """ip and device_id values and bodies from SQS event files and JSON bodies in test sources."""
    values = set()
    for path in paths:
        if not pathlib.Path(path).is_file():
            continue
        text = pathlib.Path(path).read_text(errors="replace")
        for field in ("ip", "device_id"):
            for match in re.finditer(r'\\?"%s\\?"\s*:\s*\\?"([^"\\]{4,})' % field, text):
                values.add(match.group(1).strip())
        if path.endswith(".json"):
            try:
                event = json.loads(text)
            except ValueError:
                continue
            for record in event.get("Records", []):
                body = record.get("body") or ""
                if len(body) >= 16:
                    values.add(body)
    return values


def main():
    log_dir = pathlib.Path(sys.argv[1])
    values = known_values(sys.argv[2:])
    logs = sorted(p for p in log_dir.glob("*.log") if p.is_file())
    lines = 0
    reported = 0
    problems = []
    for log in logs:
        for number, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
            lines += 1
            if "message not stored" in line:
                reported += 1
            found = [ip for ip in IPV4.findall(line) if ip not in HARMLESS_IPS]
            found += SSN_SHAPED.findall(line)
            found += [v for v in values if v in line]
            if found:
                problems.append(f"{log.name}:{number}: {sorted(set(found))[:3]}")
    scanned = f"{lines:,} log lines from {len(logs)} files"
    looked_for = f"IPv4 addresses, SSN-shaped strings, {len(values)} values from the test inputs"
    if problems:
        print(f"PII scan failed: personal data in {len(problems):,} of {scanned}:", *problems[:20],
              sep="\n  ")
        sys.exit(1)
    if reported == 0:
        # The tests send bad messages on purpose; their reports are the lines most likely to leak.
        sys.exit(f"PII scan failed: no 'message not stored' line among {scanned}, "
                 "so it would prove nothing")
    print(f"PII scan: no personal data in {scanned}, {reported:,} of them 'message not stored' "
          f"reports (looked for: {looked_for})")


if __name__ == "__main__":
    main()
