"""Stopping LocalStack itself stops every function it started, however it is stopped."""

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
from conftest import Toy, pid_alive, start_localstack, stop_group, wait_all_gone


@pytest.fixture
def own_localstack():
    state = Path(tempfile.mkdtemp(prefix="ls-executor-stop-"))
    ls = start_localstack(state)
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


def test_a_sigkilled_localstack_leaves_no_bootstrap_behind(own_localstack, tmp_path):
    toy = Toy(own_localstack, tmp_path)
    name = toy.create()
    _, body = toy.invoke(name, {"x": 1})
    assert pid_alive(body["pid"])
    os.killpg(own_localstack.proc.pid, signal.SIGKILL)
    own_localstack.proc.wait(10)
    # The bootstrap's parent-death signal (setpriv --pdeathsig KILL) ends it with LocalStack.
    assert wait_all_gone(toy, timeout=5) == []
