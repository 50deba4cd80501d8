"""Supabase Storage over its REST API (`{project}/storage/v1`).

Which client does what, and why:
- the official client (storage3, from supabase-py) lists (list-v2 with its
  cursor, recursive without a delimiter; v1 folder walking with offset
  paging when list-v2 is missing) and checks buckets: request shapes come
  from the project that follows the API;
- the per-object requests go raw: byte reads (`/object/authenticated/...`,
  streamed with `Range`: storage3's `download()` returns whole bodies, which
  would break the memory bound) and `/object/info`: storage3's `info()` drops
  empty segments (`relative_path_to_parts`, storage3 2.34), so `a//b.txt`
  would name `a/b.txt` (tests/test_stores_supabase.py shows it), and it
  refuses `.`/`..` segments. They go over `http.client`
  (stores/supabase_http.py: a quarter of httpx's CPU per request), or over
  the shared httpx client when a proxy from the environment applies.
  Nothing here signs URLs.
- a key with a `.`/`..` segment (`c/./d.txt`) is listed (names travel in
  JSON bodies) but never put in a request path: `encode_key` refuses it and
  `plan` marks it `unreadable-key` (`dot_segment_reason` says why); so is a
  key outside upstream's key set, which no read of the REST API serves.
The httpx client's response hook turns every error answer into
`_ErrorAnswer` before storage3 sees it, the raw reader raises the same, and
the store translates that into our typed errors, so every path retries the
same way. Listing with storage3
costs the same as the raw requests did (4,000 objects: 0.10-0.21 s vs
0.09-0.21 s for the pages alone, 2.7-4.5 s vs 2.9-4.0 s with the per-object
info calls, on a shared 2-core machine).

Keys: a new secret key (`sb_secret_...`) goes in the `apikey` header only
(the hosted gateway rejects a non-JWT bearer); a legacy JWT service_role key
also goes as `Authorization: Bearer` (supabase.com/docs/guides/api/api-keys).

Listing, `/object/info` and bucket checks are retried here through the one
retry policy (`migrate.retry`), honouring Retry-After; when the attempts are
used up the stage stops with `ServiceUnavailable` (exit 4) naming the host.
Byte reads are retried by their caller (transfer, verify), so attempts never
multiply.

Real API references (github.com/supabase/storage):
- src/http/routes/object/listObjectsV2.ts: list-v2 body {prefix, limit, cursor,
  with_delimiter, sortBy}; an old tenant answers HTTP 400
  {"message": "This feature is not available for your tenant"}, and older
  self-hosted servers have no such route (404).
- src/storage/database/knex.ts `listObjectsV2`: rows carry id, name, metadata,
  updated_at, created_at, last_accessed_at -- no user_metadata, so keeping user
  metadata through REST needs one `/object/info` call per object.
- Errors: HTTP 4xx with JSON {"statusCode": "404", "error": "not_found", "message": ...}.
- src/storage/renderer/renderer.ts `render`: when the backend has no bytes
  for a row (S3 NoSuchKey), the GET answers HTTP 400 with
  {"statusCode": "404", "error": "Not found", "message": "The resource was not found"}
  and `cache-control: no-store`; a missing row is {"error": "not_found",
  "message": "Object not found"}. That difference tells a catalog row
  without bytes from a missing object. (Upstream's file backend answers 500
  for the same damage: fs.stat's ENOENT is not a renderable error.)
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import replace
from datetime import datetime
from typing import Any, Callable, Iterator, TypeVar

import httpx
from storage3 import SyncStorageClient

from migrate.errors import (
    AccessDenied,
    BucketNotFound,
    MigrateError,
    ObjectError,
    ObjectNotFound,
    ServiceUnavailable,
    TransientError,
)
from migrate.redact import register_secret
from migrate.retry import Throttle, call_with_retries, parse_retry_after
from migrate.stores.base import ListedPage, ObjectInfo, SourceStore, checked_body, fetch_each, range_header
from migrate.stores.supabase_http import ConnectionFault, ErrorAnswer, RestReader, proxy_applies

T = TypeVar("T")

LIST_V2_PAGE = 1000  # the real server's maximum for list-v2
LIST_V1_PAGE = 1000
READ_CHUNK = 1024 * 1024
PLACEHOLDER = ".emptyFolderPlaceholder"
#: A catalog row without stored bytes, as `run` and the source audit report it.
NO_BYTES = "no bytes at the source: the catalog row has no stored object"


class SourceBytesMissing(ObjectNotFound):
    """The object's catalog row exists but the storage backend has no bytes for it (damage at the source)."""


