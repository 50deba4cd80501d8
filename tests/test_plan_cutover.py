"""The plan's `cutover:` and `bucket:` sections (issue 14): defaults, values, and refusals with file:line: key."""

from __future__ import annotations

import pytest

from migrate.plan import LifecycleTransition, parse_duration
from tests.test_plan import ENV, MINIMAL, error_of, parse

SECTION = """\
cutover:
  public_buckets: [avatars]
  cdn_base_url: https://d111111abcdef8.cloudfront.net/
  presign_expires: 2h
  serve: {port: 9000, jwt_secret_env: SUPABASE_JWT_SECRET, roles: [service_role, authenticated], jwks_url: "${SUPABASE_URL}/auth/v1/.well-known/jwks.json"}
bucket:
  versioning: true
  encryption: {algorithm: aws:kms, kms_key_id: alias/migrate, bucket_key: true}
  lifecycle:
    - id: cold
      prefix: registry/
      transitions: [{days: 30, storage_class: standard_ia}, {days: 120, storage_class: DEEP_ARCHIVE}]
      expiration_days: 400
"""


def test_defaults_keep_everything_private_and_bound_to_loopback() -> None:
    plan = parse(MINIMAL)
    assert plan.cutover.public_buckets == () and plan.cutover.presign_expires == 3600
    assert plan.cutover.serve.host == "127.0.0.1" and plan.cutover.serve.roles == ("service_role",)
    assert plan.cutover.serve.jwks_url is None  # HS256 with the legacy secret only, unless the plan names the JWKS
    assert plan.bucket.configured is False


def test_values_are_read_and_do_not_change_the_fingerprint() -> None:
    plan = parse(MINIMAL + SECTION)
    assert plan.cutover.public_buckets == ("avatars",)
    assert plan.cutover.cdn_base_url == "https://d111111abcdef8.cloudfront.net"
    assert plan.cutover.presign_expires == 7200
    assert plan.cutover.serve.port == 9000 and plan.cutover.serve.jwt_secret_env == "SUPABASE_JWT_SECRET"
    assert plan.cutover.serve.jwks_url == ENV["SUPABASE_URL"] + "/auth/v1/.well-known/jwks.json"
    assert plan.bucket.versioning is True and plan.bucket.encryption is not None and plan.bucket.encryption.bucket_key
    (rule,) = plan.bucket.lifecycle
    assert rule.transitions == (LifecycleTransition(30, "STANDARD_IA"), LifecycleTransition(120, "DEEP_ARCHIVE"))
    assert parse(MINIMAL).fingerprint() == plan.fingerprint()


@pytest.mark.parametrize(
    "section, line, key, words",
    [
        ("cutover:\n  serve: {jwt_secret: abc}\n", 10, "cutover.serve.jwt_secret", "credentials never go in the plan"),
        ("cutover:\n  serve:\n    jwt_secret_env: ${SUPABASE_JWT_SECRET}\n", 11, "cutover.serve.jwt_secret_env", "without ${}"),
        ("cutover:\n  presign_expires: 8d\n", 10, "cutover.presign_expires", "7 days"),
        ("cutover:\n  cdn_base_url: d111.cloudfront.net\n", 10, "cutover.cdn_base_url", "https:// URL"),
        ("cutover:\n  serve: {jwks_url: jwks.json}\n", 10, "cutover.serve.jwks_url", "expected an http:// or https:// URL, got 'jwks.json'"),
        ("bucket:\n  lifecycle:\n    - {id: a, transitions: [{days: 10, storage_class: STANDARD_IA}]}\n", 11, "bucket.lifecycle[0].transitions[0].days", "at least 30 days"),
        ("bucket:\n  lifecycle:\n    - {id: a, transitions: [{days: 30, storage_class: REDUCED_REDUNDANCY}]}\n", 11, "storage_class", "not one of"),
        ("bucket:\n  lifecycle:\n    - {id: a, tags: {t: x}, abort_incomplete_multipart_days: 3}\n", 11, "bucket.lifecycle[0]", "cannot be combined with tags"),
        ("bucket:\n  lifecycle:\n    - {id: a, prefix: x/}\n", 11, "bucket.lifecycle[0]", "needs an action"),
        ("bucket:\n  lifecycle:\n    - {id: a, expiration_days: 3}\n    - {id: a, expiration_days: 4}\n", 12, "bucket.lifecycle[1].id", "unique"),
        ("bucket:\n  versoning: true\n", 10, "bucket.versoning", "did you mean 'versioning'"),
        ("bucket:\n  encryption: {algorithm: aws:kms}\n", 10, "bucket.encryption", "kms_key_id"),
    ],
)
def test_refusals_name_file_line_and_key(section: str, line: int, key: str, words: str) -> None:
    err = error_of(MINIMAL + section)
    assert err.path == "plans/x.yaml" and err.line == line, str(err)
    assert key in (err.key or ""), str(err)
    assert words in str(err)


def test_parse_duration() -> None:
    assert [parse_duration(v) for v in (90, "90", "15m", "1h", "7d", "45s")] == [90, 90, 900, 3600, 604800, 45]
    for bad in ("0", "8d", "1w", "soon", True):
        with pytest.raises(ValueError):
            parse_duration(bad)  # type: ignore[arg-type]
