"""S3 failures as `migrate.errors`: one table for boto3's ClientError and the lean client's answers (s3_http.py).

What happens next decides the type: throttling and 5xx are retried
(TransientError), credentials and missing buckets stop the run (FatalError),
everything else fails only the object (ObjectError), with S3's own code and
message, and the header it refused when it names one.
"""

from __future__ import annotations

import botocore.exceptions

from migrate.errors import AccessDenied, BucketNotFound, MigrateError, ObjectError, ObjectNotFound, TransientError

_ACCESS_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "InvalidToken", "ExpiredToken", "403"}
_THROTTLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests", "429", "503"}
_MISSING_KEY_CODES = {"NoSuchKey", "404", "NotFound"}


class ConditionalWriteFailed(ObjectError):
    """The destination already has the key and the conflict policy forbids overwriting."""


class HeaderRefused(ObjectError):
    """The destination refused a header of the write (a per-object failure; the message names the header)."""


class FolderKeyRefused(ObjectError):
    """The destination did not keep the bytes of a key ending in "/" (it made a folder of it)."""


class KeyNotKept(ObjectError):
    """The destination stored a written key under another key (a server that keeps keys as file paths collapses '//')."""


class UploadGone(ObjectError):
    """A multipart upload recorded in the journal no longer exists at the destination."""


def _error_code(err: botocore.exceptions.ClientError) -> tuple[str, int]:
    error = err.response.get("Error", {})
    status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return str(error.get("Code", status)), status


def translate_error(err: Exception, *, what: str) -> MigrateError:
    """Map a boto3/botocore failure to our typed errors. `what` names the bucket/key for the message."""
    if isinstance(err, MigrateError):
        return err
    if isinstance(err, botocore.exceptions.ClientError):
        code, status = _error_code(err)
        error = err.response.get("Error", {})
        if code == "NoSuchBucket":
            return BucketNotFound(f"{what}: the bucket does not exist; create it or fix the bucket name in the plan")
        if code in _ACCESS_CODES or status == 403:
            return AccessDenied(
                f"{what}: access denied by S3 ({code}); check the credentials (AWS_ACCESS_KEY_ID/AWS_PROFILE) and their permissions"
            )
        # NoSuchUpload is a 404 too: test it first, so the engine restarts the upload instead of calling the object missing.
        if code == "NoSuchUpload":
            return UploadGone(f"{what}: the multipart upload no longer exists")
        if code in _MISSING_KEY_CODES or status == 404:
            return ObjectNotFound(f"{what}: not found ({code})")
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
            return ConditionalWriteFailed(f"{what}: already exists at the destination ({code})")
        if code in _THROTTLE_CODES or status in (429, 503):
            return TransientError(f"{what}: throttled by S3 ({code})", throttled=True)
        if status >= 500 or code in ("InternalError", "RequestTimeout", "RequestTimeTooSkewed"):
            return TransientError(f"{what}: S3 error {code} (HTTP {status})")
        if code == "InvalidDigest":
            # "Content-MD5 not valid": ours is always well-formed base64 of 16
            # bytes, so the server is refusing something else it was sent
            # (SeaweedFS answers this for a Cache-Control it cannot parse).
            return HeaderRefused(f"{what}: the destination refused the request ({code}: {error.get('Message', '')}) although its Content-MD5 is well-formed")
        if code == "MalformedDate":
            # Of what a write sends only Expires is a date: a source's Expires text this server cannot parse
            # (SeaweedFS takes RFC 1123 only). `naming_headers` adds the headers sent, the value among them.
            return HeaderRefused(f"{what}: the destination cannot parse a date the write carries ({code}); exclude the object or fix its Expires at the source")
        checksum_rejected = code in ("BadDigest", "XAmzContentSHA256Mismatch") or (
            code == "InvalidRequest" and "checksum" in str(err).lower()
        )
        if checksum_rejected:
            return TransientError(f"{what}: S3 rejected the upload checksum ({code}); the bytes were corrupted in flight")
        argument = error.get("ArgumentName") or error.get("HeaderName")
        if argument:
            value = error.get("ArgumentValue") or error.get("HeaderValue")
            shown = f" {value!r}" if value is not None else ""
            return HeaderRefused(f"{what}: the destination refused the {argument} header{shown} ({code}: {error.get('Message', '')})")
        return ObjectError(f"{what}: S3 refused the request ({code}, HTTP {status}{': ' + str(error['Message']) if error.get('Message') else ''})")
    if isinstance(err, botocore.exceptions.NoCredentialsError):
        return AccessDenied(f"{what}: no S3 credentials found; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
    if isinstance(err, botocore.exceptions.EndpointConnectionError):
        return TransientError(f"{what}: cannot connect to the S3 endpoint")
    if isinstance(
        err,
        (
            botocore.exceptions.ConnectionError,
            botocore.exceptions.ReadTimeoutError,
            botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.IncompleteReadError,
            botocore.exceptions.ResponseStreamingError,
            ConnectionError,
            TimeoutError,
        ),
    ):
        return TransientError(f"{what}: connection problem talking to S3 ({type(err).__name__})")
    if isinstance(err, botocore.exceptions.ParamValidationError):
        return ObjectError(f"{what}: invalid request parameters ({err})")
    return TransientError(f"{what}: unexpected S3 client failure ({type(err).__name__})")
