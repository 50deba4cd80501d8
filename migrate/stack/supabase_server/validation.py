"""What the real server accepts: keys, bucket names, request bodies, upload metadata.

Request bodies are checked the way Fastify's ajv does it for the real routes
(coercing "60" to 60, as storage3 sends numbers as strings), with ajv's error
wording; key and bucket name rules are src/storage/limits.ts.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Callable, TypeVar

from migrate.stack.supabase_server import errors

# src/storage/limits.ts isValidKey: "only allow s3 safe characters and characters
# which require special handling for now", JavaScript's ASCII-only \w. The
# recorded upstream server (../shared/supabase-upstream, step upload.badkey)
# answers 400 InvalidKey for "ü.txt".
_VALID_KEY = re.compile(r"^(\w|/|!|-|\.|\*|'|\(|\)| |&|\$|@|=|;|:|\+|,|\?)*$", re.ASCII)
# isValidBucketName keeps the S3-safe ASCII set (limits.ts); JavaScript's \w is ASCII.
_VALID_BUCKET = re.compile(r"^(\w|!|-|\.|\*|'|\(|\)| |&|\$|@|=|;|:|\+|,|\?)*$", re.ASCII)
T = TypeVar("T")

_SIZE_WITH_UNIT = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(gb|mb|kb|b)$", re.IGNORECASE)


def is_valid_key(key: str) -> bool:
    """limits.ts isValidKey."""
    return len(key) > 0 and _VALID_KEY.fullmatch(key) is not None


def is_valid_bucket_name(name: str) -> bool:
    """limits.ts isValidBucketName."""
    return 0 < len(name) < 64 and _VALID_BUCKET.match(name) is not None


def object_body(document: Any) -> dict[str, Any]:
    """The body, which must be a JSON object."""
    if not isinstance(document, dict):
        raise errors.validation_error("body must be object")
    return document


def required(body: dict[str, Any], name: str, where: str = "body") -> Any:
    """The property, or ajv's missing-property error."""
    if name not in body or body[name] is None:
        raise errors.validation_error(f"{where} must have required property '{name}'")
    return body[name]


def optional(body: dict[str, Any], name: str, parse: Callable[[Any, str], T], default: T) -> T:
    """`parse(body[name], name)`, or `default` when the property is absent or null."""
    value = body.get(name)
    return default if value is None else parse(value, name)


def as_str(value: Any, name: str) -> str:
    """A string (numbers are coerced, as ajv does)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise errors.validation_error(f"body/{name} must be string")


def as_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """An integer (numeric strings are coerced, as ajv does), at least `minimum`."""
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        number = int(value)
    if number is None:
        raise errors.validation_error(f"body/{name} must be integer")
    if minimum is not None and number < minimum:
        raise errors.validation_error(f"body/{name} must be >= {minimum}")
    return number


def as_count(value: Any, name: str) -> int:
    """An integer >= 0 (`offset`)."""
    return as_int(value, name, minimum=0)


def as_positive(value: Any, name: str) -> int:
    """An integer >= 1 (`limit`, `expiresIn`)."""
    return as_int(value, name, minimum=1)


def as_bool(value: Any, name: str) -> bool:
    """A boolean ("true"/"false" are coerced)."""
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise errors.validation_error(f"body/{name} must be boolean")


def sort_by_option(body: dict[str, Any], columns: tuple[str, ...]) -> tuple[str | None, str | None]:
    """`sortBy: {column, order}` checked against the route's columns."""
    sort_by = body.get("sortBy")
    if sort_by is None:
        return None, None
    if not isinstance(sort_by, dict):
        raise errors.validation_error("body/sortBy must be object")
    column = as_str(required(sort_by, "column", "body/sortBy"), "sortBy/column")
    if column not in columns:
        raise errors.validation_error("body/sortBy/column must be equal to one of the allowed values")
    order = sort_by.get("order")
    if order is not None and order not in ("asc", "desc"):
        raise errors.validation_error("body/sortBy/order must be equal to one of the allowed values")
    return column, order


def parse_file_size_limit(value: Any) -> int | None:
    """limits.ts parseFileSizeToBytes: an integer, or "20GB" / "20MB" / "30KB" / "3B"."""
    if value is None:
        return None
    if isinstance(value, str):
        match = _SIZE_WITH_UNIT.match(value.strip())
        if not match:
            raise errors.invalid_file_size_limit()
        number = float(f"{float(match.group(1)):.3g}")
        scale = {"GB": 10**9, "MB": 10**6, "KB": 1000, "B": 1}[match.group(2).upper()]
        limit = int(number * scale)
    else:
        limit = as_int(value, "file_size_limit", minimum=0)
    # storage.ts: a falsy limit (0) means "no bucket limit".
    return limit or None


def mime_list(value: Any) -> list[str] | None:
    """`allowed_mime_types`: strings, empty ones dropped (createBucket.ts)."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise errors.validation_error("body/allowed_mime_types must be array")
    return [item for item in value if item]


def user_metadata_header(value: str | None) -> Any:
    """uploader.ts: `x-metadata` is base64 JSON; anything unreadable is ignored."""
    if not value:
        return None
    try:
        return json.loads(base64.b64decode(value).decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def mime_allowed(mime_type: str, allowed: list[str]) -> bool:
    """uploader.ts validateMimeType: exact `type/subtype` or `type/*`."""
    requested = mime_type.split("/")
    if len(requested) < 2:
        return False
    kind, subtype = requested[0], requested[1]
    for entry in allowed:
        allowed_parts = entry.split("/")
        if len(allowed_parts) < 2:
            continue
        if allowed_parts[0] == kind and allowed_parts[1] in ("*", subtype):
            return True
    return False
