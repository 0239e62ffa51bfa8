"""End to end through LocalStack's real Lambda service with LAMBDA_RUNTIME_EXECUTOR=local."""

import base64
import contextlib
import io
import json
import platform
import shutil
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from conftest import pid_alive, wait_all_gone


def test_invoke_returns_the_response_and_the_logs(toy):
    name = toy.create()
    response, body = toy.invoke(name, {"hello": "world"}, tail=True)
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert body["echo"] == {"hello": "world"}
    headers = body["headers"]
    for header in (
        "Lambda-Runtime-Aws-Request-Id",
        "Lambda-Runtime-Deadline-Ms",
        "Lambda-Runtime-Invoked-Function-Arn",
        "Lambda-Runtime-Trace-Id",
    ):
        assert headers.get(header), header
    assert headers["Lambda-Runtime-Invoked-Function-Arn"].endswith(f":function:{name}")
    assert body["env"]["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert body["env"]["LAMBDA_TASK_ROOT"] == str(toy.code_dir)
    assert body["env"]["_HANDLER"] == "bootstrap"
    assert body["env"]["AWS_ENDPOINT_URL"] == toy.ls.endpoint
    # LocalStack's own environment is not the function's.
    assert body["env"]["DATABASE_URL"] is None
    noted = json.loads(next(iter(toy.noted("pid").values())))
    assert noted["cwd"] == str(toy.code_dir)

    tail = base64.b64decode(response["LogResult"]).decode()
    request_id = headers["Lambda-Runtime-Aws-Request-Id"]
    assert f"START RequestId: {request_id}" in tail
    assert f"toy got {request_id}" in tail
    assert f"REPORT RequestId: {request_id}" in tail

    # The same process serves the next invoke (a warm start), and its lines go to the log file.
    _, again = toy.invoke(name, {"n": 2})
    assert again["pid"] == body["pid"]
    files = list(toy.ls.executor_log_dir.glob(f"{name}-*.log"))
    assert len(files) == 1
    text = files[0].read_text()
    assert f"toy got {request_id}" in text and "toy init" in text
    assert "START RequestId" not in text  # only what the function wrote


def test_concurrent_invokes_get_environments_of_their_own(toy):
    name = toy.create()
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda i: toy.invoke(name, {"action": "sleep", "seconds": 1,
                                                            "i": i})[1], range(2)))
    assert sorted(r["echo"]["i"] for r in results) == [0, 1]
    assert results[0]["pid"] != results[1]["pid"]


def test_function_error_is_unhandled_with_the_runtime_payload(toy):
    name = toy.create()
    response, body = toy.invoke(name, {"action": "error"})
    assert response["FunctionError"] == "Unhandled"
    assert body == {"errorType": "Toy.Failed", "errorMessage": "toy failed on purpose"}
    # A reported error is not a crash: the same process goes on.
    _, ok = toy.invoke(name, {"after": "error"})
    assert ok["echo"] == {"after": "error"}


def test_timeout_is_a_function_error_and_the_next_invoke_gets_a_fresh_process(toy):
    name = toy.create(timeout=1)
    _, first = toy.invoke(name, {"warm": 1})
    response, body = toy.invoke(name, {"action": "sleep", "seconds": 30})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in body["errorMessage"]
    # The timed-out process was killed at once, not left sleeping.
    assert wait_all_gone_pid(first["pid"])
    _, after = toy.invoke(name, {"after": "timeout"})
    assert after["echo"] == {"after": "timeout"}
    assert after["pid"] != first["pid"]


def test_crash_is_a_function_error_and_the_next_invoke_gets_a_fresh_process(toy):
    name = toy.create()
    _, first = toy.invoke(name, {"warm": 1})
    response, body = toy.invoke(name, {"action": "crash"}, tail=True)
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert "Runtime exited with error: exit status 7" in body["errorMessage"]
    # The function's last words are in that invocation's logs.
    assert "toy crashes now" in base64.b64decode(response["LogResult"]).decode()
    _, after = toy.invoke(name, {"after": "crash"})
    assert after["echo"] == {"after": "crash"}
    assert after["pid"] != first["pid"]


def test_init_error_reaches_the_caller_with_the_functions_error(toy):
    name = toy.create(env={"TOY_INIT": "error"})
    response, body = toy.invoke(name, {})
    # LocalStack answers an environment that failed its init with the payload the runtime posted
    # to /init/error (version_manager.invoke: StatusErrorException -> FunctionError "Unhandled").
    assert response["FunctionError"] == "Unhandled"
    assert body == {"errorType": "Toy.InitFailed", "errorMessage": "toy init failed on purpose"}
    assert wait_all_gone(toy, timeout=5) == []


