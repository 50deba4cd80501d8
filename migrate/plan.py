"""The YAML plan: what to migrate, where to, and the rules in between.

A plan file (see `plans/*.yaml` for worked examples) is read once by
`load_plan` into a frozen `Plan`. Everything wrong with it is a `PlanError`
that names the file, the line and the key as a dotted path
(`plans/x.yaml:14: rules[1].match: ...`) and says what is expected. No
traceback, and never a secret: the loader works on the YAML node tree
(`yaml.compose`), so every value keeps the line it came from.

Shape (every key; only `version`, `source` and `destination.bucket` are
required)::

    version: 1
    name: plugin-registry            # default: the file name without .yaml
    source:
      type: supabase                 # or s3
      url: ${SUPABASE_URL}
      key: ${SUPABASE_SERVICE_ROLE_KEY}
      database_url: ${SUPABASE_DB_URL:-}   # inventory from storage.objects instead of the REST API
      buckets: [plugins, {name: documents, prefixes: [reports/]}]   # or all (the default)
      prefixes: [plugins/]           # (or prefix:) for buckets without their own
    # type: s3 takes endpoint_url, region, buckets, prefixes/prefix, profile,
    # access_key_id_env, secret_access_key_env, session_token_env.
    destination:
      bucket: ${MIGRATE_DEST_BUCKET}
      endpoint_url: ${MIGRATE_DEST_ENDPOINT_URL:-}   # empty: AWS
      region: us-east-1
      prefix: migrated/
      bucket_prefix: auto            # auto | always | never
      storage_class: STANDARD
      server_side_encryption: aws:kms
      kms_key_id: alias/migrate
      on_conflict: skip              # skip | overwrite | fail
      profile: prod                  # or access_key_id_env / secret_access_key_env / session_token_env
    rules:
      - name: packages
        bucket: plugins              # optional: only keys of this source bucket
        match: "plugins/{name}/{version}/{file**}"   # or regex: '(?P<name>...)'
        to: "registry/{name}/v{version}/{file}"
        content_type: infer
        cache_control: "public, max-age=31536000, immutable"
        content_disposition: attachment
        storage_class: STANDARD_IA
        metadata: {origin: supabase}
      - name: drop-scratch
        match: "scratch/{rest**}"
        exclude: true
    unmatched: keep                  # keep | exclude
    filters:
      include: ["**"]
      exclude: ["**/*.tmp"]
      min_size: 1
      max_size: 5GiB
      modified_after: 2020-01-01
      modified_before: 2030-01-01
      skip_placeholders: true
    tiering:
      - {name: old, modified_before: 2024-01-01, storage_class: STANDARD_IA}
    transfer: {concurrency: 16, part_size: 16MiB, multipart_threshold: 64MiB,
               max_attempts: 5, checksum_algorithm: SHA256, max_bandwidth: 100MB/s}
    verify: {mode: fast, concurrency: 16, sample: 1000}   # sample: 1000 objects or "5%"
    costs: {currency: USD, storage_per_gb_month: {STANDARD: 0.023}, put_per_1000: 0.005, get_per_1000: 0.0004}
    cutover:                         # migrate urls / serve / presign
      public_buckets: [avatars]      # public in Supabase: public URLs and 301s
      public_base_url: https://assets.example.com   # default: the destination bucket's S3 URL
      cdn_base_url: https://d111111abcdef8.cloudfront.net   # wins over public_base_url
      presign_expires: 1h            # at most 7d
      serve: {host: 127.0.0.1, port: 8787, jwt_secret_env: SUPABASE_JWT_SECRET,
              secret_key_env: SUPABASE_SECRET_KEY, roles: [service_role]}
    bucket:                          # migrate bucket apply
      versioning: true
      encryption: {algorithm: AES256}
      lifecycle:
        - {id: logs, prefix: logs/, transitions: [{days: 30, storage_class: STANDARD_IA}],
           expiration_days: 365, abort_incomplete_multipart_days: 7}

Decisions worth knowing:

- Secrets never live in the plan. `${VAR}` and `${VAR:-default}` read the
  environment in every string value except templates, regexes and globs
  (`$${` is a literal `${`). `source.key` must be nothing but `${VAR}`; a
  `database_url` may carry a password only through `${...}`; S3 credentials
  come from the AWS chain, a `profile`, or `*_env` keys naming variables.
  Anything shaped like a JWT, a Supabase secret key or an AWS access key id
  anywhere in the file is refused. Resolved secrets are registered with
  `migrate.redact` and left out of `repr`, `to_dict` and `fingerprint`.
- An optional value that expands to the empty string counts as not given,
  so `endpoint_url: ${MIGRATE_DEST_ENDPOINT_URL:-}` means "AWS unless set".
- Several source buckets, one destination bucket: a rule's `to` is the whole
  key below `destination.prefix` (write `{bucket}` to keep the bucket name).
  Keys kept by `unmatched: keep` go below `<bucket>/` when
  `destination.bucket_prefix` applies: `auto` (the default) means "when the
  plan does not name exactly one bucket" (so `buckets: all` always
  prefixes, whatever the project holds today), `always` and `never` force
  it. Decided from the plan alone, so a plan's keys do not depend on how
  many buckets exist at run time.
- `unmatched` defaults to `keep`: a migration should not lose objects
  because no rule mentioned them. Use `exclude` for "only what rules name".
- `on_conflict` defaults to `skip`: an object already at the destination is
  left alone (verify reports differences), so reruns never destroy data.
- `destination.storage_class` defaults to none (the bucket default, STANDARD
  on AWS; no header is sent). A tier beats a rule, a rule beats the default.
- `transfer.multipart_threshold` defaults to the larger of 64 MiB and
  `part_size`.
- Top-level keys starting with `x-` are ignored: a home for YAML anchors.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence, TypeVar

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from migrate.errors import PlanError
from migrate.filters import GlobError, format_size, glob_to_regex
from migrate.redact import register_secret
from migrate.rewrite import (
    INFER,
    TemplateError,
    compile_match_regex,
    compile_match_template,
    compile_to_template,
    validate_destination_key,
)

PLAN_VERSION = 1

STORAGE_CLASSES: tuple[str, ...] = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
    "OUTPOSTS",
    "EXPRESS_ONEZONE",
)
SERVER_SIDE_ENCRYPTION: tuple[str, ...] = ("AES256", "aws:kms")
ON_CONFLICT: tuple[str, ...] = ("skip", "overwrite", "fail")
UNMATCHED: tuple[str, ...] = ("keep", "exclude")
BUCKET_PREFIX: tuple[str, ...] = ("auto", "always", "never")
CHECKSUM_ALGORITHMS: tuple[str, ...] = ("SHA256", "CRC64NVME")
VERIFY_MODES: tuple[str, ...] = ("fast", "deep")

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
MIN_PART_SIZE = 5 * MiB  # S3: every part but the last
MAX_PART_SIZE = 5 * GiB  # S3: largest part, and largest single PUT

# S3 us-east-1 list prices (USD) as of writing (2025); every one can be
# overridden in the plan's `costs:` section.
DEFAULT_STORAGE_PRICES: dict[str, float] = {
    "STANDARD": 0.023,
    "STANDARD_IA": 0.0125,
    "ONEZONE_IA": 0.01,
    "INTELLIGENT_TIERING": 0.023,
    "GLACIER_IR": 0.004,
    "GLACIER": 0.0036,
    "DEEP_ARCHIVE": 0.00099,
}
DEFAULT_PUT_PER_1000 = 0.005  # PUT, COPY, POST, LIST
DEFAULT_GET_PER_1000 = 0.0004


def _secret(**kwargs: Any) -> Any:
    """A dataclass field holding a resolved secret: not in repr, to_dict or fingerprint."""
    return field(repr=False, metadata={"secret": True}, **kwargs)


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class BucketSelection:
    """One source bucket, and the key prefixes to list in it (empty: the plan-wide prefixes)."""

    name: str
    prefixes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class _SourceBase:
    # None means every bucket the credentials can see.
    buckets: tuple[BucketSelection, ...] | None = None
    # Plan-wide prefixes, for buckets that do not list their own. Empty: the whole bucket.
    prefixes: tuple[str, ...] = ()

    @property
    def all_buckets(self) -> bool:
        return self.buckets is None

    @property
    def bucket_names(self) -> tuple[str, ...] | None:
        """The buckets the plan names, or None for all of them."""
        return None if self.buckets is None else tuple(b.name for b in self.buckets)

    def prefixes_for(self, bucket: str) -> tuple[str, ...]:
        """Prefixes to list in `bucket`: its own, else the plan-wide ones, else `("",)` (everything)."""
        for selection in self.buckets or ():
            if selection.name == bucket and selection.prefixes:
                return selection.prefixes
        return self.prefixes or ("",)


@dataclass(frozen=True, kw_only=True)
class SupabaseSource(_SourceBase):
    """A Supabase project read through its Storage REST API (and optionally its catalog)."""

    kind: ClassVar[str] = "supabase"
    url: str
    key: str = _secret()
    database_url: str | None = _secret(default=None)

    @property
    def database_url_redacted(self) -> str | None:
        """`database_url` with any password replaced by `***`, for messages and reports."""
        return _redact_url_password(self.database_url) if self.database_url else None


@dataclass(frozen=True, kw_only=True)
class _S3Access:
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    access_key_id_env: str | None = None
    secret_access_key_env: str | None = None
    session_token_env: str | None = None
    # Resolved from the *_env variables at load time; None: the AWS credential chain.
    access_key_id: str | None = _secret(default=None)
    secret_access_key: str | None = _secret(default=None)
    session_token: str | None = _secret(default=None)


@dataclass(frozen=True, kw_only=True)
class S3Source(_S3Access, _SourceBase):
    """Any S3-compatible endpoint, including Supabase's `/storage/v1/s3`."""

    kind: ClassVar[str] = "s3"


