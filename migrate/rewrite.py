"""Key rewriting: from a source (bucket, key) to a destination key.

Pure code, no I/O. `compile_rules` turns the plan's ordered rules into a
`KeyRewriter` once; `KeyRewriter.rewrite(bucket, key)` then costs a dict
lookup, a `startswith` and one anchored regex match per candidate rule, so a
manifest of millions of keys rewrites in seconds.

Templates (`match:` and `to:` in a plan rule):

- `{name}` matches exactly one path segment: one or more characters, no `/`.
- `{name**}` matches one or more whole segments: `a`, `a/b`, `a/b/c`, never
  an empty segment. (`**` echoes the glob convention for "across folders";
  a suffix on the name keeps every placeholder a plain `{...}` token.)
- Literal text between placeholders must match exactly, and a placeholder
  can sit inside a segment: `v{version}` matches `v1.2.0`.
- Two placeholders must be separated by literal text: `{a}{b}` has no single
  reading, so it is refused.
- `{{` and `}}` are literal braces.
- In `to`, `{name}` and `{name**}` both insert what `name` captured, and
  `{bucket}` (the source bucket) is always available. `bucket` cannot be
  captured by `match`.

A `regex:` rule uses named groups (`(?P<name>...)`) in place of a template;
the regex must match the whole key (it is applied with `re.fullmatch`), and
a group that did not take part in the match inserts the empty string.

Rules are tried in order; the first whose bucket restriction and pattern
match wins. A key no rule matches follows the plan's `unmatched` policy:
`keep` copies it under its own key, `exclude` leaves it out.

Where keys land (the choice documented in `migrate.plan`): a rule's `to` is
the whole destination key below `destination.prefix`; a kept unmatched key
is placed below `destination.prefix` and, when the plan migrates more than
one bucket (`destination.bucket_prefix`), below `<source bucket>/` too.

Every destination key is checked by `validate_destination_key`
(`migrate.patterns`): a key S3 cannot store or list becomes an `invalid-key`
row, never a copied object; every other key is written as it is. `find_collisions` / `mark_collisions` find source
objects that would overwrite each other at the destination.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

import polars as pl

from migrate.filters import object_filter, tier_selector
from migrate.metadata import metadata_problems
from migrate.patterns import (  # re-exported: the rewriter's grammar, kept below the plan
    BUCKET_PLACEHOLDER,
    INFER,
    MAX_KEY_BYTES,
    MatchPattern,
    TemplateError,
    compile_match_regex,
    compile_match_template,
    compile_to_template,
    validate_destination_key,
)
from migrate.records import Action, ObjectRecord
from migrate.stores.base import ObjectInfo

if TYPE_CHECKING:
    from migrate.plan import Plan, Rule, RuleMetadata

# --------------------------------------------------------------------------- the plan, compiled


def compile_plan(plan: "Plan") -> RecordBuilder:
    """Compile a loaded plan's filters, rules and tiering into a `RecordBuilder`."""
    return RecordBuilder(plan)


class RecordBuilder:
    """Everything the plan says about one source object, compiled once.

    `build(bucket, info)` returns the manifest record: filters first (an
    excluded object gets no destination key), then the rewrite, the key
    check, the headers and the storage class. Collisions need every row, so
    they are marked afterwards with `mark_collisions`.
    """

    def __init__(self, plan: "Plan") -> None:
        self.plan = plan
        self.dest_bucket = plan.destination.bucket
        self.rewriter = compile_rules(
            plan.rules,
            unmatched=plan.unmatched,
            dest_prefix=plan.destination.prefix,
            bucket_prefix=plan.destination.bucket_prefix,
        )
        self._filter = object_filter(plan.filters)
        self._tier = tier_selector(plan.tiering)
        self._default_storage_class = plan.destination.storage_class

    def build(self, bucket: str, info: ObjectInfo) -> ObjectRecord:
        record = ObjectRecord(
            source_bucket=bucket,
            source_key=info.key,
            size=info.size,
            dest_bucket=self.dest_bucket,
            source_etag=info.etag,
            content_type=info.content_type,
            cache_control=info.cache_control,
            content_disposition=info.content_disposition,
            user_metadata=dict(info.user_metadata),
            last_modified=info.last_modified,
        )
        excluded = self._filter(info)
        if excluded is not None:
            record.action = Action.EXCLUDED.value
            record.reason = excluded
            return record
        tier = self._tier(bucket, info)
        record = apply_rewrite(
            record,
            self.rewriter.rewrite(bucket, info.key),
            default_storage_class=self._default_storage_class,
            tier_storage_class=tier.storage_class if tier is not None else None,
        )
        if record.action == Action.COPY.value:
            # Metadata S3 cannot carry is reported now, not discovered as a failed write.
            problems = metadata_problems(record.user_metadata)
            if problems:
                record.action, record.reason = Action.INVALID_METADATA.value, "; ".join(problems)
        return record


