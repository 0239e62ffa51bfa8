"""LocalStack's RuntimeExecutor for `provided.*` functions, run as local processes.

LocalStack calls start() once per execution environment, then invoke() one at a time, then stop().
What it expects back (read from localstack-core 2026.3.0):
- start() raising StatusErrorException(payload=...) is an init failure: the Invoke that needed the
  environment answers FunctionError "Unhandled" with that payload (version_manager.invoke), so the
  function's own errorType/errorMessage reach the caller. Any other exception becomes a service
  error (AssignmentException -> LambdaServiceException, HTTP 500) carrying its message.
- invoke() returns an InvocationResult; is_error=True is a function error. Raising from invoke()
  makes LocalStack stop the environment and answer a service error, so it never raises for the
  function's faults (timeouts, crashes).
- InvocationResult.logs go to CloudWatch Logs. get_logs() is what LocalStack prints about an
  environment (at DEBUG after a failed start; as a WARNING after an invocation without logs).
"""

import logging
import os
import threading
import time
from pathlib import Path

from localstack import config
from localstack.services.lambda_.invocation.executor_endpoint import StatusErrorException
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import RuntimeExecutor

from . import lambda_errors
from .launch import LaunchError, build_launch, host_machine, is_elf
from .logs import LogSink
from .runtime_api import DEFAULT_MAX_RESPONSE_BYTES, FunctionInfo, Invocation
from .sandbox import InitOutcome, InvokeOutcome, Sandbox

LOG = logging.getLogger(__name__)

SHUTDOWN_GRACE_ENV = "LAMBDA_LOCAL_EXECUTOR_SHUTDOWN_GRACE_MS"
# Lambda allows up to 2,000 ms for the shutdown phase when extensions are registered.
DEFAULT_SHUTDOWN_GRACE_MS = 2000
STARTUP_SLACK_SECONDS = 5


class EnvironmentStopped(Exception):
    """stop() was called while the environment was starting (LocalStack's startup timeout)."""


