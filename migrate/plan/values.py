"""Value types of the plan model: how one YAML value becomes a typed field.

Each alias is a pydantic type with its checks attached, so that the model
states a key's type, default and bounds once, on the field. The loader
passes YAML text as `str`, numbers and true/false as `Scalar` (the text as
written, with `.value` as YAML reads it): `prefix: 2024` stays "2024" while
`concurrency: '16'` is text, not a number. Values built in code
(`Tier(min_size=1)`) are accepted too. A failed check raises `Invalid`,
which the loader turns into a `PlanError` at the value's line. `${VAR}`
values come from `info.context["environ"]` (os.environ for code).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, Callable, ClassVar, Literal, Mapping

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticUseDefault

from migrate.patterns import GlobError, TemplateError, glob_to_regex
from migrate.patterns import GiB, KiB, MiB, TiB, format_size, parse_size  # noqa: F401 - re-exported
from migrate.redact import credential_shape, register_secret, url_password_span

class Scalar(str):
    """A YAML number or true/false: the text as written, and `value` as YAML reads it."""

    def __new__(cls, text: str, value: Any) -> "Scalar":
        made = super().__new__(cls, text)
        made.value = value  # type: ignore[attr-defined]
        return made


class Invalid(ValueError):
    """A value the plan cannot take. `at`: where it points, relative to the value's location (`..` goes up);
    `line_at`: the location whose line to show instead; `lines`: `{name}` in the message becomes the line
    of that location; `hinted`: append the field's `Say.missing`."""

    def __init__(self, message: str, *, at: tuple = (), line_at: tuple | None = None, lines: dict | None = None, hinted: bool = False):
        super().__init__(message)
        self.at, self.line_at, self.lines, self.hinted = at, line_at, lines or {}, hinted


@dataclass(frozen=True)
class Say:
    """Field marker for messages: what to do when the key is `missing`, what it holds when `expected`, what each `item` of it is."""

    missing: str | None = None
    expected: str | None = None
    item: str | None = None


def typed(kind: Any, check: Callable[..., Any], schema: dict[str, Any]) -> Any:
    """The type `kind`, checked (and converted) by `check`, described to editors by `schema`."""
    return Annotated[kind, BeforeValidator(check), WithJsonSchema(schema)]


def describe(value: Any) -> str:
    """What a value holds, for 'expected X, got Y' (short, and never a secret)."""
    if isinstance(value, (dict, list, tuple)) or value is None:
        return "a mapping" if isinstance(value, dict) else "nothing" if value is None else "a list"
    native = getattr(value, "value", value)
    if isinstance(native, bool) or not isinstance(native, str):
        return f"true/false ({value})" if isinstance(native, bool) else f"the number {value}"
    if credential_shape(value) or _LONG_TOKEN.search(value):
        return "text"
    return f"the text {value if len(value) <= 40 else value[:37] + '...'!r}"


# --------------------------------------------------------------------------- environment and secrets

_INTERPOLATION = re.compile(r"\$\$\{|\$\{(?P<body>[^{}]*)\}|\$\{")
_REFERENCE_NAMES = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)")
_REFERENCE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?\Z", re.DOTALL)
_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/=_.-]{32,}")
_EXPORT_SECRET = "export it before running migrate (the plan never holds the secret itself)"


def environ_of(info: ValidationInfo | None) -> Mapping[str, str]:
    context = info.context if info is not None else None
    return context["environ"] if context and "environ" in context else os.environ