def apply_rewrite(
    record: ObjectRecord,
    rewrite: Rewrite,
    *,
    default_storage_class: str | None,
    tier_storage_class: str | None = None,
) -> ObjectRecord:
    """Fill `record` (built from the source object) with what the rewrite decided.

    Sets the destination key, rule, action and reason. For copied objects it
    also sets the headers to write: the rule's content type (or inferred, or
    the source's), cache control and content disposition (the rule's, else the
    source's), user metadata (the source's, with the rule's added on top) and
    the storage class (tier, else rule, else the destination default).
    Returns the same record, modified.
    """
    record.dest_key = rewrite.dest_key
    record.rule = rewrite.rule
    record.action = rewrite.action.value
    record.reason = rewrite.reason
    if rewrite.action is not Action.COPY or rewrite.dest_key is None:
        record.storage_class = None
        return record
    meta = rewrite.metadata
    rule_class = None
    if meta is not None:
        record.content_type = resolve_content_type(meta.content_type, rewrite.dest_key, record.content_type)
        record.cache_control = meta.cache_control or record.cache_control
        record.content_disposition = meta.content_disposition or record.content_disposition
        if meta.metadata:
            record.user_metadata = {**record.user_metadata, **meta.metadata}
        rule_class = meta.storage_class
    record.storage_class = tier_storage_class or rule_class or default_storage_class
    return record


# --------------------------------------------------------------------------- rewriting


@dataclass(frozen=True, slots=True)
class Rewrite:
    """Where one source key goes, or why it goes nowhere.

    `dest_key` is the full destination key (prefix included), or None when the
    key is excluded. `invalid_reason` is set when a destination key was
    computed but `validate_destination_key` refused it.
    """

    dest_key: str | None
    rule: str | None
    excluded_reason: str | None = None
    metadata: "RuleMetadata | None" = None
    invalid_reason: str | None = None

    @property
    def action(self) -> Action:
        """What the manifest row for this key says: copy, excluded or invalid-key."""
        if self.excluded_reason is not None:
            return Action.EXCLUDED
        if self.invalid_reason is not None:
            return Action.INVALID_KEY
        return Action.COPY

    @property
    def reason(self) -> str | None:
        return self.excluded_reason or self.invalid_reason


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    name: str
    buckets: frozenset[str] | None
    prefix: str
    regex: re.Pattern[str]
    to_format: str | None  # None: the rule excludes what it matches
    metadata: "RuleMetadata | None"


def _normalise_prefix(prefix: str) -> str:
    if prefix and not prefix.endswith("/"):
        return prefix + "/"
    return prefix


