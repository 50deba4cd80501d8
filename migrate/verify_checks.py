"""What `verify` compares, as pure functions: options, checksum and metadata rules, report rows.

No network here: every function takes what a store answered (an `ObjectInfo`),
what `run` recorded (a `JournalRow`) and the planned record, and says what
agrees. `migrate.verify` drives the stores and calls these.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Mapping

from migrate.checksums import is_plain_md5
from migrate.encryption import EncryptionSettings
from migrate.errors import UserInputError
from migrate.headers import CARRIED_HEADERS
from migrate.journal import STATE_DONE, STATE_FAILED, STATE_IN_PROGRESS, STATE_SKIPPED, JournalRow, record_fingerprint
from migrate.metadata import comparable_metadata
from migrate.plan.model import TransferSettings, VerifySettings
from migrate.records import Action, ObjectRecord
from migrate.stores.base import ObjectInfo

#: Manifest actions whose objects must be at the destination.
VERIFIED_ACTIONS: tuple[str, ...] = (Action.COPY.value, Action.SKIP_EXISTING.value)
#: What to do about a planned object that cannot be migrated as it is (`BLOCKING_ACTIONS`, reported `not-migrated`).
BLOCKED_FIX = "not migrated: exclude it with filters.exclude (or a rule with exclude: true), or fix it at the source, then plan again"
MODES = ("quick", "fast", "deep")


_PLAN_VERIFY = VerifySettings()


@dataclass(frozen=True)
class VerifyOptions:
    """How `verify` checks. `expect_prefixes`: (dest_bucket, prefix) pairs scanned for unexpected objects."""

    # Defaults are the plan's (declared once, in migrate.plan.model).
    mode: Literal["quick", "fast", "deep"] = _PLAN_VERIFY.mode
    concurrency: int = _PLAN_VERIFY.concurrency
    sample: int | None = None
    seed: int = 0
    max_attempts: int = TransferSettings.model_fields["max_attempts"].default
    server_side_encryption: str | None = None
    kms_key_id: str | None = None
    # Per-rule SSE overrides (rule name -> (sse, kms key)), as `run` applied them.
    encryption_by_rule: Mapping[str, tuple[str | None, str | None]] = field(default_factory=dict)
    expect_prefixes: tuple[tuple[str, str], ...] = ()
    # The plan's transfer.max_bandwidth / max_requests_per_second hold for verify's reads too.
    max_bandwidth: int | None = None
    max_requests_per_second: float | None = None
    # False: only look for unexpected objects (a cluster driver, whose workers check the records).
    check_objects: bool = True

    def encryption_for(self, rule: str | None) -> tuple[str | None, str | None]:
        return EncryptionSettings((self.server_side_encryption, self.kms_key_id), self.encryption_by_rule).for_rule(rule)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserInputError(f"verify mode must be quick, fast or deep, got {self.mode!r}")
        if self.concurrency < 1:
            raise UserInputError("verify concurrency must be at least 1")
        if self.sample is not None and self.sample < 1:
            raise UserInputError(f"--sample must be at least 1, got {self.sample}")
        if self.max_attempts < 1:
            raise UserInputError("verify max_attempts must be at least 1")


@dataclass(frozen=True)
class VerifyStats:
    """What the audit saw besides its rows: the report's sampling facts."""

    population: int  # records with a verified action
    checked: int  # records checked (the sample, or all of them)
    not_verified: int  # records with another action



# -- pure comparisons -----------------------------------------------------------
@dataclass(frozen=True)
class ChecksumComparison:
    """The outcome of comparing one recorded checksum with what the destination holds."""

    outcome: Literal["match", "differs", "none"]
    basis: str  # one of migrate.report.CHECKSUM_BASES
    expected: str | None = None
    actual: str | None = None
    note: str = ""


def _is_composite(checksum: str) -> bool:
    # S3 composite (multipart) checksums end in "-<part count>"; base64 never contains "-".
    return "-" in checksum


def _etag_is_md5(info: ObjectInfo) -> bool:
    # With SSE-KMS (and SSE-C) S3's ETag is not the MD5 of the bytes.
    return is_plain_md5(info.etag) and not (info.server_side_encryption or "").startswith("aws:kms")


def _compare(basis: str, expected: str, actual: str) -> ChecksumComparison:
    return ChecksumComparison("match" if expected == actual else "differs", basis, expected, actual)