def expand(raw: str, environ: Mapping[str, str], *, secret: bool = False) -> tuple[str, list[tuple[str, str]]]:
    """Expand `${VAR}`, `${VAR:-default}` and `$${`: the text, and its parts with their origin ("literal", "env",
    "default"). With `secret`, a default is refused (it would put the secret in the plan) and nothing is echoed."""
    parts: list[tuple[str, str]] = []
    position = 0
    for found in _INTERPOLATION.finditer(raw):
        parts.append((raw[position : found.start()], "literal"))
        position = found.end()
        if found.group() == "$${":
            parts.append(("${", "literal"))
            continue
        if found.group("body") is None:
            raise Invalid("unclosed '${'; write ${NAME} or ${NAME:-default} (or $${ for a literal ${)")
        reference = _REFERENCE.match(found.group("body"))
        if reference is None:
            shown = "" if secret else f" ${{{found.group('body')}}}"
            raise Invalid(f"invalid environment reference{shown}; write ${{NAME}} or ${{NAME:-default}}")
        name, default, value = reference["name"], reference["default"], environ.get(reference["name"])
        if secret and default:
            raise Invalid(f"a default (${{{name}:-...}}) is not allowed here: it would put the secret in the plan; write ${{{name}}}")
        if default is None and value is None:
            advice = _EXPORT_SECRET if secret else f"export it or give a default: ${{{name}:-value}}"
            raise Invalid(f"environment variable {name} is not set; {advice}")
        parts.append((value, "env") if value or default is None else (default, "default"))
    parts.append((raw[position:], "literal"))
    return "".join(text for text, _ in parts), parts


def _scalar(value: Any, expected: str = "text") -> str:
    if isinstance(value, (dict, list, tuple)) or value is None:
        raise Invalid(f"expected {expected}, got {describe(value)}")
    return str(value)


def text(value: Any, info: ValidationInfo | None, *, interpolate: bool = True) -> str:
    """One text value: anything shaped like a credential refused, `${...}` expanded unless told not to."""
    raw = _scalar(value)
    shape = credential_shape(raw, register=True)
    if shape is not None:
        raise Invalid(f"looks like a literal secret ({shape}); never put credentials in the plan: put it in an environment variable and write ${{ENV_VAR}}")
    return expand(raw, environ_of(info))[0] if interpolate else raw


def _optional(interpolate: bool) -> Callable[[Any, ValidationInfo], str | None]:
    def check(value: Any, info: ValidationInfo) -> str | None:
        expanded = None if value is None else text(value, info, interpolate=interpolate)  # None: the field's default
        return expanded if expanded and expanded.strip() else None  # text that expands to nothing is not given

    return check


def _required(value: Any, info: ValidationInfo) -> str:
    expanded = text(value, info).strip()
    if not expanded:
        names = sorted({found["name"] for found in _REFERENCE_NAMES.finditer(str(value))})
        raise Invalid("is empty" + (f" ({', '.join(names)}: not set or empty)" if names else ""), hinted=True)
    return expanded


# A plain YAML number or true/false is text too (`prefix: 2024`, `name: yes`), so the schema allows them.
TEXT_SCHEMA = {"type": ["string", "number", "boolean"]}


def shaped(regex: str, *, numbers: bool = False) -> WithJsonSchema:
    """Tell editors the text must match `regex` (or be a `${VAR}`); with `numbers`, a YAML number or true/false is fine too."""
    schema = {"type": "string", "pattern": f"{regex}|\\$\\{{"}
    return WithJsonSchema({"anyOf": [schema, {"type": ["number", "boolean"]}]} if numbers else schema)


_ONE = {**TEXT_SCHEMA, "minLength": 1}
#: Text with `${...}` expanded; empty means not given.
OptText = typed(str | None, _optional(True), TEXT_SCHEMA)
#: Text that must not be empty after expansion (stripped).
Text = typed(str, _required, _ONE)
#: A template or regex: taken literally, never interpolated.
Verbatim = typed(str | None, _optional(False), TEXT_SCHEMA)


# --------------------------------------------------------------------------- choices, numbers, sizes, dates


def canonical(value: Any, info: ValidationInfo | None, options: tuple[str, ...]) -> str | None:
    """`value` as one of `options` (any case, `${...}` expanded), None when empty; else `Invalid` with a suggestion."""
    given = expand(_scalar(value, f"one of {', '.join(options)}"), environ_of(info))[0].strip()
    lowered = {option.lower(): option for option in options}
    if not given or given.lower() in lowered:
        return lowered.get(given.lower())
    close = difflib.get_close_matches(given.lower(), list(lowered), n=1, cutoff=0.5)
    raise Invalid(f"{given!r} is not one of: {', '.join(options)}" + (f"; did you mean {lowered[close[0]]!r}?" if close else ""))


