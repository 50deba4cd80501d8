"""The narrow store interface every backend implements.

A backend implements a few primitives; everything rich (inventory, rewrite,
transfer, verification) is written once above them. Only modules in
`migrate/stores/` import boto3, storage3, httpx or psycopg.

`SourceStore`: list, head, read a byte range.
`DestinationStore` (S3 only for now): head, put, multipart primitives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, TypeVar

from migrate.errors import IntegrityError, MigrateError, ObjectNotFound, TransientError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a store knows about one object without reading its bytes."""

    key: str
    size: int
    etag: str | None = None  # unquoted
    content_type: str | None = None
    cache_control: str | None = None
    content_disposition: str | None = None
    last_modified: datetime | None = None
    user_metadata: dict[str, str] = field(default_factory=dict)
    storage_class: str | None = None
    # S3 only: stored checksums ({"sha256": base64, "crc64nvme": base64, ...}) and SSE.
    checksums: dict[str, str] = field(default_factory=dict)
    server_side_encryption: str | None = None
    sse_kms_key_id: str | None = None
    # S3 only, as the server answered them (Expires as its header text, never parsed):
    # carried to the destination like the headers above (`migrate.headers.CARRIED_HEADERS`).
    content_encoding: str | None = None
    content_language: str | None = None
    expires: str | None = None


@dataclass(frozen=True, slots=True)
class ListedPage:
    """One page of a listing and where the listing stands after it.

    `resume` is an opaque position (JSON text): handing it back to
    `SourceStore.iter_pages` continues the listing after this page. None means
    this store cannot resume mid-listing (the caller starts that listing over).
    """

    objects: list[ObjectInfo]
    resume: str | None = None


class SourceStore(ABC):
    """A place objects are read from."""

    #: Short name for messages and reports ("supabase", "supabase-catalog", "s3").
    kind: str = "store"
    #: True when a read (GET) answers the object's headers and user metadata, so a
    #: listing need not be completed with a HEAD per object (S3). Then records
    #: whose header columns are null take them from the GET (`run` stage).
    headers_on_read: bool = False

    @abstractmethod
    def list_buckets(self) -> list[str]:
        """Names of every bucket the credentials can see."""

    @abstractmethod
    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[list[ObjectInfo]]:
        """Every object under `prefix`, recursively, one page at a time.

        Pages keep memory flat: the caller streams them into the manifest.
        Raises `BucketNotFound` when the bucket does not exist.
        """

    def iter_pages(self, bucket: str, prefix: str = "", *, resume: str | None = None) -> Iterator[ListedPage]:
        """`iter_objects` with a resume position after each page (see `ListedPage`).

        The default cannot resume: it refuses a position rather than ignore it.
        """
        if resume is not None:
            raise ValueError(f"{type(self).__name__} cannot resume a listing")
        for page in self.iter_objects(bucket, prefix):
            yield ListedPage(page, None)

    def unreadable_reason(self, key: str) -> str | None:
        """Why this store cannot read `key` without risking another object's bytes, or None (most stores, most keys).

        `plan` marks such an object `unreadable-key` with this reason.
        """
        return None

    @abstractmethod
    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        """Metadata of one object, or None when it does not exist."""

    @abstractmethod
    def open(self, bucket: str, key: str, *, offset: int = 0, length: int | None = None) -> tuple[ObjectInfo, Iterator[bytes]]:
        """Start reading `key` from `offset` (`length` bytes, or to the end).

        Returns what the response says about the object (size is the length
        of this read) and an iterator of chunks. Raises `ObjectNotFound` if the
        object is gone; the iterator raises `TransientError` on a fault worth
        retrying, including a body shorter than announced.
        """

    def open_into(self, bucket: str, key: str, buffer: memoryview, *, offset: int) -> tuple[ObjectInfo, Iterator[memoryview]]:
        """Read the range of `len(buffer)` bytes at `offset` into `buffer`, yielding each filled slice of it.

        For part buffers that are reused: a backend that can receive straight
        into `buffer` (S3's lean path) overrides this and copies nothing; this
        default copies `open`'s chunks in. Raises `IntegrityError` when the
        range returns more than `len(buffer)` bytes; fewer is the caller's to check.
        """
        info, chunks = self.open(bucket, key, offset=offset, length=len(buffer))
        what = f"{self.kind}://{bucket}/{key}"

        def fill() -> Iterator[memoryview]:
            received = 0
            for chunk in chunks:
                end = received + len(chunk)
                if end > len(buffer):
                    raise IntegrityError(f"{what}: range at {offset} returned more than {len(buffer)} bytes")
                buffer[received:end] = chunk
                yield buffer[received:end]
                received = end

        return info, ResponseBody(fill(), getattr(chunks, "close", lambda: None))  # type: ignore[arg-type]

    def empty_read(self, bucket: str, key: str) -> tuple[ObjectInfo, Iterator[bytes]]:
        """`open` for a zero-length range: no GET (servers answer 416), just the object's metadata."""
        info = self.head(bucket, key)
        if info is None:
            raise ObjectNotFound(f"{self.kind}://{bucket}/{key}: not found at the source")
        return info, iter(())

    def read(self, bucket: str, key: str, *, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Stream the bytes of `key` (see `open`)."""
        return self.open(bucket, key, offset=offset, length=length)[1]

    @property
    def endpoint(self) -> str:
        """Where this store talks to, for messages (never with credentials)."""
        return self.kind

    def close(self) -> None:
        """Release connections."""


class ResponseBody(Iterator[bytes]):
    """A response body's chunks that can be closed before the first chunk is read.

    A generator's `close()` does nothing until it has started, so a caller
    that gives up on a read after `open` (say the object changed at the
    source) would leave the connection checked out of the pool. Closing this
    closes the response whether or not iteration began.
    """

    def __init__(self, chunks: Iterator[bytes], close: Callable[[], None]):
        self._chunks = chunks
        self._close = close

    def __iter__(self) -> "ResponseBody":
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        """Return the connection; safe to call more than once."""
        try:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
        finally:
            self._close()


def checked_body(
    chunks: Iterator[bytes],
    *,
    expected: int,
    what: str,
    close: Callable[[], None],
    translate: Callable[[Exception], MigrateError],
) -> ResponseBody:
    """A response body's chunks; a body shorter or longer than announced is a failed attempt.

    `expected` < 0 means the server announced no length. Backend errors
    while reading go through `translate`; the response is always closed,
    also when the caller closes the body before reading it.
    """
    return ResponseBody(_checked_chunks(chunks, expected, what, close, translate), close)


def _checked_chunks(
    chunks: Iterator[bytes], expected: int, what: str, close: Callable[[], None], translate: Callable[[Exception], MigrateError]
) -> Iterator[bytes]:
    received = 0
    try:
        for chunk in chunks:
            received += len(chunk)
            yield chunk
    except MigrateError:
        raise
    except Exception as err:  # noqa: BLE001 - translated, never swallowed
        raise translate(err) from err
    finally:
        close()
    if expected >= 0 and received != expected:
        raise TransientError(f"{what}: body ended after {received} of {expected} bytes")


def fetch_each(page: list[ObjectInfo], fetch: Callable[[ObjectInfo], T], *, workers: int) -> list[T]:
    """`fetch` for every object of a listed page, concurrently, in page order (per-object metadata calls)."""
    if not page:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(page)))) as pool:
        return list(pool.map(fetch, page))


def range_header(offset: int, length: int | None) -> str | None:
    """The HTTP Range value for `length` bytes from `offset` (to the end when None); None for a whole read."""
    if not offset and length is None:
        return None
    return f"bytes={offset}-{'' if length is None else offset + length - 1}"