#: An HTTP error answer, raised by the httpx client's response hook (and the raw reader), translated by the store.
_ErrorAnswer = ErrorAnswer


def _raise_error_answers(response: httpx.Response) -> None:
    if response.status_code >= 400:
        response.read()  # error bodies are small; the connection goes back to the pool
        response.close()
        raise _ErrorAnswer(response)


def is_secret_key(key: str) -> bool:
    """True for Supabase's new API keys (`sb_secret_...`, `sb_publishable_...`): not JWTs, `apikey` header only."""
    return key.startswith("sb_") or key.count(".") != 2


def auth_headers(key: str) -> dict[str, str]:
    """The headers supabase-js / supabase-py send for this kind of key."""
    if is_secret_key(key):
        return {"apikey": key}
    return {"apikey": key, "Authorization": f"Bearer {key}"}


class ListV2Unavailable(Exception):
    """list-v2 is not offered by this server; walk folders with v1 instead."""


#: Why a key with a `.` or `..` segment is not read through the REST API (README "Odd keys at a Supabase source").
DOT_SEGMENT_REASON = (
    "the key has a '.' or '..' segment, which a Supabase REST path cannot address safely "
    "(HTTP clients and gateways remove dot segments, so the request could read another object); "
    "rename it at the source (Storage's move takes keys in its JSON body) or exclude it"
)


#: Why a key outside Supabase's key set is not read: upstream answers InvalidKey to any read of it.
OUTSIDE_KEY_SET_REASON = (
    "Supabase Storage refuses to read a key outside its key set (ASCII letters, digits and _/!-.*'() &$@=;:+,?), "
    "answering InvalidKey; rename it at the source (Storage's move checks only the new name) or exclude it"
)
# supabase/storage src/storage/limits.ts isValidKey (JavaScript's ASCII-only \w), which
# src/storage/object.ts `findObject` applies to every read: a catalog row whose name
# predates the check (or was written by SQL) lists, but its bytes cannot be fetched.
_KEY_SET = re.compile(r"[\w/!\-.*'() &$@=;:+,?]+", re.ASCII)


class UnaddressableKey(ObjectError):
    """A key no REST request path names reliably: refused rather than risk reading another object."""


def dot_segment_reason(key: str) -> str | None:
    """`DOT_SEGMENT_REASON` when a segment of `key` is `.` or `..` (`c/./d.txt`, `a/../b`, `x/.`), else None.

    Why refused rather than sent as `%2E`: upstream's router (find-my-way's
    sanitizeUrl, `decodeURI`) does decode `%2E` back to `.` and keeps the
    segment, but RFC 3986 6.2.2.2 lets anything in between decode it and then
    remove the segment (Cloudflare's URL normalization does both, to the
    origin when so configured), upstream's file backend resolves the key
    with `path.resolve` (so `c/./d.txt` and `c/d.txt` are one file there),
    and supabase/storage#883 refuses such keys in it. No answer says which
    key it is about, so a wrong read could not be detected afterwards.
    """
    if any(segment in (".", "..") for segment in key.split("/")):
        return DOT_SEGMENT_REASON
    return None


def encode_key(key: str) -> str:
    """Percent-encode each segment of an object key for use in a URL path.

    Raises `UnaddressableKey` for a key with a dot segment: httpx removes them
    (RFC 3986 5.2.4), so `c/./d.txt` would be sent as `c/d.txt`.
    """
    reason = dot_segment_reason(key)
    if reason is not None:
        raise UnaddressableKey(f"supabase key {key!r}: {reason}")
    return "/".join(urllib.parse.quote(segment, safe="") for segment in key.split("/"))