@dataclass(frozen=True, kw_only=True)
class Destination(_S3Access):
    """The S3 bucket objects are copied into, and how they are written."""

    bucket: str
    # "" or ends with "/": every destination key starts with it.
    prefix: str = ""
    # Resolved from `bucket_prefix: auto|always|never`: kept unmatched keys go below "<bucket>/".
    bucket_prefix: bool = False
    storage_class: str | None = None
    server_side_encryption: str | None = None
    kms_key_id: str | None = None
    on_conflict: str = "skip"


@dataclass(frozen=True, kw_only=True)
class RuleMetadata:
    """Headers a rule sets on the objects it matches (None: keep the source's)."""

    content_type: str | None = None  # a MIME type, or "infer"
    cache_control: str | None = None
    content_disposition: str | None = None
    storage_class: str | None = None
    metadata: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def is_empty(self) -> bool:
        return not (
            self.content_type or self.cache_control or self.content_disposition or self.storage_class or self.metadata
        )


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One rewrite rule: a `match` template or a `regex`, and where matching keys go."""

    name: str
    match: str | None = None
    regex: str | None = None
    to: str | None = None  # None only when `exclude`
    buckets: tuple[str, ...] = ()  # empty: every source bucket
    exclude: bool = False
    metadata: RuleMetadata = field(default_factory=RuleMetadata)


RewriteRule = Rule


@dataclass(frozen=True, kw_only=True)
class Filters:
    """Which source objects take part; see `migrate.filters.object_filter`."""

    include: tuple[str, ...] = ()  # empty: every key
    exclude: tuple[str, ...] = ()
    min_size: int | None = None
    max_size: int | None = None
    modified_after: datetime | None = None
    modified_before: datetime | None = None
    skip_placeholders: bool = True


@dataclass(frozen=True, kw_only=True)
class Tier:
    """A storage class for objects meeting every condition given; see `migrate.filters.tier_selector`."""

    name: str
    storage_class: str
    buckets: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    min_size: int | None = None
    max_size: int | None = None
    modified_after: datetime | None = None
    modified_before: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class TransferSettings:
    """How `migrate run` moves bytes."""

    concurrency: int = 16
    part_size: int = 16 * MiB
    multipart_threshold: int = 64 * MiB
    max_attempts: int = 5
    checksum_algorithm: str = "SHA256"
    max_bandwidth: int | None = None  # bytes per second, all workers together
    # Requests per second, all workers together (like rclone's --tpslimit); None: unlimited.
    max_requests_per_second: float | None = None


@dataclass(frozen=True, kw_only=True)
class VerifySettings:
    """How `migrate verify` checks the destination.

    `fast` compares what HEAD reports (size, checksum, headers); `deep` also
    reads the bytes back. `sample`/`sample_percent` limit a deep check to a
    subset; None checks everything.
    """

    mode: str = "fast"
    concurrency: int = 16
    sample: int | None = None
    sample_percent: float | None = None


@dataclass(frozen=True, kw_only=True)
class CostTable:
    """Prices for the cost estimate: USD by default, S3 us-east-1 list prices unless overridden."""

    currency: str = "USD"
    storage_per_gb_month: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_STORAGE_PRICES), hash=False)
    put_per_1000: float = DEFAULT_PUT_PER_1000
    get_per_1000: float = DEFAULT_GET_PER_1000

    def storage_price(self, storage_class: str | None) -> float | None:
        """Price per GB-month of `storage_class` (None: STANDARD), or None if the table has none."""
        return self.storage_per_gb_month.get(storage_class or "STANDARD")


# --------------------------------------------------------------------------- cutover (issue 14)
# The `cutover:` and `bucket:` sections: how old Supabase URLs map to new ones,
# the redirect route, presigned URLs, and the destination bucket's lifecycle,
# versioning and default encryption. Read by `_read_cutover` / `_read_bucket`.

# SigV4 presigned URLs live at most 7 days (AWS S3 "Sharing objects with presigned URLs").
MAX_PRESIGN_SECONDS = 7 * 86400
LIFECYCLE_TRANSITION_CLASSES: tuple[str, ...] = (
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
)
_DURATION = re.compile(r"\s*(?P<number>\d+)\s*(?P<unit>s|m|h|d|)\s*\Z", re.IGNORECASE)
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: int | str) -> int:
    """Seconds from an int or a string like `3600`, `15m`, `1h`, `7d`. Raises ValueError with a hint."""
    if isinstance(value, bool):
        raise ValueError("expected a duration, got true/false")
    if isinstance(value, int):
        seconds = value
    else:
        found = _DURATION.match(value)
        if found is None:
            raise ValueError(f"{value!r} is not a duration; write seconds or e.g. 15m, 1h, 7d")
        seconds = int(found["number"]) * _DURATION_UNITS[found["unit"].lower()]
    if not 1 <= seconds <= MAX_PRESIGN_SECONDS:
        raise ValueError(f"must be between 1 second and 7 days (the S3 presigned URL limit), got {seconds} s")
    return seconds


@dataclass(frozen=True)
class ServeSettings:
    """The redirect route (`migrate serve`)."""

    host: str = "127.0.0.1"
    port: int = 8787
    # NAMES of environment variables (never the values): the project's JWT
    # secret (verifies JWTs and signed-URL tokens) and an optional sb_secret_ key.
    jwt_secret_env: str | None = None
    secret_key_env: str | None = None
    # JWT roles that may open objects of private buckets. RLS policies are not
    # evaluated by the route, so only roles that bypass them belong here by default.
    roles: tuple[str, ...] = ("service_role",)


@dataclass(frozen=True)
class CutoverSettings:
    """Where migrated objects are read from after the switch."""

    # Source buckets that are public in Supabase: their objects get public URLs and 301s.
    public_buckets: tuple[str, ...] = ()
    # Base URL public objects are read at (default: the destination bucket's own S3 URL).
    public_base_url: str | None = None
    # A CDN in front of the bucket (e.g. https://d111111abcdef8.cloudfront.net); wins over public_base_url.
    cdn_base_url: str | None = None
    presign_expires: int = 3600
    serve: ServeSettings = field(default_factory=ServeSettings)


@dataclass(frozen=True)
class LifecycleTransition:
    days: int
    storage_class: str


@dataclass(frozen=True)
class LifecycleRule:
    """One lifecycle rule; on the bucket its ID is `migrate-<id>` so later applies know it is ours."""

    id: str
    prefix: str = ""
    tags: dict[str, str] = field(default_factory=dict, hash=False)
    transitions: tuple[LifecycleTransition, ...] = ()
    expiration_days: int | None = None
    noncurrent_expiration_days: int | None = None
    abort_incomplete_multipart_days: int | None = None


@dataclass(frozen=True)
class DefaultEncryption:
    algorithm: str  # AES256 or aws:kms
    kms_key_id: str | None = None
    bucket_key: bool = False


@dataclass(frozen=True)
class BucketSettings:
    """The destination bucket's configuration (`migrate bucket apply`). None: leave that part alone."""

    versioning: bool | None = None
    encryption: DefaultEncryption | None = None
    lifecycle: tuple[LifecycleRule, ...] = ()
    configured: bool = False  # the plan has a bucket: section at all


def _read_cutover(reader: "_Reader", top: "_Map") -> CutoverSettings:
    node = top.value("cutover")
    if node is None:
        return CutoverSettings()
    m = reader.mapping(node, "cutover")
    m.check_keys(("public_buckets", "public_base_url", "cdn_base_url", "presign_expires", "serve"))
    expires = CutoverSettings.presign_expires
    expires_node = m.value("presign_expires")
    if expires_node is not None:
        raw = reader.scalar_text(expires_node, m.path("presign_expires"), "a duration such as 1h")
        try:
            expires = parse_duration(int(raw) if expires_node.tag == _INT_TAG else raw)
        except ValueError as err:
            raise reader.error(str(err), expires_node, m.path("presign_expires")) from None
    serve = ServeSettings()
    serve_node = m.value("serve")
    if serve_node is not None:
        s = reader.mapping(serve_node, m.path("serve"))
        for literal in ("jwt_secret", "secret_key"):
            if literal in s.entries:
                key_node, value_node = s.entries[literal]
                if isinstance(value_node, ScalarNode):
                    register_secret(value_node.value)
                raise reader.error(
                    f"credentials never go in the plan file; write {literal}_env: NAME (the environment variable holding it)",
                    key_node,
                    s.path(literal),
                )
        s.check_keys(
            ("host", "port", "jwt_secret_env", "secret_key_env", "roles"),
            credentials_hint="write jwt_secret_env: SUPABASE_JWT_SECRET (the variable's name) and export it",
        )
        roles = tuple(value for value, _, _ in reader.string_list(s, "roles")) or ServeSettings.roles
        serve = ServeSettings(
            host=(reader.string(s, "host") or ServeSettings.host).strip(),
            port=reader.integer(s, "port", default=ServeSettings.port, minimum=1, maximum=65535),
            jwt_secret_env=reader.env_var_name(s, "jwt_secret_env"),
            secret_key_env=reader.env_var_name(s, "secret_key_env"),
            roles=roles,
        )
    return CutoverSettings(
        public_buckets=tuple(value for value, _, _ in reader.string_list(m, "public_buckets")),
        public_base_url=reader.http_url(m, "public_base_url", required=False),
        cdn_base_url=reader.http_url(m, "cdn_base_url", required=False),
        presign_expires=expires,
        serve=serve,
    )