def compare_recorded_checksum(*, dest: ObjectInfo, journal_row: JournalRow | None, source_etag: str | None) -> ChecksumComparison:
    """Fast mode's content check: the strongest comparison the available facts allow.

    `journal_row` must be usable (state done, fingerprint of the current
    record), else None. In order of preference:

    1. destination's stored SHA-256 (single part) vs the SHA-256 `run` computed
       from the source bytes while streaming (`journal-sha256`);
    2. destination's stored checksum vs the one `run` sent, the composite
       "b64-N" for multipart (`journal-checksum`);
    3. destination ETag, when a plain MD5, vs the MD5 `run` computed (`journal-md5`);
    4. destination ETag vs the ETag it answered when `run` wrote it (`journal-etag`);
    5. without a journal row: destination ETag vs source eTag, both plain MD5s (`source-etag`);
    6. nothing comparable: outcome `none`, the note says why.
    """
    if journal_row is not None:
        stored_sha = dest.checksums.get("sha256")
        if stored_sha and not _is_composite(stored_sha) and journal_row.sha256:
            try:
                actual_hex = base64.b64decode(stored_sha, validate=True).hex()
            except ValueError:
                actual_hex = f"(not base64: {stored_sha})"
            return _compare("journal-sha256", f"sha256:{journal_row.sha256}", f"sha256:{actual_hex}")
        algorithm = (journal_row.checksum_algorithm or "").lower()
        stored = dest.checksums.get(algorithm) if algorithm else None
        if journal_row.dest_checksum and stored:
            label = f"{algorithm}-composite" if _is_composite(stored) or _is_composite(journal_row.dest_checksum) else algorithm
            return _compare("journal-checksum", f"{label}:{journal_row.dest_checksum}", f"{label}:{stored}")
        if journal_row.md5 and _etag_is_md5(dest):
            return _compare("journal-md5", f"md5:{journal_row.md5}", f"md5:{dest.etag}")
        if journal_row.dest_etag and dest.etag:
            return _compare("journal-etag", f"etag:{journal_row.dest_etag}", f"etag:{dest.etag}")
    if is_plain_md5(source_etag) and _etag_is_md5(dest):
        return _compare("source-etag", f"md5:{source_etag}", f"md5:{dest.etag}")
    reasons = []
    if journal_row is None:
        reasons.append("no usable journal row")
    else:
        reasons.append("the journal recorded no comparable digest")
    if not is_plain_md5(source_etag):
        reasons.append("the source eTag is not a plain MD5" if source_etag else "the source eTag is unknown")
    if not _etag_is_md5(dest):
        reasons.append("the destination ETag is not a plain MD5 (multipart or SSE-KMS)")
    return ChecksumComparison("none", "none", note="no checksum could be compared (" + ", ".join(reasons) + ")")