class LocalRuntimeExecutor(RuntimeExecutor):
    def __init__(self, id: str, function_version: FunctionVersion) -> None:  # noqa: A002
        super().__init__(id=id, function_version=function_version)
        self._lock = threading.Lock()
        # LocalStack serialises invokes per environment; the lock makes it a guarantee here.
        self._invoke_lock = threading.Lock()
        self._sandbox: Sandbox | None = None
        self._stopped = False
        self._env_vars: dict[str, object] = {}
        self._logs: LogSink | None = None
        self._code_dir: Path | None = None

    # --- LocalStack interface -----------------------------------------------------------------

    def start(self, env_vars: dict[str, str]) -> None:
        self._env_vars = dict(env_vars)
        self._code_dir = Path(self.function_version.config.code.get_unzipped_code_location())
        self._logs = LogSink(self.function_version.id.function_name, self.id)
        LOG.debug("Starting local execution environment %s for %s", self.id, self._arn)
        # LocalStack's own startup timer (the same setting) stops the environment first and
        # reports its usual startup timeout; ours is only the backstop.
        self._start_sandbox(
            request_id=None, timeout=config.LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT + STARTUP_SLACK_SECONDS
        )

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        request_id = payload["invoke-id"]
        with self._invoke_lock:
            sandbox = self._current()
            if sandbox is None or sandbox.process.has_exited():
                # The last run timed out or crashed: Lambda starts a fresh one (a new init).
                started = time.monotonic()
                try:
                    sandbox = self._restart(request_id)
                except StatusErrorException as e:
                    return self._failed_before_invoke(request_id, e.payload, started)
                except EnvironmentStopped:
                    stopped = lambda_errors.stopped_payload(request_id)
                    return self._failed_before_invoke(request_id, stopped, started)
            return self._invoke(sandbox, request_id, payload)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            sandbox.terminate(self._grace_seconds())
        if self._logs is not None:
            self._logs.close()
        LOG.debug("Stopped local execution environment %s", self.id)

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        # The function runs on this host: LocalStack's gateway is on loopback (AWS_ENDPOINT_URL).
        return "127.0.0.1"

    def get_runtime_endpoint(self) -> str:
        # Only the Docker init calls back into LocalStack; kept for the env var LocalStack sets.
        return f"http://127.0.0.1:{config.GATEWAY_LISTEN[0].port}/_localstack_lambda/{self.id}"

    def get_logs(self) -> str:
        return self._logs.history() if self._logs is not None else ""

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        # No image to pull and no init to download: only the code must be on disk. An error here
        # marks the function Failed with this message as its StateReason.
        runtime = function_version.config.runtime or ""
        if not function_version.config.code or not runtime.startswith("provided"):
            raise NotImplementedError(
                "the local runtime executor (LAMBDA_RUNTIME_EXECUTOR=local) runs only zip or "
                f"hot-reload functions on provided.* runtimes, not {runtime or 'container images'}"
            )
        function_version.config.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        # LocalStack removes the unzipped code itself; nothing of ours outlives an environment.
        pass

    @classmethod
    def validate_environment(cls) -> bool:
        # The Docker executor checks for a Docker socket here; there is nothing to check.
        return True

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def _arn(self) -> str:
        return self.function_version.qualified_arn

    def _current(self) -> Sandbox | None:
        with self._lock:
            return self._sandbox

    def _restart(self, request_id: str) -> Sandbox:
        with self._lock:
            old, self._sandbox = self._sandbox, None
        if old is not None:
            old.kill()
        return self._start_sandbox(request_id, timeout=config.LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT)

    def _start_sandbox(self, request_id: str | None, timeout: float) -> Sandbox:
        code_dir = self._code_dir
        bootstrap = code_dir / "bootstrap"
        if not (bootstrap.is_file() and os.access(bootstrap, os.X_OK)):
            # Lambda's message for a missing or non-executable bootstrap.
            raise StatusErrorException(
                "Environment startup failed",
                payload=lambda_errors.invalid_entrypoint_payload(
                    f"Couldn't find valid bootstrap(s): [{bootstrap}]"
                ),
            )
        try:
            launch = build_launch(
                bootstrap,
                architecture=str(self.function_version.config.architectures[0]),
                machine=host_machine(),
                environ=dict(os.environ),
                bootstrap_is_elf=is_elf(bootstrap),
                ignore_architecture=bool(config.LAMBDA_IGNORE_ARCHITECTURE),
            )
        except LaunchError as e:
            LOG.error("Cannot start %s: %s", self._arn, e)
            raise
        with self._lock:
            if self._stopped:
                raise EnvironmentStopped(f"execution environment {self.id} was stopped")
            sandbox = Sandbox(
                launch,
                code_dir=code_dir,
                lambda_env=self._env_vars,
                function=self._function_info(),
                logs=self._logs,
                name=f"lambda-{self.id[:8]}",
                max_response_bytes=self._max_response_bytes(),
            )
            self._sandbox = sandbox
        LOG.debug("Started bootstrap pid %s for %s (emulated: %s)", sandbox.process.pid, self._arn,
                  launch.emulated)

        outcome = sandbox.wait_init(timeout)
        if outcome is InitOutcome.READY:
            return sandbox
        self._forget(sandbox)
        if outcome is InitOutcome.STOPPED:
            sandbox.kill()
            raise EnvironmentStopped(f"execution environment {self.id} was stopped during init")
        if outcome is InitOutcome.INIT_ERROR:
            sandbox.after_init_error()
            payload = sandbox.server.init_error
        elif outcome is InitOutcome.EXITED:
            sandbox.kill()
            payload = lambda_errors.exit_error_payload(request_id, sandbox.process.returncode)
        else:
            sandbox.kill()
            payload = lambda_errors.init_timeout_payload(request_id or "-", int(timeout))
        raise StatusErrorException("Environment startup failed", payload=payload)

    def _forget(self, sandbox: Sandbox) -> None:
        with self._lock:
            if self._sandbox is sandbox:
                self._sandbox = None

    def _invoke(self, sandbox: Sandbox, request_id: str, payload: dict[str, str]) -> InvocationResult:
        timeout = int(self.function_version.config.timeout)
        started = time.monotonic()
        deadline_ms = int((time.time() + timeout) * 1000)
        invocation = Invocation(
            request_id=request_id,
            payload=(payload.get("payload") or "").encode("utf-8"),
            deadline_ms=deadline_ms,
            function_arn=payload.get("invoked-function-arn") or self._arn,
            trace_id=payload.get("trace-id") or "",
        )
        self._logs.platform_line(
            lambda_errors.start_line(request_id, self.function_version.id.qualifier)
        )
        outcome = sandbox.invoke(invocation, timeout)
        duration_ms = (time.monotonic() - started) * 1000
        peak = sandbox.process.peak_memory_mb()

        if outcome is InvokeOutcome.DONE:
            sandbox.process.pump.sync()
            body, is_error = invocation.body, invocation.is_error
        elif outcome is InvokeOutcome.TIMED_OUT:
            self._forget(sandbox)
            sandbox.kill()
            self._logs.platform_line(lambda_errors.timeout_log_line(request_id, timeout))
            body, is_error = lambda_errors.timeout_payload(request_id, timeout), True
        elif outcome is InvokeOutcome.EXITED:
            self._forget(sandbox)
            sandbox.kill()
            returncode = sandbox.process.returncode
            body, is_error = lambda_errors.exit_error_payload(request_id, returncode), True
            self._logs.platform_line(
                f"RequestId: {request_id} Error: Runtime exited with error: "
                f"{lambda_errors.describe_exit(returncode)}"
            )
            self._logs.platform_line("Runtime.ExitError")
        else:
            body, is_error = lambda_errors.stopped_payload(request_id), True
        for line in lambda_errors.end_lines(
            request_id, duration_ms, int(self.function_version.config.memory_size), peak
        ):
            self._logs.platform_line(line)
        return self._result(request_id, body, is_error)

    def _failed_before_invoke(
        self, request_id: str, body: bytes, started: float
    ) -> InvocationResult:
        """The fresh init an invoke needed failed: the invoke fails with the init's error.

        The result always carries log lines: with none, LocalStack would print the environment's
        whole output (get_logs) into its own log as a warning.
        """
        self._logs.platform_line(
            lambda_errors.start_line(request_id, self.function_version.id.qualifier)
        )
        self._logs.platform_line(f"RequestId: {request_id} Error: init failed: {body.decode(errors='replace')}")
        for line in lambda_errors.end_lines(
            request_id,
            (time.monotonic() - started) * 1000,
            int(self.function_version.config.memory_size),
            None,
        ):
            self._logs.platform_line(line)
        return self._result(request_id, body, is_error=True)

    def _result(self, request_id: str, body: bytes, is_error: bool) -> InvocationResult:
        lines = self._logs.take_pending() if self._logs is not None else []
        logs = "\n".join(lines) + "\n" if lines else ""
        return InvocationResult(request_id=request_id, payload=body, is_error=is_error, logs=logs)

    def _function_info(self) -> FunctionInfo:
        fid = self.function_version.id
        return FunctionInfo(
            name=fid.function_name,
            version=fid.qualifier,
            handler=self.function_version.config.handler or "",
            account_id=fid.account,
        )

    def _max_response_bytes(self) -> int:
        configured = self._env_vars.get("LOCALSTACK_MAX_PAYLOAD_SIZE")
        try:
            return int(configured) if configured else DEFAULT_MAX_RESPONSE_BYTES
        except ValueError:
            return DEFAULT_MAX_RESPONSE_BYTES

    @staticmethod
    def _grace_seconds() -> float:
        try:
            return int(os.environ.get(SHUTDOWN_GRACE_ENV, DEFAULT_SHUTDOWN_GRACE_MS)) / 1000
        except ValueError:
            return DEFAULT_SHUTDOWN_GRACE_MS / 1000

