"""LocalStack on the host with LAMBDA_RUNTIME_EXECUTOR=local, and toy functions to deploy on it.

One LocalStack per test session (start-up costs seconds); every function gets a unique name, so
tests do not see each other's environments.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parents[3]
VENV_PYTHON = REPO / ".venv-localstack" / "bin" / "python"
# Tests talk to a local emulator: never to a real account, whatever the developer's shell has.
CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
REGION = "us-east-1"
ROLE = "arn:aws:iam::000000000000:role/lambda-role"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def localstack_env(state: Path, port: int, log_dir: Path) -> dict[str, str]:
    """The environment LocalStack needs to run Lambda here (README.md lists the same)."""
    for sub in ("fs", "tmp", "config", "home"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "FILESYSTEM_ROOT": str(state / "fs"),
        "TMPDIR": str(state / "tmp"),
        "CONFIG_DIR": str(state / "config"),
        "HOME": str(state / "home"),
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "GATEWAY_SERVER": "hypercorn",
        "LOCALSTACK_HOST": f"127.0.0.1:{port}",
        "SQS_ENDPOINT_STRATEGY": "path",
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "DNS_ADDRESS": "0",
        "SERVICES": "lambda,sqs,s3,sts,iam,logs",
        "LAMBDA_RUNTIME_EXECUTOR": "local",
        "LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC": "1",
        "LAMBDA_LOCAL_EXECUTOR_LOG_DIR": str(log_dir),
    }
    if os.environ.get("EXECUTOR_TEST_DEBUG"):
        env["DEBUG"] = "1"
    return env


def stop_group(proc: subprocess.Popen, grace: float = 2.0) -> None:
    """SIGTERM to the group, SIGKILL after the grace: hypercorn can ignore SIGTERM for 30 s+."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


class LocalStack:
    def __init__(self, port: int, proc: subprocess.Popen, log_path: Path, executor_log_dir: Path):
        self.port = port
        self.proc = proc
        self.log_path = log_path
        self.executor_log_dir = executor_log_dir
        self.endpoint = f"http://127.0.0.1:{port}"

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            config=Config(retries={"max_attempts": 1}, read_timeout=60, connect_timeout=5),
            **CREDENTIALS,
        )

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def start_localstack(state: Path, extra_env: dict[str, str] | None = None) -> LocalStack:
    port = free_port()
    log_dir = state / "function-logs"
    log_path = state / "localstack.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["setsid", str(VENV_PYTHON), "-m", "localstack.runtime.main"],
            env={**localstack_env(state, port, log_dir), **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=state,
            # No start_new_session: the child would then lead a process group already, and
            # setsid(1) would fork and exit at once. Not being a leader, setsid execs in place, so
            # LocalStack's pid is its process group id, which stop_group signals.
        )
    ls = LocalStack(port, proc, log_path, log_dir)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stop_group(proc)
            raise RuntimeError(f"LocalStack exited ({proc.returncode}):\n{ls.log_tail()}")
        try:
            with urllib.request.urlopen(f"{ls.endpoint}/_localstack/health", timeout=2) as r:
                if r.status == 200 and "lambda" in json.loads(r.read()).get("services", {}):
                    return ls
        except OSError:
            pass
        time.sleep(0.2)
    stop_group(proc)
    raise RuntimeError(f"LocalStack did not become ready in 60 s:\n{ls.log_tail()}")


