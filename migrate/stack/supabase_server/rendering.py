"""Answering with an object: its bytes, its headers, or its info.

Mirrors src/storage/renderer/ in github.com/supabase/storage: `asset`
(renderer.ts over the backend's getObject: conditional requests, ranges,
Cache-Control or Expires, Content-Disposition), `head` (head.ts: headers from
the catalog row, no body) and `info` (info.ts: a JSON summary of the row).
"""

from __future__ import annotations

import urllib.parse
from datetime import datetime
from pathlib import Path
from typing import Any

from migrate.stack.supabase_server import errors
from migrate.stack.supabase_server.catalog import StoredObject, iso_timestamp
from migrate.stack.supabase_server.wire import (
    FileBody,
    Request,
    Response,
    Unsatisfiable,
    etag_matches,
    http_date,
    json_response,
    parse_http_date,
    parse_range,
)


def content_disposition(download: str) -> str:
    """renderer.ts handleDownload, with encodeURIComponent's safe characters.

    No trailing `;` after the filename since supabase/storage#735 (merged
    2025-07, RFC 6266 grammar); a bare `?download` is still `attachment;`.
    """
    if download == "":
        return "attachment;"
    encoded = urllib.parse.quote(download, safe="-_.!~*'()")
    return f"attachment; filename={encoded}; filename*=UTF-8''{encoded}"


def normalize_content_type(value: str) -> str:
    """renderer.ts normalizeContentType: never serve stored HTML as HTML."""
    return "text/plain" if "text/html" in value else value


def last_modified(obj: StoredObject) -> datetime | None:
    """When the bytes were written (metadata.lastModified, else updated_at)."""
    raw = obj.metadata.get("lastModified")
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            pass
    return obj.updated_at


def entity_headers(obj: StoredObject) -> dict[str, str]:
    """ETag and Last-Modified of the object."""
    headers = {}
    etag = obj.metadata.get("eTag")
    if etag:
        headers["ETag"] = str(etag)
    modified = last_modified(obj)
    if modified:
        headers["Last-Modified"] = http_date(modified)
    return headers


def _content_type(metadata: dict[str, Any]) -> str:
    return normalize_content_type(str(metadata.get("mimetype") or "application/octet-stream"))


def render_info(obj: StoredObject) -> Response:
    """info.ts over the row getObjectInfo.ts selects (id, name, version, bucket_id,
    metadata, user_metadata, updated_at, created_at); `last_modified` is updated_at."""
    metadata = obj.metadata
    document = {
        "id": obj.id,
        "name": obj.name,
        "version": obj.version,
        "bucket_id": obj.bucket_id,
        "size": metadata.get("size"),
        "content_type": metadata.get("mimetype"),
        "cache_control": metadata.get("cacheControl"),
        "etag": metadata.get("eTag"),
        "metadata": obj.user_metadata,
        "last_modified": iso_timestamp(obj.updated_at),
        "created_at": iso_timestamp(obj.created_at),
    }
    headers = {"Content-Type": "application/json; charset=utf-8", **entity_headers(obj)}
    if metadata.get("cacheControl"):
        headers["Cache-Control"] = str(metadata["cacheControl"])
    return json_response(document, headers=headers)


def render_head(request: Request, obj: StoredObject) -> Response:
    """head.ts: headers from the catalog row; Cache-Control gains must-revalidate
    when the client's ETag is stale."""
    metadata = obj.metadata
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Type": _content_type(metadata),
        "Content-Length": str(int(metadata.get("contentLength") or metadata.get("size") or 0)),
        **entity_headers(obj),
    }
    cache_control = [str(metadata.get("cacheControl") or "no-cache")]
    client_etag = request.header("If-None-Match")
    if client_etag and client_etag != metadata.get("eTag"):
        cache_control.append("must-revalidate")
    headers["Cache-Control"] = ", ".join(cache_control)
    return Response(200, headers, omit_body=True)


def _not_modified(request: Request, obj: StoredObject, etag: str) -> bool:
    client_etag = request.header("If-None-Match")
    if client_etag and etag:
        return etag_matches(client_etag, etag)
    modified = last_modified(obj)
    since = parse_http_date(request.header("If-Modified-Since"))
    return bool(since and modified and modified.replace(microsecond=0) <= since)


def render_asset(request: Request, obj: StoredObject, path: Path, *, expires: str | None = None) -> Response:
    """renderer.ts render/setHeaders over the backend's getObject, streamed from `path`."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as err:
        raise errors.asset_missing() from err
    metadata = obj.metadata
    etag = str(metadata.get("eTag") or "")
    if _not_modified(request, obj, etag):
        # The recorded 304 carries the entity's headers (ETag, Accept-Ranges,
        # Content-Type, Cache-Control), as the S3 backend's NotModified does.
        not_modified = {"Accept-Ranges": "bytes", "Content-Type": _content_type(metadata), **entity_headers(obj)}
        if not expires:
            not_modified["Cache-Control"] = str(metadata.get("cacheControl") or "no-cache")
        return Response(304, not_modified)
    try:
        byte_range = parse_range(request.header("Range"), size)
    except Unsatisfiable as err:
        raise errors.invalid_range(size) from err
    start, end = byte_range if byte_range else (0, size - 1)
    headers = {"Accept-Ranges": "bytes", "Content-Type": _content_type(metadata), **entity_headers(obj)}
    if expires:
        headers["Expires"] = expires  # signed URLs: the token's expiry instead of Cache-Control
    else:
        cache_control = [str(metadata.get("cacheControl") or "no-cache")]
        client_etag = request.header("If-None-Match")
        if client_etag and client_etag != etag:
            cache_control.append("stale-while-revalidate=30")
        headers["Cache-Control"] = ", ".join(cache_control)
    if byte_range:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    download = request.arg("download")
    if download is not None:
        headers["Content-Disposition"] = content_disposition(download)
    return Response(206 if byte_range else 200, headers, file=FileBody(path, start, max(0, end - start + 1)))