def _read_bucket(reader: "_Reader", top: "_Map") -> BucketSettings:
    node = top.value("bucket")
    if node is None:
        return BucketSettings()
    m = reader.mapping(node, "bucket", what="a mapping with versioning, encryption and/or lifecycle")
    m.check_keys(("versioning", "encryption", "lifecycle"))
    versioning = reader.boolean(m, "versioning", default=False) if m.value("versioning") is not None else None
    encryption = None
    encryption_node = m.value("encryption")
    if encryption_node is not None:
        e = reader.mapping(encryption_node, m.path("encryption"))
        e.check_keys(("algorithm", "kms_key_id", "bucket_key"))
        algorithm = str(reader.choice(e, "algorithm", SERVER_SIDE_ENCRYPTION, default=_REQUIRED))
        kms_key_id = reader.string(e, "kms_key_id")
        if (algorithm == "aws:kms") != (kms_key_id is not None):
            raise reader.error("kms_key_id goes with algorithm: aws:kms, and aws:kms needs it", encryption_node, e.key)
        encryption = DefaultEncryption(algorithm, kms_key_id, reader.boolean(e, "bucket_key", default=False))
    rules: list[LifecycleRule] = []
    lifecycle_node = m.value("lifecycle")
    if lifecycle_node is not None and not isinstance(lifecycle_node, SequenceNode):
        raise reader.error(f"expected a list of rules (- id: ..., prefix: ...), got {_describe(lifecycle_node)}", lifecycle_node, m.path("lifecycle"))
    for index, item in enumerate(lifecycle_node.value if lifecycle_node is not None else ()):
        rules.append(_read_lifecycle_rule(reader, item, f"{m.path('lifecycle')}[{index}]", seen={r.id for r in rules}))
    return BucketSettings(versioning=versioning, encryption=encryption, lifecycle=tuple(rules), configured=True)


def _read_lifecycle_rule(reader: "_Reader", node: Node, key: str, *, seen: set[str]) -> LifecycleRule:
    r = reader.mapping(node, key)
    r.check_keys(("id", "prefix", "tags", "transitions", "expiration_days", "noncurrent_expiration_days", "abort_incomplete_multipart_days"))
    rule_id = (reader.string(r, "id", required=True, hint="name the rule, e.g. id: logs-to-glacier") or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", rule_id) or rule_id in seen:
        raise reader.error("ids are unique, at most 200 letters, digits, '.', '_' or '-'", r.value("id"), r.path("id"))
    tags: dict[str, str] = {}
    tags_node = r.value("tags")
    if tags_node is not None:
        t = reader.mapping(tags_node, r.path("tags"), what="a mapping of tag name to value")
        tags = {name: reader.string_at(value, t.path(name)) for name, (_, value) in t.entries.items()}

    def days(name: str) -> int | None:
        return reader.integer(r, name, default=-1, minimum=1, maximum=100_000) if r.value(name) is not None else None

    transitions: list[LifecycleTransition] = []
    transitions_node = r.value("transitions")
    for index, item in enumerate(transitions_node.value if isinstance(transitions_node, SequenceNode) else ()):
        tm = reader.mapping(item, f"{r.path('transitions')}[{index}]")
        tm.check_keys(("days", "storage_class"))
        storage_class = str(reader.choice(tm, "storage_class", LIFECYCLE_TRANSITION_CLASSES, default=_REQUIRED))
        after = reader.integer(tm, "days", default=-1, minimum=0, maximum=100_000)
        if after < 0:
            raise reader.error("required key is missing; days after creation, e.g. days: 30", item, tm.path("days"))
        if storage_class in ("STANDARD_IA", "ONEZONE_IA") and after < 30:
            # AWS refuses transitions to the IA classes before 30 days (S3 lifecycle constraints).
            raise reader.error(f"S3 needs at least 30 days before {storage_class}, got {after}", item, tm.path("days"))
        if transitions and after <= transitions[-1].days:
            raise reader.error("transitions go in order of increasing days", item, tm.path("days"))
        transitions.append(LifecycleTransition(after, storage_class))
    if transitions_node is not None and not isinstance(transitions_node, SequenceNode):
        raise reader.error("expected a list of {days, storage_class}", transitions_node, r.path("transitions"))
    rule = LifecycleRule(
        id=rule_id,
        prefix=reader.string(r, "prefix", interpolate=False) or "",
        tags=tags,
        transitions=tuple(transitions),
        expiration_days=days("expiration_days"),
        noncurrent_expiration_days=days("noncurrent_expiration_days"),
        abort_incomplete_multipart_days=days("abort_incomplete_multipart_days"),
    )
    if not (rule.transitions or rule.expiration_days or rule.noncurrent_expiration_days or rule.abort_incomplete_multipart_days):
        raise reader.error("a rule needs an action: transitions, expiration_days, noncurrent_expiration_days or abort_incomplete_multipart_days", node, key)
    if rule.tags and rule.abort_incomplete_multipart_days:
        # S3 rejects AbortIncompleteMultipartUpload in a rule filtered by tags (uploads have no tags yet).
        raise reader.error("abort_incomplete_multipart_days cannot be combined with tags; give it its own rule", node, key)
    if rule.expiration_days is not None and transitions and rule.expiration_days <= transitions[-1].days:
        raise reader.error("expiration_days must come after the last transition", r.value("expiration_days"), r.path("expiration_days"))
    return rule


@dataclass(frozen=True, kw_only=True)
class Plan:
    """A loaded, validated plan. Build with `load_plan` or `parse_plan`."""

    name: str
    path: str | None
    version: int = PLAN_VERSION
    source: SupabaseSource | S3Source
    destination: Destination
    rules: tuple[Rule, ...] = ()
    unmatched: str = "keep"
    filters: Filters = field(default_factory=Filters)
    tiering: tuple[Tier, ...] = ()
    transfer: TransferSettings = field(default_factory=TransferSettings)
    verify: VerifySettings = field(default_factory=VerifySettings)
    costs: CostTable = field(default_factory=CostTable)
    cutover: CutoverSettings = field(default_factory=CutoverSettings)
    bucket: BucketSettings = field(default_factory=BucketSettings)

    def to_dict(self) -> dict[str, Any]:
        """The normalised plan as plain JSON-able data, secrets left out (URL passwords masked)."""
        data: dict[str, Any] = _normalise(self)
        data.pop("path", None)
        data["source"] = {"type": self.source.kind, **data["source"]}
        return data

    def fingerprint(self) -> str:
        """A stable SHA-256 (hex) of what decides which objects go where and how they are written.

        Covers source, destination, rules, unmatched, filters, tiering, part
        size, multipart threshold and checksum algorithm, normalised (so
        comments, spacing, key order and `10MiB` vs `10485760` do not
        matter). Leaves out secrets, the plan's name and path, tuning that
        never changes the result (concurrency, attempts, bandwidth), verify
        settings, prices and the cutover/bucket sections: a run can be
        retuned and resumed.
        """
        data = self.to_dict()
        for key in ("name", "verify", "costs", "cutover", "bucket"):
            data.pop(key, None)
        for key in ("concurrency", "max_attempts", "max_bandwidth", "max_requests_per_second"):
            data["transfer"].pop(key, None)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _normalise(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            if f.metadata.get("secret"):
                continue
            out[f.name] = _normalise(getattr(value, f.name))
        if isinstance(value, SupabaseSource):
            out["database_url"] = value.database_url_redacted
        return out
    if isinstance(value, (tuple, list)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    return value


def _redact_url_password(url: str) -> str:
    span = _url_password_span(url)
    if span is not None:
        url = url[: span[0]] + "***" + url[span[1] :]
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url)


def _url_password_span(url: str) -> tuple[int, int] | None:
    """Where the password of `scheme://user:password@host/...` sits in `url`, if it has one."""
    scheme = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", url)
    if scheme is None:
        return None
    start = scheme.end()
    end = len(url)
    for stop in "/?#":
        found = url.find(stop, start)
        if found != -1:
            end = min(end, found)
    at = url.rfind("@", start, end)
    if at == -1:
        return None
    colon = url.find(":", start, at)
    if colon == -1:
        return None
    return colon + 1, at


# --------------------------------------------------------------------------- entry points


def load_plan(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Plan:
    """Read and validate the plan file at `path`.

    `environ` (default `os.environ`) supplies `${VAR}` values. Raises
    `PlanError` naming the file, line and key for anything wrong, including
    a file that cannot be read or is not valid YAML.
    """
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError("plan file not found; check the path (plans live in plans/)", path=shown) from None
    except UnicodeDecodeError as err:
        raise PlanError(f"plan file is not UTF-8 text (byte {err.start})", path=shown) from None
    except OSError as err:
        raise PlanError(f"cannot read the plan file: {err.strerror or err}", path=shown) from None
    return parse_plan(text, source_name=shown, environ=environ)


def parse_plan(text: str, *, source_name: str, environ: Mapping[str, str] | None = None) -> Plan:
    """Validate plan YAML `text`; `source_name` is the file name used in messages and the default name."""
    reader = _Reader(source_name, os.environ if environ is None else environ)
    return reader.plan(reader.compose(text))


# --------------------------------------------------------------------------- reading


_NULL_TAG = "tag:yaml.org,2002:null"
_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_MERGE_TAG = "tag:yaml.org,2002:merge"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INTERPOLATION = re.compile(r"\$\$\{|\$\{(?P<body>[^{}]*)\}|\$\{")
_REFERENCE_NAMES = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)")
_REFERENCE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?\Z", re.DOTALL)

# Shapes of credentials that must never be written into a plan.
_SECRET_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "a JWT"),
    (re.compile(r"\bsb_secret_[A-Za-z0-9_-]{8,}"), "a Supabase secret key"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), "an AWS access key id"),
)
_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/=_.-]{32,}")

