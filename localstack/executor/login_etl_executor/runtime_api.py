"""The Lambda Runtime API and Extensions API for one run of a bootstrap, on a loopback port.

One server per process run (a restart gets a new one): a long-poll left hanging by a killed process
can then never take an invocation meant for its successor.

Implements what a custom runtime and a graceful-shutdown extension use:
  GET  /2018-06-01/runtime/invocation/next           (long-poll; the first call ends the init)
  POST /2018-06-01/runtime/invocation/{id}/response
  POST /2018-06-01/runtime/invocation/{id}/error
  POST /2018-06-01/runtime/init/error
  POST /2020-01-01/extension/register
  GET  /2020-01-01/extension/event/next              (INVOKE and SHUTDOWN events)
  POST /2020-01-01/extension/init/error, /exit/error
"""

import collections
import json
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import lambda_errors

RUNTIME = "/2018-06-01/runtime"
EXTENSION = "/2020-01-01/extension"
# AWS's limit for a synchronous response; LocalStack may pass its own (LOCALSTACK_MAX_PAYLOAD_SIZE).
DEFAULT_MAX_RESPONSE_BYTES = 6_291_556
KNOWN_EVENTS = {"INVOKE", "SHUTDOWN"}


@dataclass
class Invocation:
    request_id: str
    payload: bytes
    deadline_ms: int
    function_arn: str
    trace_id: str
    done: threading.Event = field(default_factory=threading.Event)
    is_error: bool = False
    body: bytes = b""


@dataclass
class Extension:
    name: str
    events: set[str]
    queue: collections.deque = field(default_factory=collections.deque)


@dataclass(frozen=True)
class FunctionInfo:
    name: str
    version: str
    handler: str
    account_id: str