def _norm(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


def _norm_date(value: str | None) -> str | None:
    # The same instant may be written two ways (a server may re-format an HTTP-date); text that is no date compares as text.
    text = _norm(value)
    try:
        return parsedate_to_datetime(text).isoformat() if text else None
    except (TypeError, ValueError):
        return text


def compare_metadata(
    record: ObjectRecord,
    dest: ObjectInfo,
    *,
    expected_content_type: str | None,
    server_side_encryption: str | None = None,
    kms_key_id: str | None = None,
    carried: Mapping[str, str | None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(expected, actual) for each metadata field the destination does not carry as planned; ({}, {}) when all agree.

    `expected_content_type` None skips the Content-Type check (fast mode
    cannot know what `run` used when the record has none: the source's at
    copy time). S3 lowercases user metadata keys, and omits the storage
    class for STANDARD; both are normalised. SSE is checked only when the
    options ask for it (a bucket default is not a deviation). `carried`:
    the Content-Encoding, Content-Language and Expires expected
    (`journaled_carried`, `migrate.headers.carried_headers`); a header it
    does not name is not known, so not checked (None: none known).
    """
    expected: dict[str, Any] = {}
    actual: dict[str, Any] = {}

    def check(name: str, want: Any, got: Any) -> None:
        if want != got:
            expected[name], actual[name] = want, got

    if expected_content_type is not None:
        check("content_type", _norm(expected_content_type), _norm(dest.content_type))
    check("cache_control", _norm(record.cache_control), _norm(dest.cache_control))
    check("content_disposition", _norm(record.content_disposition), _norm(dest.content_disposition))
    check(
        "user_metadata",
        # Both decoded by the one mapping (migrate/metadata.py): JSON types and unicode compare as themselves.
        comparable_metadata(record.user_metadata),
        comparable_metadata(dest.user_metadata),
    )
    for name, want in (carried or {}).items():
        normalise = _norm_date if name == "expires" else _norm
        check(name, normalise(want), normalise(getattr(dest, name)))
    check("storage_class", (record.storage_class or "STANDARD").upper(), (dest.storage_class or "STANDARD").upper())
    if server_side_encryption:
        check("server_side_encryption", server_side_encryption, dest.server_side_encryption)
        if server_side_encryption == "aws:kms" and kms_key_id and not kms_key_id.startswith("alias/"):
            # S3 answers the key ARN; the plan may name the bare key id. An alias cannot be resolved from a HEAD.
            got = dest.sse_kms_key_id or ""
            if not (got == kms_key_id or got.endswith("/" + kms_key_id)):
                expected["sse_kms_key_id"], actual["sse_kms_key_id"] = kms_key_id, dest.sse_kms_key_id
    return expected, actual


def describe_metadata(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> str:
    """The `detail` sentence for metadata that differs: each field, found vs planned."""
    return "metadata not as planned: " + "; ".join(f"{name} is {actual[name]!r}, planned {expected[name]!r}" for name in expected)


def journal_usable(record: ObjectRecord, row: JournalRow | None, options: VerifyOptions) -> tuple[JournalRow | None, str]:
    """The journal row when its digests describe this record's copy, and a note on why not otherwise."""
    if row is None:
        return None, ""
    if row.state == STATE_DONE:
        sse, kms_key_id = options.encryption_for(record.rule)
        fingerprint = record_fingerprint(record, sse=sse, kms_key_id=kms_key_id)
        if row.fingerprint == fingerprint:
            return row, ""
        return None, "the journal row is from an earlier plan of this object"
    if row.state == STATE_SKIPPED:
        return None, "`run` skipped it: the destination already had this key (on_conflict: skip)"
    if row.state == STATE_FAILED:
        return None, f"`run` recorded a failure: {row.error or 'unknown'}"
    if row.state == STATE_IN_PROGRESS:
        return None, "`run` did not finish this object"
    return None, f"journal state {row.state!r}"


def metadata_columns(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> dict[str, str | None]:
    """The report's expected_metadata / actual_metadata columns (JSON objects; null when nothing differs)."""
    if not expected:
        return {"expected_metadata": None, "actual_metadata": None}
    return {
        "expected_metadata": json.dumps(expected, sort_keys=True, ensure_ascii=False),
        "actual_metadata": json.dumps(actual, sort_keys=True, ensure_ascii=False),
    }


def expected_headers(record: ObjectRecord, journal_row: JournalRow | None) -> ObjectRecord:
    """`record` with the headers its destination object should carry: those `run` journaled as sent, when it did.

    `journal_row` must describe this record's copy (see `journal_usable`).
    An S3 source's plan leaves Content-Type, Cache-Control, Content-Disposition
    and the source's user metadata to the GET (null in the manifest); the
    journal holds what the write carried (`JournalRow.sent_headers`).
    """
    if journal_row is None or not journal_row.sent_headers:
        return record
    sent = json.loads(journal_row.sent_headers)
    return replace(
        record,
        content_type=sent["content_type"],
        cache_control=sent["cache_control"],
        content_disposition=sent["content_disposition"],
        user_metadata=sent["user_metadata"],
    )


def journaled_carried(journal_row: JournalRow | None) -> dict[str, str | None] | None:
    """The Content-Encoding, Content-Language and Expires `run` journaled as sent for this copy.

    None when the row does not say: no usable row, or a journal written
    before these were recorded ("not recorded", never "sent none": an older
    run's copies are not failed for headers it did not carry).
    """
    if journal_row is None or not journal_row.sent_headers:
        return None
    sent = json.loads(journal_row.sent_headers)
    return {name: sent[name] for name in CARRIED_HEADERS if name in sent} or None


def headers_from_source(record: ObjectRecord, source: ObjectInfo) -> ObjectRecord:
    """`record` with the headers `run` would send for it, from the source's own (a HEAD or the read).

    For a source whose headers come from the GET (`SourceStore.headers_on_read`)
    when no journal row says what the write carried. The same merge as `run`
    (`migrate.headers.source_headers`): the record's values (the rules') win,
    the source's fill the rest, the rules' user metadata goes on top of the
    source's, and Content-Type falls back to S3's default.
    """
    return replace(
        record,
        content_type=record.content_type or source.content_type or "application/octet-stream",
        cache_control=record.cache_control or source.cache_control,
        content_disposition=record.content_disposition or source.content_disposition,
        user_metadata={**(source.user_metadata or {}), **record.user_metadata},
    )


def now_utc() -> datetime:
    """The current time in UTC (a row's checked_at)."""
    return datetime.now(timezone.utc)


def record_row(record: ObjectRecord, mode: str, **values: Any) -> dict[str, Any]:
    """One report row for `record`: its manifest columns, `checked_mode` and the time, plus `values`."""
    row: dict[str, Any] = {
        "source_bucket": record.source_bucket,
        "source_key": record.source_key,
        "dest_bucket": record.dest_bucket,
        "dest_key": record.dest_key,
        "rule": record.rule,
        "action": record.action,
        "size": record.size,
        "source_etag": record.source_etag,
        "checked_mode": mode,
        "checked_at": now_utc(),
    }
    row.update(values)
    return row


def join_notes(*parts: str) -> str:
    """The non-empty parts joined with "; " (a row's detail)."""
    return "; ".join(p for p in parts if p)



__all__ = [
    "VERIFIED_ACTIONS",
    "MODES",
    "VerifyOptions",
    "VerifyStats",
    "ChecksumComparison",
    "compare_recorded_checksum",
    "compare_metadata",
    "expected_headers",
    "journaled_carried",
    "describe_metadata",
    "metadata_columns",
    "journal_usable",
    "record_row",
    "join_notes",
    "now_utc",
]