class KeyRewriter:
    """Rules compiled once; `rewrite` applies them to one key. Build with `compile_rules`."""

    def __init__(
        self,
        rules: Sequence[_CompiledRule],
        *,
        unmatched: str,
        dest_prefix: str,
        bucket_prefix: bool,
    ) -> None:
        self._rules = tuple(rules)
        self._unmatched_exclude = unmatched == "exclude"
        self._dest_prefix = _normalise_prefix(dest_prefix)
        self._bucket_prefix = bucket_prefix
        self._by_bucket: dict[str, tuple[_CompiledRule, ...]] = {}

    def _rules_for(self, bucket: str) -> tuple[_CompiledRule, ...]:
        rules = self._by_bucket.get(bucket)
        if rules is None:
            rules = tuple(r for r in self._rules if r.buckets is None or bucket in r.buckets)
            self._by_bucket[bucket] = rules
        return rules

    def rewrite(self, bucket: str, key: str) -> Rewrite:
        """Apply the first matching rule (or the unmatched policy) to `key` from `bucket`."""
        for rule in self._rules_for(bucket):
            if not key.startswith(rule.prefix):
                continue
            found = rule.regex.fullmatch(key)
            if found is None:
                continue
            if rule.to_format is None:
                return Rewrite(None, rule.name, f"excluded by rule {rule.name!r}")
            values = found.groupdict("")
            values[BUCKET_PLACEHOLDER] = bucket
            return self._checked(self._dest_prefix + rule.to_format.format_map(values), rule.name, rule.metadata)
        if self._unmatched_exclude:
            return Rewrite(None, None, "no rule matches the key (unmatched: exclude)")
        if self._bucket_prefix:
            return self._checked(f"{self._dest_prefix}{bucket}/{key}", None, None)
        return self._checked(self._dest_prefix + key, None, None)

    @staticmethod
    def _checked(dest_key: str, rule: str | None, metadata: "RuleMetadata | None") -> Rewrite:
        return Rewrite(dest_key, rule, None, metadata, validate_destination_key(dest_key))


def compile_rules(
    rules: Iterable["Rule"],
    *,
    unmatched: str = "keep",
    dest_prefix: str = "",
    bucket_prefix: bool = False,
) -> KeyRewriter:
    """Compile rules (in order) into a `KeyRewriter`.

    `unmatched` is `keep` or `exclude`; `dest_prefix` is prepended to every
    destination key (a `/` is added if missing); with `bucket_prefix`, kept
    unmatched keys also go below `<source bucket>/`. Raises `TemplateError`
    for a bad template (plans are already validated, so only hand-built
    rules can hit this).
    """
    if unmatched not in ("keep", "exclude"):
        raise ValueError(f"unmatched must be 'keep' or 'exclude', not {unmatched!r}")
    compiled: list[_CompiledRule] = []
    for rule in rules:
        if rule.regex is not None:
            pattern = compile_match_regex(rule.regex)
            captured_by = "regex"
        else:
            pattern = compile_match_template(rule.match or "")
            captured_by = "match"
        to_format = None if rule.exclude else compile_to_template(rule.to or "", pattern.names, captured_by=captured_by)
        compiled.append(
            _CompiledRule(
                name=rule.name,
                buckets=frozenset(rule.buckets) if rule.buckets else None,
                prefix=pattern.literal_prefix,
                regex=pattern.regex,
                to_format=to_format,
                metadata=None if rule.exclude else rule.metadata,
            )
        )
    return KeyRewriter(compiled, unmatched=unmatched, dest_prefix=dest_prefix, bucket_prefix=bucket_prefix)


# --------------------------------------------------------------------------- metadata

# A fixed table, not the machine's /etc/mime.types: a plan must give the same
# manifest on every machine. Python's defaults plus a few web types it lacks.
_MIME = mimetypes.MimeTypes()
for _type, _ext in (
    ("image/webp", ".webp"),
    ("font/woff", ".woff"),
    ("font/woff2", ".woff2"),
    ("text/markdown", ".md"),
    ("application/yaml", ".yaml"),
    ("application/yaml", ".yml"),
    ("application/toml", ".toml"),
    ("application/zip", ".whl"),
    ("application/java-archive", ".jar"),
    ("application/x-7z-compressed", ".7z"),
    ("application/json", ".map"),
    ("application/vnd.apple.mpegurl", ".m3u8"),
):
    _MIME.add_type(_type, _ext)

# A compressed file is stored as its compressed type: we never set Content-Encoding.
_ENCODING_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}


def guess_content_type(key: str) -> str | None:
    """The content type for `key`'s extension (fixed table, case-insensitive), or None."""
    guessed, encoding = _MIME.guess_type(key.lower(), strict=False)
    if encoding is not None:
        return _ENCODING_TYPES.get(encoding)
    return guessed


def resolve_content_type(rule_value: str | None, dest_key: str, source_type: str | None) -> str | None:
    """The Content-Type to write: the rule's fixed value, an inferred one, or the source's.

    `infer` guesses from the destination key's extension and keeps the
    source's type when the extension is unknown.
    """
    if rule_value is None:
        return source_type
    if rule_value == INFER:
        return guess_content_type(dest_key) or source_type
    return rule_value