def test_a_failed_fresh_init_fails_that_invoke_and_the_next_one_tries_again(toy):
    name = toy.create()
    toy.invoke(name, {"warm": 1})
    (toy.state_dir / "fail-next-init").touch()
    response, body = toy.invoke(name, {"action": "crash"})
    assert body["errorType"] == "Runtime.ExitError"
    # The crash is followed by a fresh init inside the next invoke; it fails, so does the invoke.
    response, body = toy.invoke(name, {"after": "crash"}, tail=True)
    assert response["FunctionError"] == "Unhandled"
    assert body == {"errorType": "Toy.InitFailed", "errorMessage": "toy init failed on purpose"}
    tail = base64.b64decode(response["LogResult"]).decode()
    assert "toy init" in tail and "init failed" in tail
    (toy.state_dir / "fail-next-init").unlink()
    _, body = toy.invoke(name, {"after": "init error"})
    assert body["echo"] == {"after": "init error"}


def test_exit_during_init_is_a_runtime_exit_error(toy):
    name = toy.create(env={"TOY_INIT": "exit"})
    response, body = toy.invoke(name, {})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert "exit status 4" in body["errorMessage"]


def test_missing_bootstrap_is_an_invalid_entrypoint(toy):
    (toy.code_dir / "bootstrap").unlink()
    name = toy.create()
    response, body = toy.invoke(name, {})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.InvalidEntrypoint"


def test_a_runtime_other_than_provided_fails_the_function_with_a_reason(toy):
    name = f"toy-py-{uuid.uuid4().hex[:8]}"
    toy.lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Handler="index.handler",
        Role="arn:aws:iam::000000000000:role/lambda-role",
        Code={"S3Bucket": "hot-reload", "S3Key": str(toy.code_dir)},
    )
    deadline = time.monotonic() + 20
    while (config := toy.lam.get_function(FunctionName=name)["Configuration"])["State"] == "Pending":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert config["State"] == "Failed"
    assert "runs only zip or hot-reload functions on provided.* runtimes" in config["StateReason"]
    # LocalStack 2026.3 cannot delete a function whose version failed to start ("Unable to find
    # version manager"): its bug, not ours; nothing of it runs, so it is left behind.
    with contextlib.suppress(ClientError):
        toy.lam.delete_function(FunctionName=name)


def test_zip_code_runs_from_where_localstack_unzipped_it(toy):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        zf.writestr(info, (toy.code_dir / "bootstrap").read_text())
    name = toy.create(zip_bytes=buf.getvalue())
    _, body = toy.invoke(name, {"zip": True})
    assert body["echo"] == {"zip": True}
    task_root = body["env"]["LAMBDA_TASK_ROOT"]
    assert task_root != str(toy.code_dir) and task_root.endswith("/code")


def test_delete_sends_sigterm_and_shutdown_and_leaves_nothing_running(toy):
    name = toy.create(env={"TOY_EXTENSION": "1", "TOY_CHILD": "1"})
    _, body = toy.invoke(name, {"x": 1})
    pid = body["pid"]
    registered = json.loads(toy.noted("registered")[pid])
    assert registered["functionName"] == name
    assert registered["handler"] == "bootstrap"
    assert registered["accountId"] == "000000000000"
    child = int(toy.noted("child")[pid])
    assert pid_alive(pid) and pid_alive(child)

    toy.delete_all()
    assert wait_all_gone(toy, timeout=10) == []
    assert pid in toy.noted("sigterm")
    event = json.loads(toy.noted("shutdown")[pid])
    assert event["eventType"] == "SHUTDOWN"
    assert event["shutdownReason"] == "spindown"
    assert isinstance(event["deadlineMs"], int)


def test_a_function_that_ignores_sigterm_is_killed_after_the_grace(toy):
    name = toy.create(env={"TOY_IGNORE_TERM": "1", "TOY_CHILD": "1"})
    _, body = toy.invoke(name, {"x": 1})
    started = time.monotonic()
    toy.delete_all()
    assert wait_all_gone(toy, timeout=10) == []
    # SIGTERM, the 2 s grace, SIGKILL (plus LocalStack's own ~2 s before it stops environments).
    assert time.monotonic() - started >= 2
    assert body["pid"] not in toy.noted("sigterm")


def wait_all_gone_pid(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


AARCH64_LIBC = Path("/usr/aarch64-linux-gnu/lib/libc.so.6")


@pytest.mark.skipif(
    platform.machine() != "x86_64" or not AARCH64_LIBC.exists() or not shutil.which(
        "qemu-aarch64-static"
    ),
    reason="needs an x86_64 host with qemu-user-static and libc6-arm64-cross",
)
def test_an_arm64_function_runs_aarch64_code_under_qemu(toy):
    # The smallest aarch64 program at hand: glibc itself, which prints its banner and exits 0
    # (it needs the aarch64 loader from the sysroot, so -L is exercised too). Exiting before
    # /next is an init failure; what matters is that aarch64 code ran. The real arm64 zip end to
    # end is the project's test.
    shutil.copy(AARCH64_LIBC, toy.code_dir / "bootstrap")
    (toy.code_dir / "bootstrap").chmod(0o755)
    name = toy.create(architecture="arm64")
    response, body = toy.invoke(name, {})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert "exit status 0" in body["errorMessage"]
    files = list(toy.ls.executor_log_dir.glob(f"{name}-*.log"))
    assert files and "GNU C Library" in files[0].read_text()