def choice_schema(*options: str) -> dict[str, Any]:
    """JSON Schema of a choice: editors complete the canonical spellings and accept any case or a ${VAR}."""
    any_case = "|".join("".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in o) for o in options)
    return {"anyOf": [{"enum": list(options)}, {"type": "string", "pattern": f"^\\s*(?:{any_case})?\\s*$|\\$\\{{"}]}


def choice(*options: str) -> Any:
    """One of `options`, matched case-insensitively and stored as spelled here; empty means the field's default."""

    def check(value: Any, info: ValidationInfo) -> str:
        chosen = canonical(value, info, options)
        if chosen is None:
            raise PydanticUseDefault()  # `on_conflict: ${MODE:-}` with MODE unset: the default (or "missing")
        return chosen

    return typed(Literal[options], check, choice_schema(*options))


def yaml_number(value: Any, kinds: tuple[type, ...], expected: str) -> Any:
    """`value` as a YAML number of one of `kinds` (never true/false, never text)."""
    native = getattr(value, "value", value)
    if isinstance(native, bool) or not isinstance(native, kinds):
        raise Invalid(f"expected {expected}, got {describe(value)}")
    return native


def count(low: int, high: int) -> Any:
    """A whole number from `low` to `high`, written as a YAML number (`'16'` is text)."""

    def check(value: Any) -> int:
        number = yaml_number(value, (int,), "a whole number")
        return number if low <= number <= high else fail(f"must be between {low} and {high}, got {number}")

    return typed(int, check, {"type": "integer", "minimum": low, "maximum": high})


def _flag(value: Any) -> bool:
    if not isinstance(getattr(value, "value", value), bool):
        raise Invalid(f"expected true or false, got {describe(value)}")
    return bool(getattr(value, "value", value))


def price_value(value: Any) -> float:
    """A price: a YAML number of 0 or more."""
    number = yaml_number(value, (int, float), "a number")
    return float(number) if 0 <= number < float("inf") else fail(f"must be a price of 0 or more, got {value}")


#: true or false.
Flag = typed(bool, _flag, {"type": "boolean"})
#: A price: a number of 0 or more.
Price = typed(float, price_value, {"type": "number", "minimum": 0})


def size(minimum: int = 0, maximum: int | None = None, *, per_second: bool = False) -> Any:
    """A size in bytes (`16MiB`, `1GB`, `512`) from `minimum` to `maximum`; `per_second` also takes `100MB/s`."""

    def check(value: Any, info: ValidationInfo) -> int | None:
        if value is None:
            return None  # the field's default
        raw = getattr(value, "value", value)
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise Invalid(f"expected a size such as 16MiB or a number of bytes, got {describe(value)}")
        if isinstance(raw, str):
            raw = expand(raw, environ_of(info))[0].rstrip()
            raw = raw[:-2] if per_second and raw.lower().endswith("/s") else raw
        try:
            number = parse_size(raw)
        except ValueError as err:
            raise Invalid(str(err)) from None
        if number < minimum or (maximum is not None and number > maximum):
            bound = f"at least {format_size(minimum)}" if number < minimum else f"at most {format_size(maximum or 0)}"
            raise Invalid(f"must be {bound}, got {format_size(number)}")
        return number

    pattern = "^\\s*\\d+(?:\\.\\d+)?\\s*(?:[kKmMgGtT][iI]?[bB]|[bB])?" + ("(?:/s)?" if per_second else "") + "\\s*$|\\$\\{"
    bounds = {"minimum": minimum} | ({"maximum": maximum} if maximum else {})
    return typed(int | None, check, {"anyOf": [{"type": "integer", **bounds}, {"type": "string", "pattern": pattern}]})


def _moment(value: Any, info: ValidationInfo) -> datetime:
    if not isinstance(value, datetime):
        given = expand(_scalar(value, "an ISO 8601 date"), environ_of(info))[0].strip()
        try:
            value = datetime.fromisoformat(given)
        except ValueError:
            raise Invalid(f"{given!r} is not an ISO 8601 date; write e.g. 2024-01-31 or 2024-01-31T12:00:00Z") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


