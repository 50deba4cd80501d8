"""The destination bucket's lifecycle rules, versioning and default encryption, from the plan's `bucket:` section.

    changes = plan_bucket_changes(plan)      # reads the bucket, writes nothing
    print(changes.diff_text())
    apply_bucket_changes(plan, changes)      # `migrate bucket apply PLAN --yes`

Rules this tool writes carry the ID prefix `migrate-` (`RULE_ID_PREFIX`);
rules without it belong to someone else and are kept as they are. Applying
the same plan twice changes nothing the second time: current and desired
configurations are compared in one normal form (`normal_rule`).

Versioning: `true` enables it, `false` suspends it (S3 cannot switch it off
once enabled), absent leaves it alone. Encryption absent is left alone too.
All calls go through `migrate.retry` (transient faults are retried).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from migrate.errors import UserInputError
from migrate.retry import call_with_retries

if TYPE_CHECKING:
    from migrate.plan import BucketSettings, DefaultEncryption, LifecycleRule, Plan
    from migrate.stores.s3 import S3Store

RULE_ID_PREFIX = "migrate-"


def lifecycle_rule_shape(rule: "LifecycleRule") -> dict[str, Any]:
    """A plan rule as S3's LifecycleRule (boto3 shape), its ID prefixed with `migrate-`."""
    tags = [{"Key": name, "Value": value} for name, value in sorted(rule.tags.items())]
    if not tags:
        rule_filter: dict[str, Any] = {"Prefix": rule.prefix}
    elif len(tags) == 1 and not rule.prefix:
        rule_filter = {"Tag": tags[0]}
    else:
        rule_filter = {"And": {"Prefix": rule.prefix, "Tags": tags} if rule.prefix else {"Tags": tags}}
    shape: dict[str, Any] = {"ID": RULE_ID_PREFIX + rule.id, "Status": "Enabled", "Filter": rule_filter}
    if rule.transitions:
        shape["Transitions"] = [{"Days": t.days, "StorageClass": t.storage_class} for t in rule.transitions]
    if rule.expiration_days is not None:
        shape["Expiration"] = {"Days": rule.expiration_days}
    if rule.noncurrent_expiration_days is not None:
        shape["NoncurrentVersionExpiration"] = {"NoncurrentDays": rule.noncurrent_expiration_days}
    if rule.abort_incomplete_multipart_days is not None:
        shape["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": rule.abort_incomplete_multipart_days}
    return shape


def normal_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """One comparable form of a rule: legacy top-level Prefix, empty filters and tag order do not matter."""
    out = {key: value for key, value in rule.items() if value not in (None, [], {})}
    rule_filter = out.pop("Filter", None) or {}
    prefix = out.pop("Prefix", None)
    if prefix is not None and not rule_filter:
        rule_filter = {"Prefix": prefix}
    tags: list[Any] = []
    if "Tag" in rule_filter:
        tags = [rule_filter["Tag"]]
    if "And" in rule_filter:
        tags = list(rule_filter["And"].get("Tags") or [])
        prefix = rule_filter["And"].get("Prefix") or ""
    else:
        prefix = rule_filter.get("Prefix") or ""
    out["Filter"] = {"Prefix": prefix, "Tags": sorted((t["Key"], t["Value"]) for t in tags)}
    for extra in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
        if extra in rule_filter:
            out["Filter"][extra] = rule_filter[extra]
    if "Transitions" in out:
        out["Transitions"] = sorted(({"Days": t.get("Days"), "StorageClass": t.get("StorageClass")} for t in out["Transitions"]), key=lambda t: t["Days"] or 0)
    return out


def encryption_rule_shape(encryption: "DefaultEncryption") -> dict[str, Any]:
    default: dict[str, Any] = {"SSEAlgorithm": encryption.algorithm}
    if encryption.kms_key_id:
        default["KMSMasterKeyID"] = encryption.kms_key_id
    return {"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": encryption.bucket_key}


def _normal_encryption(rule: dict[str, Any] | None) -> dict[str, Any] | None:
    if not rule:
        return None
    default = rule.get("ApplyServerSideEncryptionByDefault") or {}
    return {
        "SSEAlgorithm": default.get("SSEAlgorithm"),
        "KMSMasterKeyID": default.get("KMSMasterKeyID"),
        "BucketKeyEnabled": bool(rule.get("BucketKeyEnabled", False)),
    }


