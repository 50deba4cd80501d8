"""The grammar of plan values and keys: templates, regexes, globs, sizes, destination keys.

Pure functions with no dependency on the plan or the stages: the plan model
validates its templates and globs with them at load time, and the rewriter
(`migrate.rewrite`) and the filters (`migrate.filters`) apply them to every
key. Keeping the grammar here is what lets imports go one way (plan ->
patterns, rewrite -> plan and patterns), never in a circle.

Templates (`match:` and `to:` in a plan rule) are documented in
`migrate.rewrite`; globs (`filters.include`/`exclude`, tier `include`) in
`migrate.filters`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Collection, Sequence

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40

#: Longest key S3 accepts, in bytes of UTF-8.
MAX_KEY_BYTES = 1024

#: The placeholder every `to` template may use: the source bucket.
BUCKET_PLACEHOLDER = "bucket"

#: `content_type: infer` guesses from the destination key's extension.
INFER = "infer"

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PLACEHOLDER = re.compile(r"\{(" + _NAME + r")(\*\*)?\}")
_ONE_SEGMENT = r"[^/]+"
_SEGMENTS = r"[^/]+(?:/[^/]+)*"


class TemplateError(ValueError):
    """A `match`/`to` template or a `regex` that cannot be compiled; the message says why."""


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True, slots=True)
class _Placeholder:
    name: str
    multi: bool

    def __str__(self) -> str:
        return "{" + self.name + ("**}" if self.multi else "}")


_Token = str | _Placeholder


def _tokenize(template: str) -> list[_Token]:
    """Split a template into literal strings and placeholders."""
    tokens: list[_Token] = []
    literal: list[str] = []
    i, n = 0, len(template)
    while i < n:
        char = template[i]
        if char == "{":
            if template.startswith("{{", i):
                literal.append("{")
                i += 2
                continue
            found = _PLACEHOLDER.match(template, i)
            if found is None:
                end = template.find("}", i)
                if end == -1:
                    raise TemplateError(f"unclosed '{{' at position {i}; write {{{{ for a literal brace")
                bad = template[i : end + 1]
                raise TemplateError(
                    f"unknown placeholder syntax {bad!r}; use {{name}} for one segment or {{name**}} for several"
                )
            if literal:
                tokens.append("".join(literal))
                literal = []
            tokens.append(_Placeholder(found.group(1), bool(found.group(2))))
            i = found.end()
            continue
        if char == "}":
            if template.startswith("}}", i):
                literal.append("}")
                i += 2
                continue
            raise TemplateError(f"unmatched '}}' at position {i}; write }}}} for a literal brace")
        literal.append(char)
        i += 1
    if literal:
        tokens.append("".join(literal))
    return tokens


@dataclass(frozen=True, slots=True)
class MatchPattern:
    """A compiled `match` template or `regex`: what it captures and how to test a key fast."""

    regex: re.Pattern[str]
    names: tuple[str, ...]
    # Every key the pattern matches starts with this: a cheap pre-check.
    literal_prefix: str = ""


def compile_match_template(template: str) -> MatchPattern:
    """Compile a `match` template (see the module docstring) into an anchored regex.

    Raises `TemplateError` for unknown placeholder syntax, touching or
    repeated placeholders, and the reserved `{bucket}`.
    """
    if not template:
        raise TemplateError("empty template; use {path**} to match every key")
    tokens = _tokenize(template)
    parts: list[str] = []
    names: list[str] = []
    previous: _Token | None = None
    for token in tokens:
        if isinstance(token, str):
            parts.append(re.escape(token))
        else:
            if token.name == BUCKET_PLACEHOLDER:
                raise TemplateError(
                    "{bucket} is reserved: it is the source bucket and always available in 'to'; "
                    "restrict a rule to a bucket with bucket: NAME"
                )
            if token.name in names:
                raise TemplateError(f"placeholder {{{token.name}}} appears twice; each name captures once")
            if isinstance(previous, _Placeholder):
                raise TemplateError(
                    f"placeholders {previous} and {token} touch; put literal text (such as '/') between them "
                    "so the key splits one way only"
                )
            names.append(token.name)
            parts.append(f"(?P<{token.name}>{_SEGMENTS if token.multi else _ONE_SEGMENT})")
        previous = token
    prefix = tokens[0] if isinstance(tokens[0], str) else ""
    return MatchPattern(re.compile("".join(parts), re.DOTALL), tuple(names), prefix)


def compile_match_regex(source: str) -> MatchPattern:
    """Compile a rule's `regex` (applied with fullmatch). Raises `TemplateError` if it does not compile."""
    if not source:
        raise TemplateError("empty regex")
    try:
        regex = re.compile(source, re.DOTALL)
    except re.error as err:
        where = f" at position {err.pos}" if err.pos is not None else ""
        raise TemplateError(f"regex does not compile: {err.msg}{where}") from None
    if BUCKET_PLACEHOLDER in regex.groupindex:
        raise TemplateError(
            "group name 'bucket' is reserved: {bucket} is always the source bucket in 'to'; rename the group"
        )
    return MatchPattern(regex, tuple(regex.groupindex), "")