#: An ISO 8601 date or date-time: a date is midnight UTC, a time without a zone is UTC.
Moment = Annotated[typed(datetime | None, _moment, {}), shaped(r"^\s*\d{4}-\d{2}-\d{2}")]


# --------------------------------------------------------------------------- credentials and URLs


def secret_reference(variable: str) -> Any:
    """A secret written as `${VAR}` and nothing else; the value is the resolved secret, registered for redaction."""

    def check(value: Any, info: ValidationInfo) -> str:
        raw = _scalar(value, f"${{{variable}}}")
        literal = _INTERPOLATION.sub(" ", raw).strip()
        if literal:
            register_secret(literal)
            shape = credential_shape(raw) or ("a long key" if _LONG_TOKEN.search(literal) else None)
            if shape is not None:
                raise Invalid(f"looks like a literal secret ({shape}); never put keys in the plan: write {info.field_name}: ${{{variable}}} and export {variable}")
            raise Invalid(f"must be an environment variable reference such as ${{{variable}}}, not literal text; the plan never holds the key itself")
        resolved = expand(raw, environ_of(info), secret=True)[0]
        if not resolved:
            names = sorted({found["name"] for found in _REFERENCE_NAMES.finditer(raw)}) or [variable]
            unset = [name for name in names if name not in environ_of(info)]
            state = f"{', '.join(unset)} is not set" if unset else f"{', '.join(names)} is empty"
            raise Invalid(f"environment variable {state}; {_EXPORT_SECRET}")
        register_secret(resolved)
        return resolved

    return typed(str, check, {"type": "string", "pattern": "^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$"})


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _env_name(value: Any, info: ValidationInfo) -> str:
    raw = _scalar(value, "an environment variable name").strip()
    # Mixed case and digits over 20+ characters, or a long token: a generated key, not a variable's name.
    looks_random = len(raw) >= 20 and all(any(test(c) for c in raw) for test in (str.islower, str.isupper, str.isdigit)) and raw not in environ_of(info)
    shape = credential_shape(raw) or ("a long key" if (_LONG_TOKEN.search(raw) and not _ENV_NAME.match(raw)) or looks_random else None)
    if shape is not None:
        register_secret(raw)
        raise Invalid(f"looks like a literal secret ({shape}); this key takes the NAME of the environment variable that holds it, e.g. MY_ACCESS_KEY_ID")
    wrapped = re.fullmatch(r"\$\{(\w+)\}", raw)
    if wrapped:
        raise Invalid(f"takes the variable name itself; write {wrapped.group(1)}, without ${{}}")
    return raw if _ENV_NAME.match(raw) else fail(f"{raw!r} is not an environment variable name (letters, digits and _, not starting with a digit)")