# --------------------------------------------------------------------------- collisions

_KEY_COLUMNS = ("source_bucket", "source_key", "dest_bucket", "dest_key")


def find_collisions(rows: pl.DataFrame | Iterable[tuple[str, str, str | None, str | None]]) -> pl.DataFrame:
    """Rows whose destination (bucket, key) is shared with another row.

    `rows` is a DataFrame with at least the manifest columns source_bucket,
    source_key, dest_bucket and dest_key, or an iterable of such 4-tuples.
    Rows with no dest_key are ignored; pass only the rows that will be
    copied. Returns those four columns plus `colliding_sources`: the sorted
    list of every "<source_bucket>/<source_key>" that maps to that
    destination (the row's own source included), one row per colliding
    source, sorted by destination then source.
    """
    if not isinstance(rows, pl.DataFrame):
        rows = pl.DataFrame(list(rows), schema={c: pl.Utf8 for c in _KEY_COLUMNS}, orient="row")
    keyed = (
        rows.lazy()
        .select(_KEY_COLUMNS)
        .filter(pl.col("dest_key").is_not_null())
        .with_columns(
            pl.col("dest_bucket").fill_null("").alias("_dest_bucket"),
            pl.concat_str([pl.col("source_bucket"), pl.lit("/"), pl.col("source_key")]).alias("_source"),
        )
    )
    groups = (
        keyed.group_by("_dest_bucket", "dest_key")
        .agg(pl.col("_source").sort().alias("colliding_sources"), pl.len().alias("_count"))
        .filter(pl.col("_count") > 1)
        .drop("_count")
    )
    return (
        keyed.join(groups, on=["_dest_bucket", "dest_key"], how="inner")
        .sort("_dest_bucket", "dest_key", "source_bucket", "source_key")
        .select(*_KEY_COLUMNS, "colliding_sources")
        .collect()
    )


def collision_reason(dest_bucket: str | None, dest_key: str, sources: Sequence[str], *, show: int = 5) -> str:
    """The manifest reason for a collided row: the destination and the sources that share it."""
    listed = ", ".join(sources[:show])
    more = f" and {len(sources) - show} more" if len(sources) > show else ""
    where = f"s3://{dest_bucket}/{dest_key}" if dest_bucket else dest_key
    return f"{len(sources)} source objects rewrite to {where}: {listed}{more}; add a rule or exclude one of them"


def mark_collisions(manifest: pl.DataFrame) -> pl.DataFrame:
    """Set action `collision` (with a reason naming every source) on colliding `copy` rows.

    Only rows whose action is `copy` take part: an excluded or invalid row
    writes nothing, so it cannot collide. Row order is preserved.
    """
    copying = manifest.filter(pl.col("action") == Action.COPY.value)
    collided = find_collisions(copying)
    if collided.height == 0:
        return manifest
    reasons = collided.select(
        "source_bucket",
        "source_key",
        pl.struct("dest_bucket", "dest_key", "colliding_sources")
        .map_elements(
            lambda s: collision_reason(s["dest_bucket"], s["dest_key"], s["colliding_sources"]),
            return_dtype=pl.Utf8,
        )
        .alias("_collision_reason"),
    ).unique(subset=["source_bucket", "source_key"], keep="first")
    marked = manifest.with_row_index("_row").join(
        reasons, on=["source_bucket", "source_key"], how="left"
    )
    hit = pl.col("_collision_reason").is_not_null() & (pl.col("action") == Action.COPY.value)
    return (
        marked.with_columns(
            pl.when(hit).then(pl.lit(Action.COLLISION.value)).otherwise(pl.col("action")).alias("action"),
            pl.when(hit).then(pl.col("_collision_reason")).otherwise(pl.col("reason")).alias("reason"),
        )
        .sort("_row")
        .select(manifest.columns)
    )


__all__ = [
    "INFER",
    "KeyRewriter",
    "MatchPattern",
    "RecordBuilder",
    "Rewrite",
    "TemplateError",
    "apply_rewrite",
    "collision_reason",
    "compile_match_regex",
    "compile_match_template",
    "compile_plan",
    "compile_rules",
    "compile_to_template",
    "find_collisions",
    "guess_content_type",
    "mark_collisions",
    "resolve_content_type",
    "validate_destination_key",
]