def compile_to_template(template: str, available: Collection[str], *, captured_by: str = "match") -> str:
    """Check a `to` template and return it as a `str.format_map` format string.

    `available` are the names the match side captures; `{bucket}` is always
    available. Raises `TemplateError` for unknown names, and for literal text
    that would always produce a dangerous key (a leading `/`, `//`, or a `.`
    or `..` segment).
    """
    if not template:
        raise TemplateError("empty template; the destination key cannot be empty")
    tokens = _tokenize(template)
    known = set(available) | {BUCKET_PLACEHOLDER}
    fmt: list[str] = []
    shape: list[str] = []
    for token in tokens:
        if isinstance(token, str):
            fmt.append(token.replace("{", "{{").replace("}", "}}"))
            shape.append(token)
            continue
        if token.name not in known:
            offered = ", ".join("{" + name + "}" for name in sorted(known))
            raise TemplateError(f"{token} is not captured by {captured_by}; available here: {offered}")
        fmt.append("{" + token.name + "}")
        shape.append("\x00")  # stands for a non-empty captured value
    literal_shape = "".join(shape)
    if literal_shape.startswith("/"):
        raise TemplateError("starts with '/', which gives every key an empty first segment; drop the leading '/'")
    if "//" in literal_shape:
        raise TemplateError("contains '//', an empty path segment")
    for segment in literal_shape.split("/"):
        if segment in (".", ".."):
            raise TemplateError(f"has a {segment!r} path segment; S3 clients and file systems resolve it away")
    return "".join(fmt)


# --------------------------------------------------------------------------- destination keys

# What S3 cannot carry in a key. AWS: a key is "a sequence of Unicode
# characters encoded in UTF-8, with a maximum length of 1,024 bytes"
# (docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html), and
# "XML 1.0 parser cannot parse some characters, such as characters with an
# ASCII value from 0 to 10" (ListObjects EncodingType). Several answers carry
# the key as XML text with no encoding option (CompleteMultipartUpload,
# CopyObject and DeleteObjects errors), so a character outside XML 1.0's
# Char production (#x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] |
# [#x10000-#x10FFFF]) cannot be written and read back reliably. Everything
# else, `//`, a leading or trailing `/`, spaces, `.`/`..` segments, any
# letter or symbol, is a valid key and is migrated unchanged.
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def validate_destination_key(key: str) -> str | None:
    """None if S3 can store and list `key` as it is, else the reason it cannot.

    Refused: the empty key; more than 1024 bytes of UTF-8; lone surrogates
    (not UTF-8 at all); characters XML 1.0 cannot carry (C0 controls other
    than tab, LF and CR; U+FFFE, U+FFFF). Nothing else: `a//b`, `/a`, `a/`,
    `a/../b`, spaces and every printable character are keys S3 accepts.
    """
    if not key:
        return "destination key is empty"
    bad = _NOT_XML.search(key)
    if bad is not None:
        code = ord(bad.group())
        if 0xD800 <= code <= 0xDFFF:
            return "destination key is not valid Unicode (it contains a lone surrogate)"
        return f"destination key contains U+{code:04X}, which S3 cannot return in an XML listing"
    # 4 bytes per character at most: short keys need no encoding.
    if len(key) * 4 > MAX_KEY_BYTES:
        size = len(key.encode("utf-8"))
        if size > MAX_KEY_BYTES:
            return f"destination key is {size} bytes of UTF-8; S3 allows at most {MAX_KEY_BYTES}"
    return None


