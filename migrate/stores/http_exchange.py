"""One HTTP/1.1 exchange on an `http.client` connection, at a fraction of `http.client`'s CPU.

Why: on the lean S3 path (`s3_http.py`) a small object is two requests,
and `http.client` spent most of the client's CPU per object on them
(measured on dataset A of `bash bench/run`, on a machine whose two cores
the S3 server shares):

- `parse_headers` hands the response head to `email.parser`, which builds
  a MIME message line by line: ~36 us per response of ten headers.
  `read_headers` below is the same HTTP/1.1 grammar in a few string
  operations (~5 us).
- `request()` writes the request head one `putheader` call at a time
  (validation, encoding and a buffer per header), then sends the body in a
  second send. `exchange` writes the head in one piece, with the same
  header checks, and a small body in the same send.

Everything else is `http.client`'s own: opening the connection (TLS,
proxy tunnels), the status line (`_read_status`), 100-continue, chunked
bodies, Content-Length, keep-alive and close, and the same limits (line
length, number of headers). Only `HTTPResponse.begin` is re-stated,
because it calls the module's `parse_headers` directly (CPython 3.11-3.13,
Lib/http/client.py).
"""

from __future__ import annotations

import http.client
import re
from typing import Iterator, Mapping

# The limits `http.client` applies to a header block (Lib/http/client.py: _MAXLINE, _MAXHEADERS).
MAX_LINE = 65536
MAX_HEADERS = 100
#: Request bodies up to this size go out in the same send as the request head.
JOIN_BODY_UP_TO = 256 * 1024
# The header checks `http.client.putheader` makes (Lib/http/client.py: _is_legal_header_name, _is_illegal_header_value).
_LEGAL_NAME = re.compile(r"[^:\s][^:\r\n]*").fullmatch
_ILLEGAL_VALUE = re.compile(r"\n(?![ \t])|\r(?![ \t\n])").search


class ResponseHeaders:
    """The response headers, in order, with the part of `http.client.HTTPMessage` that `HTTPResponse` and our callers use.

    Names compare case-insensitively; `get` answers the first value of a
    repeated name and `get_all` every value, as `email.message.Message` does.
    """

    __slots__ = ("_fields", "_by_name")

    def __init__(self, fields: list[tuple[str, str]]):
        self._fields = fields
        by_name: dict[str, list[str]] = {}
        for name, value in fields:
            by_name.setdefault(name.lower(), []).append(value)
        self._by_name = by_name

    def get(self, name: str, failobj: str | None = None) -> str | None:
        values = self._by_name.get(name.lower())
        return values[0] if values else failobj

    def get_all(self, name: str, failobj: list[str] | None = None) -> list[str] | None:
        values = self._by_name.get(name.lower())
        return list(values) if values else failobj

    def __getitem__(self, name: str) -> str | None:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter([name for name, _ in self._fields])

    def __len__(self) -> int:
        return len(self._fields)

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def keys(self) -> list[str]:
        return [name for name, _ in self._fields]

    def values(self) -> list[str]:
        return [value for _, value in self._fields]


def read_headers(fp: object) -> ResponseHeaders:
    """Read a header block up to its blank line: `name: value` lines, folded continuation lines joined (RFC 9112 5.2).

    After a line without a colon the rest of the block is read and dropped,
    as `http.client` does (its email parser takes such a line for the body).
    """
    fields: list[tuple[str, str]] = []
    malformed = False
    for line in _header_lines(fp):
        if malformed:
            continue
        text = line.decode("iso-8859-1")
        if text[:1] in (" ", "\t"):  # a folded line continues the field before it (a first line like it is dropped, as email does)
            if fields:
                name, value = fields[-1]
                fields[-1] = (name, f"{value} {text.strip()}" if value else text.strip())
            continue
        name, colon, value = text.partition(":")
        if colon:
            fields.append((name, value.strip(" \t\r\n")))
        else:
            malformed = True
    return ResponseHeaders(fields)


