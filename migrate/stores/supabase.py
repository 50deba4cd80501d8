"""Supabase Storage over its REST API (`{project}/storage/v1`).

Listing uses list-v2 with its cursor (recursive when no delimiter is sent),
falling back to walking folders with v1 (`/object/list`, one folder level per
call, offset paging) when list-v2 is not available. Reads are streamed with
httpx from `/object/authenticated/{bucket}/{key}` with `Range` support:
storage3's `download()` returns whole bodies, which would break the memory
bound for large objects.

Real API references (github.com/supabase/storage):
- src/http/routes/object/listObjectsV2.ts: list-v2 body {prefix, limit, cursor,
  with_delimiter, sortBy}; an old tenant answers HTTP 400
  {"message": "This feature is not available for your tenant"}, and older
  self-hosted servers have no such route (404).
- src/storage/database/knex.ts `listObjectsV2`: rows carry id, name, metadata,
  updated_at, created_at, last_accessed_at -- no user_metadata, so keeping user
  metadata through REST needs one `/object/info` call per object.
- Errors: HTTP 4xx with JSON {"statusCode": "404", "error": "not_found", "message": ...}.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import replace
from datetime import datetime
from typing import Any, Iterator

import httpx

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
from migrate.stores.base import ObjectInfo, SourceStore, checked_body, fetch_each, range_header

LIST_V2_PAGE = 1000  # the real server's maximum for list-v2
LIST_V1_PAGE = 1000
READ_CHUNK = 1024 * 1024
PLACEHOLDER = ".emptyFolderPlaceholder"


class ListV2Unavailable(Exception):
    """list-v2 is not offered by this server; walk folders with v1 instead."""


def encode_key(key: str) -> str:
    """Percent-encode each segment of an object key for use in a URL path."""
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
        user_metadata={str(k): str(v) for k, v in (user_metadata or {}).items()} if isinstance(user_metadata, dict) else {},
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
    ):
        register_secret(service_key)
        self.url = url.rstrip("/")
        self.base = f"{self.url}/storage/v1"
        self.fetch_user_metadata = fetch_user_metadata
        self._max_connections = max_connections
        self.http = httpx.Client(
            headers={"apikey": service_key, "Authorization": f"Bearer {service_key}"},
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"SupabaseStore(url={self.url!r})"

    # -- errors ------------------------------------------------------------
    def _error(self, response: httpx.Response, *, what: str, bucket: str | None = None) -> MigrateError:
        """Translate an error answer (real shape: {"statusCode","error","message"}) into our errors."""
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        code = str(body.get("error") or "")
        status = str(body.get("statusCode") or response.status_code)
        message = str(body.get("message") or response.reason_phrase)
        if response.status_code == 429 or status == "429":
            return TransientError(f"{what}: rate limited by Supabase Storage (429)", throttled=True)
        if response.status_code >= 500 or status.startswith("5"):
            return TransientError(f"{what}: Supabase Storage error {status} ({message})")
        if status in ("401", "403") or code in ("InvalidJWT", "Unauthorized", "AccessDenied"):
            return AccessDenied(
                f"{what}: Supabase Storage refused the key ({message}); use the project's service_role key in SUPABASE_SERVICE_ROLE_KEY"
            )
        if code in ("NoSuchBucket", "Bucket not found") or "bucket not found" in message.lower():
            return BucketNotFound(f"supabase bucket {bucket!r}: not found; check the bucket names in the plan")
        if status == "404" or code in ("not_found", "NoSuchKey"):
            return ObjectNotFound(f"{what}: not found at the source")
        return ObjectError(f"{what}: Supabase Storage answered {status} {code}: {message}")

    def _request(self, method: str, path: str, *, what: str, bucket: str | None = None, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, f"{self.base}{path}", **kwargs)
        except httpx.ConnectError as err:
            raise TransientError(f"{what}: cannot connect to {self.url}") from err
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as err:
            raise TransientError(f"{what}: connection problem talking to Supabase ({type(err).__name__})") from err
        if response.status_code >= 400:
            raise self._error(response, what=what, bucket=bucket)
        return response

    # -- SourceStore -------------------------------------------------------
    def list_buckets(self) -> list[str]:
        try:
            response = self._request("GET", "/bucket", what=f"{self.url} bucket list")
        except TransientError as err:
            raise ServiceUnavailable(f"cannot list buckets at {self.url}: {err}; check SUPABASE_URL and that the project is up") from err
        return sorted(str(row["name"]) for row in response.json())

    def check_bucket(self, bucket: str) -> None:
        self._request("GET", f"/bucket/{urllib.parse.quote(bucket, safe='')}", what=f"supabase bucket {bucket!r}", bucket=bucket)

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[list[ObjectInfo]]:
        self.check_bucket(bucket)
        try:
            pages = self._iter_v2(bucket, prefix)
            first = next(pages, None)
        except ListV2Unavailable:
            pages, first = self._iter_v1(bucket, prefix), None
        if first is not None:
            yield self._with_user_metadata(bucket, first)
        for page in pages:
            yield self._with_user_metadata(bucket, page)

    def _iter_v2(self, bucket: str, prefix: str) -> Iterator[list[ObjectInfo]]:
        cursor: str | None = None
        what = f"supabase://{bucket}/{prefix} (list-v2)"
        while True:
            body: dict[str, Any] = {"prefix": prefix, "limit": LIST_V2_PAGE, "with_delimiter": False}
            if cursor:
                body["cursor"] = cursor
            response = self.http.post(f"{self.base}/object/list-v2/{urllib.parse.quote(bucket, safe='')}", json=body)
            # An HTTP 404 is a missing route (old server); a missing bucket is
            # HTTP 400 with statusCode "404" in the body, and check_bucket ran first.
            if response.status_code == 404 or (response.status_code == 400 and "not available" in response.text):
                raise ListV2Unavailable()
            if response.status_code >= 400:
                raise self._error(response, what=what, bucket=bucket)
            data = response.json()
            page = [
                info_from_metadata(row["name"] if not row.get("key") else row["key"], row.get("metadata"), updated_at=row.get("updated_at"))
                for row in data.get("objects", [])
            ]
            if page:
                yield page
            cursor = data.get("nextCursor")
            if not data.get("hasNext") or not cursor:
                return

    def _iter_v1(self, bucket: str, prefix: str) -> Iterator[list[ObjectInfo]]:
        """Walk folders depth-first with v1 listing (one folder level per call)."""
        folders = [prefix.rstrip("/")] if prefix else [""]
        while folders:
            folder = folders.pop()
            offset = 0
            while True:
                body = {
                    "prefix": folder,
                    "limit": LIST_V1_PAGE,
                    "offset": offset,
                    "sortBy": {"column": "name", "order": "asc"},
                }
                rows = self._request(
                    "POST",
                    f"/object/list/{urllib.parse.quote(bucket, safe='')}",
                    json=body,
                    what=f"supabase://{bucket}/{folder} (list)",
                    bucket=bucket,
                ).json()
                page: list[ObjectInfo] = []
                for row in rows:
                    key = f"{folder}/{row['name']}" if folder else row["name"]
                    if row.get("id") is None:
                        folders.append(key)
                    else:
                        page.append(info_from_metadata(key, row.get("metadata"), updated_at=row.get("updated_at")))
                if page:
                    yield page
                if len(rows) < LIST_V1_PAGE:
                    break
                offset += len(rows)

    def _with_user_metadata(self, bucket: str, page: list[ObjectInfo]) -> list[ObjectInfo]:
        """Fill in user_metadata (not part of list rows) with concurrent info calls."""
        if not self.fetch_user_metadata or not page:
            return page
        infos = fetch_each(page, lambda info: self._info(bucket, info.key), workers=min(self._max_connections, 16))
        # Only user_metadata comes from /object/info: everything else stays as
        # the listing's metadata document says, exactly as the catalog has it.
        return [
            replace(listed, user_metadata=fresh.user_metadata) if fresh is not None else listed
            for listed, fresh in zip(page, infos)
        ]

    def _info(self, bucket: str, key: str) -> ObjectInfo | None:
        what = f"supabase://{bucket}/{key}"
        try:
            data = self._request("GET", f"/object/info/{urllib.parse.quote(bucket, safe='')}/{encode_key(key)}", what=what, bucket=bucket).json()
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
            user_metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
        )

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        return self._info(bucket, key)

    def open(self, bucket: str, key: str, *, offset: int = 0, length: int | None = None) -> tuple[ObjectInfo, Iterator[bytes]]:
        """Stream an object (or a range of it). Returns response metadata and a chunk iterator."""
        what = f"supabase://{bucket}/{key}"
        # identity: Content-Length must count the object's bytes, not a gzip stream.
        headers = {"Accept-Encoding": "identity"}
        byte_range = range_header(offset, length)
        if byte_range:
            headers["Range"] = byte_range
        if length == 0:
            return self.empty_read(bucket, key)
        url = f"{self.base}/object/authenticated/{urllib.parse.quote(bucket, safe='')}/{encode_key(key)}"
        try:
            request = self.http.build_request("GET", url, headers=headers)
            response = self.http.send(request, stream=True)
        except httpx.ConnectError as err:
            raise TransientError(f"{what}: cannot connect to {self.url}") from err
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as err:
            raise TransientError(f"{what}: connection problem ({type(err).__name__})") from err
        if response.status_code >= 400:
            response.read()
            response.close()
            raise self._error(response, what=what, bucket=bucket)
        expected = int(response.headers.get("content-length", -1))
        info = ObjectInfo(
            key=key,
            size=expected,
            etag=(response.headers.get("etag") or "").strip('"') or None,
            content_type=response.headers.get("content-type"),
            cache_control=response.headers.get("cache-control"),
        )

        return info, checked_body(
            response.iter_raw(READ_CHUNK),
            expected=expected,
            what=what,
            close=response.close,
            translate=lambda err: TransientError(f"{what}: body cut off ({type(err).__name__})"),
        )


    def close(self) -> None:
        self.http.close()
