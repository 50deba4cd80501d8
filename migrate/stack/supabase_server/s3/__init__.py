"""Supabase Storage's S3 protocol endpoint (`/storage/v1/s3`), path-style, SigV4 with S3 access keys.

Mirrors src/http/routes/s3/ (router and commands) and
src/storage/protocols/s3/s3-handler.ts of github.com/supabase/storage over the
same catalog rows and blob files as the REST API, so an object written one way
reads the other way (docs: guides/storage/s3/compatibility "all these protocols
are interoperable"). What upstream implements and this server serves:
ListBuckets, CreateBucket, DeleteBucket, HeadBucket, GetBucketLocation,
ListObjects (v1: marker) and ListObjectsV2 (prefix, delimiter,
continuation-token, max-keys, start-after, encoding-type=url), HeadObject,
GetObject (Range, conditionals, response-* overrides), PutObject (plain or
aws-chunked body), CopyObject, DeleteObject, DeleteObjects,
CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
AbortMultipartUpload, ListParts, ListMultipartUploads (prefix, first 1000),
GetBucketVersioning (always Suspended). Not served here: UploadPartCopy, versioning, lifecycle and tagging (501 NotImplemented), and
session-token (user JWT) S3 auth. Multipart uploads in progress live in this
process's memory (upstream keeps them in storage.s3_multipart_uploads): a
restart forgets them, and their part files stay on disk unreferenced.

User metadata: `x-amz-meta-<name>` headers become `user_metadata` {name: value}
on write; on read, string ASCII values go out as `x-amz-meta-<lowercased
name>` and the rest are counted in `x-amz-missing-meta` (toAwsMetadataHeaders).
S3 access keys bypass row-level security ("full access to all S3 operations
across all buckets", docs guides/storage/s3/authentication).
"""

from __future__ import annotations

import threading
import urllib.parse
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterator

from migrate.stack.supabase_server.blobs import Incoming
from migrate.stack.supabase_server.catalog import StoredObject
from migrate.stack.supabase_server.errors import StorageError
from migrate.stack.supabase_server.rendering import last_modified, normalize_content_type
from migrate.stack.supabase_server.s3 import sigv4
from migrate.stack.supabase_server.s3.chunked import AwsChunkedBody
from migrate.stack.supabase_server.s3.listing import MAX_KEYS, Listing, encode_token, list_objects
from migrate.stack.supabase_server.s3.multipart import Multipart
from migrate.stack.supabase_server.s3.xml import S3_NAMESPACE, S3Error, document, error_document, iso_time
from migrate.stack.supabase_server.validation import is_valid_bucket_name
from migrate.stack.supabase_server.wire import (
    FileBody,
    MalformedBody,
    Request,
    Response,
    Unsatisfiable,
    etag_matches,
    http_date,
    parse_http_date,
    parse_range,
)

if TYPE_CHECKING:
    from migrate.stack.supabase_server.routes import StorageApi

PREFIX = "/storage/v1"
META_PREFIX = "x-amz-meta-"
MAX_XML_BODY = 2 * 1024 * 1024
_RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-disposition": "Content-Disposition",
    "response-cache-control": "Cache-Control",
    "response-content-encoding": "Content-Encoding",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
}
# codes.ts: the storage errors an S3 client may meet, with their S3 status.
_STORAGE_TO_S3 = {"NoSuchKey": 404, "NoSuchBucket": 404, "InvalidKey": 400, "EntityTooLarge": 413}


def _metadata_headers(user_metadata: Any) -> dict[str, str]:
    """s3-handler.ts toAwsMetadataHeaders."""
    if not isinstance(user_metadata, dict):
        return {}
    headers: dict[str, str] = {}
    missing = 0
    for name, value in user_metadata.items():
        if not name or not isinstance(value, str) or not value.isascii() or any(c in value for c in "\r\n\0"):
            missing += 1
            continue
        headers[META_PREFIX + str(name).lower()] = value
    if missing:
        headers["x-amz-missing-meta"] = str(missing)
    return headers