def parse_timestamp(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    text = str(value).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        try:
            # RFC 1123 (lastModified in object metadata)
            from email.utils import parsedate_to_datetime

            return parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            return None


def info_from_metadata(key: str, metadata: dict[str, Any] | None, *, updated_at: Any = None, user_metadata: Any = None) -> ObjectInfo:
    """Build ObjectInfo from a `storage.objects.metadata` document (REST list rows and catalog rows alike)."""
    metadata = metadata or {}
    etag = metadata.get("eTag")
    if isinstance(user_metadata, str):
        try:
            user_metadata = json.loads(user_metadata)
        except ValueError:
            user_metadata = {}
    return ObjectInfo(
        key=key,
        size=int(metadata.get("size") or metadata.get("contentLength") or 0),
        etag=str(etag).strip('"') if etag else None,
        content_type=metadata.get("mimetype"),
        cache_control=metadata.get("cacheControl"),
        last_modified=parse_timestamp(metadata.get("lastModified")) or parse_timestamp(updated_at),
        # JSON values kept as they are (numbers, booleans, lists...): migrate/metadata.py maps them to S3 losslessly.
        user_metadata={str(k): v for k, v in (user_metadata or {}).items()} if isinstance(user_metadata, dict) else {},
    )


class SupabaseStore(SourceStore):
    """Read-only access to a Supabase project's Storage through the REST API."""

    kind = "supabase"

    @property
    def endpoint(self) -> str:
        return self.url

    def __init__(
        self,
        url: str,
        service_key: str,
        *,
        max_connections: int = 32,
        timeout: float = 60.0,
        fetch_user_metadata: bool = True,
        list_v2_page: int = LIST_V2_PAGE,
        list_v1_page: int = LIST_V1_PAGE,
        max_attempts: int = 5,
    ):
        """`list_v2_page` / `list_v1_page`: rows per listing request (the real server's maximum is 1000).

        `max_attempts`: tries per listing page, info call and bucket check before the stage stops.
        """
        if list_v2_page < 1 or list_v1_page < 1:
            raise ValueError("listing page sizes must be at least 1")
        register_secret(service_key)
        self.url = url.rstrip("/")
        self.base = f"{self.url}/storage/v1"
        self.host = urllib.parse.urlsplit(self.url).netloc or self.url
        self.fetch_user_metadata = fetch_user_metadata
        self.list_v2_page = list_v2_page
        self.list_v1_page = list_v1_page
        self.max_attempts = max_attempts
        self._max_connections = max_connections
        self._throttle = Throttle()
        headers = auth_headers(service_key)
        self.http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
            event_hooks={"response": [_raise_error_answers]},
        )
        self.storage = SyncStorageClient(f"{self.base}/", headers, http_client=self.http)
        # The per-object GETs (info, bytes): raw http.client unless a proxy applies (httpx honours it).
        self._reader = None if proxy_applies(self.url) else RestReader(self.base, headers, timeout=timeout, connect_timeout=10.0)

    def __repr__(self) -> str:
        return f"SupabaseStore(url={self.url!r})"

    # -- errors and retries -------------------------------------------------
    def _error(self, response: Any, *, what: str, bucket: str | None = None) -> MigrateError:
        """Translate an error answer (real shape: {"statusCode","error","message"}) into our errors.

        `response`: an `httpx.Response` or the raw reader's `Answer` (same attributes).
        """
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        code = str(body.get("error") or "")
        status = str(body.get("statusCode") or response.status_code)
        message = str(body.get("message") or response.reason_phrase)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if response.status_code == 429 or status == "429":
            return TransientError(f"{what}: rate limited by Supabase Storage (429)", throttled=True, retry_after=retry_after)
        if response.status_code >= 500 or status.startswith("5"):
            return TransientError(f"{what}: Supabase Storage error {status} ({message})", retry_after=retry_after)
        if status in ("401", "403") or code in ("InvalidJWT", "Unauthorized", "AccessDenied"):
            return AccessDenied(
                f"{what}: Supabase Storage refused the key ({message}); use the project's secret key "
                "(sb_secret_..., SUPABASE_SECRET_KEY) or its legacy service_role key (SUPABASE_SERVICE_ROLE_KEY)"
            )
        if code in ("NoSuchBucket", "Bucket not found") or "bucket not found" in message.lower():
            return BucketNotFound(f"supabase bucket {bucket!r}: not found; check the bucket names in the plan")
        if status == "404" and code == "Not found" and message == "The resource was not found":
            return SourceBytesMissing(f"{what}: {NO_BYTES}")
        if status == "404" or code in ("not_found", "NoSuchKey"):
            return ObjectNotFound(f"{what}: not found at the source")
        return ObjectError(f"{what}: Supabase Storage answered {status} {code}: {message}")

    def _call(self, func: Callable[[], T], *, what: str, bucket: str | None = None) -> T:
        """One attempt of a request, with every failure translated into our typed errors."""
        try:
            return func()
        except _ErrorAnswer as answer:
            raise self._error(answer.response, what=what, bucket=bucket) from None
        except ConnectionFault as fault:
            if fault.connecting:
                raise TransientError(f"{what}: cannot connect to Supabase Storage at {self.host} ({fault})") from fault.cause
            raise TransientError(f"{what}: connection problem talking to Supabase Storage at {self.host} ({fault})") from fault.cause
        except httpx.ConnectError as err:
            raise TransientError(f"{what}: cannot connect to Supabase Storage at {self.host} ({type(err).__name__})") from err
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as err:
            raise TransientError(f"{what}: connection problem talking to Supabase Storage at {self.host} ({type(err).__name__})") from err

    def _retrying(self, func: Callable[[], T], *, what: str, bucket: str | None = None) -> T:
        """`_call` through the one retry policy; exhausted transient faults stop the stage (exit 4)."""
        try:
            return call_with_retries(lambda: self._call(func, what=what, bucket=bucket), max_attempts=self.max_attempts, throttle=self._throttle)
        except TransientError as err:
            raise ServiceUnavailable(
                f"Supabase Storage at {self.host} is not answering ({err}; {self.max_attempts} attempts); "
                "rerun the same command to continue"
            ) from err

    def _request(self, method: str, path: str, *, what: str, bucket: str | None = None, **kwargs: Any) -> httpx.Response:
        return self._call(lambda: self.http.request(method, f"{self.base}{path}", **kwargs), what=what, bucket=bucket)

    # -- SourceStore -------------------------------------------------------
    def list_buckets(self) -> list[str]:
        buckets = self._retrying(self.storage.list_buckets, what=f"{self.host} bucket list")
        return sorted(str(bucket.name) for bucket in buckets)

    def check_bucket(self, bucket: str) -> None:
        """Raise BucketNotFound / AccessDenied / ServiceUnavailable unless the bucket can be read."""
        self._retrying(lambda: self.storage.get_bucket(bucket), what=f"supabase bucket {bucket!r}", bucket=bucket)

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[list[ObjectInfo]]:
        for page in self.iter_pages(bucket, prefix):
            yield page.objects

    def iter_pages(self, bucket: str, prefix: str = "", *, resume: str | None = None) -> Iterator[ListedPage]:
        """Pages of the listing, each with the position to resume after it (list-v2 cursor, or v1 folder stack)."""
        position = json.loads(resume) if resume else None
        if position is None:
            self.check_bucket(bucket)
        if position is None or position.get("api") == "v2":
            try:
                pages = self._iter_v2(bucket, prefix, position.get("cursor") if position else None)
                first = next(pages, None)
            except ListV2Unavailable:
                pages, first = self._iter_v1(bucket, prefix, None), None
        else:
            pages, first = self._iter_v1(bucket, prefix, position.get("stack")), None
        if first is not None:
            yield self._with_user_metadata(bucket, first)
        for page in pages:
            yield self._with_user_metadata(bucket, page)

    def _iter_v2(self, bucket: str, prefix: str, cursor: str | None) -> Iterator[ListedPage]:
        what = f"supabase://{bucket}/{prefix} (list-v2)"
        files = self.storage.from_(bucket)

        def page_at(cursor: str | None) -> Any:
            options: dict[str, Any] = {"prefix": prefix, "limit": self.list_v2_page, "with_delimiter": False}
            if cursor:
                options["cursor"] = cursor
            try:
                return files.list_v2(options)  # type: ignore[arg-type]
            except _ErrorAnswer as answer:
                # An HTTP 404 is a missing route (old server); a missing bucket is
                # HTTP 400 with statusCode "404" in the body, and check_bucket ran first.
                response = answer.response
                if response.status_code == 404 or (response.status_code == 400 and "not available" in response.text):
                    raise ListV2Unavailable() from None
                raise

        while True:
            result = self._retrying(lambda: page_at(cursor), what=what, bucket=bucket)
            cursor = result.nextCursor
            more = bool(result.hasNext and cursor)
            page = [info_from_metadata(row.key or row.name, row.metadata, updated_at=row.updated_at) for row in result.objects]
            if page:
                yield ListedPage(page, json.dumps({"api": "v2", "cursor": cursor}) if more else None)
            if not more:
                return

    def _iter_v1(self, bucket: str, prefix: str, stack: list[list[Any]] | None) -> Iterator[ListedPage]:
        """Walk folders depth-first with v1 listing (one folder level per call, offset paging).

        `stack` holds the (folder, offset) requests still to make; it is the resume position.
        """
        pending: list[list[Any]] = stack if stack is not None else [[prefix.rstrip("/") if prefix else "", 0]]
        files = self.storage.from_(bucket)
        while pending:
            folder, offset = pending.pop()
            options = {"limit": self.list_v1_page, "offset": offset, "sortBy": {"column": "name", "order": "asc"}}
            rows = self._retrying(
                lambda: files.list(folder, options),  # type: ignore[arg-type]
                what=f"supabase://{bucket}/{folder} (list)",
                bucket=bucket,
            )
            page: list[ObjectInfo] = []
            for row in rows:
                key = f"{folder}/{row['name']}" if folder else row["name"]
                if row.get("id") is None:
                    pending.append([key, 0])
                else:
                    page.append(info_from_metadata(key, row.get("metadata"), updated_at=row.get("updated_at")))
            if len(rows) >= self.list_v1_page:
                pending.append([folder, offset + len(rows)])  # the rest of this folder comes next
            if page:
                yield ListedPage(page, json.dumps({"api": "v1", "stack": pending}) if pending else None)

    def unreadable_reason(self, key: str) -> str | None:
        """Why `key` cannot be read through the REST API (a dot segment, or outside the key set), or None."""
        return dot_segment_reason(key) or (None if _KEY_SET.fullmatch(key) else OUTSIDE_KEY_SET_REASON)

    def _with_user_metadata(self, bucket: str, page: ListedPage) -> ListedPage:
        """Fill in user_metadata (not part of list rows) with concurrent info calls.

        A key the REST path cannot address keeps its listed row: `plan` marks it `unreadable-key`.
        """
        if not self.fetch_user_metadata or not page.objects:
            return page

        def fresh_info(info: ObjectInfo) -> ObjectInfo | None:
            if self.unreadable_reason(info.key) is not None:
                return None
            return self._retrying(lambda: self._info(bucket, info.key), what=f"supabase://{bucket}/{info.key}", bucket=bucket)

        infos = fetch_each(page.objects, fresh_info, workers=min(self._max_connections, 16))
        # Only user_metadata comes from /object/info: everything else stays as
        # the listing's metadata document says, exactly as the catalog has it.
        objects = [
            replace(listed, user_metadata=fresh.user_metadata) if fresh is not None else listed
            for listed, fresh in zip(page.objects, infos)
        ]
        return ListedPage(objects, page.resume)

    def _get_json(self, path: str, *, what: str, bucket: str) -> Any:
        """One GET of a small JSON answer (one attempt)."""
        reader = self._reader
        if reader is None:
            return self._request("GET", path, what=what, bucket=bucket).json()

        def get() -> Any:
            reply = reader.get(path)
            try:
                return json.loads(reply.read())
            finally:
                reply.close()

        return self._call(get, what=what, bucket=bucket)

    def _info(self, bucket: str, key: str) -> ObjectInfo | None:
        what = f"supabase://{bucket}/{key}"
        try:
            data = self._get_json(f"/object/info/{urllib.parse.quote(bucket, safe='')}/{encode_key(key)}", what=what, bucket=bucket)
        except ObjectNotFound:
            return None
        # getObjectInfo answers the object row: metadata under "metadata" is the
        # user metadata there, system fields at the top level.
        return ObjectInfo(
            key=key,
            size=int(data.get("size") or 0),
            etag=str(data.get("etag") or "").strip('"') or None,
            content_type=data.get("content_type"),
            cache_control=data.get("cache_control"),
            last_modified=parse_timestamp(data.get("last_modified")) or parse_timestamp(data.get("updated_at")),
            user_metadata={str(k): v for k, v in (data.get("metadata") or {}).items()},  # JSON values as they are (migrate/metadata.py)
        )

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        return self._info(bucket, key)

    def open(self, bucket: str, key: str, *, offset: int = 0, length: int | None = None) -> tuple[ObjectInfo, Iterator[bytes]]:
        """Stream an object (or a range of it). Returns response metadata and a chunk iterator.

        Raises `SourceBytesMissing` when the catalog row exists but its bytes do not.
        """
        what = f"supabase://{bucket}/{key}"
        # identity: Content-Length must count the object's bytes, not a gzip stream.
        headers = {"Accept-Encoding": "identity"}
        byte_range = range_header(offset, length)
        if byte_range:
            headers["Range"] = byte_range
        if length == 0:
            return self.empty_read(bucket, key)
        path = f"/object/authenticated/{urllib.parse.quote(bucket, safe='')}/{encode_key(key)}"
        reader = self._reader
        if reader is not None:
            reply = self._call(lambda: reader.get(path, headers=headers), what=what, bucket=bucket)
            response_headers: Any = reply.headers
            chunks, close = reply.chunks(READ_CHUNK), reply.close
        else:
            request = self.http.build_request("GET", f"{self.base}{path}", headers=headers)
            response = self._call(lambda: self.http.send(request, stream=True), what=what, bucket=bucket)
            response_headers, chunks, close = response.headers, response.iter_raw(READ_CHUNK), response.close
        expected = int(response_headers.get("content-length") or -1)
        info = ObjectInfo(
            key=key,
            size=expected,
            etag=(response_headers.get("etag") or "").strip('"') or None,
            content_type=response_headers.get("content-type"),
            cache_control=response_headers.get("cache-control"),
        )
        return info, checked_body(
            chunks,
            expected=expected,
            what=what,
            close=close,
            translate=lambda err: TransientError(f"{what}: body cut off ({type(getattr(err, 'cause', err)).__name__})"),
        )

    def has_bytes(self, bucket: str, key: str, *, size: int) -> bool:
        """Whether the storage backend holds bytes for this catalog row: a 1-byte ranged GET (retried).

        The listing and `/object/info` read the catalog only; a read reaches
        the backend. A zero-byte object has no first byte to ask for, so it is
        read whole (nothing to transfer).
        """
        what = f"supabase://{bucket}/{key}"

        def probe() -> bool:
            try:
                _, chunks = self.open(bucket, key, offset=0, length=1 if size > 0 else None)
            except SourceBytesMissing:
                return False
            for _ in chunks:
                pass
            return True

        return self._retrying(probe, what=what, bucket=bucket)

    def upload_object(
        self,
        bucket: str,
        key: str,
        chunks: Iterator[bytes],
        *,
        size: int,
        content_type: str | None,
        cache_control: str | None,
        metadata: dict[str, str] | None,
        upsert: bool = False,
    ) -> None:
        """Upload one object, streamed, with its metadata (restore from a backup).

        supabase/storage src/storage/uploader.ts: a raw body is the file, its
        Content-Type the mimetype, `cache-control` kept as sent, `x-metadata`
        base64 JSON user metadata, `x-upsert: true` to replace an existing key.
        """
        import base64

        what = f"supabase://{bucket}/{key}"
        headers = {
            "Content-Type": content_type or "application/octet-stream",
            "Content-Length": str(size),
            "x-upsert": "true" if upsert else "false",
        }
        if cache_control:
            headers["cache-control"] = cache_control
        if metadata:
            headers["x-metadata"] = base64.b64encode(json.dumps(metadata).encode()).decode()
        self._request(
            "POST", f"/object/{urllib.parse.quote(bucket, safe='')}/{encode_key(key)}", what=what, bucket=bucket, content=chunks, headers=headers
        )

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self.http.close()
