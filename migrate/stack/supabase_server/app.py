"""The HTTP transport: a threaded HTTP/1.1 server with keep-alive and fault injection.

Routes live in routes.py; this module turns sockets into `Request`s and
`Response`s into bytes. Bodies are streamed: uploads through BodyReader,
downloads with `socket.sendfile` from the blob file, so an object of several
GiB never sits in memory.
"""

from __future__ import annotations

import socket
import sys
import time
import traceback
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from migrate.stack.process import LOOPBACK
from migrate.stack.supabase_server import errors
from migrate.stack.supabase_server.auth import public_jwks
from migrate.stack.supabase_server.blobs import BlobStore
from migrate.stack.supabase_server.catalog import Catalog
from migrate.stack.supabase_server.errors import StorageError
from migrate.stack.supabase_server.faults import FaultInjector, FaultRule
from migrate.stack.supabase_server.keys import DEFAULT_S3_REGION
from migrate.stack.supabase_server.routes import StorageApi
from migrate.stack.supabase_server.s3 import s3_error_response
from migrate.stack.supabase_server.wire import BodyReader, MalformedBody, Request, Response, error_response, json_response

PREFIX = "/storage/v1"
JWKS_PATH = "/auth/v1/.well-known/jwks.json"
# Left-over request bytes up to this size are read and dropped so the
# connection stays usable; beyond it the connection is closed instead.
DRAIN_LIMIT = 8 * 1024 * 1024
IDLE_TIMEOUT = 120.0
SMALL_BODY = 64 * 1024
DEFAULT_FILE_SIZE_LIMIT = 500 * 1024**3


class ConnectionCut(Exception):
    """A truncate fault fired: the response was cut short on purpose."""


