"""The error answers of the real Supabase Storage server, one constructor each.

Shapes come from github.com/supabase/storage:

- src/internal/errors/storage-error.ts `render()`: the body is
  ``{"statusCode": "<storage status as a string>", "code": <ErrorCode>,
  "error": <code>, "message": ...}``.
- src/http/error-handler.ts: the ``error`` field is the error's legacy
  ``error`` string when it has one (``not_found``, ``Duplicate``, ...) and the
  code otherwise; the HTTP status is ``userStatusCode``, which is 400 for every
  storage error except 500s (a missing object is HTTP 400 with
  ``"statusCode": "404"`` in the body).
- src/internal/errors/codes.ts: the codes, messages and legacy errors below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any


@dataclass(eq=False)
class StorageError(Exception):
    """An error answer; `body()` is what goes on the wire, `wire_status` its HTTP status."""

    status: int
    code: str | None
    message: str
    error: str | None = None
    http_status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # A body in another shape than Storage's (the gateway's, Fastify's 404).
    raw_body: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def wire_status(self) -> int:
        # storage-error.ts: userStatusCode = httpStatusCode === 500 ? 500 : 400
        """The HTTP status to send."""
        if self.http_status is not None:
            return self.http_status
        return 500 if self.status == 500 else 400

    def body(self) -> dict[str, Any]:
        """The JSON body to send."""
        if self.raw_body is not None:
            return self.raw_body
        rendered: dict[str, Any] = {"statusCode": str(self.status)}
        if self.code is not None:
            rendered["code"] = self.code
        rendered["error"] = self.error or self.code
        rendered["message"] = self.message
        return rendered


def no_such_bucket() -> StorageError:
    """codes.ts NoSuchBucket."""
    return StorageError(404, "NoSuchBucket", "Bucket not found", error="Bucket not found")


def no_such_key() -> StorageError:
    """codes.ts NoSuchKey: the missing-object answer."""
    return StorageError(404, "NoSuchKey", "Object not found", error="not_found")


def access_denied(message: str | None = None) -> StorageError:
    # jwt.ts plugin: an invalid or missing JWT is AccessDenied with jsonwebtoken's message.
    """codes.ts AccessDenied, with jsonwebtoken's or PostgreSQL's message."""
    return StorageError(403, "AccessDenied", message or "Access denied", error="Unauthorized")


def rls_denied() -> StorageError:
    # database/errors.ts: SQLSTATE 42501 from a row-level security check.
    """A write refused by row-level security."""
    return access_denied("new row violates row-level security policy")


def invalid_jwt(message: str) -> StorageError:
    """codes.ts InvalidJWT (signed URL tokens)."""
    return StorageError(400, "InvalidJWT", message or "Invalid JWT")


def invalid_signature(message: str | None = None) -> StorageError:
    """codes.ts InvalidSignature: a signed URL token for another object."""
    return StorageError(400, "InvalidSignature", message or "Invalid signature")


def key_already_exists() -> StorageError:
    """codes.ts KeyAlreadyExists: an upload without upsert onto an existing key."""
    return StorageError(409, "KeyAlreadyExists", "The resource already exists", error="Duplicate")


def bucket_already_exists() -> StorageError:
    """codes.ts BucketAlreadyExists."""
    return StorageError(409, "BucketAlreadyExists", "The resource already exists", error="Duplicate")


def resource_already_exists() -> StorageError:
    """codes.ts ResourceAlreadyExists (a unique violation elsewhere, e.g. a move)."""
    return StorageError(409, "ResourceAlreadyExists", "The resource already exists", error="Duplicate")


def bucket_not_empty() -> StorageError:
    """codes.ts BucketNotEmpty."""
    return StorageError(409, "ResourceNotEmpty", "The bucket you tried to delete is not empty")


def invalid_key(key: str) -> StorageError:
    """codes.ts InvalidKey: the key fails limits.ts isValidKey."""
    return StorageError(400, "InvalidKey", f"Invalid key: {key}")


def invalid_bucket_name() -> StorageError:
    """codes.ts InvalidBucketName."""
    return StorageError(400, "InvalidBucketName", "Bucket name invalid", error="Invalid Input")


def entity_too_large(entity: str = "object", limit: str = "the maximum allowed size") -> StorageError:
    """codes.ts EntityTooLarge: the upload is over the bucket's or the server's limit."""
    return StorageError(413, "EntityTooLarge", f"The {entity} exceeded {limit}", error="Payload too large")


def invalid_mime_type(mime_type: str) -> StorageError:
    """codes.ts InvalidMimeType: not in the bucket's allowed_mime_types."""
    return StorageError(415, "InvalidMimeType", f"mime type {mime_type} is not supported", error="invalid_mime_type")


