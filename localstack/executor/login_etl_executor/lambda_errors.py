"""The error payloads and platform log lines Lambda itself writes, in Lambda's wording.

Callers (the Invoke API, the SQS event source mapping, tests, people reading CloudWatch) match on
these strings, so they follow what AWS Lambda and LocalStack's own init produce.
"""

import json
import signal
from datetime import UTC, datetime


def error_payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


def timeout_payload(request_id: str, timeout_seconds: int) -> bytes:
    # LocalStack's init writes "<UTC time> <request id> Task timed out after N.00 seconds" with no
    # errorType; AWS adds errorType "Sandbox.Timedout". Both, so either kind of caller matches.
    return error_payload("Sandbox.Timedout", timeout_log_line(request_id, timeout_seconds))


def timeout_log_line(request_id: str, timeout_seconds: int) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{now} {request_id} Task timed out after {timeout_seconds:.2f} seconds"


def describe_exit(returncode: int) -> str:
    """Go's wording for a process state, which is what Lambda's messages quote."""
    if returncode < 0:
        try:
            name = signal.strsignal(-returncode) or f"signal {-returncode}"
        except ValueError:
            name = f"signal {-returncode}"
        return f"signal: {name.lower()}"
    return f"exit status {returncode}"


def exit_error_payload(request_id: str | None, returncode: int) -> bytes:
    prefix = f"RequestId: {request_id} " if request_id else ""
    return error_payload(
        "Runtime.ExitError", f"{prefix}Error: Runtime exited with error: {describe_exit(returncode)}"
    )


def invalid_entrypoint_payload(reason: str) -> bytes:
    return error_payload("Runtime.InvalidEntrypoint", reason)


def init_timeout_payload(request_id: str, seconds: int) -> bytes:
    return error_payload(
        "Sandbox.Timedout",
        f"RequestId: {request_id} Error: the runtime did not finish its init (no call to "
        f"/runtime/invocation/next) within {seconds} seconds",
    )


def stopped_payload(request_id: str) -> bytes:
    return error_payload(
        "Runtime.ExitError",
        f"RequestId: {request_id} Error: the execution environment was stopped during the invocation",
    )


def response_too_large_payload(limit: int) -> bytes:
    return error_payload(
        "Function.ResponseSizeTooLarge",
        f"Response payload size exceeded maximum allowed payload size ({limit} bytes).",
    )


def normalise_error_body(body: bytes, error_type_header: str | None) -> bytes:
    """A runtime may post any bytes as an error; callers expect Lambda's JSON error object."""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return body
    message = body.decode("utf-8", errors="replace") if body else ""
    return error_payload(error_type_header or "Runtime.Unknown", message)


def start_line(request_id: str, version: str) -> str:
    return f"START RequestId: {request_id} Version: {version}"


def end_lines(
    request_id: str, duration_ms: float, memory_size_mb: int, max_memory_mb: int | None
) -> list[str]:
    report = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {max(1, int(duration_ms + 0.999))} ms\tMemory Size: {memory_size_mb} MB"
    )
    if max_memory_mb is not None:
        report += f"\tMax Memory Used: {max_memory_mb} MB"
    return [f"END RequestId: {request_id}", report]
