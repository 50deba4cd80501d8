"""How an object is written to S3: the write settings as boto3 parameters or as HTTP headers, one table for both data paths.

The store (`stores/s3.py`) sends the headers on its lean HTTP path and the
parameters to boto3; an error that a server gives for a refused header names
the headers sent (`naming_headers`).
"""

from __future__ import annotations

from typing import Any, Mapping

from migrate.metadata import encode_metadata
from migrate.stores.s3_errors import HeaderRefused

# Write settings: (setting, boto3 parameter, HTTP header). One table for both data paths.
_WRITE_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("content_type", "ContentType", "Content-Type"),
    ("cache_control", "CacheControl", "Cache-Control"),
    ("content_disposition", "ContentDisposition", "Content-Disposition"),
    ("content_encoding", "ContentEncoding", "Content-Encoding"),
    ("content_language", "ContentLanguage", "Content-Language"),
    # The header text as the source answered it; boto3 would parse and re-format it (`send_expires_as_text`).
    ("expires", "Expires", "Expires"),
    ("storage_class", "StorageClass", "x-amz-storage-class"),
    ("sse", "ServerSideEncryption", "x-amz-server-side-encryption"),
)


def write_settings(
    *,
    as_headers: bool,
    content_type: str | None,
    cache_control: str | None,
    content_disposition: str | None,
    metadata: Mapping[str, Any] | None,
    storage_class: str | None,
    sse: str | None,
    kms_key_id: str | None,
    content_encoding: str | None = None,
    content_language: str | None = None,
    expires: str | None = None,
) -> dict[str, Any]:
    """How an object is written: boto3 parameters, or HTTP headers for the lean client."""
    values = {
        "content_type": content_type, "cache_control": cache_control, "content_disposition": content_disposition,
        "content_encoding": content_encoding, "content_language": content_language, "expires": expires,
        "storage_class": storage_class, "sse": sse,
    }
    out: dict[str, Any] = {}
    for setting, parameter, header in _WRITE_FIELDS:
        if values[setting]:
            out[header if as_headers else parameter] = values[setting]
    if sse == "aws:kms" and kms_key_id:
        out["x-amz-server-side-encryption-aws-kms-key-id" if as_headers else "SSEKMSKeyId"] = kms_key_id
    if metadata:
        encoded = encode_metadata(metadata)  # JSON values -> header text (migrate/metadata.py)
        if as_headers:
            out.update({f"x-amz-meta-{name}": value for name, value in encoded.items()})
        else:
            out["Metadata"] = encoded
    return out


_NO_SETTINGS: dict[str, Any] = {
    "content_type": None, "cache_control": None, "content_disposition": None, "metadata": None,
    "storage_class": None, "sse": None, "kms_key_id": None,
    "content_encoding": None, "content_language": None, "expires": None,
}


#: Where `send_expires_as_text` keeps the text between parameter building and sending, per request.
_EXPIRES_TEXT = "migrate_expires_text"


def send_expires_as_text(client: Any) -> None:
    """Make `client` send an `Expires` parameter given as text verbatim, as the lean path does.

    botocore models Expires as a timestamp: it parses the text and formats
    it again, so a value the source answered is not what arrives ("0"
    becomes 1 Jan 1970, a wrong weekday is corrected). The text is taken out
    of the parameters before they are checked, and set as the header before
    the request is signed.
    """

    def take(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if isinstance(params.get("Expires"), str):
            context[_EXPIRES_TEXT] = params.pop("Expires")

    def put_back(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if _EXPIRES_TEXT in context:
            params["headers"]["Expires"] = context[_EXPIRES_TEXT]

    for operation in ("PutObject", "CreateMultipartUpload"):
        client.meta.events.register(f"before-parameter-build.s3.{operation}", take)
        client.meta.events.register(f"before-call.s3.{operation}", put_back)


def naming_headers(err: HeaderRefused, write_args: Mapping[str, Any]) -> HeaderRefused:
    """`err`, naming the headers that were sent besides the bytes when the server did not say which it refused."""
    message = str(err)
    if " header" in message:
        return err
    sent = write_settings(as_headers=True, **{**_NO_SETTINGS, **write_args})
    listed = ", ".join(f"{name}: {value!r}" for name, value in sent.items())
    return HeaderRefused(f"{message}; it refuses one of the headers sent: {listed}")


def path_like_key(key: str) -> bool:
    """A key a server keeping keys as file paths stores under another key (SeaweedFS 4.48: `a//b` as `a/b`, `/a` as `a`).

    AWS S3 keeps such keys as they are; HEAD cannot tell (SeaweedFS answers it
    with the other key's object), so these keys are confirmed by a listing.
    """
    return "//" in key or key.startswith("/")


__all__ = ["write_settings", "naming_headers", "send_expires_as_text", "path_like_key"]
