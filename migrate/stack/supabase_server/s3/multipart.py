"""Multipart uploads of the S3 endpoint (s3-handler.ts createMultiPartUpload, uploadPart,
completeMultiPartUpload, abortMultipartUpload, listParts).

Uploads in progress live in this process's memory (upstream keeps them in
storage.s3_multipart_uploads); each part is a blob file until the upload is
completed (the parts are concatenated into one new blob, ETag
`md5(part md5s)-N`) or aborted (the part files are deleted).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from migrate.stack.supabase_server.blobs import BlobTooLarge
from migrate.stack.supabase_server.s3.xml import S3Error, document, iso_time
from migrate.stack.supabase_server.wire import Request, Response

if TYPE_CHECKING:
    from migrate.stack.supabase_server.s3 import S3Api


@dataclass
class MultipartUpload:
    """An upload in progress; its parts are blob files until it is completed or aborted."""

    bucket_id: str
    key: str
    content_type: str
    cache_control: str
    user_metadata: dict[str, str] | None
    parts: dict[int, tuple[str, int, str]] = field(default_factory=dict)  # number -> (version, size, etag)
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


class Multipart:
    """The multipart routes; object rows and blobs come through the S3 API's REST API."""

    def __init__(self, s3: "S3Api"):
        self.s3 = s3
        self._uploads: dict[str, MultipartUpload] = {}
        self._uploads_lock = threading.Lock()

    def _upload(self, bucket_id: str, key: str, upload_id: str) -> MultipartUpload:
        with self._uploads_lock:
            upload = self._uploads.get(upload_id)
        # assertMultipartUploadIdentity: an id for another object is no such upload.
        if upload is None or (upload.bucket_id, upload.key) != (bucket_id, key):
            raise S3Error(
                "NoSuchUpload", 404,
                "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
            )
        return upload

    def list_uploads(self, bucket_id: str, prefix: str) -> Response:
        """s3-handler.ts listMultipartUploads: the bucket's uploads in progress under `prefix`, by key (first 1000)."""
        with self._uploads_lock:
            found = sorted(
                (upload.key, upload_id, upload.created)
                for upload_id, upload in self._uploads.items()
                if upload.bucket_id == bucket_id and upload.key.startswith(prefix)
            )
        return document(
            "ListMultipartUploadsResult",
            {
                "Bucket": bucket_id, "Prefix": prefix, "MaxUploads": 1000, "IsTruncated": len(found) > 1000,
                "Upload": [
                    {"Key": key, "UploadId": upload_id, "Initiated": iso_time(created), "StorageClass": "STANDARD"}
                    for key, upload_id, created in found[:1000]
                ],
            },
        )

    def create_multipart(self, request: Request, bucket_id: str, key: str) -> Response:
        """s3-handler.ts createMultiPartUpload."""
        self.s3.api._valid_key(key)
        self.s3._bucket(bucket_id)
        upload_id = uuid.uuid4().hex + uuid.uuid4().hex
        upload = MultipartUpload(
            bucket_id=bucket_id,
            key=key,
            content_type=request.header("Content-Type") or "application/octet-stream",
            cache_control=request.header("Cache-Control") or "no-cache",
            user_metadata=self.s3._request_metadata(request),
        )
        with self._uploads_lock:
            self._uploads[upload_id] = upload
        return document("InitiateMultipartUploadResult", {"Bucket": bucket_id, "Key": key, "UploadId": upload_id})

    def upload_part(self, request: Request, bucket_id: str, key: str, upload_id: str, part_number: str) -> Response:
        """s3-handler.ts uploadPart: the part's bytes streamed to a blob file; answers its ETag."""
        upload = self._upload(bucket_id, key, upload_id)
        try:
            number = int(part_number)
        except ValueError as err:
            raise S3Error("InvalidArgument", 400, "Part number must be an integer between 1 and 10000, inclusive") from err
        if not 1 <= number <= 10000:
            raise S3Error("InvalidArgument", 400, "Part number must be an integer between 1 and 10000, inclusive")
        chunks, length = self.s3._chunks(request)
        if length is None:
            raise S3Error("MissingContentLength", 411, "You must provide the Content-Length HTTP header.")
        limit = self.s3._limit(bucket_id)
        writer = self.s3.api.blobs.writer(limit=limit)
        try:
            for chunk in chunks:
                writer.write(chunk)
        except BlobTooLarge as err:
            writer.abort()
            raise S3Error("EntityTooLarge", 413, "Your proposed upload exceeds the maximum allowed object size.") from err
        except BaseException:
            writer.abort()
            raise
        version = writer.commit()
        with self._uploads_lock:
            previous = upload.parts.get(number)
            upload.parts[number] = (version, writer.size, writer.etag)
        if previous:
            self.s3.api.blobs.delete(previous[0])
        return Response(200, {"ETag": writer.etag})

    def list_parts(self, bucket_id: str, key: str, upload_id: str) -> Response:
        """s3-handler.ts listParts (first 1000 parts)."""
        upload = self._upload(bucket_id, key, upload_id)
        with self._uploads_lock:
            parts = sorted(upload.parts.items())[:1000]
        return document(
            "ListPartsResult",
            {
                "Bucket": bucket_id, "Key": key, "UploadId": upload_id, "MaxParts": 1000, "IsTruncated": False,
                "Part": [{"PartNumber": number, "ETag": etag, "Size": size} for number, (_, size, etag) in parts],
            },
        )

    def complete_multipart(self, request: Request, bucket_id: str, key: str, upload_id: str) -> Response:
        """s3-handler.ts completeMultiPartUpload: the listed parts, in order, become the object."""
        upload = self._upload(bucket_id, key, upload_id)
        root = self.s3._xml_body(request)
        wanted: list[tuple[int, str]] = []
        for part in self.s3._children(root, "Part"):
            numbers = self.s3._children(part, "PartNumber")
            etags = self.s3._children(part, "ETag")
            try:
                wanted.append((int((numbers[0].text or "").strip()), (etags[0].text or "").strip() if etags else ""))
            except (IndexError, ValueError) as err:
                raise S3Error("MalformedXML", 400, "The XML you provided was not well-formed or did not validate against our published schema") from err
        with self._uploads_lock:
            parts = dict(upload.parts)
        if not wanted:  # upstream: no list means every uploaded part
            wanted = [(number, etag) for number, (_, _, etag) in sorted(parts.items())]
        if [number for number, _ in wanted] != sorted({number for number, _ in wanted}):
            raise S3Error("InvalidPartOrder", 400, "The list of parts was not in ascending order. Parts must be ordered by part number.")
        for number, etag in wanted:
            if number not in parts or (etag and etag.strip('"') != parts[number][2].strip('"')):
                raise S3Error(
                    "InvalidPart", 400,
                    "One or more of the specified parts could not be found. The part may not have been uploaded, "
                    "or the specified entity tag may not have matched the part's entity tag.",
                )
        writer = self.s3.api.blobs.writer(limit=None)
        digests = hashlib.md5()
        try:
            for number, _ in wanted:
                version, _, etag = parts[number]
                digests.update(bytes.fromhex(etag.strip('"')))
                with self.s3.api.blobs.open(version) as source:
                    while chunk := source.read(4 * 1024 * 1024):
                        writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        final_etag = f'"{digests.hexdigest()}-{len(wanted)}"'
        version = writer.commit()
        metadata = {
            "eTag": final_etag,
            "size": writer.size,
            "mimetype": upload.content_type,
            "cacheControl": upload.cache_control,
            "lastModified": iso_time(datetime.now(timezone.utc)),
            "contentLength": writer.size,
            "httpStatusCode": 200,
        }
        self.s3.api.uploads.save_row(
            bucket_id=bucket_id, key=key, owner=None, version=version, metadata=metadata,
            user_metadata=upload.user_metadata, upsert=True,
        )
        self._forget(upload_id)
        return document(
            "CompleteMultipartUploadResult",
            {"Location": f"{bucket_id}/{key}", "Bucket": bucket_id, "Key": key, "ETag": final_etag},
        )

    def abort_multipart(self, bucket_id: str, key: str, upload_id: str) -> Response:
        """s3-handler.ts abortMultipartUpload: the parts are dropped; 204."""
        self._upload(bucket_id, key, upload_id)
        self._forget(upload_id)
        return Response(204)

    def _forget(self, upload_id: str) -> None:
        with self._uploads_lock:
            upload = self._uploads.pop(upload_id, None)
        for version, _, _ in (upload.parts.values() if upload else []):
            self.s3.api.blobs.delete(version)