@pytest.fixture(scope="session")
def localstack():
    if not VENV_PYTHON.exists():
        pytest.skip(f"{VENV_PYTHON} missing: create .venv-localstack first")
    state = Path(tempfile.mkdtemp(prefix="ls-executor-"))
    ls = start_localstack(state)
    try:
        yield ls
    finally:
        stop_group(ls.proc)
        if os.environ.get("EXECUTOR_TEST_KEEP_STATE"):
            print(f"LocalStack state kept in {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)


# --- toy functions ----------------------------------------------------------------------------

TOY_BOOTSTRAP = r'''
import json, os, signal, subprocess, sys, threading, time, urllib.request

API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"]
STATE = os.environ["TOY_STATE_DIR"]
PID = os.getpid()


def note(name, content=""):
    with open(os.path.join(STATE, f"{name}-{PID}"), "w") as f:
        f.write(content)


def call(method, path, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(API + path, data=data, headers=headers or {}, method=method)
    with urllib.request.urlopen(req) as r:
        return r.status, dict(r.headers), r.read()


SHUTDOWN_SEEN = threading.Event()


def on_sigterm(signum, frame):
    note("sigterm")
    # A graceful shutdown takes a moment; long enough here for the extension to get its event.
    if os.environ.get("TOY_EXTENSION"):
        SHUTDOWN_SEEN.wait(1.5)
    os._exit(0)


signal.signal(signal.SIGTERM, signal.SIG_IGN if os.environ.get("TOY_IGNORE_TERM") else on_sigterm)
note("pid", json.dumps({"cwd": os.getcwd(), "task_root": os.environ.get("LAMBDA_TASK_ROOT")}))
print(f"toy init pid={PID}", flush=True)
if os.environ.get("TOY_CHILD"):
    # A helper in the process group: shutdown must end it too.
    child = subprocess.Popen(["sleep", "300"])
    note("child", str(child.pid))

mode = os.environ.get("TOY_INIT")
if os.path.exists(os.path.join(STATE, "fail-next-init")):
    mode = "error"
if mode == "error":
    call("POST", "/2018-06-01/runtime/init/error",
         {"errorType": "Toy.InitFailed", "errorMessage": "toy init failed on purpose"},
         {"Lambda-Runtime-Function-Error-Type": "Toy.InitFailed"})
    sys.exit(3)
if mode == "exit":
    print("toy exits during init", file=sys.stderr, flush=True)
    sys.exit(4)

if os.environ.get("TOY_EXTENSION"):
    status, headers, body = call("POST", "/2020-01-01/extension/register", {"events": ["SHUTDOWN"]},
                                 {"Lambda-Extension-Name": "toy-ext",
                                  "Lambda-Extension-Accept-Feature": "accountId"})
    ext_id = headers["Lambda-Extension-Identifier"]
    note("registered", body.decode())

    def extension():
        _, _, event = call("GET", "/2020-01-01/extension/event/next",
                           headers={"Lambda-Extension-Identifier": ext_id})
        note("shutdown", event.decode())
        SHUTDOWN_SEEN.set()

    threading.Thread(target=extension, daemon=True).start()

while True:
    status, headers, body = call("GET", "/2018-06-01/runtime/invocation/next")
    rid = headers["Lambda-Runtime-Aws-Request-Id"]
    event = json.loads(body)
    print(f"toy got {rid}", flush=True)
    action = event.get("action", "echo") if isinstance(event, dict) else "echo"
    if isinstance(event, dict) and "Records" in event:
        with open(os.path.join(STATE, "sqs-seen"), "a") as f:
            for record in event["Records"]:
                f.write(json.dumps({"id": record["messageId"], "body": record["body"]}) + "\n")
        failures = [{"itemIdentifier": r["messageId"]} for r in event["Records"]
                    if "bad" in r["body"]]
        call("POST", f"/2018-06-01/runtime/invocation/{rid}/response",
             {"batchItemFailures": failures})
        continue
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "crash":
        print("toy crashes now", flush=True)
        os._exit(7)
    if action == "error":
        call("POST", f"/2018-06-01/runtime/invocation/{rid}/error",
             {"errorType": "Toy.Failed", "errorMessage": "toy failed on purpose"},
             {"Lambda-Runtime-Function-Error-Type": "Toy.Failed"})
        continue
    response = {"echo": event, "pid": PID, "headers": {k: v for k, v in headers.items()
                                                      if k.startswith("Lambda-Runtime")},
                "env": {k: os.environ.get(k) for k in ("AWS_LAMBDA_FUNCTION_NAME",
                                                        "AWS_ENDPOINT_URL", "LAMBDA_TASK_ROOT",
                                                        "_HANDLER", "DATABASE_URL")}}
    call("POST", f"/2018-06-01/runtime/invocation/{rid}/response", response)
'''


class Toy:
    """A toy function: a Python bootstrap in a hot-reload directory, and where it notes things."""

    def __init__(self, localstack: LocalStack, tmp_path: Path):
        self.ls = localstack
        self.lam = localstack.client("lambda")
        self.code_dir = tmp_path / "code"
        self.state_dir = tmp_path / "state"
        self.code_dir.mkdir()
        self.state_dir.mkdir()
        bootstrap = self.code_dir / "bootstrap"
        bootstrap.write_text(f"#!{sys.executable} -u\n" + textwrap.dedent(TOY_BOOTSTRAP))
        bootstrap.chmod(0o755)
        self.names: list[str] = []

    def create(self, timeout: int = 10, env: dict[str, str] | None = None, zip_bytes=None,
               architecture: str = "x86_64") -> str:
        name = f"toy-{uuid.uuid4().hex[:10]}"
        code = (
            {"ZipFile": zip_bytes}
            if zip_bytes is not None
            else {"S3Bucket": "hot-reload", "S3Key": str(self.code_dir)}
        )
        self.lam.create_function(
            FunctionName=name,
            Runtime="provided.al2023",
            Handler="bootstrap",
            Role=ROLE,
            Code=code,
            Timeout=timeout,
            Architectures=[architecture],
            Environment={"Variables": {"TOY_STATE_DIR": str(self.state_dir), **(env or {})}},
        )
        self.lam.get_waiter("function_active_v2").wait(
            FunctionName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
        )
        self.names.append(name)
        return name

    def invoke(self, name: str, payload: dict, tail: bool = False) -> tuple[dict, dict | str]:
        kwargs = {"LogType": "Tail"} if tail else {}
        response = self.lam.invoke(FunctionName=name, Payload=json.dumps(payload), **kwargs)
        raw = response["Payload"].read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        return response, body

    def noted(self, kind: str) -> dict[int, str]:
        """{pid: content} of the files the toy wrote as `<kind>-<pid>`."""
        return {
            int(p.name.rsplit("-", 1)[1]): p.read_text()
            for p in self.state_dir.glob(f"{kind}-*")
        }

    def delete_all(self) -> None:
        for name in self.names:
            try:
                self.lam.delete_function(FunctionName=name)
            except self.lam.exceptions.ResourceNotFoundException:
                pass
        self.names.clear()


@pytest.fixture
def toy(localstack, tmp_path):
    t = Toy(localstack, tmp_path)
    try:
        yield t
    finally:
        t.delete_all()
        # Whatever a test did, none of its processes may outlive it.
        alive = wait_all_gone(t, timeout=10)
        assert not alive, f"processes left running after the functions were deleted: {alive}"


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def toy_pids(t: Toy) -> list[int]:
    pids = list(t.noted("pid"))
    pids += [int(c) for c in t.noted("child").values() if c]
    return pids


def wait_all_gone(t: Toy, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in toy_pids(t) if pid_alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)
