"""The `cutover:` and `bucket:` sections of a plan (issue 14).

`cutover:` says how old Supabase URLs map to new ones (`migrate urls`), how
the redirect route runs (`migrate serve`) and how long presigned URLs live
(`migrate presign`); `bucket:` is the destination bucket's versioning,
default encryption and lifecycle rules (`migrate bucket apply`). Part of the
plan model (see `migrate.plan.model`); neither section is in the plan's
fingerprint, so changing them never invalidates a run.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from migrate.plan.endpoints import Encryption
from migrate.plan.values import (
    TEXT_SCHEMA, BucketNames, EnvName, Flag, HttpUrl, Invalid, OptText, PlanModel, Say, Text, Verbatim, check, choice, count,
    describe, fail, mapping, names, text, typed,
)

# SigV4 presigned URLs live at most 7 days (AWS S3 "Sharing objects with presigned URLs").
MAX_PRESIGN_SECONDS = 7 * 86400
LIFECYCLE_TRANSITION_CLASSES: tuple[str, ...] = ("STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")
_DURATION = re.compile(r"\s*(?P<number>\d+)\s*(?P<unit>s|m|h|d|)\s*\Z", re.IGNORECASE)
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_DAYS = 100_000


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


def _duration(value: Any, info: ValidationInfo) -> int:
    native = getattr(value, "value", value)  # a YAML number or true/false, or text
    if isinstance(native, str):
        native = text(native, info).strip()
    elif not isinstance(native, int):
        fail(f"expected a duration such as 1h, got {describe(value)}")
    try:
        return parse_duration(native)
    except ValueError as err:
        raise Invalid(str(err)) from None


Duration = typed(
    int, _duration,
    {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_PRESIGN_SECONDS}, {"type": "string", "pattern": "^\\s*\\d+\\s*[sSmMhHdD]?\\s*$|\\$\\{"}]},
)


# --------------------------------------------------------------------------- cutover


def _role(role: str) -> str:
    return role.strip() if role.strip() else fail("is empty")


class ServeSettings(PlanModel):
    """The redirect route (`migrate serve`): where it listens and how it checks who may open private objects."""

    # `jwt_secret:` or `secret_key:` with the value itself is refused by the loader with this hint (its credential keys).
    credentials_hint = "write jwt_secret_env: SUPABASE_JWT_SECRET or secret_key_env: NAME (the variable's name) and export it"
    host: Annotated[OptText, AfterValidator(lambda v: (v or "127.0.0.1").strip())] = Field(
        "127.0.0.1", validate_default=True, description="Address to listen on; default 127.0.0.1 (this machine only)."
    )
    port: count(1, 65535) = Field(8787, description="Port to listen on.")  # type: ignore[valid-type]
    jwt_secret_env: EnvName = Field(
        None, description="NAME of the environment variable holding the project's JWT secret (verifies JWTs and signed-URL tokens)."
    )
    secret_key_env: EnvName = Field(None, description="NAME of the environment variable holding an optional `sb_secret_...` key.")
    jwks_url: HttpUrl = Field(
        None,
        description=(
            "The project's JWKS (https://<ref>.supabase.co/auth/v1/.well-known/jwks.json): verifies ES256/RS256 tokens of its "
            "asymmetric JWT signing keys; not given: only HS256 tokens (jwt_secret_env) verify."
        ),
    )
    roles: Annotated[names("a role", _role), AfterValidator(lambda v: v or ("service_role",))] = Field(
        ("service_role",), description="JWT roles that may open objects of private buckets (RLS policies are not evaluated by the route)."
    )


class CutoverSettings(PlanModel):
    """Where migrated objects are read from after the switch (`migrate urls`, `migrate serve`, `migrate presign`)."""

    public_buckets: BucketNames = Field((), description="Source buckets that are public in Supabase: their objects get public URLs and 301s.")
    public_base_url: HttpUrl = Field(None, description="Base URL public objects are read at; default: the destination bucket's own S3 URL.")
    cdn_base_url: HttpUrl = Field(
        None, description="A CDN in front of the bucket (e.g. https://d111111abcdef8.cloudfront.net); wins over public_base_url."
    )
    presign_expires: Duration = Field(3600, description="How long presigned URLs live: seconds or e.g. `15m`, `1h`, `7d` (at most 7 days).")
    serve: ServeSettings = Field(default_factory=lambda: ServeSettings(), description="The redirect route (`migrate serve`).")


# --------------------------------------------------------------------------- bucket


class LifecycleTransition(PlanModel):
    """Move objects to another storage class some days after creation."""

    days: Annotated[count(0, _MAX_DAYS), Say("days after creation, e.g. days: 30")] = Field(  # type: ignore[valid-type]
        description="Days after creation."
    )
    storage_class: Annotated[choice(*LIFECYCLE_TRANSITION_CLASSES), Say("one of: " + ", ".join(LIFECYCLE_TRANSITION_CLASSES))] = Field(  # type: ignore[valid-type]
        description="Storage class to move objects to."
    )
    positional = ("days", "storage_class")  # LifecycleTransition(30, "STANDARD_IA")

    @model_validator(mode="after")
    def _ia_minimum(self) -> "LifecycleTransition":
        if self.storage_class in ("STANDARD_IA", "ONEZONE_IA") and self.days < 30:
            # AWS refuses transitions to the IA classes before 30 days (S3 lifecycle constraints).
            fail(f"S3 needs at least 30 days before {self.storage_class}, got {self.days}", at=("days",))
        return self


_Days = count(1, _MAX_DAYS)


class LifecycleRule(PlanModel):
    """One lifecycle rule; on the bucket its ID is `migrate-<id>` so later applies know it is ours."""

    id: Annotated[Text, check(re.compile(r"[A-Za-z0-9._-]{1,200}").fullmatch, "ids are at most 200 letters, digits, '.', '_' or '-', got {0!r}"), Say("name the rule, e.g. id: logs-to-glacier")] = Field(
        description="The rule's name (unique; at most 200 letters, digits, '.', '_' or '-')."
    )
    prefix: Annotated[Verbatim, AfterValidator(lambda v: v or "")] = Field("", description="Only keys starting with this prefix; empty: every key.")
    tags: mapping("tag name to value", lambda name, raw, info: (name, text(raw, info)), TEXT_SCHEMA) = Field(  # type: ignore[valid-type]
        default_factory=dict, description="Only objects with all these tags (name: value)."
    )
    transitions: Annotated[tuple[LifecycleTransition, ...], Say(expected="a list of {days, storage_class}", item="a transition (a mapping with days and storage_class)")] = Field(
        (), description="Storage class changes, in order of increasing days."
    )
    expiration_days: _Days = Field(None, description="Delete objects this many days after creation.")  # type: ignore[valid-type]
    noncurrent_expiration_days: _Days = Field(None, description="Delete noncurrent versions this many days after they became noncurrent.")  # type: ignore[valid-type]
    abort_incomplete_multipart_days: _Days = Field(  # type: ignore[valid-type]
        None, description="Abort multipart uploads not completed after this many days (not with tags)."
    )

    @field_validator("transitions")
    @classmethod
    def _increasing(cls, transitions: tuple[LifecycleTransition, ...]) -> tuple[LifecycleTransition, ...]:
        for index in range(1, len(transitions)):
            if transitions[index].days <= transitions[index - 1].days:
                fail("transitions go in order of increasing days", at=(index, "days"))
        return transitions

    @model_validator(mode="after")
    def _actions(self) -> "LifecycleRule":
        if not (self.transitions or self.expiration_days or self.noncurrent_expiration_days or self.abort_incomplete_multipart_days):
            fail("a rule needs an action: transitions, expiration_days, noncurrent_expiration_days or abort_incomplete_multipart_days")
        if self.tags and self.abort_incomplete_multipart_days:
            # S3 rejects AbortIncompleteMultipartUpload in a rule filtered by tags (uploads have no tags yet).
            fail("abort_incomplete_multipart_days cannot be combined with tags; give it its own rule")
        if self.expiration_days is not None and self.transitions and self.expiration_days <= self.transitions[-1].days:
            fail("expiration_days must come after the last transition", at=("expiration_days",))
        return self


class DefaultEncryption(PlanModel):
    """The bucket's default server-side encryption."""

    algorithm: Annotated[Encryption, Say("one of: AES256, aws:kms")] = Field(description="`AES256` or `aws:kms`.")  # type: ignore[valid-type]
    kms_key_id: OptText = Field(None, description="KMS key id, key ARN or alias/NAME; only with `algorithm: aws:kms`, which needs it.")
    bucket_key: Flag = Field(False, description="Use an S3 Bucket Key (fewer KMS requests).")
    positional = ("algorithm", "kms_key_id", "bucket_key")  # DefaultEncryption("aws:kms", "alias/x", True)

    @model_validator(mode="after")
    def _kms(self) -> "DefaultEncryption":
        if (self.algorithm == "aws:kms") != (self.kms_key_id is not None):
            fail("kms_key_id goes with algorithm: aws:kms, and aws:kms needs it")
        return self


class BucketSettings(PlanModel):
    """The destination bucket's configuration (`migrate bucket apply`); a part not given is left alone."""

    versioning: Flag = Field(
        None, description="Turn versioning on (true) or suspend it (false); not given: leave it alone."
    )
    encryption: DefaultEncryption | None = Field(None, description="Default encryption; not given: leave it alone.")
    lifecycle: Annotated[tuple[LifecycleRule, ...], Say(expected="a list of rules (- id: ..., prefix: ...)", item="a lifecycle rule (a mapping with id and an action)")] = Field(
        (), description="Lifecycle rules (IDs `migrate-<id>` on the bucket); rules of others are kept."
    )

    @property
    def configured(self) -> bool:
        """The plan's `bucket:` section gives anything at all."""
        return bool(self.model_fields_set)

    @field_validator("lifecycle")
    @classmethod
    def _unique(cls, rules: tuple[LifecycleRule, ...]) -> tuple[LifecycleRule, ...]:
        ids = [rule.id for rule in rules]
        for index, rule_id in enumerate(ids):
            if rule_id in ids[:index]:
                fail(f"duplicate rule id {rule_id!r} (also lifecycle[{ids.index(rule_id)}]); ids are unique", at=(index, "id"))
        return rules
