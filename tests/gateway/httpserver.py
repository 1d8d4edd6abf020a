"""A real HTTP server on 127.0.0.1 for adapter tests, answering from a script per path.

``ScriptedServer.script(path, *replies)`` queues replies for ``path``; each GET takes the next
one and the last repeats forever. A ``Reply`` can be delayed (to make a client time out); the
delay ends early when the server stops, so no handler thread outlives its test. Every request
is recorded (path and headers) in ``requests``. Only the loopback address is ever bound.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def json_reply(document: object, status: int = 200, **headers: str) -> Reply:
    body = json.dumps(document).encode()
    return Reply(status, body, {"Content-Type": "application/json", **headers})


def proposals(*order_ids: str) -> Reply:
    """200 with ``{"proposals": [...]}``, one proposal per order id."""
    return json_reply({"proposals": [{"order_id": o, "driver": "d1"} for o in order_ids]})


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]


class ScriptedServer:
    """Start with ``with ScriptedServer() as server:``; ``server.url`` is the base URL."""

    def __init__(self) -> None:
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.requests: list[Seen] = []
        self.errors: list[BaseException] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.handle_error = self._handle_error  # type: ignore[method-assign]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts[path] = list(replies)

    def hits(self, path: str) -> int:
        with self._lock:
            return sum(1 for seen in self.requests if seen.path == path)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- the server side -------------------------------------------------------------------

    def _next_reply(self, path: str, headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(Seen(path, headers))
            queue = self._scripts.get(path)
            if not queue:
                return Reply(404, b'{"error": "not scripted"}')
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def _handle_error(self, request: object, client_address: object) -> None:
        # A client that timed out and hung up is expected; keep errors for inspection
        # instead of printing tracebacks from server threads.
        error = sys.exc_info()[1]
        if error is not None:
            self.errors.append(error)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                reply = server._next_reply(self.path, dict(self.headers.items()))
                if reply.delay and server._stopping.wait(reply.delay):
                    return
                try:
                    self.send_response_only(reply.status)
                    if "Date" not in reply.headers:
                        self.send_header("Date", self.date_time_string())
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timed out) before the reply was ready

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