# Keys people reach for when they try to put credentials in the plan.
_CREDENTIAL_KEYS = frozenset(
    {
        "access_key",
        "access_key_id",
        "secret_key",
        "secret_access_key",
        "aws_access_key_id",
        "aws_secret_access_key",
        "session_token",
        "aws_session_token",
        "password",
        "service_key",
        "service_role_key",
        "api_key",
        "apikey",
        "anon_key",
        "token",
        "secret",
        "jwt",
    }
)

_SIZE = re.compile(r"\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[A-Za-z]*)\s*\Z")
_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": KiB,
    "mib": MiB,
    "gib": GiB,
    "tib": TiB,
}

_PLAN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_MIME_TYPE = re.compile(r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*(\s*;\s*[\w.+-]+=\S+)*\Z")
_META_KEY = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*\Z")
_MAX_USER_METADATA = 2048  # S3: bytes of user metadata (keys + values) per object

T = TypeVar("T")


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
            raise ValueError(
                f"ambiguous unit {found['unit']!r} in {value!r}; write {found['unit'].upper()}B (powers of 1000) "
                f"or {found['unit'].upper()}iB (powers of 1024)"
            )
        raise ValueError(f"unknown unit {found['unit']!r} in {value!r}; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB")
    try:
        exact = Decimal(found["number"]) * _SIZE_UNITS[unit]
    except InvalidOperation:  # pragma: no cover - the regex only lets decimals through
        raise ValueError(f"{value!r} is not a size") from None
    if exact != exact.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number of bytes")
    return int(exact)


def _parse_datetime(text: str) -> datetime:
    """An ISO 8601 date or date-time; a date is midnight UTC, a time without zone is UTC."""
    text = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date; write e.g. 2024-01-31 or 2024-01-31T12:00:00Z") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _secret_shape(text: str) -> str | None:
    for pattern, what in _SECRET_SHAPES:
        if pattern.search(text):
            return what
    return None


def _looks_random(text: str) -> bool:
    """Mixed case and digits over 20+ characters: a generated key, not an environment variable name."""
    return (
        len(text) >= 20
        and any(c.islower() for c in text)
        and any(c.isupper() for c in text)
        and any(c.isdigit() for c in text)
    )


def _describe(node: Node) -> str:
    """What a node holds, for 'expected X, got Y' messages (short, never a long value)."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    assert isinstance(node, ScalarNode)
    if node.tag == _BOOL_TAG:
        return f"true/false ({node.value})"
    if node.tag in (_INT_TAG, _FLOAT_TAG):
        return f"the number {node.value}"
    if node.tag == _NULL_TAG:
        return "nothing"
    value = node.value if len(node.value) <= 40 else node.value[:37] + "..."
    if _secret_shape(node.value) or _LONG_TOKEN.search(node.value):
        return "text"
    return f"the text {value!r}"


def _line(node: Node | None) -> int | None:
    return None if node is None else node.start_mark.line + 1


def _child(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


class _Map:
    """A YAML mapping being read: its entries by key, with the nodes (and lines) of each."""

    def __init__(self, reader: "_Reader", node: MappingNode, key: str, entries: dict[str, tuple[Node, Node]]):
        self.reader = reader
        self.node = node
        self.key = key
        self.entries = entries

    def path(self, name: str) -> str:
        return _child(self.key, name)

    def value(self, name: str) -> Node | None:
        """The value node for `name`, or None when absent or written as null/empty."""
        entry = self.entries.get(name)
        if entry is None:
            return None
        node = entry[1]
        if isinstance(node, ScalarNode) and node.tag == _NULL_TAG:
            return None
        return node

    def key_node(self, name: str) -> Node:
        return self.entries[name][0]

    def check_keys(self, allowed: Sequence[str], *, credentials_hint: str | None = None) -> None:
        """Refuse keys not in `allowed`, suggesting the nearest one."""
        for name, (key_node, value_node) in self.entries.items():
            if name in allowed:
                continue
            if name.lower() in _CREDENTIAL_KEYS:
                # Whatever it holds, keep it out of every later message.
                if isinstance(value_node, ScalarNode):
                    register_secret(value_node.value)
                hint = credentials_hint or "credentials never go in the plan file"
                raise self.reader.error(f"credentials never go in the plan file; {hint}", key_node, self.path(name))
            close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
            suggestion = f"did you mean {close[0]!r}? " if close else ""
            raise self.reader.error(
                f"unknown key; {suggestion}expected one of: {', '.join(sorted(allowed))}", key_node, self.path(name)
            )


class _Reader:
    """Turns a composed YAML node tree into a `Plan`, one section at a time."""

    def __init__(self, path: str, environ: Mapping[str, str]):
        self.path = path
        self.environ = environ
        self.constructor = SafeConstructor()

    # ---- plumbing

    def error(self, message: str, node: Node | None, key: str | None = None) -> PlanError:
        return PlanError(message, path=self.path, line=_line(node), key=key or None)

    def compose(self, text: str) -> Node:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            problem = err.problem or err.context or "cannot parse"
            if err.context and err.problem:
                # PyYAML splits one sentence in two: "expected X" + "but found Y", or "while ..." + the problem.
                if err.context.startswith("expected"):
                    problem = f"{err.context}, {err.problem}"
                else:
                    problem = f"{err.problem} ({err.context})"
            hint = "; YAML indents with spaces, not tabs" if "\\t" in problem or "\t" in problem else ""
            raise PlanError(
                f"invalid YAML: {problem}{hint}",
                path=self.path,
                line=None if mark is None else mark.line + 1,
            ) from None
        except yaml.YAMLError as err:
            raise PlanError(f"invalid YAML: {err}", path=self.path) from None
        if root is None:
            raise PlanError("the plan is empty; start with 'version: 1', then source: and destination:", path=self.path)
        return root

    def mapping(self, node: Node, key: str, *, what: str = "a mapping") -> _Map:
        if not isinstance(node, MappingNode):
            raise self.error(f"expected {what}, got {_describe(node)}", node, key)
        entries: dict[str, tuple[Node, Node]] = {}
        merged: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                # YAML merge keys (<<: *defaults): explicit keys win over merged ones.
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in sources:
                    for name, entry in self.mapping(source, key, what="a mapping to merge").entries.items():
                        merged.setdefault(name, entry)
                continue
            if not isinstance(key_node, ScalarNode):
                raise self.error("keys must be plain names, not lists or mappings", key_node, key)
            name = key_node.value
            if name in entries:
                raise self.error(
                    f"duplicate key (first at line {_line(entries[name][0])}); the second would silently win",
                    key_node,
                    _child(key, name),
                )
            entries[name] = (key_node, value_node)
        for name, entry in merged.items():
            entries.setdefault(name, entry)
        return _Map(self, node, key, entries)

    def scalar_text(self, node: Node, key: str, expected: str) -> str:
        if not isinstance(node, ScalarNode):
            raise self.error(f"expected {expected}, got {_describe(node)}", node, key)
        # Plain scalars keep their text: `prefix: 2024` is the string "2024", `name: yes` is "yes".
        return str(node.value)

    def expand(self, raw: str, node: Node, key: str, *, secret: bool = False) -> tuple[str, list[tuple[str, str]]]:
        """Expand `${VAR}` / `${VAR:-default}` / `$${`; return the value and its parts with their origin.

        Origins: "literal" (written in the file), "env" (read from the
        environment), "default" (a `:-` default).
        """
        parts: list[tuple[str, str]] = []
        position = 0
        for found in _INTERPOLATION.finditer(raw):
            if found.start() > position:
                parts.append((raw[position : found.start()], "literal"))
            position = found.end()
            token = found.group()
            if token == "$${":
                parts.append(("${", "literal"))
                continue
            body = found.group("body")
            if body is None:
                raise self.error("unclosed '${'; write ${NAME} or ${NAME:-default} (or $${ for a literal ${)", node, key)
            reference = _REFERENCE.match(body)
            if reference is None:
                shown = "" if secret else f" ${{{body}}}"
                raise self.error(
                    f"invalid environment reference{shown}; write ${{NAME}} or ${{NAME:-default}}", node, key
                )
            name, default = reference["name"], reference["default"]
            value = self.environ.get(name)
            if default is not None:
                if secret and default:
                    raise self.error(
                        f"a default (${{{name}:-...}}) is not allowed here: it would put the secret in the plan; "
                        f"write ${{{name}}}",
                        node,
                        key,
                    )
                if value:
                    parts.append((value, "env"))
                elif default:
                    parts.append((default, "default"))
                continue
            if value is None:
                if secret:
                    advice = "export it before running migrate (the plan never holds the secret itself)"
                else:
                    advice = f"export it or give a default: ${{{name}:-value}}"
                raise self.error(f"environment variable {name} is not set; {advice}", node, key)
            parts.append((value, "env"))
        if position < len(raw):
            parts.append((raw[position:], "literal"))
        return "".join(text for text, _ in parts), parts

    def refuse_literal_secret(self, raw: str, node: Node, key: str) -> None:
        shape = _secret_shape(raw)
        if shape is not None:
            for pattern, _ in _SECRET_SHAPES:
                for found in pattern.finditer(raw):
                    register_secret(found.group())
            raise self.error(
                f"looks like a literal secret ({shape}); never put credentials in the plan: "
                "put it in an environment variable and write ${ENV_VAR}",
                node,
                key,
            )

    # ---- typed values

    def string(
        self,
        m: _Map,
        name: str,
        *,
        required: bool = False,
        hint: str = "",
        interpolate: bool = True,
    ) -> str | None:
        """A string value (`${...}` expanded unless told not to). Empty counts as not given."""
        key = m.path(name)
        node = m.value(name)
        if node is None:
            if required:
                raise self.error(f"required key is missing{'; ' + hint if hint else ''}", m.node, key)
            return None
        raw = self.scalar_text(node, key, "text")
        self.refuse_literal_secret(raw, node, key)
        if not interpolate:
            value, parts = raw, [(raw, "literal")]
        else:
            value, parts = self.expand(raw, node, key)
        if not value.strip():
            if required:
                names = sorted({found["name"] for found in _REFERENCE_NAMES.finditer(raw)})
                via = f" ({', '.join(names)}: not set or empty)" if names else ""
                raise self.error(f"is empty{via}; {hint or 'give a value'}", node, key)
            return None
        return value

    def string_at(self, node: Node, key: str, *, interpolate: bool = True) -> str:
        raw = self.scalar_text(node, key, "text")
        self.refuse_literal_secret(raw, node, key)
        value = self.expand(raw, node, key)[0] if interpolate else raw
        if not value:
            raise self.error("is empty", node, key)
        return value

    def string_list(self, m: _Map, name: str, *, interpolate: bool = True, what: str = "text") -> list[tuple[str, Node, str]]:
        """A list of strings (a single string counts as a list of one): (value, node, key path) each."""
        node = m.value(name)
        key = m.path(name)
        if node is None:
            return []
        items = node.value if isinstance(node, SequenceNode) else [node]
        out: list[tuple[str, Node, str]] = []
        for index, item in enumerate(items):
            item_key = f"{key}[{index}]" if isinstance(node, SequenceNode) else key
            if not isinstance(item, ScalarNode) or item.tag == _NULL_TAG:
                raise self.error(f"expected {what} or a list of it, got {_describe(item)}", item, item_key)
            out.append((self.string_at(item, item_key, interpolate=interpolate), item, item_key))
        return out

    def secret_reference(self, m: _Map, name: str, *, variable: str, required: bool) -> str | None:
        """A secret that must be written as `${VAR}` and nothing else; returns the resolved value."""
        key = m.path(name)
        node = m.value(name)
        if node is None:
            if required:
                raise self.error(
                    f"required key is missing; write {name}: ${{{variable}}} and export {variable}", m.node, key
                )
            return None
        raw = self.scalar_text(node, key, f"${{{variable}}}")
        literal = _INTERPOLATION.sub(" ", raw)
        if literal.strip():
            register_secret(literal.strip())
            shape = _secret_shape(raw) or ("a long key" if _LONG_TOKEN.search(literal) else None)
            if shape is not None:
                raise self.error(
                    f"looks like a literal secret ({shape}); never put keys in the plan: "
                    f"write {name}: ${{{variable}}} and export {variable}",
                    node,
                    key,
                )
            raise self.error(
                f"must be an environment variable reference such as ${{{variable}}}, not literal text; "
                "the plan never holds the key itself",
                node,
                key,
            )
        value, parts = self.expand(raw, node, key, secret=True)
        if not value:
            names = sorted({found["name"] for found in _REFERENCE_NAMES.finditer(raw)}) or [variable]
            unset = [n for n in names if n not in self.environ]
            state = f"{', '.join(unset)} is not set" if unset else f"{', '.join(names)} is empty"
            raise self.error(
                f"environment variable {state}; export it before running migrate (the plan never holds the "
                "secret itself)",
                node,
                key,
            )
        register_secret(value)
        return value

    def env_var_name(self, m: _Map, name: str) -> str | None:
        """A `*_env` key: the NAME of an environment variable (not its value, not `${...}`)."""
        key = m.path(name)
        node = m.value(name)
        if node is None:
            return None
        raw = self.scalar_text(node, key, "an environment variable name").strip()
        shape = _secret_shape(raw)
        if shape is None and _LONG_TOKEN.search(raw) and not _ENV_NAME.match(raw):
            shape = "a long key"
        if shape is None and _looks_random(raw) and raw not in self.environ:
            shape = "a long key"
        if shape is not None:
            register_secret(raw)
            raise self.error(
                f"looks like a literal secret ({shape}); this key takes the NAME of the environment variable "
                "that holds it, e.g. MY_ACCESS_KEY_ID",
                node,
                key,
            )
        wrapped = re.fullmatch(r"\$\{(\w+)\}", raw)
        if wrapped:
            raise self.error(
                f"takes the variable name itself; write {wrapped.group(1)}, without ${{}}", node, key
            )
        if not _ENV_NAME.match(raw):
            raise self.error(
                f"{raw!r} is not an environment variable name (letters, digits and _, not starting with a digit)",
                node,
                key,
            )
        return raw

    def integer(self, m: _Map, name: str, *, default: int, minimum: int, maximum: int) -> int:
        key = m.path(name)
        node = m.value(name)
        if node is None:
            return default
        if not isinstance(node, ScalarNode) or node.tag != _INT_TAG:
            raise self.error(f"expected a whole number, got {_describe(node)}", node, key)
        value = int(self.constructor.construct_yaml_int(node))
        if not minimum <= value <= maximum:
            raise self.error(f"must be between {minimum} and {maximum}, got {value}", node, key)
        return value

    def number(self, node: Node, key: str) -> float:
        if not isinstance(node, ScalarNode) or node.tag not in (_INT_TAG, _FLOAT_TAG):
            raise self.error(f"expected a number, got {_describe(node)}", node, key)
        value = float(self.constructor.construct_object(node))
        if value < 0 or value != value or value == float("inf"):
            raise self.error(f"must be a price of 0 or more, got {node.value}", node, key)
        return value

    def boolean(self, m: _Map, name: str, *, default: bool) -> bool:
        node = m.value(name)
        if node is None:
            return default
        if not isinstance(node, ScalarNode) or node.tag != _BOOL_TAG:
            raise self.error(f"expected true or false, got {_describe(node)}", node, m.path(name))
        return bool(self.constructor.construct_yaml_bool(node))

    def size(
        self,
        m: _Map,
        name: str,
        *,
        minimum: int = 0,
        maximum: int | None = None,
        per_second: bool = False,
    ) -> int | None:
        key = m.path(name)
        node = m.value(name)
        if node is None:
            return None
        if isinstance(node, ScalarNode) and node.tag == _INT_TAG:
            raw: int | str = int(self.constructor.construct_yaml_int(node))
        elif isinstance(node, ScalarNode) and node.tag == _STR_TAG:
            raw = self.expand(node.value, node, key)[0]
            if per_second and raw.rstrip().lower().endswith("/s"):
                raw = raw.rstrip()[:-2]
        else:
            raise self.error(f"expected a size such as 16MiB or a number of bytes, got {_describe(node)}", node, key)
        try:
            value = parse_size(raw)
        except ValueError as err:
            raise self.error(str(err), node, key) from None
        if value < minimum:
            raise self.error(f"must be at least {format_size(minimum)}, got {format_size(value)}", node, key)
        if maximum is not None and value > maximum:
            raise self.error(f"must be at most {format_size(maximum)}, got {format_size(value)}", node, key)
        return value

    def choice(self, m: _Map, name: str, choices: Sequence[str], *, default: T, hint: str = "") -> str | T:
        """One of `choices` (matched case-insensitively, returned as spelled in `choices`)."""
        key = m.path(name)
        node = m.value(name)
        if node is None:
            if default is _REQUIRED:
                raise self.error(
                    f"required key is missing; one of: {', '.join(choices)}{'. ' + hint if hint else ''}", m.node, key
                )
            return default
        raw = self.scalar_text(node, key, f"one of {', '.join(choices)}")
        value = self.expand(raw, node, key)[0].strip()
        if not value and default is not _REQUIRED:
            return default
        for option in choices:
            if value.lower() == option.lower():
                return option
        lowered = {option.lower(): option for option in choices}
        close = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.5)
        suggestion = f"; did you mean {lowered[close[0]]!r}?" if close else ""
        raise self.error(f"{value!r} is not one of: {', '.join(choices)}{suggestion}", node, key)

    def when(self, m: _Map, name: str) -> tuple[datetime | None, Node | None]:
        key = m.path(name)
        node = m.value(name)
        if node is None:
            return None, None
        raw = self.expand(self.scalar_text(node, key, "an ISO 8601 date"), node, key)[0]
        try:
            return _parse_datetime(raw), node
        except ValueError as err:
            raise self.error(str(err), node, key) from None

    def globs(self, m: _Map, name: str) -> tuple[str, ...]:
        out = []
        for value, node, key in self.string_list(m, name, interpolate=False, what="a glob"):
            try:
                glob_to_regex(value)
            except GlobError as err:
                raise self.error(str(err), node, key) from None
            out.append(value)
        return tuple(out)

    def http_url(self, m: _Map, name: str, *, required: bool, hint: str = "") -> str | None:
        value = self.string(m, name, required=required, hint=hint)
        if value is None:
            return None
        node = m.value(name)
        value = value.strip()
        if not re.match(r"https?://[^/\s?#]+", value):
            shown = "" if _url_password_span(value) else f" {value!r}"
            raise self.error(f"expected an http:// or https:// URL, got{shown or ' something else'}", node, m.path(name))
        return value.rstrip("/")

    # ---- sections

    def plan(self, root: Node) -> Plan:
        top = self.mapping(root, "", what="a mapping with version, source and destination")
        self.version(top)
        allowed = (
            "version",
            "name",
            "source",
            "destination",
            "rules",
            "unmatched",
            "filters",
            "tiering",
            "transfer",
            "verify",
            "costs",
            "cutover",
            "bucket",
        )
        top.entries = {k: v for k, v in top.entries.items() if not k.startswith("x-")}
        top.check_keys(allowed)
        name = self.plan_name(top)
        source_node = top.value("source")
        if source_node is None:
            raise self.error("required key is missing; say where objects come from (type: supabase or s3)", root, "source")
        source = self.source(source_node)
        destination_node = top.value("destination")
        if destination_node is None:
            raise self.error("required key is missing; name at least the S3 bucket to copy into", root, "destination")
        destination = self.destination(destination_node, source)
        rules = self.rules(top, source)
        unmatched = self.choice(top, "unmatched", UNMATCHED, default="keep")
        filters = self.filters(top)
        tiering = self.tiering(top, source)
        transfer = self.transfer(top)
        verify = self.verify(top)
        costs = self.costs(top)
        return Plan(
            name=name,
            path=self.path,
            source=source,
            destination=destination,
            rules=rules,
            unmatched=unmatched,
            filters=filters,
            tiering=tiering,
            transfer=transfer,
            verify=verify,
            costs=costs,
            cutover=_read_cutover(self, top),
            bucket=_read_bucket(self, top),
        )

    def version(self, top: _Map) -> None:
        node = top.value("version")
        if node is None:
            raise self.error(f"required key is missing; start the plan with 'version: {PLAN_VERSION}'", top.node, "version")
        if not isinstance(node, ScalarNode) or node.tag != _INT_TAG or node.value.strip() != str(PLAN_VERSION):
            raise self.error(
                f"unsupported plan version {node.value if isinstance(node, ScalarNode) else '?'}; "
                f"this migrate reads version: {PLAN_VERSION}",
                node,
                "version",
            )

    def plan_name(self, top: _Map) -> str:
        value = self.string(top, "name")
        if value is None:
            stem = Path(self.path).stem if self.path else "plan"
            cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._") or "plan"
            return cleaned[:100]
        if not _PLAN_NAME.match(value):
            raise self.error(
                f"{value!r} cannot name a run directory; use letters, digits, '.', '_' and '-' (at most 100)",
                top.value("name"),
                "name",
            )
        return value

    def source(self, node: Node) -> SupabaseSource | S3Source:
        m = self.mapping(node, "source", what="a mapping with type: supabase or type: s3")
        kind = self.choice(
            m,
            "type",
            ("supabase", "s3"),
            default=_REQUIRED,
            hint="supabase reads the Storage REST API; s3 reads any S3-compatible endpoint "
            "(including Supabase's /storage/v1/s3)",
        )
        common = ("type", "buckets", "prefixes", "prefix")
        if kind == "supabase":
            m.check_keys(
                common + ("url", "key", "database_url"),
                credentials_hint="write key: ${SUPABASE_SERVICE_ROLE_KEY} and export the variable",
            )
            url = self.supabase_url(m)
            key = self.secret_reference(m, "key", variable="SUPABASE_SERVICE_ROLE_KEY", required=True)
            assert key is not None
            buckets, prefixes = self.bucket_selection(m)
            return SupabaseSource(
                url=url,
                key=key,
                database_url=self.database_url(m),
                buckets=buckets,
                prefixes=prefixes,
            )
        m.check_keys(common + _S3_ACCESS_KEYS, credentials_hint=_S3_CREDENTIALS_HINT)
        access = self.s3_access(m)
        buckets, prefixes = self.bucket_selection(m)
        return S3Source(buckets=buckets, prefixes=prefixes, **access)

    def supabase_url(self, m: _Map) -> str:
        url = self.http_url(m, "url", required=True, hint="the project URL, e.g. url: ${SUPABASE_URL}")
        assert url is not None
        path = re.sub(r"^https?://[^/]+", "", url)
        if path.startswith("/storage/v1"):
            if path.startswith("/storage/v1/s3"):
                advice = "that is the S3 protocol endpoint: use type: s3 with endpoint_url, or give the project URL"
            else:
                advice = "give the project URL (https://<ref>.supabase.co) without /storage/v1"
            raise self.error(advice, m.value("url"), m.path("url"))
        return url

    def database_url(self, m: _Map) -> str | None:
        key = m.path("database_url")
        node = m.value("database_url")
        if node is None:
            return None
        raw = self.scalar_text(node, key, "a postgresql:// URL")
        self.refuse_literal_secret(raw, node, key)
        value, parts = self.expand(raw, node, key)
        if not value.strip():
            return None
        origins: list[str] = []
        for text, origin in parts:
            origins.extend([origin] * len(text))
        spans: list[tuple[int, int]] = []
        span = _url_password_span(value)
        if span is not None:
            spans.append(span)
        spans.extend(found.span(1) for found in re.finditer(r"[?&]password=([^&#]*)", value))
        for start, end in spans:
            if start < end and any(origin != "env" for origin in origins[start:end]):
                register_secret(value[start:end])
                raise self.error(
                    "has a literal password; put the URL in an environment variable (database_url: ${SUPABASE_DB_URL}) "
                    "or just the password (postgresql://postgres:${PGPASSWORD}@host:5432/postgres)",
                    node,
                    key,
                )
            register_secret(value[start:end])
        if not re.match(r"postgres(?:ql)?://", value):
            raise self.error("expected a postgresql:// URL (the project's database connection string)", node, key)
        return value

    def bucket_selection(self, m: _Map) -> tuple[tuple[BucketSelection, ...] | None, tuple[str, ...]]:
        prefixes = self.prefixes(m, "source")
        node = m.value("buckets")
        key = m.path("buckets")
        if node is None:
            return None, prefixes
        if isinstance(node, ScalarNode):
            value = self.string_at(node, key)
            if value.strip().lower() == "all":
                return None, prefixes
            return (BucketSelection(self.bucket_name(value, node, key)),), prefixes
        if not isinstance(node, SequenceNode):
            raise self.error(f"expected a list of bucket names or 'all', got {_describe(node)}", node, key)
        if not node.value:
            raise self.error("is an empty list; name buckets or write buckets: all", node, key)
        selections: list[BucketSelection] = []
        seen: dict[str, int | None] = {}
        for index, item in enumerate(node.value):
            item_key = f"{key}[{index}]"
            if isinstance(item, MappingNode):
                bm = self.mapping(item, item_key)
                bm.check_keys(("name", "prefixes", "prefix"))
                raw_name = self.string(bm, "name", required=True, hint="the bucket's name")
                assert raw_name is not None
                name = self.bucket_name(raw_name, bm.value("name"), bm.path("name"))
                selection = BucketSelection(name, self.prefixes(bm, item_key))
            else:
                name = self.bucket_name(self.string_at(item, item_key), item, item_key)
                selection = BucketSelection(name)
            if name in seen:
                raise self.error(f"bucket {name!r} is listed twice (first at line {seen[name]})", item, item_key)
            seen[name] = _line(item)
            selections.append(selection)
        return tuple(selections), prefixes

    def bucket_name(self, value: str, node: Node | None, key: str) -> str:
        value = value.strip()
        if not value or "/" in value:
            raise self.error(f"{value!r} is not a bucket name (non-empty, no '/')", node, key)
        return value

    def prefixes(self, m: _Map, where: str) -> tuple[str, ...]:
        if m.value("prefix") is not None and m.value("prefixes") is not None:
            raise self.error("give prefix or prefixes, not both", m.key_node("prefix"), m.path("prefix"))
        name = "prefix" if m.value("prefix") is not None else "prefixes"
        found = self.string_list(m, name)
        values = [(v, n, k) for v, n, k in found if v]
        for value, node, key in values:
            for other, _, _ in values:
                if other != value and value.startswith(other):
                    raise self.error(
                        f"prefix {value!r} is inside prefix {other!r}: both would list the same objects; keep {other!r}",
                        node,
                        key,
                    )
        return tuple(dict.fromkeys(v for v, _, _ in values))

    def s3_access(self, m: _Map) -> dict[str, Any]:
        endpoint_url = self.http_url(m, "endpoint_url", required=False)
        region = self.string(m, "region")
        if region is not None and not re.fullmatch(r"[a-z0-9-]+", region.strip()):
            raise self.error(f"{region!r} is not a region name (such as us-east-1)", m.value("region"), m.path("region"))
        profile = self.string(m, "profile")
        key_id_env = self.env_var_name(m, "access_key_id_env")
        secret_env = self.env_var_name(m, "secret_access_key_env")
        token_env = self.env_var_name(m, "session_token_env")
        if (key_id_env is None) != (secret_env is None):
            missing = "secret_access_key_env" if secret_env is None else "access_key_id_env"
            present = "access_key_id_env" if secret_env is None else "secret_access_key_env"
            raise self.error(
                f"{present} needs {missing} too; give both, or neither to use the AWS credential chain",
                m.key_node(present),
                m.path(missing),
            )
        if token_env is not None and key_id_env is None:
            raise self.error(
                "session_token_env needs access_key_id_env and secret_access_key_env",
                m.key_node("session_token_env"),
                m.path("session_token_env"),
            )
        if profile is not None and key_id_env is not None:
            raise self.error(
                "use either a profile or access_key_id_env/secret_access_key_env, not both",
                m.key_node("profile"),
                m.path("profile"),
            )
        resolved: dict[str, str | None] = {"access_key_id": None, "secret_access_key": None, "session_token": None}
        for field_name, env_key, env_name in (
            ("access_key_id", "access_key_id_env", key_id_env),
            ("secret_access_key", "secret_access_key_env", secret_env),
            ("session_token", "session_token_env", token_env),
        ):
            if env_name is None:
                continue
            value = self.environ.get(env_name)
            if not value:
                state = "is not set" if value is None else "is empty"
                raise self.error(
                    f"environment variable {env_name} {state}; export it, or remove {env_key} to use the AWS "
                    "credential chain",
                    m.value(env_key),
                    m.path(env_key),
                )
            if field_name != "access_key_id":
                register_secret(value)
            resolved[field_name] = value
        return {
            "endpoint_url": endpoint_url,
            "region": region.strip() if region else None,
            "profile": profile,
            "access_key_id_env": key_id_env,
            "secret_access_key_env": secret_env,
            "session_token_env": token_env,
            **resolved,
        }

    def destination(self, node: Node, source: SupabaseSource | S3Source) -> Destination:
        m = self.mapping(node, "destination", what="a mapping with at least bucket:")
        m.check_keys(
            _S3_ACCESS_KEYS
            + (
                "bucket",
                "prefix",
                "bucket_prefix",
                "storage_class",
                "server_side_encryption",
                "kms_key_id",
                "on_conflict",
            ),
            credentials_hint=_S3_CREDENTIALS_HINT,
        )
        bucket = self.string(m, "bucket", required=True, hint="name the S3 bucket, e.g. bucket: ${MIGRATE_DEST_BUCKET}")
        assert bucket is not None
        bucket = bucket.strip()
        if not _S3_BUCKET.match(bucket) or ".." in bucket:
            raise self.error(
                f"{bucket!r} is not a valid S3 bucket name (3-63 characters: lowercase letters, digits, '.' and '-', "
                "starting and ending with a letter or digit)",
                m.value("bucket"),
                m.path("bucket"),
            )
        prefix = self.destination_prefix(m)
        mode = self.choice(m, "bucket_prefix", BUCKET_PREFIX, default="auto")
        if mode == "auto":
            names = source.bucket_names
            bucket_prefix = names is None or len(names) != 1
        else:
            bucket_prefix = mode == "always"
        storage_class = self.choice(m, "storage_class", STORAGE_CLASSES, default=None)
        sse = self.choice(m, "server_side_encryption", SERVER_SIDE_ENCRYPTION, default=None)
        kms_key_id = self.string(m, "kms_key_id")
        if sse == "aws:kms" and kms_key_id is None:
            raise self.error(
                "aws:kms needs destination.kms_key_id (a key id, key ARN or alias/NAME)",
                m.value("server_side_encryption"),
                m.path("server_side_encryption"),
            )
        if kms_key_id is not None and sse != "aws:kms":
            raise self.error(
                "kms_key_id is only used with server_side_encryption: aws:kms",
                m.value("kms_key_id"),
                m.path("kms_key_id"),
            )
        on_conflict = self.choice(m, "on_conflict", ON_CONFLICT, default="skip")
        return Destination(
            bucket=bucket,
            prefix=prefix,
            bucket_prefix=bucket_prefix,
            storage_class=storage_class,
            server_side_encryption=sse,
            kms_key_id=kms_key_id,
            on_conflict=on_conflict,
            **self.s3_access(m),
        )

    def destination_prefix(self, m: _Map) -> str:
        value = self.string(m, "prefix")
        if value is None:
            return ""
        if not value.endswith("/"):
            value += "/"
        reason = validate_destination_key(value)
        if reason is not None:
            raise self.error(reason.replace("destination key", "prefix", 1), m.value("prefix"), m.path("prefix"))
        return value

    def rules(self, top: _Map, source: SupabaseSource | S3Source) -> tuple[Rule, ...]:
        node = top.value("rules")
        if node is None:
            return ()
        if not isinstance(node, SequenceNode):
            raise self.error(f"expected a list of rules (- name: ..., match: ..., to: ...), got {_describe(node)}", node, "rules")
        rules: list[Rule] = []
        names: dict[str, str] = {}
        for index, item in enumerate(node.value):
            rule = self.rule(item, f"rules[{index}]", source)
            if rule.name in names:
                rm = self.mapping(item, f"rules[{index}]")
                raise self.error(
                    f"duplicate rule name {rule.name!r} (also {names[rule.name]}); names are recorded in the "
                    "manifest, so each must be unique",
                    rm.value("name"),
                    rm.path("name"),
                )
            names[rule.name] = f"rules[{index}]"
            rules.append(rule)
        return tuple(rules)

    def restricted_buckets(self, m: _Map, source: SupabaseSource | S3Source) -> tuple[str, ...]:
        found = self.string_list(m, "bucket", what="a bucket name")
        known = source.bucket_names
        out: list[str] = []
        for value, node, key in found:
            name = self.bucket_name(value, node, key)
            if known is not None and name not in known:
                raise self.error(
                    f"bucket {name!r} is not among source.buckets ({', '.join(known)})", node, key
                )
            out.append(name)
        return tuple(dict.fromkeys(out))

    def rule(self, node: Node, key: str, source: SupabaseSource | S3Source) -> Rule:
        m = self.mapping(node, key, what="a rule (a mapping with name, match and to)")
        m.check_keys(
            (
                "name",
                "bucket",
                "match",
                "regex",
                "to",
                "exclude",
                "content_type",
                "cache_control",
                "content_disposition",
                "storage_class",
                "metadata",
            )
        )
        name = self.string(m, "name", required=True, hint="give the rule a name; it is recorded in the manifest")
        assert name is not None
        name = name.strip()
        if len(name) > 100 or re.search(r"[\x00-\x1f\x7f]", name):
            raise self.error("rule names are at most 100 printable characters", m.value("name"), m.path("name"))
        buckets = self.restricted_buckets(m, source)
        match = self.string(m, "match", interpolate=False)
        regex = self.string(m, "regex", interpolate=False)
        if match is not None and regex is not None:
            raise self.error("give match (a template) or regex, not both", m.key_node("regex"), m.path("regex"))
        if match is None and regex is None:
            raise self.error(
                "required key is missing; give match: '<template>' such as 'plugins/{name}/{file**}' "
                "(or regex: for a regular expression)",
                m.node,
                m.path("match"),
            )
        try:
            if regex is not None:
                pattern = compile_match_regex(regex)
            else:
                pattern = compile_match_template(match or "")
        except TemplateError as err:
            which = "regex" if regex is not None else "match"
            raise self.error(str(err), m.value(which), m.path(which)) from None
        exclude = self.boolean(m, "exclude", default=False)
        to = self.string(m, "to", interpolate=False)
        metadata = self.rule_metadata(m)
        if exclude:
            if to is not None:
                raise self.error("a rule with exclude: true has no 'to'; remove one of them", m.key_node("to"), m.path("to"))
            if not metadata.is_empty:
                raise self.error("a rule with exclude: true takes no headers or metadata", m.node, key)
        else:
            if to is None:
                raise self.error(
                    "required key is missing; say where matching keys go, e.g. to: 'registry/{name}/{file}' "
                    "(or exclude: true to leave them out)",
                    m.node,
                    m.path("to"),
                )
            try:
                compile_to_template(to, pattern.names, captured_by="regex" if regex is not None else "match")
            except TemplateError as err:
                raise self.error(str(err), m.value("to"), m.path("to")) from None
        return Rule(
            name=name,
            match=match,
            regex=regex,
            to=to,
            buckets=buckets,
            exclude=exclude,
            metadata=metadata,
        )

    def rule_metadata(self, m: _Map) -> RuleMetadata:
        content_type = self.string(m, "content_type")
        if content_type is not None:
            content_type = content_type.strip()
            if content_type.lower() == INFER:
                content_type = INFER
            elif not _MIME_TYPE.match(content_type):
                raise self.error(
                    f"{content_type!r} is not a MIME type; write e.g. application/json, or infer to guess "
                    "from the destination key's extension",
                    m.value("content_type"),
                    m.path("content_type"),
                )
        headers: dict[str, str | None] = {}
        for header in ("cache_control", "content_disposition"):
            value = self.string(m, header)
            if value is not None and not _HEADER_VALUE.match(value):
                raise self.error(
                    "must be printable ASCII on one line (it becomes an HTTP header)", m.value(header), m.path(header)
                )
            headers[header] = value.strip() if value else None
        storage_class = self.choice(m, "storage_class", STORAGE_CLASSES, default=None)
        return RuleMetadata(
            content_type=content_type,
            cache_control=headers["cache_control"],
            content_disposition=headers["content_disposition"],
            storage_class=storage_class,
            metadata=self.user_metadata(m),
        )

    def user_metadata(self, m: _Map) -> dict[str, str]:
        node = m.value("metadata")
        key = m.path("metadata")
        if node is None:
            return {}
        mm = self.mapping(node, key, what="a mapping of metadata names to values")
        out: dict[str, str] = {}
        for name, (key_node, value_node) in mm.entries.items():
            entry_key = mm.path(name)
            if name.lower().startswith("x-amz-meta-"):
                raise self.error(f"write the name without the x-amz-meta- prefix: {name[11:]!r}", key_node, entry_key)
            if not _META_KEY.match(name):
                lower = f" (S3 stores names in lowercase: write {name.lower()!r})" if _META_KEY.match(name.lower()) else ""
                raise self.error(
                    f"{name!r} is not a valid metadata name: lowercase letters, digits, '-', '_' and '.'{lower}",
                    key_node,
                    entry_key,
                )
            if not isinstance(value_node, ScalarNode) or value_node.tag == _NULL_TAG:
                raise self.error(f"expected text, got {_describe(value_node)}", value_node, entry_key)
            value = self.string_at(value_node, entry_key) if value_node.value else ""
            if not _HEADER_VALUE.match(value):
                raise self.error(
                    "S3 metadata values must be printable ASCII on one line", value_node, entry_key
                )
            out[name] = value
        total = sum(len(k) + len(v) for k, v in out.items())
        if total > _MAX_USER_METADATA:
            raise self.error(
                f"user metadata is {total} bytes; S3 allows {_MAX_USER_METADATA} per object", node, key
            )
        return out

    def bounds(self, m: _Map) -> dict[str, Any]:
        """min_size/max_size and modified_after/modified_before, checked for order."""
        min_size = self.size(m, "min_size")
        max_size = self.size(m, "max_size")
        if min_size is not None and max_size is not None and min_size > max_size:
            raise self.error(
                f"min_size ({format_size(min_size)}) is larger than max_size ({format_size(max_size)})",
                m.value("min_size"),
                m.path("min_size"),
            )
        after, after_node = self.when(m, "modified_after")
        before, _ = self.when(m, "modified_before")
        if after is not None and before is not None and after >= before:
            raise self.error(
                "modified_after must be earlier than modified_before (objects with "
                "modified_after <= last modified < modified_before are kept)",
                after_node,
                m.path("modified_after"),
            )
        return {
            "min_size": min_size,
            "max_size": max_size,
            "modified_after": after,
            "modified_before": before,
        }

    def filters(self, top: _Map) -> Filters:
        node = top.value("filters")
        if node is None:
            return Filters()
        m = self.mapping(node, "filters")
        m.check_keys(
            ("include", "exclude", "min_size", "max_size", "modified_after", "modified_before", "skip_placeholders")
        )
        return Filters(
            include=self.globs(m, "include"),
            exclude=self.globs(m, "exclude"),
            skip_placeholders=self.boolean(m, "skip_placeholders", default=True),
            **self.bounds(m),
        )

    def tiering(self, top: _Map, source: SupabaseSource | S3Source) -> tuple[Tier, ...]:
        node = top.value("tiering")
        if node is None:
            return ()
        if not isinstance(node, SequenceNode):
            raise self.error(
                f"expected a list of tiers (- storage_class: ..., modified_before: ...), got {_describe(node)}",
                node,
                "tiering",
            )
        tiers: list[Tier] = []
        for index, item in enumerate(node.value):
            key = f"tiering[{index}]"
            m = self.mapping(item, key)
            m.check_keys(
                (
                    "name",
                    "bucket",
                    "include",
                    "min_size",
                    "max_size",
                    "modified_after",
                    "modified_before",
                    "storage_class",
                )
            )
            storage_class = self.choice(m, "storage_class", STORAGE_CLASSES, default=_REQUIRED)
            tier = Tier(
                name=(self.string(m, "name") or f"tier-{index + 1}").strip(),
                storage_class=str(storage_class),
                buckets=self.restricted_buckets(m, source),
                include=self.globs(m, "include"),
                **self.bounds(m),
            )
            if not (
                tier.buckets
                or tier.include
                or tier.min_size is not None
                or tier.max_size is not None
                or tier.modified_after
                or tier.modified_before
            ):
                raise self.error(
                    "a tier needs a condition (bucket, include, min_size, max_size, modified_after or "
                    "modified_before); for every object set destination.storage_class instead",
                    item,
                    key,
                )
            tiers.append(tier)
        return tuple(tiers)

    def transfer(self, top: _Map) -> TransferSettings:
        node = top.value("transfer")
        if node is None:
            return TransferSettings()
        m = self.mapping(node, "transfer")
        m.check_keys(
            ("concurrency", "part_size", "multipart_threshold", "max_attempts", "checksum_algorithm", "max_bandwidth", "max_requests_per_second")
        )
        max_requests_per_second = None
        rps_node = m.value("max_requests_per_second")
        if rps_node is not None:
            rps_key = m.path("max_requests_per_second")
            if not isinstance(rps_node, ScalarNode) or rps_node.tag not in (_INT_TAG, _FLOAT_TAG):
                raise self.error(f"expected a number of requests per second, got {_describe(rps_node)}", rps_node, rps_key)
            max_requests_per_second = float(self.constructor.construct_object(rps_node))
            if not 0 < max_requests_per_second < float("inf"):
                raise self.error(f"must be more than 0 requests per second, got {rps_node.value}", rps_node, rps_key)
        part_size = self.size(m, "part_size", minimum=MIN_PART_SIZE, maximum=MAX_PART_SIZE)
        part_size = part_size if part_size is not None else TransferSettings.part_size
        threshold = self.size(m, "multipart_threshold", minimum=MIN_PART_SIZE, maximum=MAX_PART_SIZE)
        if threshold is None:
            threshold = max(TransferSettings.multipart_threshold, part_size)
        return TransferSettings(
            concurrency=self.integer(m, "concurrency", default=16, minimum=1, maximum=512),
            part_size=part_size,
            multipart_threshold=threshold,
            max_attempts=self.integer(m, "max_attempts", default=5, minimum=1, maximum=100),
            checksum_algorithm=str(self.choice(m, "checksum_algorithm", CHECKSUM_ALGORITHMS, default="SHA256")),
            max_bandwidth=self.size(m, "max_bandwidth", minimum=64 * KiB, per_second=True),
            max_requests_per_second=max_requests_per_second,
        )

    def verify(self, top: _Map) -> VerifySettings:
        node = top.value("verify")
        if node is None:
            return VerifySettings()
        m = self.mapping(node, "verify")
        m.check_keys(("mode", "concurrency", "sample"))
        sample: int | None = None
        sample_percent: float | None = None
        sample_node = m.value("sample")
        if sample_node is not None:
            text = self.scalar_text(sample_node, m.path("sample"), "a number of objects or a percentage")
            if isinstance(sample_node, ScalarNode) and sample_node.tag == _INT_TAG:
                sample = int(self.constructor.construct_yaml_int(sample_node))
                if sample < 1:
                    raise self.error(f"must be at least 1 object, got {sample}", sample_node, m.path("sample"))
            else:
                found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", text)
                percent = float(found.group(1)) if found else -1.0
                if not 0 < percent <= 100:
                    raise self.error(
                        "expected a number of objects (1000) or a percentage ('5%', above 0 and at most 100)",
                        sample_node,
                        m.path("sample"),
                    )
                sample_percent = percent
        return VerifySettings(
            mode=str(self.choice(m, "mode", VERIFY_MODES, default="fast")),
            concurrency=self.integer(m, "concurrency", default=16, minimum=1, maximum=512),
            sample=sample,
            sample_percent=sample_percent,
        )

    def costs(self, top: _Map) -> CostTable:
        node = top.value("costs")
        if node is None:
            return CostTable()
        m = self.mapping(node, "costs")
        m.check_keys(("currency", "storage_per_gb_month", "put_per_1000", "get_per_1000"))
        currency = (self.string(m, "currency") or "USD").strip()
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise self.error(f"{currency!r} is not a currency code such as USD", m.value("currency"), m.path("currency"))
        prices = dict(DEFAULT_STORAGE_PRICES)
        storage_node = m.value("storage_per_gb_month")
        if storage_node is not None:
            sm = self.mapping(storage_node, m.path("storage_per_gb_month"), what="a mapping of storage class to price")
            for name, (key_node, value_node) in sm.entries.items():
                canonical = next((c for c in STORAGE_CLASSES if c.lower() == name.lower()), None)
                if canonical is None:
                    raise self.error(
                        f"{name!r} is not a storage class; one of: {', '.join(STORAGE_CLASSES)}", key_node, sm.path(name)
                    )
                prices[canonical] = self.number(value_node, sm.path(name))
        put = m.value("put_per_1000")
        get = m.value("get_per_1000")
        return CostTable(
            currency=currency,
            storage_per_gb_month=prices,
            put_per_1000=self.number(put, m.path("put_per_1000")) if put is not None else DEFAULT_PUT_PER_1000,
            get_per_1000=self.number(get, m.path("get_per_1000")) if get is not None else DEFAULT_GET_PER_1000,
        )


class _Required:
    def __repr__(self) -> str:
        return "<required>"


_REQUIRED: Any = _Required()

_S3_ACCESS_KEYS: tuple[str, ...] = (
    "endpoint_url",
    "region",
    "profile",
    "access_key_id_env",
    "secret_access_key_env",
    "session_token_env",
)
_S3_CREDENTIALS_HINT = (
    "use the AWS credential chain, profile: NAME, or access_key_id_env/secret_access_key_env naming "
    "environment variables"
)

__all__ = [
    "BucketSelection",
    "CostTable",
    "Destination",
    "Filters",
    "Plan",
    "RewriteRule",
    "Rule",
    "RuleMetadata",
    "S3Source",
    "STORAGE_CLASSES",
    "SupabaseSource",
    "Tier",
    "TransferSettings",
    "VerifySettings",
    "load_plan",
    "parse_plan",
    "parse_size",
]
