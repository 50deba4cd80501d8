"""Value types of the plan model: how one YAML value becomes a typed field.

Each alias here is a pydantic type with its checks attached, so that the
model (`migrate.plan.model`) states a key's type, default and bounds once,
on the field. Values arrive as the loader builds them from YAML: text as
`str`, numbers and true/false as `Scalar` (a `str` holding the text as
written, with `.value` as YAML reads it), so `prefix: 2024` stays "2024"
while `concurrency: '16'` is text, not a number. Python values (a
`Tier(min_size=1)` built in code) are accepted too.

A check that fails raises `Invalid`; the loader turns it into a `PlanError`
naming the file, line and key. `${VAR}` / `${VAR:-default}` come from
`info.context["environ"]` (os.environ when a model is built in code).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal, Mapping

from pydantic import BeforeValidator, ValidationInfo, WithJsonSchema

from migrate.redact import register_secret

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


class Scalar(str):
    """A YAML number or true/false: the text as written, and `value` as YAML reads it."""

    value: Any

    def __new__(cls, text: str, value: Any) -> "Scalar":
        made = super().__new__(cls, text)
        made.value = value
        return made


class Invalid(ValueError):
    """A value the plan cannot take.

    `at` extends the value's location (e.g. `(1,)` for the second item, or
    `("prefix",)` from a model); `line_at` is the location whose line to
    show when it differs; `lines` fills `{name}` in the message with the line
    of another location; `hinted` appends the field's `Hint`.
    """

    def __init__(self, message: str, *, at: tuple = (), line_at: tuple | None = None, lines: dict | None = None, hinted: bool = False):
        super().__init__(message)
        self.at, self.line_at, self.lines, self.hinted = at, line_at, lines or {}, hinted


@dataclass(frozen=True)
class Hint:
    """Field marker: what to tell a user who left the key out or empty."""

    text: str


@dataclass(frozen=True)
class Expected:
    """Field marker: what the key holds, for 'expected X, got Y' messages."""

    text: str


def describe(value: Any) -> str:
    """What a value holds, for 'expected X, got Y' (short, and never a secret)."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, Scalar):
        return f"true/false ({value})" if isinstance(value.value, bool) else f"the number {value}"
    if isinstance(value, bool):
        return f"true/false ({value})"
    if not isinstance(value, str):
        return f"the number {value}" if isinstance(value, (int, float)) else type(value).__name__
    if secret_shape(value) or _LONG_TOKEN.search(value):
        return "text"
    return f"the text {value if len(value) <= 40 else value[:37] + '...'!r}"


# --------------------------------------------------------------------------- environment and secrets

_INTERPOLATION = re.compile(r"\$\$\{|\$\{(?P<body>[^{}]*)\}|\$\{")
REFERENCE_NAMES = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)")
_REFERENCE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?\Z", re.DOTALL)
_SECRET_SHAPES = (
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "a JWT"),
    (re.compile(r"\bsb_secret_[A-Za-z0-9_-]{8,}"), "a Supabase secret key"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), "an AWS access key id"),
)
_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/=_.-]{32,}")


def environ_of(info: ValidationInfo | None) -> Mapping[str, str]:
    context = info.context if info is not None else None
    return context["environ"] if context and "environ" in context else os.environ


def secret_shape(text: str) -> str | None:
    """'a JWT', 'a Supabase secret key', ... when `text` holds something shaped like a credential."""
    return next((what for pattern, what in _SECRET_SHAPES if pattern.search(text)), None)


def refuse_literal_secret(raw: str) -> None:
    shape = secret_shape(raw)
    if shape is not None:
        for pattern, _ in _SECRET_SHAPES:
            for found in pattern.finditer(raw):
                register_secret(found.group())
        raise Invalid(
            f"looks like a literal secret ({shape}); never put credentials in the plan: "
            "put it in an environment variable and write ${ENV_VAR}"
        )


