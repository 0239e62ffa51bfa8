"""The bootstrap as a child process: its own process group, its output, its end.

The process group is what makes "nothing left running" hold: a bootstrap may start helpers
(extensions, shells, curl), and signals go to the whole group.
"""

import errno
import fcntl
import os
import queue
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

# A line longer than this without a newline is cut, so one runaway write cannot grow memory.
MAX_LINE_BYTES = 256 * 1024
# One sync drains at most this much per stream: a process flooding its output cannot stall an invoke.
MAX_DRAIN_BYTES = 4 * 1024 * 1024


class OutputPump(threading.Thread):
    """Reads stdout and stderr line by line and hands each line to `on_line`.

    `sync()` returns once every byte written before the call has been read: a runtime writes its
    log lines before it posts its response, so after a sync an invocation's lines are complete.
    """

    def __init__(self, fds: list[int], on_line: Callable[[str], None], name: str):
        super().__init__(name=name, daemon=True)
        self._fds = fds
        self._on_line = on_line
        self._partial = {fd: b"" for fd in fds}
        self._wake_r, self._wake_w = os.pipe()
        for fd in [*fds, self._wake_r]:
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self._lock = threading.Lock()
        self._waiters: list[threading.Event] = []
        self._finished = threading.Event()

    def sync(self, timeout: float = 2.0) -> None:
        with self._lock:
            if self._finished.is_set():
                return
            done = threading.Event()
            self._waiters.append(done)
        try:
            os.write(self._wake_w, b"s")
        except OSError:
            return
        done.wait(timeout)

    def wait_finished(self, timeout: float) -> bool:
        return self._finished.wait(timeout)

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        open_fds = set(self._fds)
        for fd in self._fds:
            selector.register(fd, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            while open_fds:
                for key, _ in selector.select():
                    if key.fd == self._wake_r:
                        self._read_wakeups()
                    elif not self._drain(key.fd, limit=64 * 1024):
                        selector.unregister(key.fd)
                        open_fds.discard(key.fd)
                with self._lock:
                    waiters, self._waiters = self._waiters, []
                if waiters:
                    for fd in list(open_fds):
                        if not self._drain(fd, limit=MAX_DRAIN_BYTES):
                            selector.unregister(fd)
                            open_fds.discard(fd)
                    for waiter in waiters:
                        waiter.set()
        finally:
            selector.close()
            with self._lock:
                self._finished.set()
                waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.set()
            for fd in [*self._fds, self._wake_r, self._wake_w]:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _read_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _drain(self, fd: int, limit: int) -> bool:
        """Reads what is available (up to limit); False once the stream has ended."""
        read = 0
        while read < limit:
            try:
                chunk = os.read(fd, 64 * 1024)
            except BlockingIOError:
                return True
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                chunk = b""
            if not chunk:
                self._flush_partial(fd)
                return False
            read += len(chunk)
            self._split(fd, chunk)
        return True

    def _split(self, fd: int, chunk: bytes) -> None:
        data = self._partial[fd] + chunk
        *lines, rest = data.split(b"\n")
        for line in lines:
            self._emit(line)
        while len(rest) > MAX_LINE_BYTES:
            self._emit(rest[:MAX_LINE_BYTES])
            rest = rest[MAX_LINE_BYTES:]
        self._partial[fd] = rest

    def _flush_partial(self, fd: int) -> None:
        if self._partial[fd]:
            self._emit(self._partial[fd])
            self._partial[fd] = b""

    def _emit(self, raw: bytes) -> None:
        self._on_line(raw.rstrip(b"\r").decode("utf-8", errors="replace"))


def live_group_members(pgid: int) -> list[int]:
    """Pids in process group `pgid` that are not zombies (from /proc; Linux only)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(entry.name))
    return members


class _Spawner:
    """Forks every bootstrap from one thread that lives as long as LocalStack.

    Each bootstrap gets a parent-death signal (SIGKILL) through setpriv(1), so a LocalStack that is
    SIGKILLed (hypercorn can ignore SIGTERM) does not leave functions running. The kernel sends
    that signal when the *thread* that forked the child ends, hence one thread that never ends,
    not LocalStack's short-lived invocation threads.
    """

    def __init__(self):
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.setpriv = shutil.which("setpriv")

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="lambda-local-spawner", daemon=True
                )
                self._thread.start()
        if self.setpriv:
            argv = [self.setpriv, "--pdeathsig", "KILL", "--", *argv]
        future: Future = Future()
        self._requests.put((argv, kwargs, future))
        return future.result()

    def _serve(self) -> None:
        while True:
            argv, kwargs, future = self._requests.get()
            try:
                future.set_result(subprocess.Popen(argv, **kwargs))
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                future.set_exception(e)


SPAWNER = _Spawner()


class BootstrapProcess:
    """One run of a bootstrap, from spawn to the end of its whole process group."""

    def __init__(
        self,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        on_line: Callable[[str], None],
        on_exit: Callable[[], None],
        name: str,
    ):
        self._popen = SPAWNER.popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # A new session makes the child the leader of its own process group (pgid = pid), so
            # one killpg reaches it and everything it started, and LocalStack's signals do not.
            start_new_session=True,
            close_fds=True,
        )
        self.pid = self._popen.pid
        out_fd = os.dup(self._popen.stdout.fileno())
        err_fd = os.dup(self._popen.stderr.fileno())
        self._popen.stdout.close()
        self._popen.stderr.close()
        self.pump = OutputPump([out_fd, err_fd], on_line, name=f"{name}-output")
        self.pump.start()
        self._exited = threading.Event()
        self._on_exit = on_exit
        threading.Thread(target=self._reap, name=f"{name}-reaper", daemon=True).start()

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode if self._exited.is_set() else None

    def has_exited(self) -> bool:
        return self._exited.is_set()

    def wait_exit(self, timeout: float) -> bool:
        return self._exited.wait(timeout)

    def peak_memory_mb(self) -> int | None:
        """VmHWM of the bootstrap (of qemu when emulated): Lambda's "Max Memory Used", roughly."""
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return max(1, int(line.split()[1]) // 1024)
        except (OSError, ValueError, IndexError):
            pass
        return None

    def signal_group(self, sig: int) -> bool:
        """Signals every process of the group; False when none is left."""
        try:
            os.killpg(self.pid, sig)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            # The pgid was reused by a process that is not ours: ours are gone.
            return False

    def group_alive(self) -> bool:
        """Whether a process of the group still runs. Zombies do not count: an init that reaps
        slowly (as in some containers) would otherwise hold every stop for its full grace."""
        if not self.signal_group(0):
            return False
        return bool(live_group_members(self.pid))

    def terminate(self, grace_seconds: float) -> None:
        """SIGTERM to the group, up to `grace_seconds` for it to end, then SIGKILL."""
        if self.signal_group(signal.SIGTERM):
            self._wait_group_gone(grace_seconds)
        self.kill()

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)
        self._wait_group_gone(5.0)
        self._exited.wait(5.0)
        # The pipes end once every writer is gone; what is left in them is the function's last words.
        self.pump.wait_finished(1.0)

    def _wait_group_gone(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.02)

    def _reap(self) -> None:
        self._popen.wait()
        self._exited.set()
        self._on_exit()
