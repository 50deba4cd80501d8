"""A fault-injecting HTTP proxy for S3-compatible servers.

SeaweedFS has no switch to make it fail on purpose, so tests (and anyone
rehearsing a migration) put this proxy in front of it. It forwards requests
unchanged, Host header included, so SigV4 signatures still verify, and on a
rule's say-so answers instead with S3's `SlowDown` 503, a 500, a dropped
connection, or a response cut short after N bytes.

Rules are consumed in order: `FaultRule(method="PUT", path=r"/dst/.*", action="slowdown", count=2)`.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

from migrate.stack.process import LOOPBACK

Action = Literal["slowdown", "error500", "drop", "truncate"]

SLOWDOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
INTERNAL_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)


@dataclass
class FaultRule:
    action: Action
    method: str | None = None
    path: str = ".*"
    query: str | None = None
    count: int = 1
    after_bytes: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.count <= 0:
            return False
        if self.method and self.method.upper() != method:
            return False
        target_path, _, query = path.partition("?")
        if not re.search(self.path, target_path):
            return False
        return self.query is None or re.search(self.query, query) is not None


class FaultProxy:
    """Forward to `upstream` (host, port); inject faults from `rules`. Use as a context manager."""

    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.rules: list[FaultRule] = []
        self.injected: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._connections.add(self.connection)

            def finish(self) -> None:
                with proxy._lock:
                    proxy._connections.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def _handle(self) -> None:
                proxy._forward(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._handler = Handler
        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.endpoint_url = f"http://{LOOPBACK}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.down = False

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.down:
            self._server.shutdown()
            self._server.server_close()

    def go_down(self) -> None:
        """The endpoint dies: new connections are refused and open ones are reset (a killed server, as clients see it)."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.down = True

    def come_back(self) -> None:
        """The endpoint is back on the same port."""
        self._server = ThreadingHTTPServer((LOOPBACK, self.port), self._handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.down = False

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self.rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def _take(self, method: str, path: str) -> FaultRule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.count -= 1
                    self.injected.append((rule.action, method, path))
                    return rule
        return None

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        rule = self._take(handler.command, handler.path)
        if rule is not None and rule.action in ("slowdown", "error500"):
            status, payload = (503, SLOWDOWN_BODY) if rule.action == "slowdown" else (500, INTERNAL_BODY)
            handler.send_response(status)
            handler.send_header("Content-Type", "application/xml")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            if handler.command != "HEAD":  # a HEAD answer has no body, or the connection desyncs
                handler.wfile.write(payload)
            return
        if rule is not None and rule.action == "drop":
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        upstream = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            headers = {key: value for key, value in handler.headers.items() if key.lower() != "connection"}
            upstream.request(handler.command, handler.path, body=body, headers=headers)
            response = upstream.getresponse()
            handler.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in ("connection", "transfer-encoding"):
                    handler.send_header(key, value)
            payload = response.read()
            if "content-length" not in {k.lower() for k, _ in response.getheaders()}:
                handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            if handler.command == "HEAD":
                return
            if rule is not None and rule.action == "truncate":
                handler.wfile.write(payload[: rule.after_bytes])
                handler.wfile.flush()
                handler.close_connection = True
                handler.connection.shutdown(socket.SHUT_RDWR)
                return
            handler.wfile.write(payload)
        finally:
            upstream.close()