class S3Api:
    """The S3 routes over the REST API's catalog and blobs."""

    def __init__(self, api: "StorageApi", *, access_key_id: str, secret_access_key: str, region: str):
        self.api = api
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.region = region
        self.multipart = Multipart(self)
        # The verified signature of the request this thread serves (one request
        # at a time per connection thread): streaming bodies chain on it.
        self._local = threading.local()

    # -- dispatch -----------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """One S3 request; `request.target` is the raw target under /storage/v1 (`/s3/...`)."""
        raw_path, _, raw_query = request.target.partition("?")
        segments = raw_path[len("/s3") :].lstrip("/").split("/", 1)
        bucket = urllib.parse.unquote(segments[0]) if segments[0] else ""
        key = urllib.parse.unquote(segments[1]) if len(segments) > 1 else ""
        query = [
            (urllib.parse.unquote(name), urllib.parse.unquote(value))
            for name, _, value in (item.partition("=") for item in raw_query.split("&") if item)
        ]
        resource = "/".join(part for part in (bucket, key) if part)
        try:
            self._authenticate(request, raw_path, query)
            params = dict(query)
            response = self._route(request, bucket, key, params)
        except sigv4.SignatureError as err:
            response = error_document(S3Error(err.code, err.status, err.message), resource)
        except S3Error as err:
            response = error_document(err, resource)
        except StorageError as err:
            response = s3_error_response(err, resource)
        except MalformedBody as err:
            response = error_document(S3Error("IncompleteBody", 400, str(err)), resource)
        if request.method == "HEAD":
            response.omit_body = True
        return response

    def _authenticate(self, request: Request, raw_path: str, query: list[tuple[str, str]]) -> None:
        headers = {name.lower(): value for name, value in request.headers.items()}
        client = sigv4.parse(headers, query)
        self._local.client = client
        signed = sigv4.SignedRequest(method=request.method, raw_path=PREFIX + raw_path, query=query, headers=headers)
        sigv4.verify(client, signed, access_key=self.access_key_id, secret=self.secret_access_key, region=self.region)

    def _route(self, request: Request, bucket: str, key: str, params: dict[str, str]) -> Response:
        method = request.method
        if not bucket:
            if method == "GET":
                return self.list_buckets()
            raise S3Error("NotImplemented", 501, "A header or query you provided implies functionality that is not implemented")
        if not key:
            if method == "HEAD":
                return self.head_bucket(bucket)
            if method == "GET" and "location" in params:
                return self.bucket_location(bucket)
            if method == "GET" and "versioning" in params:
                # s3-handler.ts getBucketVersioning: versioning is never enabled.
                self._bucket(bucket)
                return document("VersioningConfiguration", {"Status": "Suspended", "MfaDelete": "Disabled"})
            if method == "GET" and "uploads" in params:
                self._bucket(bucket)
                return self.multipart.list_uploads(bucket, params.get("prefix", ""))
            if method == "GET" and params.get("list-type") == "2":
                return self.list_objects_v2(bucket, params)
            if method == "GET" and not set(params) - {"prefix", "delimiter", "marker", "max-keys", "encoding-type"}:
                return self.list_objects_v1(bucket, params)
            if method == "PUT" and not params:
                return self.create_bucket(request, bucket)
            if method == "DELETE" and not params:
                return self.delete_bucket(bucket)
            if method == "POST" and "delete" in params:
                return self.delete_objects(request, bucket)
            raise S3Error("NotImplemented", 501, "A header or query you provided implies functionality that is not implemented")
        if "uploadId" in params:
            upload_id = params["uploadId"]
            if method == "PUT" and "partNumber" in params:
                if request.header("x-amz-copy-source"):
                    raise S3Error("NotImplemented", 501, "UploadPartCopy is not implemented by this server")
                return self.multipart.upload_part(request, bucket, key, upload_id, params["partNumber"])
            if method == "POST":
                return self.multipart.complete_multipart(request, bucket, key, upload_id)
            if method == "DELETE":
                return self.multipart.abort_multipart(bucket, key, upload_id)
            if method == "GET":
                return self.multipart.list_parts(bucket, key, upload_id)
        if method == "POST" and "uploads" in params:
            return self.multipart.create_multipart(request, bucket, key)
        if method in ("GET", "HEAD"):
            return self.get_object(request, bucket, key, params, head=method == "HEAD")
        if method == "PUT":
            if request.header("x-amz-copy-source"):
                return self.copy_object(request, bucket, key)
            return self.put_object(request, bucket, key)
        if method == "DELETE":
            return self.delete_object(bucket, key)
        raise S3Error("NotImplemented", 501, "A header or query you provided implies functionality that is not implemented")

    # -- buckets ------------------------------------------------------------------------

    def _bucket(self, bucket_id: str) -> None:
        if self.api.catalog.get_bucket(bucket_id) is None:
            raise S3Error("NoSuchBucket", 404, "The specified bucket does not exist")

    def list_buckets(self) -> Response:
        """s3-handler.ts listBuckets: Name and CreationDate of every bucket."""
        buckets = [
            {"Name": bucket.name, "CreationDate": iso_time(bucket.created_at)} for bucket in self.api.catalog.list_buckets()
        ]
        return document("ListAllMyBucketsResult", {"Buckets": {"Bucket": buckets}})

    def head_bucket(self, bucket_id: str) -> Response:
        """s3-handler.ts headBucket: 200 with x-amz-bucket-region."""
        self._bucket(bucket_id)
        return Response(200, {"x-amz-bucket-region": self.region}, omit_body=True)

    def bucket_location(self, bucket_id: str) -> Response:
        """s3-handler.ts getBucketLocation."""
        self._bucket(bucket_id)
        body = f'<?xml version="1.0" encoding="UTF-8"?><LocationConstraint xmlns="{S3_NAMESPACE}">{self.region}</LocationConstraint>'
        return Response(200, {"Content-Type": "application/xml"}, body.encode())

    def create_bucket(self, request: Request, bucket_id: str) -> Response:
        """s3-handler.ts createBucket: public when `x-amz-acl: public-read`; answers Location."""
        if not is_valid_bucket_name(bucket_id):
            raise S3Error("InvalidBucketName", 400, "The specified bucket is not valid.")
        request.body.drain(MAX_XML_BODY)  # an optional CreateBucketConfiguration
        public = (request.header("x-amz-acl") or "").lower() == "public-read"
        try:
            self.api.catalog.create_bucket(
                bucket_id=bucket_id, name=bucket_id, owner=None, public=public, file_size_limit=None, allowed_mime_types=None
            )
        except StorageError as err:
            raise S3Error("BucketAlreadyExists", 409, "The requested bucket name is not available.") from err
        return Response(200, {"Location": f"/{bucket_id}"})

    def delete_bucket(self, bucket_id: str) -> Response:
        """s3-handler.ts deleteBucket: 204; a bucket with objects is BucketNotEmpty."""
        self._bucket(bucket_id)
        try:
            deleted = self.api.catalog.delete_bucket(bucket_id)
        except StorageError as err:
            raise S3Error("BucketNotEmpty", 409, "The bucket you tried to delete is not empty") from err
        if not deleted:
            raise S3Error("NoSuchBucket", 404, "The specified bucket does not exist")
        return Response(204)

    def list_objects_v1(self, bucket_id: str, params: dict[str, str]) -> Response:
        """s3-handler.ts listObjects: ListObjectsV2 with Marker; NextMarker only with a delimiter."""
        marker = params.get("marker") or None
        delimiter = params.get("delimiter", "")
        # A marker that is a common prefix (a NextMarker) continues past everything under it.
        token = encode_token("p", marker) if marker and delimiter and marker.endswith(delimiter) else None
        page, fields = self._list(bucket_id, params, start_after=None if token else marker, token=token)
        last = (page.contents[-1]["Key"] if page.contents else None, page.prefixes[-1] if page.prefixes else None)
        next_marker = max((value for value in last if value is not None), default=None)
        return document(
            "ListBucketResult",
            {
                "Name": bucket_id,
                "Prefix": fields["Prefix"],
                "Marker": fields["encode"](marker) or "",
                "NextMarker": fields["encode"](next_marker) if page.truncated and delimiter else None,
                "MaxKeys": fields["MaxKeys"],
                "Delimiter": fields["Delimiter"],
                "IsTruncated": page.truncated,
                "Contents": fields["Contents"],
                "CommonPrefixes": fields["CommonPrefixes"],
                "EncodingType": fields["EncodingType"],
            },
        )

    def _list(
        self, bucket_id: str, params: dict[str, str], *, start_after: str | None, token: str | None
    ) -> tuple[Listing, dict[str, Any]]:
        self._bucket(bucket_id)
        try:
            max_keys = min(int(params.get("max-keys", MAX_KEYS)), MAX_KEYS)
        except ValueError as err:
            raise S3Error("InvalidArgument", 400, "Provided max-keys not an integer or within integer range") from err
        if max_keys < 0:
            raise S3Error("InvalidArgument", 400, "max-keys must not be negative")
        prefix = params.get("prefix", "")
        delimiter = params.get("delimiter", "")
        encoding = params.get("encoding-type")
        if encoding not in (None, "url"):
            raise S3Error("InvalidArgument", 400, "Invalid Encoding Method specified in Request")
        page = list_objects(
            self.api.catalog.pool, bucket_id=bucket_id, prefix=prefix, delimiter=delimiter,
            max_keys=max_keys, start_after=start_after, token=token,
        )

        def encoded(value: str | None) -> str | None:
            # encodeRFC3986URIComponent, as upstream's encodeListResponseValue.
            return urllib.parse.quote(value, safe="-_.~") if value is not None and encoding == "url" else value

        return page, {
            "encode": encoded,
            "Prefix": encoded(prefix),
            "MaxKeys": max_keys,
            "Delimiter": encoded(delimiter) if delimiter else None,
            "EncodingType": encoding,
            "Contents": [{**item, "Key": encoded(item["Key"])} for item in page.contents],
            "CommonPrefixes": [{"Prefix": encoded(common)} for common in page.prefixes],
        }

    def list_objects_v2(self, bucket_id: str, params: dict[str, str]) -> Response:
        """s3-handler.ts listObjectsV2."""
        start_after = params.get("start-after")
        token = params.get("continuation-token")
        page, fields = self._list(bucket_id, params, start_after=start_after, token=token)
        return document(
            "ListBucketResult",
            {
                "Name": bucket_id,
                "Prefix": fields["Prefix"],
                "ContinuationToken": token,
                "StartAfter": fields["encode"](start_after),
                "Contents": fields["Contents"],
                "IsTruncated": page.truncated,
                "MaxKeys": fields["MaxKeys"],
                "Delimiter": fields["Delimiter"],
                "EncodingType": fields["EncodingType"],
                "KeyCount": len(page.contents) + len(page.prefixes),
                "CommonPrefixes": fields["CommonPrefixes"],
                "NextContinuationToken": page.next_token,
            },
        )

    # -- objects ------------------------------------------------------------------------

    def _object(self, bucket_id: str, key: str) -> StoredObject:
        obj = self.api.catalog.find_object(bucket_id, key)
        if obj is None:
            self._bucket(bucket_id)
            raise S3Error("NoSuchKey", 404, "The specified key does not exist.")
        return obj

    def get_object(self, request: Request, bucket_id: str, key: str, params: dict[str, str], *, head: bool) -> Response:
        """s3-handler.ts getObject / dbHeadObject: bytes streamed from the blob file, Range honoured."""
        obj = self._object(bucket_id, key)
        path = self.api.blobs.path_for(obj.version)
        try:
            size = path.stat().st_size
        except FileNotFoundError as err:
            raise S3Error("NoSuchKey", 404, "The specified key does not exist.") from err
        metadata = obj.metadata
        etag = str(metadata.get("eTag") or "")
        modified = last_modified(obj)
        headers = {
            "Accept-Ranges": "bytes",
            "Cache-Control": str(metadata.get("cacheControl") or ""),
            "Content-Type": normalize_content_type(str(metadata.get("mimetype") or "application/octet-stream")),
            "ETag": etag,
            **({"Last-Modified": http_date(modified)} if modified else {}),
            **_metadata_headers(obj.user_metadata),
        }
        if_match = request.header("If-Match")
        if if_match and not etag_matches(if_match, etag):
            raise S3Error("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold")
        since = parse_http_date(request.header("If-Unmodified-Since"))
        if not if_match and since and modified and modified.replace(microsecond=0) > since:
            raise S3Error("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold")
        if_none_match = request.header("If-None-Match")
        since = parse_http_date(request.header("If-Modified-Since"))
        if (if_none_match and etag_matches(if_none_match, etag)) or (
            not if_none_match and since and modified and modified.replace(microsecond=0) <= since
        ):
            return Response(304, {key_: value for key_, value in headers.items() if key_ != "Content-Type"})
        for name, header in _RESPONSE_OVERRIDES.items():
            if params.get(name):
                headers[header] = params[name]
        try:
            byte_range = parse_range(request.header("Range"), size)
        except Unsatisfiable as err:
            raise S3Error(
                "InvalidRange", 416, "The requested range is not satisfiable", headers={"Content-Range": f"bytes */{size}"}
            ) from err
        if head:
            headers["Content-Length"] = str(size)
            return Response(200, headers, omit_body=True)
        start, end = byte_range if byte_range else (0, size - 1)
        if byte_range:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return Response(206 if byte_range else 200, headers, file=FileBody(path, start, max(0, end - start + 1)))

    def _chunks(self, request: Request) -> tuple[Iterator[bytes], int | None]:
        """The payload, aws-chunked framing removed and each chunk's signature checked
        (signature-v4-stream.ts); STREAMING-UNSIGNED-PAYLOAD bodies carry none."""
        content_sha = request.header("x-amz-content-sha256") or ""
        encoding = (request.header("Content-Encoding") or "").lower()
        if content_sha.startswith("STREAMING-") or "aws-chunked" in encoding:
            declared = request.header("x-amz-decoded-content-length")
            verifier = None
            if content_sha.startswith("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"):
                verifier = sigv4.ChunkVerifier(self._local.client, secret=self.secret_access_key, region=self.region)
            body = AwsChunkedBody(request.body, verifier=verifier)
            return body.chunks(), int(declared) if declared and declared.isdigit() else None
        return request.body.chunks(), request.body.length

    def _incoming(self, request: Request, *, user_metadata: dict[str, str] | None = None) -> Incoming:
        chunks, length = self._chunks(request)
        return Incoming(
            mimetype=request.header("Content-Type") or "application/octet-stream",
            cache_control=request.header("Cache-Control") or "no-cache",
            user_metadata=user_metadata if user_metadata is not None else self._request_metadata(request),
            chunks=chunks,
            declared_length=length,
        )

    @staticmethod
    def _request_metadata(request: Request) -> dict[str, str] | None:
        """s3-handler.ts parseMetadataHeaders: x-amz-meta-<name> -> {name: value}."""
        found = {
            name.lower()[len(META_PREFIX) :]: str(value)
            for name, value in request.headers.items()
            if name.lower().startswith(META_PREFIX)
        }
        return found or None

    def _limit(self, bucket_id: str) -> int:
        bucket = self.api.catalog.get_bucket(bucket_id)
        if bucket is None:
            raise S3Error("NoSuchBucket", 404, "The specified bucket does not exist")
        limit = self.api.file_size_limit
        return min(limit, bucket.file_size_limit) if bucket.file_size_limit is not None else limit

    def put_object(self, request: Request, bucket_id: str, key: str) -> Response:
        """s3-handler.ts putObject: an upsert; answers the ETag."""
        self.api._valid_key(key)
        limit = self._limit(bucket_id)
        incoming = self._incoming(request)
        if incoming.declared_length is not None and incoming.declared_length > limit:
            raise S3Error("EntityTooLarge", 413, "Your proposed upload exceeds the maximum allowed object size.")
        obj = self.api.uploads.store(bucket_id=bucket_id, key=key, owner=None, incoming=incoming, limit=limit, upsert=True)
        return Response(200, {"ETag": str(obj.metadata.get("eTag") or "")})

    def copy_object(self, request: Request, bucket_id: str, key: str) -> Response:
        """s3-handler.ts copyObject: metadata copied unless x-amz-metadata-directive is REPLACE."""
        self.api._valid_key(key)
        source = urllib.parse.unquote(request.header("x-amz-copy-source") or "").lstrip("/")
        source_bucket, _, source_key = source.partition("/")
        source_key = source_key.split("?versionId=", 1)[0]
        if not source_key:
            raise S3Error("InvalidArgument", 400, "Copy Source must mention the source bucket and key")
        original = self._object(source_bucket, source_key)
        self._bucket(bucket_id)
        metadata = dict(original.metadata)
        user_metadata = original.user_metadata
        if (request.header("x-amz-metadata-directive") or "COPY").upper() == "REPLACE":
            metadata["mimetype"] = request.header("Content-Type") or metadata.get("mimetype")
            metadata["cacheControl"] = request.header("Cache-Control") or metadata.get("cacheControl")
            user_metadata = self._request_metadata(request)
        metadata["lastModified"] = iso_time(datetime.now(timezone.utc))
        version = self.api.blobs.clone(original.version)
        obj = self.api.uploads.save_row(
            bucket_id=bucket_id, key=key, owner=None, version=version, metadata=metadata,
            user_metadata=user_metadata, upsert=True,
        )
        return document("CopyObjectResult", {"ETag": obj.metadata.get("eTag"), "LastModified": iso_time(obj.updated_at)})

    def delete_object(self, bucket_id: str, key: str) -> Response:
        """s3-handler.ts deleteObject: 204 whether or not the key existed (NoSuchBucket if the bucket does not)."""
        removed = self.api.catalog.delete_objects(bucket_id, [key])
        if not removed:
            self._bucket(bucket_id)
        for obj in removed:
            self.api.blobs.delete(obj.version)
        return Response(204)

    def _xml_body(self, request: Request) -> ElementTree.Element:
        chunks, _ = self._chunks(request)
        raw = b"".join(chunks)
        if len(raw) > MAX_XML_BODY:
            raise S3Error("MaxMessageLengthExceeded", 400, "Your request was too big.")
        try:
            return ElementTree.fromstring(raw)
        except ElementTree.ParseError as err:
            raise S3Error(
                "MalformedXML", 400, "The XML you provided was not well-formed or did not validate against our published schema"
            ) from err

    @staticmethod
    def _children(parent: ElementTree.Element, name: str) -> list[ElementTree.Element]:
        return [child for child in parent if child.tag.rsplit("}", 1)[-1] == name]

    def delete_objects(self, request: Request, bucket_id: str) -> Response:
        """s3-handler.ts deleteObjects: every requested key is Deleted (missing ones too)."""
        root = self._xml_body(request)
        keys = [
            "".join(child.text or "" for child in self._children(item, "Key"))
            for item in self._children(root, "Object")
        ]
        quiet = any((child.text or "").strip().lower() == "true" for child in self._children(root, "Quiet"))
        if len(keys) > 1000:
            raise S3Error("MalformedXML", 400, "The XML you provided was not well-formed or did not validate against our published schema")
        removed = self.api.catalog.delete_objects(bucket_id, keys) if keys else []
        if not removed:
            self._bucket(bucket_id)
        for obj in removed:
            self.api.blobs.delete(obj.version)
        return document("DeleteResult", {"Deleted": [] if quiet else [{"Key": key} for key in keys]})


def s3_error_response(err: StorageError, resource: str) -> Response:
    """A storage error (or an injected fault) as the S3 endpoint answers it: XML, the error's own status."""
    code = err.code or "InvalidRequest"
    # Storage's REST errors travel as HTTP 400 with the real status in the body; S3 sends the real one.
    status = err.http_status or _STORAGE_TO_S3.get(code, err.status)
    return error_document(S3Error(code, status, err.message, headers=dict(err.headers)), resource.strip("/"))
