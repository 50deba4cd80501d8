"""HTTP details the routes need: requests and responses, streamed bodies, multipart, ranges, dates.

Everything here streams: an upload of several GiB passes through fixed-size
buffers, never through memory whole.
"""

from __future__ import annotations

import email.utils
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import Message
from pathlib import Path
from typing import Any, Iterator, Protocol

from migrate.stack.supabase_server import errors
from migrate.stack.supabase_server.errors import StorageError

CHUNK = 256 * 1024
MAX_PART_HEADER = 16 * 1024
MAX_JSON_BODY = 10 * 1024 * 1024


class ByteStream(Protocol):
    """What a request body is read from (the handler's rfile)."""

    def read(self, size: int, /) -> bytes:
        """Up to `size` bytes."""

    def readline(self, size: int, /) -> bytes:
        """One line, at most `size` bytes."""


class MalformedBody(Exception):
    """The request body does not follow its declared framing or encoding."""


class BodyReader:
    """The request body, from Content-Length or chunked transfer encoding."""

    def __init__(self, stream: ByteStream, *, length: int | None, chunked: bool):
        self._stream = stream
        self._chunked = chunked
        self._remaining = length if length is not None else (0 if not chunked else -1)
        self._chunk_left = 0
        self._done = not chunked and self._remaining == 0
        self.length = length

    @property
    def exhausted(self) -> bool:
        """Whether the whole body has been read."""
        return self._done

    def read(self, size: int = CHUNK) -> bytes:
        """Up to `size` bytes; b"" once the body is over."""
        if self._done:
            return b""
        if not self._chunked:
            data = self._stream.read(min(size, self._remaining))
            if not data:
                raise MalformedBody("the request body ended before Content-Length bytes")
            self._remaining -= len(data)
            self._done = self._remaining == 0
            return data
        if self._chunk_left == 0:
            self._chunk_left = self._next_chunk_size()
            if self._chunk_left == 0:
                self._read_trailers()
                self._done = True
                return b""
        data = self._stream.read(min(size, self._chunk_left))
        if not data:
            raise MalformedBody("the request body ended inside a chunk")
        self._chunk_left -= len(data)
        if self._chunk_left == 0 and self._stream.read(2) != b"\r\n":
            raise MalformedBody("a chunk is not followed by CRLF")
        return data

    def _next_chunk_size(self) -> int:
        line = self._stream.readline(1024)
        try:
            return int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as err:
            raise MalformedBody(f"bad chunk size line {line[:40]!r}") from err

    def _read_trailers(self) -> None:
        while self._stream.readline(8192) not in (b"\r\n", b"\n", b""):
            pass

    def read_all(self, limit: int) -> bytes:
        """The whole body, refusing more than `limit` bytes."""
        parts: list[bytes] = []
        total = 0
        while chunk := self.read():
            total += len(chunk)
            if total > limit:
                raise MalformedBody(f"the request body is larger than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def drain(self, limit: int) -> bool:
        """Read and drop the rest of the body, up to `limit` bytes; True if it is all gone."""
        dropped = 0
        while not self._done:
            dropped += len(self.read())
            if dropped > limit:
                return False
        return True

    def chunks(self) -> Iterator[bytes]:
        """The rest, chunk by chunk."""
        while chunk := self.read():
            yield chunk


@dataclass
class FormPart:
    """One part of a multipart/form-data body, its payload still unread."""

    headers: dict[str, str]
    name: str
    filename: str | None
    content_type: str | None
    reader: "MultipartReader" = field(repr=False)

    def chunks(self) -> Iterator[bytes]:
        """The rest, chunk by chunk."""
        return self.reader.part_chunks()

    def read_all(self, limit: int) -> bytes:
        """The whole payload, refusing more than `limit` bytes."""
        parts: list[bytes] = []
        total = 0
        for chunk in self.chunks():
            total += len(chunk)
            if total > limit:
                raise MalformedBody(f"form field {self.name!r} is larger than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)


_DISPOSITION_PARAM = re.compile(r';\s*([^=;\s]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))')


def _disposition(value: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for match in _DISPOSITION_PARAM.finditer(value):
        raw = match.group(2) if match.group(2) is not None else (match.group(3) or "").strip()
        params[match.group(1).lower()] = raw.replace('\\"', '"')
    return params


class MultipartReader:
    """A streaming multipart/form-data parser over a BodyReader."""

    def __init__(self, body: BodyReader, boundary: str):
        self._body = body
        self._delimiter = b"\r\n--" + boundary.encode("latin-1")
        # A leading CRLF makes the first boundary look like every other one.
        self._buffer = bytearray(b"\r\n")
        self._in_part = False
        self._finished = False

    def _fill(self) -> bool:
        chunk = self._body.read()
        if not chunk:
            return False
        self._buffer += chunk
        return True

    def _skip_to_delimiter(self) -> None:
        while True:
            index = self._buffer.find(self._delimiter)
            if index >= 0:
                del self._buffer[: index + len(self._delimiter)]
                return
            keep = len(self._delimiter) - 1
            if len(self._buffer) > keep:
                del self._buffer[: len(self._buffer) - keep]
            if not self._fill():
                raise MalformedBody("multipart body has no closing boundary")

    def _read_headers(self) -> dict[str, str]:
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            if len(self._buffer) > MAX_PART_HEADER or not self._fill():
                raise MalformedBody("multipart part headers are missing or too long")
        block = bytes(self._buffer[:end]).decode("utf-8", "replace")
        del self._buffer[: end + 4]
        headers: dict[str, str] = {}
        for line in block.split("\r\n"):
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return headers

    def parts(self) -> Iterator[FormPart]:
        """Parts in order; a part's payload must be read (or is skipped) before the next."""
        self._skip_to_delimiter()
        while True:
            while len(self._buffer) < 2:
                if not self._fill():
                    raise MalformedBody("multipart body ends after a boundary")
            if self._buffer[:2] == b"--":
                self._finished = True
                return
            line_end = self._buffer.find(b"\r\n")
            while line_end < 0:
                if not self._fill():
                    raise MalformedBody("multipart boundary line never ends")
                line_end = self._buffer.find(b"\r\n")
            del self._buffer[: line_end + 2]
            headers = self._read_headers()
            params = _disposition(headers.get("content-disposition", ""))
            self._in_part = True
            yield FormPart(
                headers=headers,
                name=params.get("name", ""),
                filename=params.get("filename"),
                content_type=headers.get("content-type"),
                reader=self,
            )
            if self._in_part:  # the caller did not read it all
                for _ in self.part_chunks():
                    pass

    def part_chunks(self) -> Iterator[bytes]:
        """The current part's payload, up to the next boundary."""
        keep = len(self._delimiter) - 1
        while self._in_part:
            index = self._buffer.find(self._delimiter)
            if index >= 0:
                data = bytes(self._buffer[:index])
                del self._buffer[: index + len(self._delimiter)]
                self._in_part = False
                if data:
                    yield data
                return
            if len(self._buffer) > keep:
                data = bytes(self._buffer[: len(self._buffer) - keep])
                del self._buffer[: len(self._buffer) - keep]
                yield data
            if not self._fill():
                raise MalformedBody("multipart part is not closed by a boundary")


def boundary_of(content_type: str) -> str | None:
    """The multipart boundary of a Content-Type, or None."""
    match = re.search(r'boundary=(?:"([^"]+)"|([^;\s]+))', content_type, re.IGNORECASE)
    if not match:
        return None
    return match.group(1) or match.group(2)


# -- ranges and conditional requests ------------------------------------------------

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class Unsatisfiable(Exception):
    """The Range header is valid but asks for bytes the object does not have."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (start, end) inclusive byte range to send, or None for the whole object.

    Follows RFC 9110 as S3 does: a syntactically invalid or multi-range header
    is ignored (the whole object is sent), a range starting past the end is
    unsatisfiable, an end past the end is clamped, `bytes=-N` is the last N
    bytes; the unit is case-insensitive (storage's file-range.test.ts).
    """
    if not header:
        return None
    match = _RANGE.match(header)
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable()
        return max(0, size - suffix), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise Unsatisfiable()
    return start, min(end, size - 1)


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether an If-None-Match header names this ETag (weak comparison, `*` matches all)."""
    wanted = etag.strip()
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == "*" or candidate == wanted:
            return True
    return False


def http_date(value: datetime) -> str:
    """An HTTP date (RFC 9110 IMF-fixdate)."""
    return email.utils.format_datetime(value.astimezone(timezone.utc), usegmt=True)


def parse_http_date(value: str | None) -> datetime | None:
    """The datetime of an HTTP date header, or None if unreadable."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


# -- requests and responses as the routes see them ---------------------------------------


@dataclass
class Request:
    """A request as the routes see it: decoded path relative to /storage/v1, query, headers, body."""

    method: str
    path: str  # decoded, relative to /storage/v1
    query: dict[str, list[str]]
    headers: Message
    body: BodyReader
    params: dict[str, str] = field(default_factory=dict)
    target: str = ""  # the raw request target relative to /storage/v1, query included

    def header(self, name: str) -> str | None:
        """A request header, or None."""
        value = self.headers.get(name)
        return str(value) if value is not None else None

    def arg(self, name: str) -> str | None:
        """The first value of a query parameter, or None."""
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The JSON body (`{}` when empty), as Fastify parses it."""
        try:
            raw = self.body.read_all(MAX_JSON_BODY)
        except MalformedBody as err:
            raise errors.validation_error(str(err)) from err
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise errors.validation_error(
                "Body is not valid JSON but content-type is set to 'application/json'"
            ) from err


@dataclass
class FileBody:
    """A response body streamed from a file region."""

    path: Path
    offset: int
    length: int


@dataclass
class Response:
    """Status, headers and a body (bytes or a file region)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    file: FileBody | None = None
    omit_body: bool = False  # HEAD: headers describe a body that is not sent


def json_response(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer, compact, like Fastify's serialiser."""
    payload = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, payload)


def error_response(err: StorageError) -> Response:
    """A storage error's real answer: its body and HTTP status."""
    return json_response(err.body(), err.wire_status, err.headers)