@dataclass
class BucketChanges:
    """The difference between the bucket's configuration and the plan's, and what applying it writes."""

    bucket: str
    added: list[str] = field(default_factory=list)  # rule IDs
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # ours, no longer in the plan
    kept_foreign: list[str] = field(default_factory=list)  # not ours: left alone
    lifecycle: list[dict[str, Any]] | None = None  # the merged rules to write; None: no lifecycle change
    versioning: tuple[str | None, str] | None = None  # (current, desired)
    encryption: tuple[dict[str, Any] | None, dict[str, Any]] | None = None  # (current, desired rule)
    rule_details: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # id -> (current, desired)

    @property
    def empty(self) -> bool:
        return self.lifecycle is None and self.versioning is None and self.encryption is None

    def diff_text(self) -> str:
        """A readable diff, one line per change (`+` add, `~` change, `-` remove, `=` kept)."""
        if self.empty:
            return f"s3://{self.bucket}: configuration already matches the plan; nothing to apply"
        lines = [f"s3://{self.bucket}:"]
        if self.versioning is not None:
            lines.append(f"  ~ versioning: {self.versioning[0] or 'never enabled'} -> {self.versioning[1]}")
        if self.encryption is not None:
            current = _normal_encryption(self.encryption[0])
            lines.append(f"  ~ default encryption: {json.dumps(current) if current else 'none'} -> {json.dumps(_normal_encryption(self.encryption[1]))}")
        for rule_id in self.added:
            lines.append(f"  + lifecycle rule {rule_id}: {json.dumps(self.rule_details[rule_id][1], sort_keys=True)}")
        for rule_id in self.changed:
            current, desired = self.rule_details[rule_id]
            lines.append(f"  ~ lifecycle rule {rule_id}: {json.dumps(current, sort_keys=True)} -> {json.dumps(desired, sort_keys=True)}")
        for rule_id in self.removed:
            lines.append(f"  - lifecycle rule {rule_id} (written by migrate, no longer in the plan)")
        for rule_id in self.kept_foreign:
            lines.append(f"  = lifecycle rule {rule_id} (not written by migrate; kept)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "changes": not self.empty,
            "lifecycle": {"added": self.added, "changed": self.changed, "removed": self.removed, "kept": self.kept_foreign},
            "versioning": None if self.versioning is None else {"current": self.versioning[0], "desired": self.versioning[1]},
            "encryption": None if self.encryption is None else {"current": _normal_encryption(self.encryption[0]), "desired": _normal_encryption(self.encryption[1])},
        }


def diff_lifecycle(current: list[dict[str, Any]], desired: list[dict[str, Any]], changes: BucketChanges) -> None:
    """Fill `changes` with the lifecycle difference and the merged rule list (foreign rules first, unchanged)."""
    ours_now = {rule.get("ID", ""): rule for rule in current if str(rule.get("ID", "")).startswith(RULE_ID_PREFIX)}
    foreign = [rule for rule in current if not str(rule.get("ID", "")).startswith(RULE_ID_PREFIX)]
    changes.kept_foreign = [str(rule.get("ID", "(no id)")) for rule in foreign]
    for rule in desired:
        rule_id = rule["ID"]
        if rule_id not in ours_now:
            changes.added.append(rule_id)
            changes.rule_details[rule_id] = (None, normal_rule(rule))
        elif normal_rule(ours_now[rule_id]) != normal_rule(rule):
            changes.changed.append(rule_id)
            changes.rule_details[rule_id] = (normal_rule(ours_now[rule_id]), normal_rule(rule))
    wanted = {rule["ID"] for rule in desired}
    changes.removed = sorted(rule_id for rule_id in ours_now if rule_id not in wanted)
    if changes.added or changes.changed or changes.removed:
        changes.lifecycle = foreign + desired


def plan_bucket_changes(plan: "Plan", *, destination: "S3Store | None" = None) -> BucketChanges:
    """Read the destination bucket's configuration and compare it with the plan's `bucket:` section."""
    from migrate.stores import s3_cutover
    from migrate.stores.factory import open_destination

    settings: BucketSettings = plan.bucket
    if not settings.configured:
        raise UserInputError(f"{plan.path or plan.name}: the plan has no bucket: section; add lifecycle, versioning or encryption (see README)")
    bucket = plan.destination.bucket
    store = destination or open_destination(plan, concurrency=1)
    attempts = plan.transfer.max_attempts
    try:
        store.check_bucket(bucket)
        changes = BucketChanges(bucket=bucket)
        if settings.versioning is not None:
            current_status = call_with_retries(lambda: s3_cutover.get_versioning(store, bucket), max_attempts=attempts)
            desired_status = "Enabled" if settings.versioning else "Suspended"
            if current_status != desired_status and not (desired_status == "Suspended" and current_status is None):
                changes.versioning = (current_status, desired_status)
        if settings.encryption is not None:
            current_rule = call_with_retries(lambda: s3_cutover.get_default_encryption(store, bucket), max_attempts=attempts)
            desired_rule = encryption_rule_shape(settings.encryption)
            if _normal_encryption(current_rule) != _normal_encryption(desired_rule):
                changes.encryption = (current_rule, desired_rule)
        current_rules = call_with_retries(lambda: s3_cutover.get_lifecycle_rules(store, bucket), max_attempts=attempts)
        diff_lifecycle(current_rules, [lifecycle_rule_shape(rule) for rule in settings.lifecycle], changes)
        return changes
    finally:
        if destination is None:
            store.close()


def apply_bucket_changes(plan: "Plan", changes: BucketChanges, *, destination: "S3Store | None" = None) -> None:
    """Write what `changes` says: versioning first (noncurrent-version rules need it), then encryption, then lifecycle."""
    from migrate.stores import s3_cutover
    from migrate.stores.factory import open_destination

    store = destination or open_destination(plan, concurrency=1)
    bucket, attempts = changes.bucket, plan.transfer.max_attempts
    try:
        if changes.versioning is not None:
            enabled = changes.versioning[1] == "Enabled"
            call_with_retries(lambda: s3_cutover.put_versioning(store, bucket, enabled=enabled), max_attempts=attempts)
        if changes.encryption is not None:
            rule = changes.encryption[1]
            call_with_retries(lambda: s3_cutover.put_default_encryption(store, bucket, rule), max_attempts=attempts)
        if changes.lifecycle is not None:
            rules = changes.lifecycle
            call_with_retries(lambda: s3_cutover.put_lifecycle_rules(store, bucket, rules), max_attempts=attempts)
    finally:
        if destination is None:
            store.close()
