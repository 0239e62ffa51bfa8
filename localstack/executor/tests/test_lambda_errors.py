"""Lambda's wording for exits and timeouts, which callers match on."""

import json
import signal

from login_etl_executor import lambda_errors


def test_exits_are_described_as_go_and_lambda_do():
    assert lambda_errors.describe_exit(1) == "exit status 1"
    assert lambda_errors.describe_exit(-signal.SIGKILL) == "signal: killed"
    assert lambda_errors.describe_exit(-signal.SIGSEGV) == "signal: segmentation fault"


def test_exit_error_payload():
    assert json.loads(lambda_errors.exit_error_payload("r1", 2)) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": "RequestId: r1 Error: Runtime exited with error: exit status 2",
    }


def test_timeout_payload_reads_like_lambdas():
    payload = json.loads(lambda_errors.timeout_payload("r1", 3))
    assert payload["errorType"] == "Sandbox.Timedout"
    assert payload["errorMessage"].endswith(" r1 Task timed out after 3.00 seconds")


def test_report_line_has_lambdas_fields():
    end, report = lambda_errors.end_lines("r1", 12.3, 128, 20)
    assert end == "END RequestId: r1"
    assert report == (
        "REPORT RequestId: r1\tDuration: 12.30 ms\tBilled Duration: 13 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 20 MB"
    )
