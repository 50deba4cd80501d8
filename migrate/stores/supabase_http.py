"""The per-object Supabase REST requests (byte reads, `/object/info`) over `http.client`.

Why: httpx costs about 0.6 ms of client CPU per request, `http.client` about
0.16 ms (2,000 GETs of 1-64 KiB from the bundled server, 16 threads, on the
shared 2-core machine; bench/supabase_probe.py measures the whole run). A
REST migration makes one such request per object in `plan` (user metadata)
and one in `run` (the bytes), so this is most of the client's cost per
object. Listing and bucket checks (a few requests per thousand objects) stay
on storage3 and httpx in `stores/supabase.py`. Each request goes through
`http_exchange.exchange` (as on the lean S3 path): the request head in one
send, the response head parsed without `email.parser`.

What stays as it was with httpx: the same headers (the key, `Accept-Encoding:
identity`), the same TLS trust (`httpx.create_ssl_context()`: certifi, or
SSL_CERT_FILE / SSL_CERT_DIR), the same timeouts. Where an HTTP(S) proxy
applies to the host (HTTP_PROXY / HTTPS_PROXY / ALL_PROXY, NO_PROXY) the
store keeps using httpx, which honours them (`proxy_applies`).
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import httpx

from migrate.stores.http_exchange import exchange

READ_CHUNK = 1024 * 1024


def proxy_applies(url: str) -> bool:
    """Whether httpx would send requests for `url` through a proxy from the environment."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(parts.hostname or "", proxies)


@dataclass
class Answer:
    """An error answer, read whole: the attributes of `httpx.Response` the store's error table reads."""

    status_code: int
    reason_phrase: str
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class ConnectionFault(Exception):
    """No answer: the connection could not be made, or broke (`cause` says how)."""

    def __init__(self, cause: BaseException, *, connecting: bool):
        super().__init__(type(cause).__name__)
        self.cause = cause
        self.connecting = connecting


class ErrorAnswer(Exception):
    """The server answered with HTTP >= 400 (body read, connection released)."""

    def __init__(self, response: Any):  # an Answer, or an httpx.Response (the store's response hook)
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class Reply:
    """A successful answer whose body is still to be read: status, headers, chunks, then `close()`."""

    def __init__(self, reader: "RestReader", conn: http.client.HTTPConnection, response: http.client.HTTPResponse):
        self._reader = reader
        self._conn = conn
        self._response = response
        self._done = False
        self.status_code = response.status
        self.headers = response.headers

    def chunks(self, size: int = READ_CHUNK) -> Iterator[bytes]:
        """The body as it arrives; a broken connection raises ConnectionFault."""
        response = self._response
        try:
            while True:
                chunk = response.read(size)
                if not chunk:
                    return
                yield chunk
        except (OSError, http.client.HTTPException) as err:
            raise ConnectionFault(err, connecting=False) from err

    def read(self) -> bytes:
        """The whole body (small answers: `/object/info`)."""
        return b"".join(self.chunks())

    def close(self) -> None:
        """Give the connection back when the body was read to its end, else close it (never reuse a half-read one)."""
        if self._done:
            return
        self._done = True
        response = self._response
        if response.isclosed() and not response.will_close:
            self._reader._release(self._conn)
        else:
            self._conn.close()


def _host_header(conn: http.client.HTTPConnection) -> str:
    """The Host header `http.client` writes for `conn` (Lib/http/client.py `putrequest`): IDNA, [IPv6], the port unless the default."""
    try:
        host = conn.host.encode("ascii").decode("ascii")
    except UnicodeEncodeError:
        host = conn.host.encode("idna").decode("ascii")
    if ":" in host:
        host = f"[{host}]"
    return host if conn.port == conn.default_port else f"{host}:{conn.port}"


class RestReader:
    """GET requests under one base URL over keep-alive connections, each used by one request at a time."""

    def __init__(self, base_url: str, headers: Mapping[str, str], *, timeout: float, connect_timeout: float):
        parts = urllib.parse.urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._headers = _without_accept_encoding(headers)
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._ssl: ssl.SSLContext | None = httpx.create_ssl_context() if self._https else None
        # Idle connections, shared by all threads: a finished request puts its
        # connection back, the next one takes it (LIFO keeps few sockets warm).
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._host_header = _host_header(self._new_connection())  # constructing one opens no socket

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection (True: reused) or a new, unconnected one."""
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._new_connection(), False

    def _new_connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._connect_timeout, context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=self._connect_timeout)

    def _release(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close the idle connections (those in use close when their request ends)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _exchange(self, conn: http.client.HTTPConnection, target: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        if conn.sock is None:
            try:
                conn.connect()  # under the connect timeout, like httpx's Timeout(connect=...)
            except OSError as err:
                conn.close()
                raise ConnectionFault(err, connecting=True) from err
        assert conn.sock is not None
        conn.sock.settimeout(self._timeout)
        # http.client's request + getresponse at a fraction of the CPU (see http_exchange.py).
        return exchange(conn, "GET", target, host=self._host_header, headers=headers)

    def get(self, path: str, *, headers: Mapping[str, str] | None = None) -> Reply:
        """GET `{base}{path}`: a Reply for 1xx-3xx; ErrorAnswer (body read) for >= 400; ConnectionFault when no answer came."""
        # Sent exactly as given: no dot-segment removal here. The store never
        # builds a path with a `.`/`..` segment (stores/supabase.py `encode_key`
        # refuses the key), since nothing on the way promises to keep one.
        target = f"{self._prefix}{path}"
        sent = {**self._headers, **_without_accept_encoding(headers or {})}
        conn, reused = self._take()
        try:
            try:
                response = self._exchange(conn, target, sent)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
                # A kept-alive connection the server had closed meanwhile: not a
                # fault of this request, so one fresh connection does not count as an attempt.
                conn.close()
                conn = self._new_connection()
                response = self._exchange(conn, target, sent)
        except ConnectionFault:
            raise
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            raise ConnectionFault(err, connecting=False) from err
        reply = Reply(self, conn, response)
        if response.status >= 400:
            try:
                body = reply.read()
            finally:
                reply.close()
            raise ErrorAnswer(Answer(response.status, response.reason or "", response.headers, body))  # type: ignore[arg-type]
        return reply


def _without_accept_encoding(headers: Mapping[str, str]) -> dict[str, str]:
    """`headers` but Accept-Encoding: `exchange` always asks for identity (the reader never decompresses), so a caller's would go out twice."""
    return {name: value for name, value in headers.items() if name.lower() != "accept-encoding"}
