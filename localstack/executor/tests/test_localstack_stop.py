"""LocalStacks of their own: stopping LocalStack itself, and a host without qemu.

Stopping LocalStack must stop every function it started, however it is stopped; these tests end
the LocalStack they use, so they do not share the session's.
"""

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from conftest import Toy, pid_alive, start_localstack, stop_group, wait_all_gone

AARCH64_LIBC = Path("/usr/aarch64-linux-gnu/lib/libc.so.6")


@pytest.fixture
def own_localstack():
    state = Path(tempfile.mkdtemp(prefix="ls-executor-stop-"))
    ls = start_localstack(state)
    try:
        yield ls
    finally:
        stop_group(ls.proc)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def localstack_without_qemu():
    """Shared by the qemu test and then the SIGKILL test, which ends it (one start fewer)."""
    state = Path(tempfile.mkdtemp(prefix="ls-executor-noqemu-"))
    ls = start_localstack(state, {"LAMBDA_LOCAL_EXECUTOR_QEMU": str(state / "no-such-qemu")})
    try:
        yield ls
    finally:
        stop_group(ls.proc)
        shutil.rmtree(state, ignore_errors=True)


def test_sigterm_to_localstack_shuts_the_functions_down(own_localstack, tmp_path):
    toy = Toy(own_localstack, tmp_path)
    name = toy.create(env={"TOY_EXTENSION": "1", "TOY_CHILD": "1"})
    _, body = toy.invoke(name, {"x": 1})
    assert pid_alive(body["pid"])
    # As scripts/lib.sh stops it: SIGTERM to the group, SIGKILL after a grace. LocalStack's
    # shutdown stops each environment (SIGTERM, SHUTDOWN to extensions); hypercorn itself may
    # then linger until the SIGKILL.
    os.killpg(own_localstack.proc.pid, signal.SIGTERM)
    started = time.monotonic()
    assert wait_all_gone(toy, timeout=8) == []
    print(f"functions gone {time.monotonic() - started:.2f} s after SIGTERM to LocalStack")
    assert body["pid"] in toy.noted("sigterm")
    assert body["pid"] in toy.noted("shutdown")
    stop_group(own_localstack.proc, grace=2)


@pytest.mark.skipif(not AARCH64_LIBC.exists(), reason="needs an aarch64 ELF (libc6-arm64-cross)")
def test_missing_qemu_is_a_service_error_naming_the_package(localstack_without_qemu, tmp_path):
    toy = Toy(localstack_without_qemu, tmp_path)
    shutil.copy(AARCH64_LIBC, toy.code_dir / "bootstrap")
    (toy.code_dir / "bootstrap").chmod(0o755)
    name = toy.create(architecture="arm64")
    # Not the function's fault, so not a function error: LocalStack answers a service error
    # (AssignmentException -> ServiceException, HTTP 500) that carries the executor's message.
    with pytest.raises(ClientError) as error:
        toy.invoke(name, {})
    message = str(error.value)
    assert "qemu-user-static" in message
    assert "LAMBDA_LOCAL_EXECUTOR_QEMU" in message


def test_a_sigkilled_localstack_leaves_no_bootstrap_behind(localstack_without_qemu, tmp_path):
    toy = Toy(localstack_without_qemu, tmp_path)
    name = toy.create()
    _, body = toy.invoke(name, {"x": 1})
    assert pid_alive(body["pid"])
    os.killpg(localstack_without_qemu.proc.pid, signal.SIGKILL)
    localstack_without_qemu.proc.wait(10)
    # The bootstrap's parent-death signal (setpriv --pdeathsig KILL) ends it with LocalStack.
    assert wait_all_gone(toy, timeout=5) == []