class RuntimeApiServer:
    def __init__(
        self,
        function: FunctionInfo,
        on_change: Callable[[], None],
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ):
        self.function = function
        self.max_response_bytes = max_response_bytes
        # Called after every state change the executor waits for (ready, init error, a result).
        self._on_change = on_change
        self._cond = threading.Condition()
        self._queue: collections.deque[Invocation] = collections.deque()
        self._in_flight: dict[str, Invocation] = {}
        self._extensions: dict[str, Extension] = {}
        self._closed = False
        self._connections: set[socket.socket] = set()
        self.ready = False
        self.init_error: bytes | None = None
        self._httpd = _Server(("127.0.0.1", 0), _Handler, self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"runtime-api-{self.port}",
            daemon=True,
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "RuntimeApiServer":
        self._thread.start()
        return self

    # --- used by the executor -------------------------------------------------------------

    def submit(self, invocation: Invocation) -> None:
        with self._cond:
            self._queue.append(invocation)
            for ext in self._extensions.values():
                if "INVOKE" in ext.events:
                    ext.queue.append(
                        {
                            "eventType": "INVOKE",
                            "deadlineMs": invocation.deadline_ms,
                            "requestId": invocation.request_id,
                            "invokedFunctionArn": invocation.function_arn,
                            "tracing": {"type": "X-Amzn-Trace-Id", "value": invocation.trace_id},
                        }
                    )
            self._cond.notify_all()

    def forget(self, invocation: Invocation) -> None:
        """The executor gave up on it (timeout, crash): a late answer is then a 400, as on AWS."""
        with self._cond:
            self._in_flight.pop(invocation.request_id, None)
            try:
                self._queue.remove(invocation)
            except ValueError:
                pass

    def has_extensions(self) -> bool:
        with self._cond:
            return bool(self._extensions)

    def send_shutdown(self, reason: str, deadline_ms: int) -> int:
        """Queues SHUTDOWN for every extension registered for it; returns how many."""
        event = {"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline_ms}
        with self._cond:
            targets = [e for e in self._extensions.values() if "SHUTDOWN" in e.events]
            for ext in targets:
                ext.queue.append(dict(event))
            self._cond.notify_all()
            return len(targets)

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            connections = list(self._connections)
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
        # Idle keep-alive connections would otherwise hold their handler threads until the peer
        # goes away; the peer is normally dead already, this makes it certain.
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # --- used by the request handler --------------------------------------------------------

    def _changed(self) -> None:
        try:
            self._on_change()
        except Exception:  # noqa: BLE001 - a callback must not break the HTTP server
            pass

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._cond:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _next_invocation(self) -> Invocation | None:
        with self._cond:
            first = not self.ready
            self.ready = True
        if first:
            self._changed()
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            invocation = self._queue.popleft()
            self._in_flight[invocation.request_id] = invocation
            return invocation

    def _requeue(self, invocation: Invocation) -> None:
        """Handing it out failed (the connection broke): the runtime's next poll gets it."""
        with self._cond:
            if self._in_flight.pop(invocation.request_id, None) is not None:
                self._queue.appendleft(invocation)
                self._cond.notify_all()

    def _finish(self, request_id: str, is_error: bool, body: bytes) -> bool:
        with self._cond:
            invocation = self._in_flight.pop(request_id, None)
            if invocation is None:
                return False
            invocation.is_error = is_error
            invocation.body = body
            invocation.done.set()
        self._changed()
        return True

    def _init_failed(self, body: bytes) -> None:
        with self._cond:
            if self.init_error is None:
                self.init_error = body
        self._changed()

    def _register(self, name: str, events: set[str]) -> str:
        ext_id = str(uuid.uuid4())
        with self._cond:
            self._extensions[ext_id] = Extension(name=name, events=events)
        return ext_id

    def _next_event(self, ext_id: str) -> dict | None | bool:
        """The extension's next event; None once closed; False for an unknown identifier."""
        with self._cond:
            ext = self._extensions.get(ext_id)
            if ext is None:
                return False
            while not ext.queue and not self._closed:
                self._cond.wait()
            if ext.queue:
                return ext.queue.popleft()
            return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # Many runtimes and extensions hold connections open at once (long-polls).
    request_queue_size = 64

    def __init__(self, address, handler, api: RuntimeApiServer):
        self.api = api
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive: runtime clients (hyper in the Rust runtime) reuse connections.
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.api._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.api._track(self.connection, add=False)

    def log_message(self, format, *args) -> None:  # noqa: A002 - signature from the base class
        # Quiet: request lines carry request ids only, but LocalStack's log is not the place.
        pass

    @property
    def api(self) -> RuntimeApiServer:
        return self.server.api

    # --- routing ----------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - name from the base class
        path = self.path.split("?", 1)[0]
        if path == f"{RUNTIME}/invocation/next":
            self._runtime_next()
        elif path == f"{EXTENSION}/event/next":
            self._extension_next()
        else:
            self._not_found()

    def do_POST(self) -> None:  # noqa: N802 - name from the base class
        path = self.path.split("?", 1)[0]
        body = self._read_body()
        if body is None:
            return
        if path.startswith(f"{RUNTIME}/invocation/"):
            parts = path[len(f"{RUNTIME}/invocation/") :].split("/")
            if len(parts) == 2 and parts[1] == "response":
                return self._runtime_response(parts[0], body)
            if len(parts) == 2 and parts[1] == "error":
                return self._runtime_error(parts[0], body)
        elif path == f"{RUNTIME}/init/error":
            return self._init_error(body, "Runtime.Unknown")
        elif path == f"{EXTENSION}/register":
            return self._extension_register(body)
        elif path == f"{EXTENSION}/init/error":
            return self._init_error(body, "Extension.Unknown")
        elif path == f"{EXTENSION}/exit/error":
            return self._json(HTTPStatus.ACCEPTED, {"status": "OK"})
        self._not_found()

    # --- Runtime API ------------------------------------------------------------------------

    def _runtime_next(self) -> None:
        invocation = self.api._next_invocation()
        if invocation is None:
            # The environment is going away: no answer, as on AWS (the process is frozen or gone).
            self.close_connection = True
            return
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
            "Lambda-Runtime-Trace-Id": invocation.trace_id,
        }
        try:
            self._send(HTTPStatus.OK, invocation.payload, headers)
        except OSError:
            self.api._requeue(invocation)
            self.close_connection = True

    def _runtime_response(self, request_id: str, body: bytes) -> None:
        if len(body) > self.api.max_response_bytes:
            limit = self.api.max_response_bytes
            if self.api._finish(request_id, True, lambda_errors.response_too_large_payload(limit)):
                return self._json(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    {
                        "errorMessage": f"Exceeded maximum allowed payload size ({limit} bytes).",
                        "errorType": "RequestEntityTooLarge",
                    },
                )
            return self._invalid_request_id()
        if self.api._finish(request_id, False, body):
            return self._json(HTTPStatus.ACCEPTED, {"status": "OK"})
        self._invalid_request_id()

    def _runtime_error(self, request_id: str, body: bytes) -> None:
        error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
        payload = lambda_errors.normalise_error_body(body, error_type)
        if self.api._finish(request_id, True, payload):
            return self._json(HTTPStatus.ACCEPTED, {"status": "OK"})
        self._invalid_request_id()

    def _init_error(self, body: bytes, default_type: str) -> None:
        error_type = self.headers.get("Lambda-Runtime-Function-Error-Type") or default_type
        self.api._init_failed(lambda_errors.normalise_error_body(body, error_type))
        self._json(HTTPStatus.ACCEPTED, {"status": "OK"})

    # --- Extensions API ---------------------------------------------------------------------

    def _extension_register(self, body: bytes) -> None:
        name = self.headers.get("Lambda-Extension-Name")
        if not name:
            return self._json(
                HTTPStatus.FORBIDDEN,
                {"errorMessage": "Empty extension name", "errorType": "Extension.InvalidExtensionName"},
            )
        try:
            events = set(json.loads(body or b"{}").get("events") or [])
        except (ValueError, AttributeError):
            return self._json(
                HTTPStatus.BAD_REQUEST,
                {"errorMessage": "Invalid request body", "errorType": "InvalidRequestFormat"},
            )
        unknown = events - KNOWN_EVENTS
        if unknown:
            return self._json(
                HTTPStatus.BAD_REQUEST,
                {
                    "errorMessage": f"Unknown event types: {sorted(unknown)}",
                    "errorType": "Extension.InvalidEventType",
                },
            )
        ext_id = self.api._register(name, events)
        info = self.api.function
        response = {
            "functionName": info.name,
            "functionVersion": info.version,
            "handler": info.handler,
        }
        features = self.headers.get("Lambda-Extension-Accept-Feature", "")
        if "accountId" in [f.strip() for f in features.split(",")]:
            response["accountId"] = info.account_id
        self._json(HTTPStatus.OK, response, {"Lambda-Extension-Identifier": ext_id})

    def _extension_next(self) -> None:
        ext_id = self.headers.get("Lambda-Extension-Identifier", "")
        event = self.api._next_event(ext_id)
        if event is False:
            return self._json(
                HTTPStatus.FORBIDDEN,
                {
                    "errorMessage": "Unknown extension identifier",
                    "errorType": "Extension.UnknownExtensionIdentifier",
                },
            )
        if event is None:
            self.close_connection = True
            return
        try:
            self._json(
                HTTPStatus.OK, event, {"Lambda-Extension-Event-Identifier": str(uuid.uuid4())}
            )
        except OSError:
            self.close_connection = True

    # --- plumbing ---------------------------------------------------------------------------

    def _read_body(self) -> bytes | None:
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""
        except (OSError, ValueError):
            self.close_connection = True
            return None

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Trailers end with an empty line.
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _invalid_request_id(self) -> None:
        self._json(
            HTTPStatus.BAD_REQUEST,
            {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"},
        )

    def _not_found(self) -> None:
        self._json(
            HTTPStatus.NOT_FOUND,
            {"errorMessage": f"Not implemented here: {self.command} {self.path}",
             "errorType": "UnknownPath"},
        )

    def _json(self, status: HTTPStatus, body: dict, headers: dict | None = None) -> None:
        self._send(status, json.dumps(body).encode(), headers)

    def _send(self, status: HTTPStatus, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