#: The NAME of an environment variable (not its value, not `${...}`).
EnvName = typed(str | None, _env_name, {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"})


def _database_url(value: Any, info: ValidationInfo) -> str | None:
    expanded, parts = expand(text(value, info, interpolate=False), environ_of(info))
    if not expanded.strip():
        return None
    origins = [origin for part, origin in parts for _ in part]
    spans = [span for span in [url_password_span(expanded)] if span] + [m.span(1) for m in re.finditer(r"[?&]password=([^&#]*)", expanded)]
    for start, end in spans:
        register_secret(expanded[start:end])
        if start < end and any(origin != "env" for origin in origins[start:end]):
            raise Invalid(
                "has a literal password; put the URL in an environment variable (database_url: ${SUPABASE_DB_URL}) "
                "or just the password (postgresql://postgres:${PGPASSWORD}@host:5432/postgres)"
            )
    return expanded if re.match(r"postgres(?:ql)?://", expanded) else fail("expected a postgresql:// URL (the project's database connection string)")


def http_url(*, required: bool = False) -> Any:
    """An http:// or https:// URL (a trailing `/` dropped); empty means not given unless `required`."""

    def check(value: Any, info: ValidationInfo) -> str | None:
        given = _required(value, info) if required else text(value, info).strip()
        if given and not re.match(r"https?://[^/\s?#]+", given):
            raise Invalid("expected an http:// or https:// URL, got" + (" something else" if url_password_span(given) else f" {given!r}"))
        return given.rstrip("/") or None

    return Annotated[typed(str if required else str | None, check, {}), shaped(r"^\s*https?://[^/\s?#]+" + ("" if required else r"|^\s*$"))]


#: A PostgreSQL URL whose password, if any, comes from the environment.
DatabaseUrl = Annotated[typed(str | None, _database_url, {}), shaped(r"^\s*postgres(?:ql)?://|^$")]
HttpUrl = http_url()


# --------------------------------------------------------------------------- building blocks of the models

ONE_OR_MORE = {"anyOf": [_ONE, {"type": "array", "items": _ONE}]}


def credentials_refused(value: Any, hint: str) -> Invalid:
    """The error for a credential written into the plan; the value is masked from then on."""
    if isinstance(value, str):
        register_secret(value)
    return Invalid(f"credentials never go in the plan file; {hint}")


def check(test: Any, message: str) -> AfterValidator:
    """A field check: `message` (formatted with the value as `{0!r}`) unless `test(value)` holds."""
    return AfterValidator(lambda value: value if value is None or test(value) else fail(message.format(value)))


def fail(message: str, **where: Any) -> Any:
    raise Invalid(message, **where)


class PlanModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    #: Said when someone writes a credential key in this section.
    credentials_hint: ClassVar[str] = "credentials never go in the plan file"
    #: Keys accepted besides the fields (folded into a field before validation).
    synonyms: ClassVar[tuple[str, ...]] = ()
    #: Fields that code may give positionally, in this order: `LifecycleTransition(30, "STANDARD_IA")`.
    positional: ClassVar[tuple[str, ...]] = ()

    def __init__(self, /, *args: Any, **data: Any):
        super().__init__(**dict(zip(type(self).positional, args)), **data)

    # Validation from a plan file must not go through __init__: it would lose the context with the environment.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]


def names(what: str, check: Any, *, interpolate: bool = True) -> Any:
    """One string or a list of them (deduplicated), each non-empty and passing `check` (a ValueError says why not)."""

    def validate(value: Any, info: ValidationInfo) -> tuple[str, ...]:
        out = []
        for index, item in enumerate(value if isinstance(value, (list, tuple)) else [value]):
            try:
                if not isinstance(item, str):
                    fail(f"expected {what} or a list of it, got {describe(item)}")
                out.append(check(text(item, info, interpolate=interpolate) or fail("is empty")))
            except (ValueError, TemplateError, GlobError) as err:  # an Invalid is a ValueError too
                raise Invalid(str(err), at=(index,) if isinstance(value, list) else ()) from None
        return tuple(dict.fromkeys(out))

    return typed(tuple[str, ...], validate, ONE_OR_MORE)


def mapping(what: str, entry: Callable[[str, Any, ValidationInfo], tuple[str, Any]], values: dict[str, Any]) -> Any:
    """A mapping of `what`, each entry checked by `entry(name, value, info) -> (name, value)`, its errors at its key;
    `values` is the JSON Schema of one value."""

    def validate(value: Any, info: ValidationInfo) -> dict[str, Any]:
        if not isinstance(value, dict):
            fail(f"expected a mapping of {what}, got {describe(value)}")
        out = {}
        for name, raw in value.items():
            try:
                key, out[key] = entry(str(name), raw, info)
            except Invalid as err:
                raise Invalid(str(err), at=(name, *err.at)) from None
        return out

    return typed(dict[str, Any], validate, {"type": "object", "additionalProperties": values})


def bucket_name(value: str) -> str:
    return value.strip() if value.strip() and "/" not in value else fail(f"{value.strip()!r} is not a bucket name (non-empty, no '/')")


#: One bucket name or a list of them.
BucketNames = names("a bucket name", bucket_name)
#: One glob or a list of them (see `migrate.filters`).
Globs = names("a glob", lambda glob: glob_to_regex(glob) and glob, interpolate=False)