def _header_lines(fp: object) -> list[bytes]:
    """The block's lines before the blank one, under `http.client`'s limits.

    Usually the whole block is already in the reader's buffer: it is taken
    in one read and split (a readline per header line cost as much as the
    parsing). Otherwise, or when a line ends in a bare LF, line by line.
    """
    peek = getattr(fp, "peek", None)
    if peek is not None:
        buffered = peek(MAX_LINE)
        if buffered.startswith(b"\r\n"):  # no headers (a 100 Continue): the next block is the next answer's
            fp.read(2)  # type: ignore[attr-defined]
            return []
        end = buffered.find(b"\r\n\r\n")
        if end >= 0 and b"\n" not in buffered[:end].replace(b"\r\n", b""):
            lines = buffered[:end].split(b"\r\n") if end else []
            if len(lines) + 1 > MAX_HEADERS:  # the blank line counts, as in http.client
                raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
            fp.read(end + 4)  # type: ignore[attr-defined]
            return lines
    readline = fp.readline  # type: ignore[attr-defined]
    lines = []
    while True:
        line = readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise http.client.LineTooLong("header line")
        if len(lines) + 1 > MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            return lines
        lines.append(line)


class LeanResponse(http.client.HTTPResponse):
    """`http.client.HTTPResponse` with `read_headers` in place of the email-based header parser."""

    def begin(self) -> None:
        # Lib/http/client.py HTTPResponse.begin, with `read_headers`.
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()  # type: ignore[attr-defined]
            if status != http.client.CONTINUE:
                break
            read_headers(self.fp)  # the 100 response's headers
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = read_headers(self.fp)  # type: ignore[assignment]
        transfer_encoding = self.headers.get("transfer-encoding")
        self.chunked = bool(transfer_encoding and transfer_encoding.lower() == "chunked")  # type: ignore[attr-defined]
        if self.chunked:  # type: ignore[attr-defined]
            self.chunk_left = None  # type: ignore[attr-defined]
        self.will_close = self._check_close()  # type: ignore[attr-defined]
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:  # type: ignore[attr-defined]
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or 100 <= status < 200 or self._method == "HEAD":  # type: ignore[attr-defined]
            self.length = 0
        # Open, not chunked and no length: the body ends when the connection does.
        if not self.will_close and not self.chunked and self.length is None:  # type: ignore[attr-defined]
            self.will_close = True


def exchange(
    conn: http.client.HTTPConnection,
    method: str,
    target: str,
    *,
    host: str,
    headers: Mapping[str, str],
    body: bytes | bytearray | memoryview | None = None,
) -> LeanResponse:
    """Send one request on `conn` and read the head of its answer: `conn.request` + `conn.getresponse`, leaner.

    `host` is the Host header: the one the request was signed with. `conn`
    is opened (or reopened) by its own `connect`. When the previous answer
    on `conn` was not read to its end, the connection is closed and opened
    afresh first, so that the rest of that body is never read as this
    answer (http.client refuses the request then: ResponseNotReady).
    """
    previous = getattr(conn, "_migrate_last_response", None)
    if previous is not None and not previous.isclosed():
        conn.close()
    conn._migrate_last_response = None  # type: ignore[attr-defined]
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Accept-Encoding: identity"]
    for name, value in headers.items():
        if not _LEGAL_NAME(name):
            raise ValueError(f"Invalid header name {name!r}")
        if _ILLEGAL_VALUE(value):
            # Not the value: it may be a key (apikey, Authorization, a session token) read with a stray newline.
            raise ValueError(f"Invalid header value for {name!r} (CR/LF not followed by whitespace)")
        lines.append(f"{name}: {value}")
    if conn.sock is None:
        conn.connect()
    lines.append("\r\n")
    head = "\r\n".join(lines).encode("latin-1")
    sock = conn.sock
    if body is not None and 0 < len(body) <= JOIN_BODY_UP_TO:
        sock.sendall(head + body)
    else:
        sock.sendall(head)
        if body:
            sock.sendall(body)
    response = LeanResponse(sock, method=method)
    try:
        response.begin()
    except BaseException:
        response.close()
        conn.close()
        raise
    if response.will_close:
        conn.close()  # the answer keeps its own file on the socket until it is read
    else:
        conn._migrate_last_response = response  # type: ignore[attr-defined]
    return response