class StorageHTTPServer(ThreadingHTTPServer):
    """127.0.0.1 only, one daemon thread per connection, the StorageApi behind it."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], api: StorageApi, *, access_log: bool = False):
        self.api = api
        self.access_log = access_log
        super().__init__(address, StorageRequestHandler)

    @property
    def url(self) -> str:
        """Where the server listens, e.g. `http://127.0.0.1:54321`."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class StorageRequestHandler(BaseHTTPRequestHandler):
    """One connection: HTTP/1.1 requests in a keep-alive loop."""

    protocol_version = "HTTP/1.1"
    server_version = "migrate-supabase-storage"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    server: StorageHTTPServer

    def setup(self) -> None:
        """Disable Nagle's algorithm on the accepted socket."""
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's
        # algorithm and delayed ACKs add ~40 ms to small responses.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        """Every method goes through the same dispatch."""
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: object) -> None:
        """Access log lines, only with `--access-log` (they cost time under load)."""
        if self.server.access_log:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    # -- one request ----------------------------------------------------------------

    def _body_reader(self) -> BodyReader:
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        raw_length = self.headers.get("Content-Length")
        length = None
        if raw_length is not None and not chunked:
            try:
                length = int(raw_length)
            except ValueError as err:
                raise MalformedBody(f"bad Content-Length {raw_length!r}") from err
            if length < 0:
                raise MalformedBody(f"bad Content-Length {raw_length!r}")
        return BodyReader(self.rfile, length=length, chunked=chunked)

    def _handle(self) -> None:
        self._truncate_after: int | None = None
        raw_path, _, query = self.path.partition("?")
        try:
            body = self._body_reader()
        except MalformedBody as err:
            self.close_connection = True
            self._send(error_response(errors.validation_error(str(err))))
            return
        try:
            response = self._respond(raw_path, query, body)
        except MalformedBody as err:
            self.close_connection = True
            response = error_response(errors.validation_error(str(err)))
        except StorageError as err:
            response = error_response(err)
        except Exception:  # noqa: BLE001 - one request's bug must not kill the server
            traceback.print_exc(file=sys.stderr)
            response = error_response(errors.internal_error())
        if response is None:  # a drop fault: no answer at all
            self.close_connection = True
            return
        self._finish_request_body(body)
        try:
            self._send(response)
        except ConnectionCut:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _respond(self, raw_path: str, query: str, body: BodyReader) -> Response | None:
        # Auth's JWKS is the one route outside Storage's API this server answers (auth.py).
        jwks = raw_path == JWKS_PATH and self.command in ("GET", "HEAD")
        if not jwks and raw_path != PREFIX and not raw_path.startswith(PREFIX + "/"):
            return error_response(errors.route_not_found(self.command, raw_path))
        relative = raw_path if jwks else raw_path[len(PREFIX) :] or "/"
        # The switchboard and the health check are never faulted: readiness
        # probes must not eat a rule meant for the code under test.
        if relative not in ("/status", "/_faults"):
            rule = self.server.api.faults.take(self.command, raw_path, query)
            if rule is not None:
                outcome = self._apply_fault(rule, body, s3=relative == "/s3" or relative.startswith("/s3/"))
                if outcome is not None or rule.action == "drop":
                    return outcome
        if jwks:
            return json_response(public_jwks(self.server.api.jwt_secret))
        request = Request(
            method=self.command,
            path=urllib.parse.unquote(relative),
            query=urllib.parse.parse_qs(query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            target=self.path[len(PREFIX) :],
        )
        if relative == "/s3" or relative.startswith("/s3/"):
            return self.server.api.s3.handle(request)
        return self.server.api.handle(request)

    def _apply_fault(self, rule: FaultRule, body: BodyReader, *, s3: bool = False) -> Response | None:
        """A response that replaces the real one, or None to carry on (or to drop)."""
        if rule.action == "drop":
            return None
        if rule.action == "latency":
            time.sleep(rule.delay_ms / 1000)
            return None
        if rule.action == "truncate":
            self._truncate_after = rule.after_bytes
            return None
        failure = errors.injected(rule.status)
        if rule.retry_after is not None:
            failure.headers["Retry-After"] = str(rule.retry_after)
        if s3:  # the S3 endpoint answers errors in S3's XML (s3 error-handler.ts)
            return s3_error_response(failure, self.path.partition("?")[0][len(PREFIX) + len("/s3") :])
        return error_response(failure)

    def _finish_request_body(self, body: BodyReader) -> None:
        """Consume what the handler left unread, or give up the connection."""
        if body.exhausted:
            return
        try:
            if not body.drain(DRAIN_LIMIT):
                self.close_connection = True
        except (MalformedBody, OSError):
            self.close_connection = True

    # -- writing ----------------------------------------------------------------------

    def _head(self, response: Response, length: int) -> bytes:
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = ""
        headers = dict(response.headers)
        headers.setdefault("Content-Length", str(length))
        if self.close_connection:
            headers["Connection"] = "close"
        lines = [
            f"HTTP/1.1 {response.status} {phrase}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")

    def _send(self, response: Response) -> None:
        length = response.file.length if response.file else len(response.body)
        if response.status in (204, 304):
            length = 0
        head = self._head(response, length)
        if self.server.access_log:
            self.log_request(response.status, length)
        if self.command == "HEAD" or response.omit_body or length == 0:
            self.wfile.write(head)
            return
        limit = self._truncate_after
        if response.file is None:
            body = response.body if limit is None else response.body[:limit]
            self.wfile.write(head + body)
            if limit is not None and limit < length:
                raise ConnectionCut()
            return
        self._send_file(head, response.file.path, response.file.offset, length, limit)

    def _send_file(self, head: bytes, path: Path, offset: int, length: int, limit: int | None) -> None:
        count = length if limit is None else min(length, limit)
        with open(path, "rb") as source:
            if count <= SMALL_BODY:
                # One write for headers and a small body: one TCP segment, one syscall.
                source.seek(offset)
                self.wfile.write(head + source.read(count))
            else:
                self.wfile.write(head)
                self.connection.sendfile(source, offset, count)  # zero-copy, any size
        if count < length:
            raise ConnectionCut()


def build_server(
    *,
    database_url: str,
    data_dir: Path,
    jwt_secret: str,
    port: int,
    host: str = LOOPBACK,
    fault_rules: list[FaultRule] | None = None,
    file_size_limit: int = DEFAULT_FILE_SIZE_LIMIT,
    pool_size: int = 16,
    access_log: bool = False,
    s3_region: str = DEFAULT_S3_REGION,
) -> StorageHTTPServer:
    """A ready-to-serve server (call `serve_forever()`); the schema must already exist."""
    api = StorageApi(
        catalog=Catalog(database_url, pool_size=pool_size),
        blobs=BlobStore(data_dir),
        faults=FaultInjector(fault_rules),
        jwt_secret=jwt_secret,
        file_size_limit=file_size_limit,
        s3_region=s3_region,
    )
    return StorageHTTPServer((host, port), api, access_log=access_log)

