"""The plan model: every key of a plan file, with its type, default, bounds and meaning.

This is the plan reference: each field's description is what `migrate
schema` writes into the JSON Schema editors show (`plans/plan.schema.json`);
`source:` and `destination:` are declared in `migrate.plan.endpoints`.
`migrate.plan.loader` reads YAML into these models; they are frozen, so a
loaded plan never changes. Field names are the YAML keys except where an
alias says otherwise (a rule's or tier's `bucket:` is `buckets`, a rule's
`metadata:` is `user_metadata`).

A new key is one field: its type (a value type from `migrate.plan.values`
such as `OptText`, `Flag`, `count(1, 512)`, `size(...)`, `choice(...)`,
with `check(...)` for a rule of its own), its default and a description;
cross-field rules go in a `model_validator` raising `Invalid(..., at=...)`.
A header a rule sets is also a field of `RuleMetadata`. Then regenerate
the schema: `migrate schema > plans/plan.schema.json`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from migrate.checksums import CHECKSUM_SIZES, MIN_PART_SIZE, checksum_problem
from migrate.patterns import INFER, TemplateError, compile_match_regex, compile_match_template, compile_to_template
from migrate.errors import PlanError
from migrate.plan.cutover import BucketSettings, CutoverSettings
from migrate.plan.endpoints import STORAGE_CLASSES, BackupTarget, Destination, Encryption, Source, StorageClass, SupabaseSource, sse_pair
from migrate.plan.values import (
    TEXT_SCHEMA, BucketNames, Flag, GiB, Globs, Invalid, KiB, MiB, Moment, OptText, PlanModel, Price, Say, Text, Verbatim, check, choice, count,
    fail, format_size, mapping, price_value, shaped, size, text, typed, yaml_number,
)

PLAN_VERSION = 1
MAX_PART_SIZE = 5 * GiB  # S3: largest part, and largest single PUT
# S3 us-east-1 list prices (USD) as of writing (2025); each can be overridden in `costs:`.
DEFAULT_STORAGE_PRICES = {
    "STANDARD": 0.023, "STANDARD_IA": 0.0125, "ONEZONE_IA": 0.01, "INTELLIGENT_TIERING": 0.023, "GLACIER_IR": 0.004, "GLACIER": 0.0036,
    "DEEP_ARCHIVE": 0.00099,
}
DEFAULT_PUT_PER_1000 = 0.005  # PUT, COPY, POST, LIST
DEFAULT_GET_PER_1000 = 0.0004
_MAX_USER_METADATA = 2048  # S3: bytes of user metadata (keys + values) per object


# --------------------------------------------------------------------------- the plan


def _version(value: Any) -> int:
    if getattr(value, "value", None) == PLAN_VERSION and not isinstance(value.value, bool):
        return PLAN_VERSION
    return fail(f"unsupported plan version {value if isinstance(value, str) else '?'}; this migrate reads version: {PLAN_VERSION}")


class Plan(PlanModel):
    """A plan file: what to migrate, where to, and the rules in between. Build with `load_plan` or `parse_plan`.

    Top-level keys starting with `x-` are ignored (a home for YAML anchors). `${VAR}` and `${VAR:-default}` read
    the environment in every text value except templates, regexes and globs (`$${` is a literal `${`).
    """

    model_config = ConfigDict(json_schema_extra={"patternProperties": {"^x-": {}}})
    version: Annotated[typed(int, _version, {"const": PLAN_VERSION}), Say("start the plan with 'version: 1'")] = Field(description="Plan format version: 1.")
    name: OptText = Field(None, validate_default=True, description="Names the run directory; default: the file name without .yaml.")
    source: Annotated[Source, Say("say where objects come from (type: supabase or s3)")] = Field(description="Where objects come from.")
    destination: Annotated[Destination | None, Say("name at least the S3 bucket to copy into", "a mapping with at least bucket:")] = Field(
        None, description="Where objects go; may be left out of a backup-only plan (one with `backup:`)."
    )
    rules: Annotated[tuple[Rule, ...], Say(expected="a list of rules (- name: ..., match: ..., to: ...)", item="a rule (a mapping with name, match and to)")] = Field((), description="Rewrite rules, tried in order.")
    unmatched: choice("keep", "exclude") = Field(  # type: ignore[valid-type]
        "keep", description="Keys no rule matches: `keep` (copied under their own key) or `exclude`."
    )
    filters: Filters = Field(default_factory=lambda: Filters(), description="Which source objects take part.")
    tiering: Annotated[tuple[Tier, ...], Say(expected="a list of tiers (- storage_class: ..., modified_before: ...)", item="a tier (a mapping with storage_class and a condition)")] = Field(
        (), description="Storage class by bucket, key, size or age; the first matching tier wins."
    )
    transfer: TransferSettings = Field(default_factory=lambda: TransferSettings(), description="Concurrency, part sizes, retries, checksum and bandwidth of `migrate run`.")
    verify: VerifySettings = Field(default_factory=lambda: VerifySettings(), description="Mode, concurrency and sample of `migrate verify`.")
    costs: CostTable = Field(default_factory=lambda: CostTable(), description="Prices for the cost estimate.")
    backup: BackupSettings | None = Field(None, description="`migrate backup`: where snapshots of the source go and how many a prune keeps.")
    cutover: CutoverSettings = Field(default_factory=lambda: CutoverSettings(), description="URLs, redirect route and presigning after the switch (`migrate urls`, `serve`, `presign`).")
    bucket: BucketSettings = Field(default_factory=lambda: BucketSettings(), description="The destination bucket's versioning, default encryption and lifecycle (`migrate bucket apply`).")
    _path: str | None = PrivateAttr(None)

    @property
    def path(self) -> str | None:
        """The file the plan was read from (None when parsed from text without one)."""
        return self._path

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None, info: ValidationInfo) -> str:
        if value is None:
            return (info.context or {}).get("default_name", "plan")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", value):
            fail(f"{value!r} cannot name a run directory; use letters, digits, '.', '_' and '-' (at most 100)")
        return value

    @field_validator("destination")
    @classmethod
    def _bucket_prefix(cls, destination: Destination | None, info: ValidationInfo) -> Destination | None:
        if destination is None:
            return None
        # `auto` is decided from the plan alone, so a plan's keys do not depend on how many buckets exist at run time.
        names = info.data["source"].bucket_names if "source" in info.data else ()
        if destination.bucket_prefix is None and names != ():
            return destination.model_copy(update={"bucket_prefix": names is None or len(names) != 1})
        return destination

    @field_validator("rules", "tiering")
    @classmethod
    def _names_and_buckets(cls, items: tuple[Any, ...], info: ValidationInfo) -> tuple[Any, ...]:
        known = info.data["source"].bucket_names if "source" in info.data else None
        for index, item in enumerate(items):
            for position, bucket in enumerate(item.buckets):
                if known is not None and bucket not in known:
                    fail(f"bucket {bucket!r} is not among source.buckets ({', '.join(known)})", at=(index, "bucket", position))
            first = next(i for i, other in enumerate(items) if other.name == item.name)
            if isinstance(item, Rule) and first != index:
                fail(f"duplicate rule name {item.name!r} (also rules[{first}]); names are recorded in the manifest, so each must be unique", at=(index, "name"))
        return tuple(item if item.name else item.model_copy(update={"name": f"tier-{i + 1}"}) for i, item in enumerate(items))

    @model_validator(mode="after")
    def _destination_or_backup(self) -> "Plan":
        if self.destination is None and self.backup is None:
            fail("required key is missing; name at least the S3 bucket to copy into", at=("destination",))
        return self

    def require_destination(self) -> Destination:
        """The destination, or a PlanError for a backup-only plan used with plan/run/verify."""
        if self.destination is None:
            raise PlanError("has no destination: section (a backup-only plan); add one, or use `migrate backup`", path=self.path, key="destination")
        return self.destination

    def to_dict(self) -> dict[str, Any]:
        """The normalised plan as plain JSON-able data, secrets left out (URL passwords masked)."""
        return _normalise(self)

    def fingerprint(self) -> str:
        """A stable SHA-256 (hex) of what decides which objects go where and how they are written.

        Covers source, destination, rules, unmatched, filters, tiering, part size, multipart threshold and checksum
        algorithm, normalised (comments, spacing, key order and `10MiB` vs `10485760` do not matter). Leaves out
        secrets, the plan's name and path, tuning that never changes the result (concurrency, attempts, bandwidth, request rate),
        verify settings, prices and the cutover/bucket sections: a run can be retuned and resumed.
        """
        data = self.to_dict()
        for key in ("name", "verify", "costs", "cutover", "bucket"):
            data.pop(key)
        data.pop("backup", None)  # where snapshots go never changes where objects go
        for key in ("concurrency", "max_attempts", "max_bandwidth", "max_requests_per_second"):
            data["transfer"].pop(key)
        return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class RuleMetadata:
    """Headers a rule sets on the objects it matches (None: keep the source's); see `Rule` for each."""

    content_type: str | None = None
    cache_control: str | None = None
    content_disposition: str | None = None
    storage_class: str | None = None
    metadata: dict[str, str] = field(default_factory=dict, hash=False)
    # SSE for the rule's objects, overriding destination.server_side_encryption/kms_key_id.
    server_side_encryption: str | None = None
    kms_key_id: str | None = None

    @property
    def is_empty(self) -> bool:
        return not (
            self.content_type or self.cache_control or self.content_disposition or self.storage_class or self.metadata or self.server_side_encryption
        )


_PRINTABLE = re.compile(r"[\x20-\x7e]*\Z")
_MIME = re.compile(r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*(\s*;\s*[\w.+-]+=\S+)*\Z")
_META_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")


def _content_type(value: str) -> str:
    if value.strip().lower() == INFER or _MIME.match(value.strip()):
        return INFER if value.strip().lower() == INFER else value.strip()
    return fail(f"{value.strip()!r} is not a MIME type; write e.g. application/json, or infer to guess from the destination key's extension")


def _metadata_entry(name: str, raw: Any, info: ValidationInfo) -> tuple[str, str]:
    if name.lower().startswith("x-amz-meta-"):
        fail(f"write the name without the x-amz-meta- prefix: {name[11:]!r}")
    if not _META_NAME.match(name):
        lower = f" (S3 stores names in lowercase: write {name.lower()!r})" if _META_NAME.match(name.lower()) else ""
        fail(f"{name!r} is not a valid metadata name: lowercase letters, digits, '-', '_' and '.'{lower}")
    value = "" if raw == "" else text(raw, info)
    return (name, value) if _PRINTABLE.match(value) else fail("S3 metadata values must be printable ASCII on one line")


def _metadata_size(metadata: dict[str, str]) -> dict[str, str]:
    total = sum(len(k) + len(v) for k, v in metadata.items())
    return metadata if total <= _MAX_USER_METADATA else fail(f"user metadata is {total} bytes; S3 allows {_MAX_USER_METADATA} per object")


def _rule_name(name: str) -> bool:
    return len(name) <= 100 and not re.search(r"[\x00-\x1f\x7f]", name)

_HEADER = Annotated[OptText, check(_PRINTABLE.match, "must be printable ASCII on one line (it becomes an HTTP header)"), AfterValidator(lambda v: v and v.strip())]


class Rule(PlanModel):
    """One rewrite rule: a `match` template or a `regex`, and where matching keys go. The first rule that matches wins."""

    name: Annotated[Text, check(_rule_name, "rule names are at most 100 printable characters"), Say("give the rule a name; it is recorded in the manifest")] = Field(
        description="Unique name, recorded in the manifest."
    )
    buckets: BucketNames = Field((), alias="bucket", description="Only keys of these source buckets (one name or a list); empty: every bucket.")
    match: Verbatim = Field(None, description="Template over the source key: `{name}` one segment, `{name**}` several; e.g. `plugins/{name}/{file**}`.")
    regex: Verbatim = Field(None, description="Instead of `match`: a regular expression with named groups, matched against the whole key.")
    to: Verbatim = Field(None, description="Destination key below `destination.prefix`; `{name}` inserts a capture, `{bucket}` the source bucket.")
    exclude: Flag = Field(False, description="Leave matching keys out (no `to`, no headers).")
    content_type: Annotated[OptText, AfterValidator(lambda v: v and _content_type(v)), shaped(r"^\s*(?:[iI][nN][fF][eE][rR]|[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*(\s*;\s*[\w.+-]+=\S+)*)?\s*$")] = Field(
        None, description="A MIME type, or `infer` to guess from the destination key's extension."
    )
    cache_control: _HEADER = Field(None, description="Cache-Control header to set.")
    content_disposition: _HEADER = Field(None, description="Content-Disposition header to set.")
    storage_class: StorageClass | None = Field(None, description="Storage class of matching objects (a tier beats it).")
    server_side_encryption: Encryption | None = Field(None, description="Server-side encryption of matching objects, overriding the destination's.")  # type: ignore[valid-type]
    kms_key_id: OptText = Field(None, description="KMS key for matching objects; only with `server_side_encryption: aws:kms`.")
    user_metadata: Annotated[mapping("metadata names to values", _metadata_entry, TEXT_SCHEMA), AfterValidator(_metadata_size)] = Field(  # type: ignore[valid-type]
        default_factory=dict, alias="metadata", description="User metadata (x-amz-meta-*) to add: lowercase names, printable ASCII values, 2 KB in all."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_metadata(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("metadata"), RuleMetadata):  # Rule(..., metadata=RuleMetadata(...)) in code
            meta = data.pop("metadata")
            data = {**vars(meta), **data, "metadata": meta.metadata}
        return data

    @model_validator(mode="after")
    def _kms(self) -> "Rule":
        sse_pair(self, "rules[].")
        return self

    @model_validator(mode="after")
    def _pattern_and_target(self, info: ValidationInfo) -> "Rule":
        if info.context is None:
            return self  # built in code: `compile_rules` checks the templates (raising TemplateError)
        if self.match is not None and self.regex is not None:
            fail("give match (a template) or regex, not both", at=("regex",))
        if self.match is None and self.regex is None:
            fail("required key is missing; give match: '<template>' such as 'plugins/{name}/{file**}' (or regex: for a regular expression)", at=("match",))
        which = "regex" if self.regex is not None else "match"
        try:
            pattern = compile_match_regex(self.regex) if self.regex is not None else compile_match_template(self.match or "")
        except TemplateError as err:
            raise Invalid(str(err), at=(which,)) from None
        if self.exclude and self.to is not None:
            fail("a rule with exclude: true has no 'to'; remove one of them", at=("to",))
        if self.exclude and not self.metadata.is_empty:
            fail("a rule with exclude: true takes no headers or metadata")
        if not self.exclude and self.to is None:
            fail("required key is missing; say where matching keys go, e.g. to: 'registry/{name}/{file}' (or exclude: true to leave them out)", at=("to",))
        try:
            if not self.exclude:
                compile_to_template(self.to or "", pattern.names, captured_by=which)
        except TemplateError as err:
            raise Invalid(str(err), at=("to",)) from None
        return self

    @property
    def metadata(self) -> RuleMetadata:
        """The headers and user metadata this rule sets, as one value."""
        return RuleMetadata(**{f.name: getattr(self, "user_metadata" if f.name == "metadata" else f.name) for f in fields(RuleMetadata)})


RewriteRule = Rule


# --------------------------------------------------------------------------- filters and tiers


class _Bounds(PlanModel):
    min_size: size() = Field(None, description="Smallest size kept, inclusive (`1`, `10MiB`, `1GB`).")  # type: ignore[valid-type]
    max_size: size() = Field(None, description="Largest size kept, inclusive.")  # type: ignore[valid-type]
    modified_after: Moment = Field(None, description="Only objects last modified at or after this ISO 8601 date or time (UTC unless it says).")
    modified_before: Moment = Field(None, description="Only objects last modified before this ISO 8601 date or time.")

    @model_validator(mode="after")
    def _ordered(self) -> Any:
        if self.min_size is not None and self.max_size is not None and self.min_size > self.max_size:
            fail(f"min_size ({format_size(self.min_size)}) is larger than max_size ({format_size(self.max_size)})", at=("min_size",))
        if self.modified_after and self.modified_before and self.modified_after >= self.modified_before:
            fail("modified_after must be earlier than modified_before (objects with modified_after <= last modified < modified_before are kept)", at=("modified_after",))
        return self


class Filters(_Bounds):
    """Which source objects take part; see `migrate.filters.object_filter`. Globs: `*`, `?`, `**` as a whole segment."""

    include: Globs = Field((), description="Globs over the source key; only matching keys take part (empty: every key).")
    exclude: Globs = Field((), description="Globs over the source key; matching keys are left out.")
    skip_placeholders: Flag = Field(True, description="Leave out Supabase's `.emptyFolderPlaceholder` marker objects.")


class Tier(_Bounds):
    """A storage class for objects meeting every condition given; see `migrate.filters.tier_selector`."""

    name: OptText = Field(None, description="Name shown in the plan summary (default: tier-N).")
    storage_class: Annotated[StorageClass, Say("one of: " + ", ".join(STORAGE_CLASSES))] = Field(
        description="Storage class for matching objects; beats rules and the destination default."
    )
    buckets: BucketNames = Field((), alias="bucket", description="Only objects of these source buckets.")
    include: Globs = Field((), description="Only keys matching one of these globs.")

    @model_validator(mode="after")
    def _has_condition(self) -> "Tier":
        if self.buckets or self.include or self.min_size is not None or self.max_size is not None or self.modified_after or self.modified_before:
            return self
        return fail(
            "a tier needs a condition (bucket, include, min_size, max_size, modified_after or modified_before); "
            "for every object set destination.storage_class instead"
        )


# --------------------------------------------------------------------------- settings


def _installed_checksum(algorithm: str) -> str:
    """Refused at load time when this installation cannot compute it, with the fix."""
    problem = checksum_problem(algorithm)
    return fail(problem) if problem else algorithm


def _per_second(value: Any) -> float:
    number = yaml_number(value, (int, float), "a number of requests per second")
    return float(number) if 0 < number < float("inf") else fail(f"must be more than 0 requests per second, got {value}")


class TransferSettings(PlanModel):
    """How `migrate run` moves bytes."""

    concurrency: count(1, 512) = Field(16, description="Objects (and parts) in flight at once.")  # type: ignore[valid-type]
    part_size: size(MIN_PART_SIZE, MAX_PART_SIZE) = Field(16 * MiB, description="Multipart part size.")  # type: ignore[valid-type]
    multipart_threshold: size(MIN_PART_SIZE, MAX_PART_SIZE) = Field(  # type: ignore[valid-type]
        None, validate_default=True, description="Objects this large or larger go up in parts; default: the larger of 64 MiB and part_size."
    )
    max_attempts: count(1, 100) = Field(5, description="Attempts per request on transient faults.")  # type: ignore[valid-type]
    checksum_algorithm: Annotated[choice(*CHECKSUM_SIZES), AfterValidator(_installed_checksum)] = Field(  # type: ignore[valid-type]
        "SHA256", description="Checksum S3 checks on upload and stores: SHA256, CRC32, CRC32C or CRC64NVME (multipart objects also get a full-object CRC)."
    )
    max_bandwidth: size(64 * KiB, per_second=True) = Field(None, description="Cap on bytes per second, all workers together (`100MB/s`).")  # type: ignore[valid-type]
    max_requests_per_second: typed(float | None, _per_second, {"type": "number", "exclusiveMinimum": 0}) = Field(  # type: ignore[valid-type]
        None, description="Cap on requests per second, all workers together (like rclone's --tpslimit); none: unlimited."
    )

    @field_validator("multipart_threshold")
    @classmethod
    def _threshold(cls, value: int | None, info: ValidationInfo) -> int:
        return value if value is not None else max(64 * MiB, info.data.get("part_size") or 0)


def _sample(value: Any) -> int | str:
    number = getattr(value, "value", value)
    if isinstance(number, int) and not isinstance(number, bool):
        return number if number >= 1 else fail(f"must be at least 1 object, got {number}")
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", value) if isinstance(value, str) else None
    if found is None or not 0 < float(found.group(1)) <= 100:
        fail("expected a number of objects (1000) or a percentage ('5%', above 0 and at most 100)")
    return f"{float(found.group(1))}%"


class VerifySettings(PlanModel):
    """How `migrate verify` checks the destination."""

    mode: choice("quick", "fast", "deep") = Field(  # type: ignore[valid-type]
        "fast", description="`quick`: size and ETag from one listing against the journal, HEAD only what it cannot prove; "
        "`fast`: size, checksum and headers from HEAD; `deep`: also read the bytes back."
    )
    concurrency: count(1, 512) = Field(16, description="Objects checked at once.")  # type: ignore[valid-type]
    sample_size: typed(int | str | None, _sample, {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": r"^\s*\d+(?:\.\d+)?\s*%\s*$"}]}) = Field(  # type: ignore[valid-type]
        None, alias="sample", description="Check only a sample in deep mode: a number of objects (1000) or a percentage (`5%`)."
    )

    @property
    def sample(self) -> int | None:
        return self.sample_size if isinstance(self.sample_size, int) else None

    @property
    def sample_percent(self) -> float | None:
        return float(self.sample_size[:-1]) if isinstance(self.sample_size, str) else None


def _price_entry(name: str, price: Any, info: ValidationInfo) -> tuple[str, float]:
    known = next((c for c in STORAGE_CLASSES if c.lower() == name.lower()), None)
    return (known, price_value(price)) if known else fail(f"{name!r} is not a storage class; one of: {', '.join(STORAGE_CLASSES)}")


class CostTable(PlanModel):
    """Prices for the cost estimate: USD, S3 us-east-1 list prices unless overridden."""

    currency: Annotated[OptText, AfterValidator(lambda v: (v or "USD").strip()), check(re.compile("[A-Z]{3}").fullmatch, "{0!r} is not a currency code such as USD"), shaped(r"^\s*(?:[A-Z]{3})?\s*$")] = Field(
        "USD", validate_default=True, description="Currency code of the prices, such as USD."
    )
    storage_per_gb_month: Annotated[  # type: ignore[valid-type]
        mapping("storage class to price", _price_entry, {"type": "number", "minimum": 0}), AfterValidator(lambda given: DEFAULT_STORAGE_PRICES | given)
    ] = Field(
        default_factory=lambda: dict(DEFAULT_STORAGE_PRICES), description="Price per GB-month by storage class (classes not given keep the list price)."
    )
    put_per_1000: Price = Field(DEFAULT_PUT_PER_1000, description="Price per 1000 PUT, COPY, POST or LIST requests.")
    get_per_1000: Price = Field(DEFAULT_GET_PER_1000, description="Price per 1000 GET requests.")

    def storage_price(self, storage_class: str | None) -> float | None:
        """Price per GB-month of `storage_class` (None: STANDARD), or None if the table has none."""
        return self.storage_per_gb_month.get(storage_class or "STANDARD")


#: Rule keys added after plans were first fingerprinted: left out while unset, so earlier runs still resume.
_LATER_RULE_KEYS = frozenset({"server_side_encryption", "kms_key_id"})
#: Keys of other sections added later, with the value they are left out at (same reason).
_LATER_KEYS: dict[str, dict[str, Any]] = {"Plan": {"backup": None}, "Destination": {"type": "s3", "path": None}}


# --------------------------------------------------------------------------- backup


def _distinct_targets(targets: tuple[BackupTarget, ...]) -> tuple[BackupTarget, ...]:
    if not targets:
        fail("expected a non-empty list of targets, e.g. [{type: local, path: /backups}, {type: s3, bucket: b}]")
    for index, target in enumerate(targets):
        if any(other.name == target.name for other in targets[:index]):
            fail(f"target {target.name!r} is listed twice; give each target its own name:", at=(index,))
    return targets


class BackupSettings(PlanModel):
    """`backup:` (`migrate backup`): where snapshots go and how many survive a prune (migrate.retention)."""

    targets: Annotated[
        tuple[BackupTarget, ...],
        AfterValidator(_distinct_targets),
        Say("list where snapshots go, e.g. targets: [{type: local, path: /backups}]", "a non-empty list of targets", "a target (type: local with path:, or type: s3 with bucket:)"),
    ] = Field(description="Where every snapshot is written: `{type: local, path}` folders and `{type: s3, bucket, prefix, ...}` buckets.")
    keep: count(1, 10_000) = Field(3, description="The newest snapshots a prune always keeps.")  # type: ignore[valid-type]
    keep_daily: count(0, 10_000) = Field(0, description="Also keep the newest snapshot of each of this many days.")  # type: ignore[valid-type]
    keep_weekly: count(0, 10_000) = Field(0, description="Also keep the newest snapshot of each of this many weeks.")  # type: ignore[valid-type]


def _normalise(value: Any) -> Any:
    # The shape the plan had as dataclasses, so that fingerprints of existing runs still match.
    if isinstance(value, BaseModel):
        out = {name: _normalise(getattr(value, name)) for name, info in type(value).model_fields.items() if not info.exclude}
        if isinstance(value, Rule):
            metadata = {k: v for k, v in vars(value.metadata).items() if v is not None or k not in _LATER_RULE_KEYS}
            out = {k: v for k, v in out.items() if k not in vars(value.metadata) and k != "user_metadata"} | {"metadata": _normalise(metadata)}
        if isinstance(value, SupabaseSource):
            out["database_url"] = value.database_url_redacted
        for key, unset in _LATER_KEYS.get(type(value).__name__, {}).items():
            if out.get(key, unset) == unset:
                out.pop(key, None)
        return out
    if isinstance(value, (tuple, list)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    return value.astimezone(timezone.utc).isoformat() if isinstance(value, datetime) else value


def plan_json_schema() -> dict[str, Any]:
    """The JSON Schema of a plan file, for editors (`migrate schema`; kept as plans/plan.schema.json)."""
    schema = Plan.model_json_schema()
    # `type:` picks the section's shape, so that an editor points at the key that is wrong, not at `source`.
    source = schema["properties"]["source"]
    members = source.pop("oneOf")
    s3, supabase = (next(ref for ref in members if ref["$ref"].endswith(name)) for name in ("/S3Source", "/SupabaseSource"))
    source.update({"if": {"properties": {"type": {"type": "string", "pattern": "^\\s*[sS]3\\s*$"}}, "required": ["type"]}, "then": s3, "else": supabase})
    for definition in [schema, *schema["$defs"].values()]:
        properties = definition["properties"]
        if "prefixes" in properties:  # `prefix:` is the one-prefix spelling of `prefixes:`
            properties["prefix"] = {**properties["prefixes"], "description": "Same as `prefixes`; give one of the two."}
        for name, prop in properties.items():  # `key:` with nothing after it counts as not given
            if name not in definition.get("required", ()) and {"type": "null"} not in prop.get("anyOf", ()):
                properties[name] = {"anyOf": [{k: v for k, v in prop.items() if k not in ("description", "default", "title")}, {"type": "null"}],
                                    **{k: v for k, v in prop.items() if k in ("description", "default", "title")}}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "migrate plan"}


Plan.model_rebuild()  # its parts are declared below it
