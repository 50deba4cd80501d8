"""Supabase user metadata (JSON) <-> S3 user metadata (`x-amz-meta-*`, ASCII header text).

One lossless mapping, used by `run` to write and by `verify` to read back,
so verify compares decoded source with decoded destination. Pure: no I/O.

Supabase keeps `user_metadata` as a JSON object (`jsonb`): values may be
strings, numbers, booleans, null, lists or objects, in any script. S3 user
metadata is header text. The mapping, value by value:

- **plain string**: non-empty printable US-ASCII, no leading/trailing blank, not
  starting with `json:` and not containing `=?` -> sent as it is.
- **any other string with non-ASCII text** (`Zürich`, `東京`, emoji) -> one
  RFC 2047 encoded word `=?UTF-8?B?<base64 of UTF-8>?=`. S3 decodes encoded
  words before storing a metadata value and encodes a stored non-ASCII
  value the same way when returning it ("User-defined object metadata",
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingMetadata.html),
  so the object carries the real text and every S3 client shows it.
- **non-string JSON values** (true, 3, 2.5, null, [..], {..}) and strings
  that cannot travel either way (empty -- servers drop an empty header --,
  control characters, leading/trailing blanks,
  a `json:` prefix, a literal `=?` that S3 would take for an encoded word) ->
  `json:` followed by compact JSON with every non-ASCII character and every
  `=?` escaped (`\\u00fc`, `=\\u003f`), so the value is pure ASCII, S3 stores
  it verbatim, and `json.loads` returns the same type and value.

Decoding reverses it: RFC 2047 words are decoded first (S3 may hand back
either form), then a `json:` prefix is parsed as JSON; anything else is the
string itself.

Keys: S3 lowercases metadata names and a name must be an HTTP token; keys
that are not, and keys that collide once lowercased, cannot be carried and
are reported by `metadata_problems` at plan time. Decoded keys are the
lowercased names, so comparisons lowercase the source's keys
(`comparable_metadata`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Mapping

JSON_PREFIX = "json:"
# S3: at most 2 KB of user metadata (names + values, as sent) per PUT.
MAX_METADATA_BYTES = 2048
# RFC 7230 token characters: what an HTTP header name may contain.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_PLAIN = re.compile(r"^[\x20-\x7e]*$")
_ENCODED_WORD = re.compile(r"=\?([^?]+)\?([BbQq])\?([^?]*)\?=")


def _is_plain(value: str) -> bool:
    return (
        value != ""
        and bool(_PLAIN.match(value))
        and value == value.strip()
        and not value.startswith(JSON_PREFIX)
        and "=?" not in value
    )


def _as_json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    # "=?" can only occur inside a JSON string here: escaping the "?" keeps
    # it valid JSON and stops S3 reading it as an RFC 2047 encoded word.
    return JSON_PREFIX + text.replace("=?", "=\\u003f")


def encode_value(value: Any) -> str:
    """One Supabase metadata value as S3 header text (see the module docstring)."""
    if isinstance(value, str):
        if _is_plain(value):
            return value
        printable = all(ch.isprintable() for ch in value) and value == value.strip()
        if printable and not value.startswith(JSON_PREFIX) and "=?" not in value:
            return "=?UTF-8?B?" + base64.b64encode(value.encode("utf-8")).decode("ascii") + "?="
    return _as_json(value)


def _decode_words(raw: str) -> str:
    """Decode a value made of RFC 2047 encoded words (whitespace between words is dropped); else as is."""
    stripped = raw.strip()
    if not stripped.startswith("=?"):
        return raw
    words = stripped.split()
    decoded: list[bytes] = []
    charset = "utf-8"
    for word in words:
        found = _ENCODED_WORD.fullmatch(word)
        if not found:
            return raw
        charset, kind, text = found.group(1), found.group(2).upper(), found.group(3)
        try:
            if kind == "B":
                decoded.append(base64.b64decode(text, validate=True))
            else:
                decoded.append(re.sub(r"=([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text.replace("_", " ")).encode("latin-1"))
        except (binascii.Error, ValueError):
            return raw
    try:
        return b"".join(decoded).decode(charset)
    except (LookupError, UnicodeDecodeError):
        return raw


def decode_value(raw: str) -> Any:
    """S3 header text back to the Supabase JSON value `encode_value` started from."""
    text = _decode_words(raw)
    if text.startswith(JSON_PREFIX):
        try:
            return json.loads(text[len(JSON_PREFIX) :])
        except ValueError:
            return text
    return text


def encode_metadata(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """Supabase user metadata -> S3 metadata names (lowercased) and header values."""
    return {str(name).lower(): encode_value(value) for name, value in (metadata or {}).items()}


def decode_metadata(headers: Mapping[str, str] | None) -> dict[str, Any]:
    """S3 user metadata (names without `x-amz-meta-`) -> JSON values."""
    return {str(name).lower(): decode_value(value) for name, value in (headers or {}).items()}


def comparable_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """What S3 can hold of `metadata`: names lowercased, values unchanged (what `decode_metadata` returns)."""
    return {str(name).lower(): value for name, value in (metadata or {}).items()}


def metadata_problems(metadata: Mapping[str, Any] | None) -> list[str]:
    """Why S3 cannot carry this user metadata as it is; [] when it can. For `plan` to report."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for name in metadata or {}:
        name = str(name)
        if not _TOKEN.match(name):
            problems.append(f"user metadata key {name!r} is not a valid HTTP header name (letters, digits and !#$%&'*+.^_`|~- only)")
            continue
        lowered = name.lower()
        if lowered in seen:
            problems.append(f"user metadata keys {seen[lowered]!r} and {name!r} are the same key once S3 lowercases them")
        seen[lowered] = name
    if not problems:
        size = sum(len(name) + len(value) for name, value in encode_metadata(metadata).items())
        if size > MAX_METADATA_BYTES:
            problems.append(f"user metadata is {size} bytes once encoded for S3, over S3's {MAX_METADATA_BYTES}-byte limit")
    return problems
