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
) -> dict[str, Any]:
    """How an object is written: boto3 parameters, or HTTP headers for the lean client."""
    values = {"content_type": content_type, "cache_control": cache_control, "content_disposition": content_disposition, "storage_class": storage_class, "sse": sse}
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
}


def naming_headers(err: HeaderRefused, write_args: Mapping[str, Any]) -> HeaderRefused:
    """`err`, naming the headers that were sent besides the bytes when the server did not say which it refused."""
    message = str(err)
    if " header" in message:
        return err
    sent = write_settings(as_headers=True, **{**_NO_SETTINGS, **write_args})
    listed = ", ".join(f"{name}: {value!r}" for name, value in sent.items())
    return HeaderRefused(f"{message}; it refuses one of the headers sent: {listed}")


__all__ = ["write_settings", "naming_headers"]