def expand(raw: str, environ: Mapping[str, str], *, secret: bool = False) -> tuple[str, list[tuple[str, str]]]:
    """Expand `${VAR}`, `${VAR:-default}` and `$${`; return the text and its parts with their origin.

    Origins: "literal" (written in the file), "env", "default". With
    `secret`, a non-empty default is refused (it would put the secret in the
    plan) and the reference is never echoed.
    """
    parts: list[tuple[str, str]] = []
    position = 0
    for found in _INTERPOLATION.finditer(raw):
        if found.start() > position:
            parts.append((raw[position : found.start()], "literal"))
        position = found.end()
        if found.group() == "$${":
            parts.append(("${", "literal"))
            continue
        body = found.group("body")
        if body is None:
            raise Invalid("unclosed '${'; write ${NAME} or ${NAME:-default} (or $${ for a literal ${)")
        reference = _REFERENCE.match(body)
        if reference is None:
            shown = "" if secret else f" ${{{body}}}"
            raise Invalid(f"invalid environment reference{shown}; write ${{NAME}} or ${{NAME:-default}}")
        name, default = reference["name"], reference["default"]
        value = environ.get(name)
        if default is not None:
            if secret and default:
                raise Invalid(
                    f"a default (${{{name}:-...}}) is not allowed here: it would put the secret in the plan; "
                    f"write ${{{name}}}"
                )
            if value or default:
                parts.append((value, "env") if value else (default, "default"))
            continue
        if value is None:
            if secret:
                raise Invalid(f"environment variable {name} is not set; {_EXPORT_SECRET}")
            raise Invalid(f"environment variable {name} is not set; export it or give a default: ${{{name}:-value}}")
        parts.append((value, "env"))
    if position < len(raw):
        parts.append((raw[position:], "literal"))
    return "".join(text for text, _ in parts), parts


_EXPORT_SECRET = "export it before running migrate (the plan never holds the secret itself)"


def _scalar_text(value: Any, expected: str = "text") -> str:
    if isinstance(value, (dict, list, tuple)) or value is None:
        raise Invalid(f"expected {expected}, got {describe(value)}")
    return value if isinstance(value, str) else str(value)


def text_value(value: Any, info: ValidationInfo, *, interpolate: bool = True) -> str:
    """One text value: secrets refused, `${...}` expanded (not for templates, regexes and globs)."""
    raw = _scalar_text(value)
    refuse_literal_secret(raw)
    return str(expand(raw, environ_of(info))[0] if interpolate else raw)


def _optional_text(interpolate: bool) -> Any:
    def check(value: Any, info: ValidationInfo) -> str | None:
        if value is None:
            return None  # the field's default
        text = text_value(value, info, interpolate=interpolate)
        return text if text.strip() else None  # empty counts as not given

    return check


def _required_text(value: Any, info: ValidationInfo) -> str:
    text = text_value(value, info)
    if not text.strip():
        names = sorted({found["name"] for found in REFERENCE_NAMES.finditer(str(value))})
        via = f" ({', '.join(names)}: not set or empty)" if names else ""
        raise Invalid(f"is empty{via}", hinted=True)
    return text.strip()


#: Text, `${...}` expanded; empty means not given.
# A plain YAML number or true/false is text too (`prefix: 2024`, `name: yes`): the schema says so.
_TEXT_SCHEMA = WithJsonSchema({"type": ["string", "number", "boolean"]})
OptText = Annotated[str | None, BeforeValidator(_optional_text(True)), _TEXT_SCHEMA]
#: Text that must not be empty after expansion (stripped).
Text = Annotated[str, BeforeValidator(_required_text), _TEXT_SCHEMA]
#: A template or regex: taken literally, never interpolated.
Verbatim = Annotated[str | None, BeforeValidator(_optional_text(False)), _TEXT_SCHEMA]


def text_list(value: Any, info: ValidationInfo, *, what: str, interpolate: bool = True) -> list[str]:
    """One string or a list of them; each non-empty."""
    items = value if isinstance(value, (list, tuple)) else [value]
    out: list[str] = []
    for index, item in enumerate(items):
        at = (index,) if isinstance(value, (list, tuple)) else ()
        if not isinstance(item, str):
            raise Invalid(f"expected {what} or a list of it, got {describe(item)}", at=at)
        try:
            text = text_value(item, info, interpolate=interpolate)
            if not text:
                raise Invalid("is empty")
        except Invalid as err:
            raise Invalid(str(err), at=at + err.at) from None
        out.append(text)
    return out


