"""One run of a bootstrap with its own Runtime API server: init, invocations, shutdown.

A timeout or a crash ends a sandbox; the executor then starts a fresh one (a new init), as Lambda
resets an execution environment.
"""

import enum
import threading
import time
from pathlib import Path

from .launch import Launch, child_environment
from .logs import LogSink
from .process import BootstrapProcess
from .runtime_api import FunctionInfo, Invocation, RuntimeApiServer

# After a runtime reports an init error it normally exits by itself; then it is killed.
INIT_ERROR_EXIT_WAIT_SECONDS = 0.5


class InitOutcome(enum.Enum):
    READY = "ready"
    INIT_ERROR = "init_error"  # the runtime or an extension posted /init/error
    EXITED = "exited"  # the process ended before its first /next
    STOPPED = "stopped"  # stop() was called meanwhile
    TIMED_OUT = "timed_out"


class InvokeOutcome(enum.Enum):
    DONE = "done"
    EXITED = "exited"
    TIMED_OUT = "timed_out"
    STOPPED = "stopped"


class Sandbox:
    def __init__(
        self,
        launch: Launch,
        code_dir: Path,
        lambda_env: dict[str, object],
        function: FunctionInfo,
        logs: LogSink,
        name: str,
        max_response_bytes: int,
    ):
        # Whatever changes (first next, a result, an init error, the exit, a stop) sets this; the
        # waiting thread clears it before it looks at the state, so no change is missed.
        self._attention = threading.Event()
        self._stopping = threading.Event()
        self._terminated = threading.Lock()
        self._done = False
        self.server = RuntimeApiServer(
            function, on_change=self._attention.set, max_response_bytes=max_response_bytes
        ).start()
        try:
            env = child_environment(lambda_env, self.server.address, code_dir)
            self.process = BootstrapProcess(
                launch.argv,
                cwd=code_dir,
                env=env,
                on_line=logs.function_line,
                on_exit=self._attention.set,
                name=name,
            )
        except BaseException:
            self.server.close()
            raise

    def wait_init(self, timeout_seconds: float) -> InitOutcome:
        deadline = time.monotonic() + timeout_seconds
        while True:
            self._attention.clear()
            if self._stopping.is_set():
                return InitOutcome.STOPPED
            if self.server.init_error is not None:
                return InitOutcome.INIT_ERROR
            if self.server.ready:
                return InitOutcome.READY
            if self.process.has_exited():
                # An init error posted just before the exit wins over the bare exit.
                return InitOutcome.INIT_ERROR if self.server.init_error else InitOutcome.EXITED
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return InitOutcome.TIMED_OUT
            self._attention.wait(remaining)

    def invoke(self, invocation: Invocation, timeout_seconds: float) -> InvokeOutcome:
        deadline = time.monotonic() + timeout_seconds
        self.server.submit(invocation)
        while True:
            self._attention.clear()
            if invocation.done.is_set():
                return InvokeOutcome.DONE
            if self._stopping.is_set():
                self.server.forget(invocation)
                return InvokeOutcome.STOPPED
            if self.process.has_exited():
                self.server.forget(invocation)
                # A response posted an instant before the exit still counts.
                return InvokeOutcome.DONE if invocation.done.is_set() else InvokeOutcome.EXITED
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.server.forget(invocation)
                return InvokeOutcome.DONE if invocation.done.is_set() else InvokeOutcome.TIMED_OUT
            self._attention.wait(remaining)

    def request_stop(self) -> None:
        """Wakes a thread waiting in wait_init or invoke; terminate() does the stopping."""
        self._stopping.set()
        self._attention.set()

    def after_init_error(self) -> None:
        self.process.wait_exit(INIT_ERROR_EXIT_WAIT_SECONDS)
        self.kill()

    def kill(self) -> None:
        """Immediately: a timed-out or failed run must not go on working (or writing)."""
        with self._terminated:
            if self._done:
                return
            self._done = True
            self.process.kill()
            self.server.close()

    def terminate(self, grace_seconds: float, reason: str = "spindown") -> None:
        """Lambda's shutdown: SHUTDOWN to extensions and SIGTERM, then SIGKILL after the grace."""
        self.request_stop()
        with self._terminated:
            if self._done:
                return
            self._done = True
            if not self.process.has_exited():
                deadline_ms = int((time.time() + grace_seconds) * 1000)
                self.server.send_shutdown(reason, deadline_ms)
                self.process.terminate(grace_seconds)
            else:
                self.process.kill()
            self.server.close()
