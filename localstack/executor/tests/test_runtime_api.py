"""The Runtime and Extensions API server on its own, driven over HTTP as a runtime would."""

import http.client
import json
import threading
import time

import pytest

from login_etl_executor.runtime_api import FunctionInfo, Invocation, RuntimeApiServer

INFO = FunctionInfo(name="fn", version="$LATEST", handler="bootstrap", account_id="000000000000")


@pytest.fixture
def api():
    changes = threading.Event()
    server = RuntimeApiServer(INFO, on_change=changes.set, max_response_bytes=1000).start()
    server.changes = changes
    yield server
    server.close()


def request(api, method, path, body=None, headers=None, timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=timeout)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    conn.request(method, path, body=data, headers=headers or {})
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    return response.status, dict(response.headers), raw


def in_background(fn, *args, **kwargs):
    result = {}

    def run():
        try:
            result["value"] = fn(*args, **kwargs)
        except OSError as e:  # a poll the server let go of without an answer
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def invocation(request_id="r1", payload=b'{"a":1}'):
    return Invocation(
        request_id=request_id,
        payload=payload,
        deadline_ms=1_700_000_000_000,
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:fn",
        trace_id="Root=1-2-3",
    )


def test_next_waits_for_an_invocation_and_carries_lambdas_headers(api):
    thread, result = in_background(request, api, "GET", "/2018-06-01/runtime/invocation/next")
    assert api.changes.wait(2) and api.ready
    time.sleep(0.1)
    assert thread.is_alive()  # a long-poll: nothing to hand out yet
    inv = invocation()
    api.submit(inv)
    thread.join(2)
    status, headers, body = result["value"]
    assert status == 200 and body == b'{"a":1}'
    assert headers["Lambda-Runtime-Aws-Request-Id"] == "r1"
    assert headers["Lambda-Runtime-Deadline-Ms"] == "1700000000000"
    assert headers["Lambda-Runtime-Invoked-Function-Arn"].endswith(":function:fn")
    assert headers["Lambda-Runtime-Trace-Id"] == "Root=1-2-3"

    status, _, _ = request(api, "POST", "/2018-06-01/runtime/invocation/r1/response", b'"ok"')
    assert status == 202
    assert inv.done.is_set() and not inv.is_error and inv.body == b'"ok"'
    # A second answer for the same request is refused, as Lambda does.
    status, _, body = request(api, "POST", "/2018-06-01/runtime/invocation/r1/response", b'"x"')
    assert status == 400 and json.loads(body)["errorType"] == "InvalidRequestID"


def test_an_error_without_a_json_body_becomes_lambdas_error_object(api):
    inv = invocation("r2")
    api.submit(inv)
    request(api, "GET", "/2018-06-01/runtime/invocation/next")
    status, _, _ = request(
        api,
        "POST",
        "/2018-06-01/runtime/invocation/r2/error",
        b"boom",
        {"Lambda-Runtime-Function-Error-Type": "Custom.Boom"},
    )
    assert status == 202
    assert inv.is_error
    assert json.loads(inv.body) == {"errorMessage": "boom", "errorType": "Custom.Boom"}


def test_a_response_over_the_limit_is_a_function_error(api):
    inv = invocation("r3")
    api.submit(inv)
    request(api, "GET", "/2018-06-01/runtime/invocation/next")
    status, _, _ = request(api, "POST", "/2018-06-01/runtime/invocation/r3/response", b"x" * 1001)
    assert status == 413
    assert inv.is_error
    assert json.loads(inv.body)["errorType"] == "Function.ResponseSizeTooLarge"


def test_init_error_is_recorded(api):
    status, _, _ = request(
        api,
        "POST",
        "/2018-06-01/runtime/init/error",
        {"errorType": "E.Init", "errorMessage": "no config"},
    )
    assert status == 202
    assert json.loads(api.init_error) == {"errorType": "E.Init", "errorMessage": "no config"}


def test_extensions_register_and_get_shutdown_only_if_they_asked(api):
    status, headers, body = request(
        api,
        "POST",
        "/2020-01-01/extension/register",
        {"events": ["SHUTDOWN"]},
        {"Lambda-Extension-Name": "ext", "Lambda-Extension-Accept-Feature": "accountId"},
    )
    assert status == 200
    assert json.loads(body) == {
        "functionName": "fn",
        "functionVersion": "$LATEST",
        "handler": "bootstrap",
        "accountId": "000000000000",
    }
    shutdown_id = headers["Lambda-Extension-Identifier"]
    _, headers, _ = request(
        api, "POST", "/2020-01-01/extension/register", {"events": []},
        {"Lambda-Extension-Name": "quiet"},
    )
    quiet_id = headers["Lambda-Extension-Identifier"]

    path = "/2020-01-01/extension/event/next"
    waiting, result = in_background(
        request, api, "GET", path, headers={"Lambda-Extension-Identifier": shutdown_id}
    )
    quiet, _ = in_background(
        request, api, "GET", path, headers={"Lambda-Extension-Identifier": quiet_id}
    )
    time.sleep(0.1)
    assert waiting.is_alive() and quiet.is_alive()
    assert api.send_shutdown("spindown", 123) == 1
    waiting.join(2)
    status, _, body = result["value"]
    assert status == 200
    assert json.loads(body) == {"eventType": "SHUTDOWN", "shutdownReason": "spindown",
                                "deadlineMs": 123}
    time.sleep(0.1)
    assert quiet.is_alive()  # not registered for SHUTDOWN: held until the server closes
    api.close()
    quiet.join(2)
    assert not quiet.is_alive()


def test_unknown_extension_identifier_is_refused(api):
    status, _, body = request(
        api, "GET", "/2020-01-01/extension/event/next",
        headers={"Lambda-Extension-Identifier": "nope"},
    )
    assert status == 403
    assert json.loads(body)["errorType"] == "Extension.UnknownExtensionIdentifier"


def test_close_releases_every_long_poll(api):
    polls = [
        in_background(request, api, "GET", "/2018-06-01/runtime/invocation/next")[0]
        for _ in range(5)
    ]
    time.sleep(0.2)
    assert all(t.is_alive() for t in polls)
    started = time.monotonic()
    api.close()
    for t in polls:
        t.join(3)
    assert not any(t.is_alive() for t in polls)
    assert time.monotonic() - started < 3


def test_extensions_registered_for_invoke_get_each_invocation(api):
    _, headers, _ = request(
        api, "POST", "/2020-01-01/extension/register", {"events": ["INVOKE"]},
        {"Lambda-Extension-Name": "inv"},
    )
    ext_id = headers["Lambda-Extension-Identifier"]
    api.submit(invocation("r9"))
    status, _, body = request(
        api, "GET", "/2020-01-01/extension/event/next",
        headers={"Lambda-Extension-Identifier": ext_id},
    )
    event = json.loads(body)
    assert status == 200
    assert event["eventType"] == "INVOKE"
    assert event["requestId"] == "r9"
    assert event["deadlineMs"] == 1_700_000_000_000
    assert event["invokedFunctionArn"].endswith(":function:fn")
    assert event["tracing"] == {"type": "X-Amzn-Trace-Id", "value": "Root=1-2-3"}


def test_unknown_event_types_are_refused(api):
    status, _, body = request(
        api, "POST", "/2020-01-01/extension/register", {"events": ["LOGS"]},
        {"Lambda-Extension-Name": "x"},
    )
    assert status == 400
    assert json.loads(body)["errorType"] == "Extension.InvalidEventType"