# --------------------------------------------------------------------------- choices, numbers, sizes, dates


def canonical(value: Any, info: ValidationInfo | None, options: tuple[str, ...]) -> str | None:
    """`value` as one of `options` (any case, `${...}` expanded), None when empty; else `Invalid` with a suggestion."""
    text = expand(_scalar_text(value, f"one of {', '.join(options)}"), environ_of(info))[0].strip()
    if not text:
        return None
    lowered = {option.lower(): option for option in options}
    if text.lower() in lowered:
        return lowered[text.lower()]
    close = difflib.get_close_matches(text.lower(), list(lowered), n=1, cutoff=0.5)
    suggestion = f"; did you mean {lowered[close[0]]!r}?" if close else ""
    raise Invalid(f"{text!r} is not one of: {', '.join(options)}{suggestion}")


def choice_schema(*options: str) -> dict[str, Any]:
    """JSON Schema of a choice: editors complete the canonical spellings and accept any case or a ${VAR}."""
    any_case = "|".join("".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in o) for o in options)
    return {"anyOf": [{"enum": list(options)}, {"type": "string", "pattern": f"^(?:{any_case})$|\\$\\{{"}]}


def choice(*options: str) -> Any:
    """One of `options`, matched case-insensitively and stored as spelled here."""
    validator = BeforeValidator(lambda value, info: canonical(value, info, options))
    return Annotated[Literal[options], validator, WithJsonSchema(choice_schema(*options))]  # type: ignore[valid-type]


def _native(value: Any) -> Any:
    return value.value if isinstance(value, Scalar) else value


def count(low: int, high: int) -> Any:
    """A whole number from `low` to `high`, written as a YAML number (`'16'` is text)."""

    def check(value: Any) -> int:
        number = _native(value)
        if isinstance(number, bool) or not isinstance(number, int):
            raise Invalid(f"expected a whole number, got {describe(value)}")
        if not low <= number <= high:
            raise Invalid(f"must be between {low} and {high}, got {number}")
        return number

    return Annotated[int, BeforeValidator(check), WithJsonSchema({"type": "integer", "minimum": low, "maximum": high})]


def _flag(value: Any) -> bool:
    if not isinstance(_native(value), bool):
        raise Invalid(f"expected true or false, got {describe(value)}")
    return bool(_native(value))


#: true or false.
Flag = Annotated[bool, BeforeValidator(_flag), WithJsonSchema({"type": "boolean"})]


def _price(value: Any) -> float:
    number = _native(value)
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise Invalid(f"expected a number, got {describe(value)}")
    if number < 0 or number != number or number == float("inf"):
        raise Invalid(f"must be a price of 0 or more, got {value}")
    return float(number)


#: A price: a number of 0 or more.
Price = Annotated[float, BeforeValidator(_price), WithJsonSchema({"type": "number", "minimum": 0})]

_SIZE = re.compile(r"\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[A-Za-z]*)\s*\Z")
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB}


def parse_size(value: int | str) -> int:
    """Bytes from an int or a string like `16MiB`, `1.5 GB`, `512`.

    Units: B, kB/KB, MB, GB, TB (powers of 1000) and KiB, MiB, GiB, TiB
    (powers of 1024), case-insensitive. Raises ValueError with a hint.
    """
    if isinstance(value, bool):
        raise ValueError("expected a size, got true/false")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    found = _SIZE.match(value)
    if found is None:
        raise ValueError(f"{value!r} is not a size; write a number of bytes or e.g. 10MiB, 1GB")
    unit = found["unit"].lower()
    if unit not in _SIZE_UNITS:
        if unit in ("k", "m", "g", "t"):
            upper = found["unit"].upper()
            raise ValueError(
                f"ambiguous unit {found['unit']!r} in {value!r}; write {upper}B (powers of 1000) or {upper}iB (powers of 1024)"
            )
        raise ValueError(f"unknown unit {found['unit']!r} in {value!r}; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB")
    exact = Decimal(found["number"]) * _SIZE_UNITS[unit]
    if exact != exact.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number of bytes")
    return int(exact)


