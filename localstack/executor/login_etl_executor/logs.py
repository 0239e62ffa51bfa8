"""Where the lines a function writes go: the current invocation, the environment's history, a file.

The executor never logs those lines itself (they may carry payload data); it only hands them to
LocalStack (CloudWatch Logs, get_logs) and, if asked, to a per-environment file that the project
scans for PII.
"""

import collections
import os
import threading
from pathlib import Path

# get_logs() is printed by LocalStack when an environment fails; keep the tail, not everything.
HISTORY_LIMIT_CHARS = 1_000_000

LOG_DIR_ENV = "LAMBDA_LOCAL_EXECUTOR_LOG_DIR"


class LogSink:
    def __init__(self, function_name: str, environment_id: str, log_dir: str | None = None):
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._history: collections.deque[str] = collections.deque()
        self._history_chars = 0
        self._file = None
        log_dir = log_dir if log_dir is not None else os.environ.get(LOG_DIR_ENV)
        if log_dir:
            path = Path(log_dir)
            path.mkdir(parents=True, exist_ok=True)
            # Line-buffered append: a scan run while the environment lives sees every full line.
            self._file = open(  # noqa: SIM115 - closed in close()
                path / f"{function_name}-{environment_id}.log", "a", encoding="utf-8", buffering=1
            )

    def function_line(self, line: str) -> None:
        """A line the function (or its extensions) wrote to stdout or stderr."""
        with self._lock:
            self._pending.append(line)
            self._remember(line)
            if self._file is not None:
                self._file.write(line + "\n")

    def platform_line(self, line: str) -> None:
        """A line Lambda itself writes (START, END, REPORT, timeouts): CloudWatch only."""
        with self._lock:
            self._pending.append(line)
            self._remember(line)

    def take_pending(self) -> list[str]:
        """The lines since the last call: an invocation's share of the log stream."""
        with self._lock:
            lines, self._pending = self._pending, []
            return lines

    def history(self) -> str:
        with self._lock:
            return "\n".join(self._history)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _remember(self, line: str) -> None:
        self._history.append(line)
        self._history_chars += len(line) + 1
        while self._history_chars > HISTORY_LIMIT_CHARS and len(self._history) > 1:
            self._history_chars -= len(self._history.popleft()) + 1
