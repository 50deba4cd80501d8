"""S3's XML answers: documents and errors (src/http/routes/s3/error-handler.ts shapes).

Upstream renders `{Error: {Resource, Code, Message}}` through its XML
serialiser: `<Error><Resource>bucket/key</Resource><Code>..</Code><Message>..</Message></Error>`,
with the HTTP status of the error (404 NoSuchKey, 403 SignatureDoesNotMatch, ...).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable
from xml.sax.saxutils import escape

from migrate.stack.supabase_server.wire import Response

XML_TYPE = "application/xml"
_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"


class S3Error(Exception):
    """An S3 error answer."""

    def __init__(self, code: str, status: int, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.headers = headers or {}


def element(name: str, value: Any) -> str:
    """`<name>value</name>`: lists repeat the element, dicts nest, None is left out."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "".join(element(name, item) for item in value)
    if isinstance(value, dict):
        return f"<{name}>{''.join(element(key, item) for key, item in value.items())}</{name}>"
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{escape(str(value))}</{name}>"


def document(root: str, fields: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """An XML answer with the S3 namespace on its root element."""
    inner = "".join(element(key, value) for key, value in fields.items())
    body = f'{_DECLARATION}<{root} xmlns="{S3_NAMESPACE}">{inner}</{root}>'.encode()
    return Response(status, {"Content-Type": XML_TYPE, **(headers or {})}, body)


def error_document(err: S3Error, resource: str) -> Response:
    """The error as upstream's s3ErrorHandler answers it."""
    body = f"{_DECLARATION}{element('Error', {'Resource': resource, 'Code': err.code, 'Message': err.message})}"
    return Response(err.status, {"Content-Type": XML_TYPE, **err.headers}, body.encode())


def texts(items: Iterable[Any]) -> list[str]:
    """Element texts, missing ones as ''."""
    return [(item.text or "") for item in items]


def iso_time(moment: datetime | None) -> str | None:
    """An S3 timestamp: ISO 8601, UTC, milliseconds, `Z`."""
    if moment is None:
        return None
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