def format_size(size: int) -> str:
    """`16 MiB`, `1 GB`, `1536 bytes`: exact, in the largest unit that divides it."""
    if size > 0:
        for unit, factor in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB), ("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
            if size % factor == 0:
                return f"{size // factor} {unit}"
    return f"{size} byte" if size == 1 else f"{size} bytes"


def size(minimum: int = 0, maximum: int | None = None, *, per_second: bool = False) -> Any:
    """A size in bytes (`16MiB`, `1GB`, `512`) from `minimum` to `maximum`; `per_second` also takes `100MB/s`."""

    def check(value: Any, info: ValidationInfo) -> int | None:
        if value is None:
            return None  # the field's default
        raw = _native(value)
        if isinstance(raw, str) and not isinstance(value, Scalar):
            raw = expand(raw, environ_of(info))[0]
            if per_second and raw.rstrip().lower().endswith("/s"):
                raw = raw.rstrip()[:-2]
        elif isinstance(raw, bool) or not isinstance(raw, int):
            raise Invalid(f"expected a size such as 16MiB or a number of bytes, got {describe(value)}")
        try:
            number = parse_size(raw)
        except ValueError as err:
            raise Invalid(str(err)) from None
        if number < minimum:
            raise Invalid(f"must be at least {format_size(minimum)}, got {format_size(number)}")
        if maximum is not None and number > maximum:
            raise Invalid(f"must be at most {format_size(maximum)}, got {format_size(number)}")
        return number

    unit = "(?:[kKmMgGtT][iI]?[bB]|[bB])" + ("(?:/s)?" if per_second else "")
    number: dict[str, Any] = {"type": "integer", "minimum": minimum} | ({"maximum": maximum} if maximum else {})
    text = {"type": "string", "pattern": f"^\\s*\\d+(?:\\.\\d+)?\\s*{unit}?\\s*$|\\$\\{{"}
    return Annotated[int | None, BeforeValidator(check), WithJsonSchema({"anyOf": [number, text]})]


def _moment(value: Any, info: ValidationInfo) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    text = expand(_scalar_text(value, "an ISO 8601 date"), environ_of(info))[0].strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"{text!r} is not an ISO 8601 date; write e.g. 2024-01-31 or 2024-01-31T12:00:00Z") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


#: An ISO 8601 date or date-time: a date is midnight UTC, a time without a zone is UTC.
Moment = Annotated[datetime | None, BeforeValidator(_moment), WithJsonSchema({"type": "string", "format": "date-time"})]


# --------------------------------------------------------------------------- secrets