# A `.` or `..` path segment.
_DOT_SEGMENT = re.compile(r"(?:^|/)(\.\.?)(?:/|$)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def validate_destination_prefix(prefix: str) -> str | None:
    """None if `prefix` (the plan's `destination.prefix`, ending in `/`) is fit to prefix every key.

    Stricter than a key: the prefix is written by hand once and lands in
    front of every object, so what is almost surely a typo is refused: a
    leading `/`, `//`, a `.`/`..` segment, control characters.
    """
    reason = validate_destination_key(prefix)
    if reason is not None:
        return reason.replace("destination key", "prefix", 1)
    control = _CONTROL.search(prefix)
    if control is not None:
        return f"prefix contains control character U+{ord(control.group()):04X}"
    if prefix.startswith("/"):
        return "prefix starts with '/' (an empty first segment)"
    if "//" in prefix:
        return "prefix contains '//' (an empty segment)"
    dots = _DOT_SEGMENT.search(prefix)
    if dots is not None:
        return f"prefix has a {dots.group(1)!r} segment; clients resolve it, so the object would be unreachable"
    return None


# --------------------------------------------------------------------------- globs


class GlobError(ValueError):
    """A glob pattern that cannot be compiled; the message says why."""


def glob_to_regex(pattern: str) -> str:
    """Translate one key glob (see the module docstring) to a regex source.

    Raises `GlobError` for an empty pattern, a `**` that is not a whole
    segment, or a trailing backslash.
    """
    if not pattern:
        raise GlobError("empty glob; use ** for every key")
    segments = pattern.split("/")
    out: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            # Trailing `**` takes the rest of the key; inner `**/` takes whole segments.
            out.append(".*" if last else "(?:.*/)?")
            continue
        out.append(_segment_to_regex(segment, pattern))
        if not last:
            out.append("/")
    return "".join(out)


def _segment_to_regex(segment: str, pattern: str) -> str:
    parts: list[str] = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "\\":
            if i + 1 == len(segment):
                raise GlobError(f"glob {pattern!r} ends a segment with a lone backslash; write \\\\ for a literal one")
            parts.append(re.escape(segment[i + 1]))
            i += 2
            continue
        if char == "*":
            if segment.startswith("**", i):
                raise GlobError(
                    f"glob {pattern!r}: ** must be a whole path segment (as in a/**/b); use * inside a segment"
                )
            parts.append("[^/]*")
        elif char == "?":
            parts.append("[^/]")
        else:
            parts.append(re.escape(char))
        i += 1
    return "".join(parts)


def compile_globs(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One regex that full-matches a key when any of `patterns` does (None when empty)."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{glob_to_regex(p)})" for p in patterns), re.DOTALL)


# --------------------------------------------------------------------------- sizes

_SIZE = re.compile(r"\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[A-Za-z]*)\s*\Z")
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB}


def parse_size(value: int | str) -> int:
    """Bytes from an int or a string like `16MiB`, `1.5 GB`, `512`: B, kB/KB, MB, GB, TB (powers of 1000) and KiB,
    MiB, GiB, TiB (powers of 1024), any case. Raises ValueError with a hint."""
    if isinstance(value, bool):
        raise ValueError("expected a size, got true/false")
    if isinstance(value, int):
        return value if value >= 0 else _raise(ValueError("a size cannot be negative"))
    found = _SIZE.match(value)
    if found is None:
        raise ValueError(f"{value!r} is not a size; write a number of bytes or e.g. 10MiB, 1GB")
    unit = found["unit"]
    if unit.lower() in ("k", "m", "g", "t"):
        raise ValueError(f"ambiguous unit {unit!r} in {value!r}; write {unit.upper()}B (powers of 1000) or {unit.upper()}iB (powers of 1024)")
    if unit.lower() not in _SIZE_UNITS:
        raise ValueError(f"unknown unit {unit!r} in {value!r}; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB")
    exact = Decimal(found["number"]) * _SIZE_UNITS[unit.lower()]
    return int(exact) if exact == exact.to_integral_value() else _raise(ValueError(f"{value!r} is not a whole number of bytes"))


def _raise(error: Exception) -> Any:
    raise error


def format_size(size: int) -> str:
    """`16 MiB`, `1 GB`, `1536 bytes`: exact, in the largest unit that divides it."""
    units = (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB), ("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3))
    unit = next(((name, factor) for name, factor in units if size > 0 and size % factor == 0), None)
    return f"{size // unit[1]} {unit[0]}" if unit else f"{size} byte" if size == 1 else f"{size} bytes"