def invalid_range(size: int) -> StorageError:
    # codes.ts InvalidRange gives the body; the recorded upstream answer
    # (step get.range.416) is HTTP 416 without a Content-Range header.
    """codes.ts InvalidRange for a Range the object cannot satisfy."""
    return StorageError(416, "InvalidRange", "invalid range provided", error="invalid_range", http_status=416)


def invalid_parameter(name: str, message: str | None = None) -> StorageError:
    """codes.ts InvalidParameter (e.g. a bad list-v2 cursor)."""
    return StorageError(400, "InvalidParameter", message or f"Invalid Parameter {name}")


def invalid_file_size_limit() -> StorageError:
    """codes.ts InvalidFileSizeLimit."""
    return StorageError(400, "InvalidRequest", "Invalid file size format, hint: use 20GB / 20MB / 30KB / 3B")


def no_content_provided(message: str | None = None) -> StorageError:
    """codes.ts NoContentProvided: an upload without a usable file."""
    return StorageError(400, "InvalidRequest", message or "No content provided")


def internal_error() -> StorageError:
    """codes.ts InternalError."""
    return StorageError(500, "InternalError", "Internal server error")


def asset_missing() -> StorageError:
    # renderer.ts: the backend has no bytes for a row that exists.
    """renderer.ts: the backend has no bytes for a row that exists."""
    return StorageError(
        404, None, "The resource was not found", error="Not found", headers={"Cache-Control": "no-store"}
    )


def validation_error(message: str) -> StorageError:
    """A request that fails the route's JSON schema (Fastify's answer: no `code`)."""
    return StorageError(400, None, message, error="Bad Request", http_status=400)


def route_not_found(method: str, url: str) -> StorageError:
    """Fastify's default 404 for an unknown route: `url` is the raw request target as
    Storage sees it (behind the gateway, without /storage/v1), query included; the
    body's statusCode is a number there, unlike Storage's own errors."""
    message = f"Route {method}:{url} not found"
    return StorageError(
        404, None, message, http_status=404, raw_body={"message": message, "error": "Not Found", "statusCode": 404}
    )


def injected(status: int) -> StorageError:
    """The body a fault rule answers with, in the real server's shape for that status."""
    if status == 429:
        # error-handler.ts: the answer when the database refuses more connections.
        return StorageError(
            429,
            "SlowDown",
            "Too many connections issued to the database",
            error="too_many_connections",
            http_status=429,
        )
    if status == 503:
        return StorageError(
            503,
            "DatabaseConnectionLimit",
            "The database has reached its maximum number of connections. Please try again later.",
            http_status=503,
        )
    if status == 500:
        return StorageError(500, "InternalError", "Internal server error", http_status=500)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Injected fault"
    return StorageError(status, "InternalError" if status >= 500 else "InvalidRequest", phrase, http_status=status)



def gateway_rejected(message: str, hint: str) -> StorageError:
    """The gateway's 401 for a missing or unknown API key (never reaches Storage): `{"message", "hint"}`."""
    return StorageError(401, None, message, http_status=401, raw_body={"message": message, "hint": hint})