def secret_reference(variable: str) -> Any:
    """A secret written as `${VAR}` and nothing else; the value is the resolved secret, registered for redaction."""

    def check(value: Any, info: ValidationInfo) -> str:
        raw = _scalar_text(value, f"${{{variable}}}")
        literal = _INTERPOLATION.sub(" ", raw).strip()
        if literal:
            register_secret(literal)
            shape = secret_shape(raw) or ("a long key" if _LONG_TOKEN.search(literal) else None)
            if shape is not None:
                raise Invalid(
                    f"looks like a literal secret ({shape}); never put keys in the plan: "
                    f"write {info.field_name}: ${{{variable}}} and export {variable}"
                )
            raise Invalid(
                f"must be an environment variable reference such as ${{{variable}}}, not literal text; "
                "the plan never holds the key itself"
            )
        environ = environ_of(info)
        resolved = expand(raw, environ, secret=True)[0]
        if not resolved:
            names = sorted({found["name"] for found in REFERENCE_NAMES.finditer(raw)}) or [variable]
            unset = [name for name in names if name not in environ]
            state = f"{', '.join(unset)} is not set" if unset else f"{', '.join(names)} is empty"
            raise Invalid(f"environment variable {state}; {_EXPORT_SECRET}")
        register_secret(resolved)
        return resolved

    return Annotated[str, BeforeValidator(check), WithJsonSchema({"type": "string", "pattern": "^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$"})]


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _env_name(value: Any, info: ValidationInfo) -> str:
    raw = _scalar_text(value, "an environment variable name").strip()
    shape = secret_shape(raw)
    looks_random = len(raw) >= 20 and any(c.islower() for c in raw) and any(c.isupper() for c in raw) and any(c.isdigit() for c in raw)
    if shape is None and ((_LONG_TOKEN.search(raw) and not _ENV_NAME.match(raw)) or (looks_random and raw not in environ_of(info))):
        shape = "a long key"  # mixed case and digits over 20+ characters: a generated key, not a name
    if shape is not None:
        register_secret(raw)
        raise Invalid(
            f"looks like a literal secret ({shape}); this key takes the NAME of the environment variable "
            "that holds it, e.g. MY_ACCESS_KEY_ID"
        )
    wrapped = re.fullmatch(r"\$\{(\w+)\}", raw)
    if wrapped:
        raise Invalid(f"takes the variable name itself; write {wrapped.group(1)}, without ${{}}")
    if not _ENV_NAME.match(raw):
        raise Invalid(f"{raw!r} is not an environment variable name (letters, digits and _, not starting with a digit)")
    return raw


#: The NAME of an environment variable (not its value, not `${...}`).
EnvName = Annotated[str | None, BeforeValidator(_env_name), WithJsonSchema({"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"})]


def url_password_span(url: str) -> tuple[int, int] | None:
    """Where the password of `scheme://user:password@host/...` sits in `url`, if it has one."""
    scheme = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", url)
    if scheme is None:
        return None
    end = min([len(url)] + [found for found in (url.find(stop, scheme.end()) for stop in "/?#") if found != -1])
    at = url.rfind("@", scheme.end(), end)
    colon = url.find(":", scheme.end(), at) if at != -1 else -1
    return None if colon == -1 else (colon + 1, at)


def redact_url_password(url: str) -> str:
    span = url_password_span(url)
    if span is not None:
        url = url[: span[0]] + "***" + url[span[1] :]
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url)


def _database_url(value: Any, info: ValidationInfo) -> str | None:
    raw = _scalar_text(value, "a postgresql:// URL")
    refuse_literal_secret(raw)
    text, parts = expand(raw, environ_of(info))
    if not text.strip():
        return None
    origins = [origin for part, origin in parts for _ in part]
    spans = [span for span in [url_password_span(text)] if span is not None]
    spans += [found.span(1) for found in re.finditer(r"[?&]password=([^&#]*)", text)]
    for start, end in spans:
        register_secret(text[start:end])
        if start < end and any(origin != "env" for origin in origins[start:end]):
            raise Invalid(
                "has a literal password; put the URL in an environment variable (database_url: ${SUPABASE_DB_URL}) "
                "or just the password (postgresql://postgres:${PGPASSWORD}@host:5432/postgres)"
            )
    if not re.match(r"postgres(?:ql)?://", text):
        raise Invalid("expected a postgresql:// URL (the project's database connection string)")
    return text


#: A PostgreSQL URL whose password, if any, comes from the environment.
DatabaseUrl = Annotated[str | None, BeforeValidator(_database_url), WithJsonSchema({"type": "string"})]


def _http_url(value: Any, info: ValidationInfo) -> str | None:
    text = _optional_text(True)(value, info)
    if text is None:
        return None
    if not re.match(r"https?://[^/\s?#]+", text.strip()):
        shown = " something else" if url_password_span(text) else f" {text.strip()!r}"
        raise Invalid(f"expected an http:// or https:// URL, got{shown}")
    return text.strip().rstrip("/")


#: An http:// or https:// URL (trailing `/` dropped).
HttpUrl = Annotated[str | None, BeforeValidator(_http_url), WithJsonSchema({"type": "string"})]
