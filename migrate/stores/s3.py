"""Amazon S3 and S3-compatible stores (SeaweedFS, MinIO, Supabase's /storage/v1/s3).

Serves both as a source (list, head, ranged reads) and as the destination
(put, multipart). The one module that imports boto3/botocore.

Retries: botocore's own retry loop is switched off (`total_max_attempts=1`);
every failure is translated into `migrate.errors` and `migrate.retry` alone
decides what to retry, so attempts never multiply.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, replace
from typing import Any, Iterator, Mapping

import boto3
import botocore.exceptions
from botocore.config import Config

from migrate.checksums import b64_digest
from migrate.errors import BucketNotFound, ObjectNotFound, ServiceUnavailable, TransientError
from migrate.metadata import decode_metadata
from migrate.retry import call_with_retries
from migrate.stores.base import ObjectInfo, SourceStore, checked_body, fetch_each, range_header
from migrate.stores.s3_errors import ConditionalWriteFailed, FolderKeyRefused, HeaderRefused, KeyNotKept, UploadGone, _error_code, translate_error  # noqa: F401 - re-exported: the engine catches these from here
from migrate.stores.s3_http import S3HttpClient
from migrate.stores.s3_resolve import S3Resolution
from migrate.stores.s3_write import _NO_SETTINGS, naming_headers as _naming_headers, path_like_key, send_expires_as_text, write_settings  # noqa: F401 - re-exported

# How much of a response body we pull per read: large enough to keep per-call
# overhead low, small enough that it is noise next to the part size.
READ_CHUNK = 1024 * 1024
# ListObjectsV2's MaxKeys ceiling (and default): S3 never answers more per page.
LIST_PAGE_SIZE = 1000

@dataclass(frozen=True)
class S3Location:
    """Where an S3-compatible service is and how to authenticate to it.

    Credentials are never part of a plan file: either they are None (boto3's
    standard chain: environment, shared config/profile, instance role) or the
    caller resolved them from environment variables the plan names.
    """

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    def __repr__(self) -> str:  # never show credentials
        return f"S3Location(endpoint_url={self.endpoint_url!r}, region={self.region!r}, profile={self.profile!r})"

    def describe(self) -> str:
        return self.endpoint_url or f"s3 ({self.region or 'default region'})"


def _unquote(etag: str | None) -> str | None:
    return etag.strip('"') if etag else etag


_DATA_LOADER: Any = None
_DATA_LOADER_LOCK = threading.Lock()


def _share_data_loader(session: boto3.session.Session) -> None:
    """One botocore data loader for every store of the process: the S3 service model is parsed once, not per client.

    A run opens two stores (source and destination); each session would load
    and keep its own copy of the model (about 13 MiB and 40 ms of CPU each).
    The first session's own loader is shared, so its data path is the one
    botocore would have used anyway.
    """
    global _DATA_LOADER
    with _DATA_LOADER_LOCK:
        if _DATA_LOADER is None:
            _DATA_LOADER = session._session.get_component("data_loader")
        else:
            session._session.register_component("data_loader", _DATA_LOADER)


class S3Store(SourceStore):
    """A bucket-agnostic handle on one S3-compatible service."""

    kind = "s3"
    # A GET answers the object's Content-Type, Cache-Control, Content-Disposition,
    # Content-Encoding, Content-Language, Expires and user metadata: `run` takes them from it (records planned from a
    # listing leave them null, see `migrate.headers.source_headers`).
    headers_on_read = True

    def __init__(
        self,
        location: S3Location,
        *,
        max_connections: int = 32,
        timeout: float = 60.0,
        fetch_metadata: bool = False,
        fast_data_path: bool = True,
        page_size: int = LIST_PAGE_SIZE,
        max_attempts: int = 5,
    ):
        if not 1 <= page_size <= LIST_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{LIST_PAGE_SIZE} (S3's MaxKeys), got {page_size}")
        self.location = location
        # Keys per ListObjectsV2 page; tests lower it to reach page two cheaply.
        self.page_size = page_size
        # Listing, bucket checks and the HEADs that complete a listing are
        # retried here (nothing above retries them); object reads and writes
        # are retried by the stage that calls them.
        self.max_attempts = max_attempts
        # As a source: ListObjectsV2 carries no Content-Type, Cache-Control or
        # user metadata. `fetch_metadata` completes each listed page with HEADs;
        # the plan does not ask for them (nothing it decides depends on them):
        # the GET that reads the bytes carries them (`headers_on_read`).
        self.fetch_metadata = fetch_metadata
        self._max_connections = max_connections
        session = boto3.session.Session(
            profile_name=location.profile,
            aws_access_key_id=location.access_key_id,
            aws_secret_access_key=location.secret_access_key,
            aws_session_token=location.session_token,
            # None: botocore's own chain (AWS_REGION, AWS_DEFAULT_REGION, the profile's region).
            region_name=location.region,
        )
        _share_data_loader(session)
        # Addressing: the profile's/config's `s3.addressing_style` wins; an
        # endpoint named in the plan (S3-compatible servers) defaults to path style.
        configured_s3 = session._session.get_config_variable("s3") or {}
        s3_config = {} if configured_s3.get("addressing_style") or not location.endpoint_url else {"addressing_style": "path"}
        config = Config(
            max_pool_connections=max_connections,
            connect_timeout=10,
            read_timeout=timeout,
            # One retry loop only: ours (migrate.retry).
            retries={"total_max_attempts": 1, "mode": "standard"},
            # We compute and send our own checksums; do not let botocore add a
            # second pass over every body (or trailers some servers reject).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3=s3_config,
            tcp_keepalive=True,
        )
        self.client = session.client("s3", endpoint_url=location.endpoint_url, config=config)
        send_expires_as_text(self.client)
        # Endpoint, region, addressing, proxies and TLS trust: resolved once, by
        # botocore, for this client; the lean path asks it (see s3_resolve.py).
        self.resolution = S3Resolution(
            self.client,
            client_for_region=lambda region: session.client("s3", endpoint_url=location.endpoint_url, config=config, region_name=region),
        )
        # GET/PUT/UploadPart go through the lean client (see s3_http.py) when
        # credentials are at hand; without them boto3 raises the clear error.
        self.http: S3HttpClient | None = None
        credentials = session.get_credentials()
        if fast_data_path and credentials is not None:
            self.http = S3HttpClient(
                resolution=self.resolution,
                credentials=credentials.get_frozen_credentials,
                timeout=timeout,
                translate=lambda err, what: translate_error(err, what=what),
            )

    @property
    def endpoint(self) -> str:
        return self.location.endpoint_url or f"S3 ({self.location.region or 'us-east-1'})"

    # -- helpers -----------------------------------------------------------
    def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(**kwargs)
        except Exception as err:  # noqa: BLE001 - translated, never swallowed
            raise translate_error(err, what=what) from err

    def _call_retrying(self, what: str, method: str, **kwargs: Any) -> Any:
        """`_call` through the one retry policy: for requests no stage retries (listing, bucket checks)."""
        return call_with_retries(lambda: self._call(what, method, **kwargs), max_attempts=self.max_attempts)

    @staticmethod
    def _info_from_head(key: str, response: Mapping[str, Any]) -> ObjectInfo:
        checksums = {
            name: response[field]
            for name, field in (
                ("sha256", "ChecksumSHA256"),
                ("crc64nvme", "ChecksumCRC64NVME"),
                ("crc32", "ChecksumCRC32"),
                ("crc32c", "ChecksumCRC32C"),
                ("sha1", "ChecksumSHA1"),
            )
            if response.get(field)
        }
        return ObjectInfo(
            key=key,
            size=int(response.get("ContentLength", 0)),
            etag=_unquote(response.get("ETag")),
            content_type=response.get("ContentType"),
            cache_control=response.get("CacheControl"),
            content_disposition=response.get("ContentDisposition"),
            last_modified=response.get("LastModified"),
            user_metadata=decode_metadata(response.get("Metadata")),
            storage_class=response.get("StorageClass"),
            checksums=checksums,
            server_side_encryption=response.get("ServerSideEncryption"),
            sse_kms_key_id=response.get("SSEKMSKeyId"),
            content_encoding=response.get("ContentEncoding"),
            content_language=response.get("ContentLanguage"),
            # botocore parses Expires to a datetime; "ExpiresString" is the header text as the server sent it.
            expires=response.get("ExpiresString"),
        )

    # -- SourceStore -------------------------------------------------------
    def list_buckets(self) -> list[str]:
        response = self._call_retrying(self.location.describe(), "list_buckets")
        return [bucket["Name"] for bucket in response.get("Buckets", [])]

    def check_bucket(self, bucket: str) -> None:
        """Raise BucketNotFound/AccessDenied early, with one clear line."""

        def attempt() -> None:
            try:
                self.client.head_bucket(Bucket=bucket)
            except botocore.exceptions.ClientError as err:
                code, status = _error_code(err)
                if status == 404 or code in ("NoSuchBucket", "404", "NotFound"):
                    raise BucketNotFound(
                        f"s3://{bucket} at {self.location.describe()}: the bucket does not exist; create it or fix the bucket name in the plan"
                    ) from err
                raise translate_error(err, what=f"s3://{bucket}") from err
            except Exception as err:  # noqa: BLE001
                raise translate_error(err, what=f"s3://{bucket} at {self.location.describe()}") from err

        try:
            call_with_retries(attempt, max_attempts=self.max_attempts)
        except TransientError as err:
            raise ServiceUnavailable(
                f"s3://{bucket}: cannot reach {self.location.describe()} ({err}); check the endpoint URL and that the service is running"
            ) from err

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[list[ObjectInfo]]:
        token: str | None = None
        while True:
            response = self._list_page(bucket, prefix, token)
            page = [
                ObjectInfo(
                    key=item["Key"],
                    size=int(item["Size"]),
                    etag=_unquote(item.get("ETag")),
                    last_modified=item.get("LastModified"),
                    storage_class=item.get("StorageClass"),
                )
                for item in response.get("Contents", [])
            ]
            if page:
                yield self._with_metadata(bucket, page) if self.fetch_metadata else page
            if not response.get("IsTruncated"):
                return
            token = response.get("NextContinuationToken")
            if not token:
                return

    def _list_page(self, bucket: str, prefix: str, token: str | None) -> dict[str, Any]:
        """One ListObjectsV2 page (retried), boto3-shaped: through the lean client when there is one (a tenth of botocore's CPU per key)."""
        if self.http is not None:
            http = self.http

            def lean() -> dict[str, Any]:
                contents, next_token = http.list_objects_v2(bucket, prefix=prefix, max_keys=self.page_size, token=token)
                return {"Contents": contents, "IsTruncated": next_token is not None, "NextContinuationToken": next_token}

            return call_with_retries(lean, max_attempts=self.max_attempts)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": self.page_size}
        if token:
            kwargs["ContinuationToken"] = token
        return self._call_retrying(f"s3://{bucket}/{prefix}", "list_objects_v2", **kwargs)  # type: ignore[no-any-return]

    def _with_metadata(self, bucket: str, page: list[ObjectInfo]) -> list[ObjectInfo]:
        heads = fetch_each(
            page, lambda info: call_with_retries(lambda: self.head(bucket, info.key), max_attempts=self.max_attempts), workers=min(self._max_connections, 16)
        )
        # Keep the listing's storage class: HEAD omits it for STANDARD.
        return [
            replace(head, storage_class=listed.storage_class) if head is not None else listed
            for listed, head in zip(page, heads)
        ]

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            if self.http is not None:
                response = self.http.head(bucket, key)
            else:
                response = self.client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        except Exception as err:  # noqa: BLE001
            translated = translate_error(err, what=f"s3://{bucket}/{key}")
            if isinstance(translated, ObjectNotFound):
                return None
            raise translated from err
        return self._info_from_head(key, response) if self._listed_as_written(bucket, key) else None

    def _listed_as_written(self, bucket: str, key: str) -> bool:
        """False when `key` is path-like and not listed: its HEAD or GET reached another key's object (`path_like_key`)."""
        # The prefix ends at the last '//': SeaweedFS echoes a prefix `a//b` back as the key `a//b.txt` for its `a/b.txt`.
        if not path_like_key(key):
            return True
        prefix, token = key[: key.rindex("//") + 2] if "//" in key else key, None
        while True:
            page = self._list_page(bucket, prefix, token)
            if any(item["Key"] == key for item in page.get("Contents", [])):
                return True
            token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
            if not token:
                return False

    def open(self, bucket: str, key: str, *, offset: int = 0, length: int | None = None) -> tuple[ObjectInfo, Iterator[bytes]]:
        """GET the object (or a range); return its metadata and a chunk iterator.

        The iterator raises TransientError when the body ends before the
        announced length (a truncated response is a failed attempt).
        """
        what = f"s3://{bucket}/{key}"
        if not self._listed_as_written(bucket, key):  # GET would read another key's object
            raise ObjectNotFound(f"{what}: no object is listed under this key")
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        byte_range = range_header(offset, length)
        if byte_range:
            kwargs["Range"] = byte_range
        if length == 0:
            return self.empty_read(bucket, key)
        if self.http is not None:
            fields, chunks = self.http.get(bucket, key, offset=offset, length=length)
            info = self._info_from_head(key, fields)
            return info, checked_body(
                chunks, expected=info.size, what=what, close=chunks.close, translate=lambda err: translate_error(err, what=what)  # type: ignore[attr-defined]
            )
        response = self._call(what, "get_object", **kwargs)
        info = self._info_from_head(key, response)
        expected = int(response.get("ContentLength", 0))
        body = response["Body"]

        return info, checked_body(
            iter(lambda: body.read(READ_CHUNK), b""),
            expected=expected,
            what=what,
            close=body.close,
            translate=lambda err: translate_error(err, what=what),
        )

    def open_into(self, bucket: str, key: str, buffer: memoryview, *, offset: int) -> tuple[ObjectInfo, Iterator[memoryview]]:
        """A range straight into `buffer` on the lean path (see `S3HttpClient.get_into`); else the copying default."""
        if self.http is None or not len(buffer) or path_like_key(key):  # path-like: through `open`, which checks the listing
            return super().open_into(bucket, key, buffer, offset=offset)
        what = f"s3://{bucket}/{key}"
        fields, filled = self.http.get_into(bucket, key, buffer, offset=offset)
        info = self._info_from_head(key, fields)
        return info, checked_body(  # type: ignore[return-value]
            filled, expected=info.size, what=what, close=filled.close, translate=lambda err: translate_error(err, what=what)  # type: ignore[arg-type, attr-defined]
        )

    # -- destination primitives -------------------------------------------
    def put_object(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        content_md5: bytes,
        checksum: tuple[str, str] | None = None,
        if_none_match: bool = False,
        sha256_hex: str | None = None,
        **write_args: Any,
    ) -> str:
        """PUT a whole object from memory; the server checks Content-MD5 (and the checksum). Returns the ETag."""
        try:
            etag = self._put_object(bucket, key, body, content_md5=content_md5, checksum=checksum, if_none_match=if_none_match, sha256_hex=sha256_hex, **write_args)
        except HeaderRefused as err:
            raise _naming_headers(err, write_args) from err
        self._check_folder_key(bucket, key, len(body))
        return etag

    def _check_folder_key(self, bucket: str, key: str, size: int) -> None:
        """A key ending in "/" with bytes is an object; some servers (SeaweedFS) keep it as an empty folder.

        Such a write is undone and failed with the reason, never left as 0 bytes; a path-like key stored under another key fails too.
        """
        if not self._listed_as_written(bucket, key):
            # Not deleted: a DELETE of this key would reach the object it was stored as, maybe another record's.
            raise KeyNotKept(f"s3://{bucket}/{key}: the destination lists no object under this key after the write (it stores keys as file paths: '//' collapsed, a leading '/' dropped); map it to another key with a rule, or exclude it")
        if not key.endswith("/") or size == 0:
            return
        stored = call_with_retries(lambda: self.head(bucket, key), max_attempts=self.max_attempts)
        if stored is not None and stored.size == size:
            return
        if stored is not None:
            self._call_retrying(f"s3://{bucket}/{key}", "delete_object", Bucket=bucket, Key=key)
        raise FolderKeyRefused(
            f"s3://{bucket}/{key}: the destination kept {stored.size if stored else 'none'} of {size} bytes for this key ending in '/' "
            "(it treats such keys as folders); map it to another key with a rule, or exclude it"
        )

    def _put_object(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        content_md5: bytes,
        checksum: tuple[str, str] | None,
        if_none_match: bool,
        sha256_hex: str | None,
        **write_args: Any,
    ) -> str:
        if self.http is not None:
            headers = write_settings(as_headers=True, **write_args)
            headers["Content-MD5"] = b64_digest(content_md5)
            if checksum:
                headers[f"x-amz-checksum-{checksum[0].lower()}"] = checksum[1]
            if if_none_match:
                headers["If-None-Match"] = "*"
            return self.http.put(bucket, key, body, headers=headers, payload_sha256=sha256_hex)
        args = write_settings(as_headers=False, **write_args)
        if checksum:
            algorithm, value = checksum
            args[f"Checksum{algorithm}"] = value
        if if_none_match:
            args["IfNoneMatch"] = "*"
        response = self._call(
            f"s3://{bucket}/{key}",
            "put_object",
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentLength=len(body),
            ContentMD5=b64_digest(content_md5),
            **args,
        )
        return _unquote(response.get("ETag")) or ""

    def create_multipart_upload(
        self, bucket: str, key: str, *, checksum_algorithm: str | None = None, full_object: bool = False, **write_args: Any
    ) -> str:
        """Start an upload; `full_object` asks S3 to check and store one whole-object CRC (`ChecksumType=FULL_OBJECT`)."""
        args = write_settings(as_headers=False, **write_args)
        if checksum_algorithm:
            args["ChecksumAlgorithm"] = checksum_algorithm
            if full_object:
                args["ChecksumType"] = "FULL_OBJECT"
        try:
            response = self._call(f"s3://{bucket}/{key}", "create_multipart_upload", Bucket=bucket, Key=key, **args)
        except HeaderRefused as err:
            raise _naming_headers(err, write_args) from err
        return str(response["UploadId"])

    def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: bytes | bytearray | memoryview,
        *,
        content_md5: bytes | None,
        checksum: tuple[str, str] | None = None,
        sha256_hex: str | None = None,
    ) -> str:
        """Upload one part; S3 checks it against the checksum and/or Content-MD5 (at least one is required).

        `body` may be a view of a pooled part buffer: the lean path sends it as is.
        """
        assert content_md5 is not None or checksum is not None, "a part needs a checksum or Content-MD5"
        if self.http is not None:
            headers = {"Content-MD5": b64_digest(content_md5)} if content_md5 else {}
            if checksum:
                headers[f"x-amz-checksum-{checksum[0].lower()}"] = checksum[1]
            query = {"partNumber": str(part_number), "uploadId": upload_id}
            return self.http.put(bucket, key, body, headers=headers, payload_sha256=sha256_hex, query=query)
        args: dict[str, Any] = {}
        if checksum:
            algorithm, value = checksum
            args[f"Checksum{algorithm}"] = value
        response = self._call(
            f"s3://{bucket}/{key} part {part_number}",
            "upload_part",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=part_number,
            Body=bytes(body) if isinstance(body, memoryview) else body,  # botocore takes bytes or files, not views
            ContentLength=len(body),
            **({"ContentMD5": b64_digest(content_md5)} if content_md5 else {}),
            **args,
        )
        return _unquote(response.get("ETag")) or ""

    def list_parts(self, bucket: str, key: str, upload_id: str) -> dict[int, dict[str, Any]]:
        """Parts the destination holds for an upload: {part_number: {"etag", "size", ...}}."""
        parts: dict[int, dict[str, Any]] = {}
        marker = 0
        while True:
            response = self._call(
                f"s3://{bucket}/{key}",
                "list_parts",
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumberMarker=marker,
            )
            for part in response.get("Parts", []):
                parts[int(part["PartNumber"])] = {"etag": _unquote(part.get("ETag")), "size": int(part.get("Size", 0))}
            if not response.get("IsTruncated"):
                return parts
            marker = int(response.get("NextPartNumberMarker") or 0)
            if not marker:
                return parts

    def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[dict[str, Any]],
        *,
        if_none_match: bool = False,
        full_object_checksum: tuple[str, str] | None = None,
        expected_size: int | None = None,
    ) -> str:
        """Complete an upload; with `full_object_checksum` (algorithm, base64) S3 checks the whole object against it.

        `expected_size` lets a key ending in "/" be checked for servers that keep it as an empty folder.
        """
        args: dict[str, Any] = {}
        if if_none_match:
            args["IfNoneMatch"] = "*"
        if full_object_checksum:
            args["ChecksumType"] = "FULL_OBJECT"
            args[f"Checksum{full_object_checksum[0]}"] = full_object_checksum[1]
        response = self._call(
            f"s3://{bucket}/{key}",
            "complete_multipart_upload",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            **args,
        )
        if expected_size is not None:
            self._check_folder_key(bucket, key, expected_size)
        return _unquote(response.get("ETag")) or ""

    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            self._call(f"s3://{bucket}/{key}", "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
        except UploadGone:
            pass

    def delete_object(self, bucket: str, key: str) -> None:
        """Delete one key (our own probe objects, and backup manifests and bodies on prune; never on the source)."""
        self._call(f"s3://{bucket}/{key}", "delete_object", Bucket=bucket, Key=key)

    def supports_conditional_writes(self, bucket: str, key: str | None = None) -> bool:
        """Write a probe key twice with If-None-Match: *; True when the second write is refused.

        The probe (`key`, default `.migrate-probe-<random>`, zero bytes) is
        deleted again; the engine journals the key first so that a probe
        left by a killed run is deleted at the next start. Any error means
        "not known to work": callers then HEAD before writing.
        """
        import uuid

        key = key or f".migrate-probe-{uuid.uuid4().hex}"
        empty_md5 = hashlib.md5(b"").digest()
        try:
            self.put_object(bucket, key, b"", content_md5=empty_md5, if_none_match=True, **_NO_SETTINGS)
            try:
                self.put_object(bucket, key, b"", content_md5=empty_md5, if_none_match=True, **_NO_SETTINGS)
                return False
            except ConditionalWriteFailed:
                return True
            finally:
                self.client.delete_object(Bucket=bucket, Key=key)
        except Exception:  # noqa: BLE001 - any doubt: do not rely on it
            return False

    def list_multipart_uploads(self, bucket: str, prefix: str = "") -> list[tuple[str, str]]:
        """(key, upload_id) of every unfinished multipart upload under `prefix`."""
        uploads: list[tuple[str, str]] = []
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        while True:
            response = self._call_retrying(f"s3://{bucket}/{prefix}", "list_multipart_uploads", **kwargs)
            uploads.extend((u["Key"], u["UploadId"]) for u in response.get("Uploads", []))
            if not response.get("IsTruncated"):
                return uploads
            kwargs["KeyMarker"] = response.get("NextKeyMarker")
            kwargs["UploadIdMarker"] = response.get("NextUploadIdMarker")

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
        self.client.close()

