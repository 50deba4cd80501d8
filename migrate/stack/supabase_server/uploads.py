"""Uploads of the bundled Supabase Storage server: createObject.ts, updateObject.ts, src/storage/uploader.ts.

`Uploader` takes bytes in for `routes.StorageApi` (its upload route), the
signed-URL upload route and the S3 protocol: the bucket's limits, raw and
multipart/form-data bodies, and `store`/`save_row` (bytes first, then the
catalog row). The routes check who may write; this only writes.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable

from migrate.stack.supabase_server import errors
from migrate.stack.supabase_server.blobs import BlobStore, BlobTooLarge, Incoming
from migrate.stack.supabase_server.catalog import Bucket, Catalog, StoredObject, iso_timestamp
from migrate.stack.supabase_server.validation import mime_allowed, user_metadata_header
from migrate.stack.supabase_server.wire import MalformedBody, MultipartReader, Request, boundary_of

MAX_FORM_FIELD = 2 * 1024 * 1024
MAX_USER_METADATA = 1024 * 1024  # uploader.ts MAX_CUSTOM_METADATA_SIZE


def js_iso_now() -> str:
    """Now, as the real server's JSON writes timestamps."""
    return iso_timestamp(datetime.now(timezone.utc)) or ""


class Uploader:
    """Takes bytes in for every route that writes: the REST upload, signed-URL uploads, the S3 protocol."""

    def __init__(self, *, catalog: Catalog, blobs: BlobStore, file_size_limit: int, bucket: Callable[[str], Bucket]):
        self.catalog = catalog
        self.blobs = blobs
        self.file_size_limit = file_size_limit
        self._bucket = bucket  # the bucket by id, or the route's NoSuchBucket

    def upload(self, request: Request, *, bucket_id: str, key: str, owner: str | None, upsert: bool) -> StoredObject:
        """uploader.ts: the bucket's limits, then bytes and row (the caller has checked the right to write)."""
        bucket = self._bucket(bucket_id)
        # uploader.ts canUpload: the insert is tried before any byte is read.
        if not upsert and self.catalog.object_exists(bucket_id, key):
            raise errors.key_already_exists()
        limit = self.file_size_limit
        if bucket.file_size_limit is not None:
            limit = min(limit, bucket.file_size_limit)
        incoming = self._incoming(request)
        if bucket.allowed_mime_types and not mime_allowed(incoming.mimetype, bucket.allowed_mime_types):
            raise errors.invalid_mime_type(incoming.mimetype)
        if incoming.declared_length is not None and incoming.declared_length > limit:
            raise errors.entity_too_large()
        return self.store(bucket_id=bucket_id, key=key, owner=owner, incoming=incoming, limit=limit, upsert=upsert)

    def _incoming(self, request: Request) -> Incoming:
        content_type = request.header("Content-Type") or ""
        if content_type.lower().startswith("multipart/form-data"):
            return self._incoming_form(request, content_type)
        # uploader.ts: a raw body is the file; headers carry its metadata.
        return Incoming(
            mimetype=content_type or "application/octet-stream",
            cache_control=request.header("cache-control") or "no-cache",
            user_metadata=user_metadata_header(request.header("x-metadata")),
            chunks=request.body.chunks(),
            declared_length=request.body.length,
        )

    def _incoming_form(self, request: Request, content_type: str) -> Incoming:
        # uploader.ts: fields sent before the file (storage3 sends cacheControl and
        # metadata first); cacheControl "3600" becomes "max-age=3600".
        boundary = boundary_of(content_type)
        if not boundary:
            raise errors.no_content_provided()
        fields: dict[str, str] = {}
        try:
            for part in MultipartReader(request.body, boundary).parts():
                if part.filename is None:
                    fields[part.name] = part.read_all(MAX_FORM_FIELD).decode("utf-8", "replace")
                    continue
                custom = fields.get("metadata", fields.get("userMetadata"))
                if custom is not None and len(custom.encode()) > MAX_USER_METADATA:
                    raise errors.entity_too_large(entity="user_metadata")
                user_metadata = None
                if custom is not None:
                    try:
                        user_metadata = json.loads(custom)
                    except json.JSONDecodeError:
                        user_metadata = None
                cache_time = fields.get("cacheControl")
                return Incoming(
                    mimetype=fields.get("contentType") or part.content_type or "application/octet-stream",
                    cache_control=f"max-age={cache_time}" if cache_time else "no-cache",
                    user_metadata=user_metadata,
                    chunks=part.chunks(),
                    declared_length=None,
                )
        except MalformedBody as err:
            raise errors.no_content_provided(str(err)) from err
        raise errors.no_content_provided()

    def store(
        self,
        *,
        bucket_id: str,
        key: str,
        owner: str | None,
        incoming: Incoming,
        limit: int,
        upsert: bool,
    ) -> StoredObject:
        """Bytes first (temp file, then rename), then the catalog row."""
        writer = self.blobs.writer(limit=limit)
        try:
            for chunk in incoming.chunks:
                writer.write(chunk)
        except BlobTooLarge as err:
            writer.abort()
            raise errors.entity_too_large() from err
        except MalformedBody as err:
            writer.abort()
            raise errors.no_content_provided(str(err)) from err
        except BaseException:
            writer.abort()
            raise
        version = writer.commit()
        # The metadata the S3 backend reports after an upload (backend/s3/adapter.ts uploadObject).
        metadata = {
            "eTag": writer.etag,
            "size": writer.size,
            "mimetype": incoming.mimetype,
            "cacheControl": incoming.cache_control,
            "lastModified": js_iso_now(),
            "contentLength": writer.size,
            "httpStatusCode": 200,
        }
        return self.save_row(
            bucket_id=bucket_id,
            key=key,
            owner=owner,
            version=version,
            metadata=metadata,
            user_metadata=incoming.user_metadata,
            upsert=upsert,
        )

    def save_row(
        self,
        *,
        bucket_id: str,
        key: str,
        owner: str | None,
        version: str,
        metadata: dict[str, Any],
        user_metadata: Any,
        upsert: bool,
    ) -> StoredObject:
        try:
            if not upsert:
                return self.catalog.insert_object(
                    bucket_id=bucket_id, name=key, owner=owner, version=version,
                    metadata=metadata, user_metadata=user_metadata,
                )
            obj, replaced = self.catalog.upsert_object(
                bucket_id=bucket_id, name=key, owner=owner, version=version,
                metadata=metadata, user_metadata=user_metadata,
            )
        except BaseException:
            self.blobs.delete(version)
            raise
        if replaced and replaced != version:
            self.blobs.delete(replaced)
        return obj
