"""The YAML plan: examples load, every error names file, line and key, secrets stay out."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from migrate.errors import ExitStatus, PlanError
from migrate.plan import (
    DEFAULT_STORAGE_PRICES,
    MiB,
    BucketSelection,
    S3Source,
    SupabaseSource,
    load_plan,
    parse_plan,
    parse_size,
)
from migrate.redact import redact

PLANS = Path(__file__).resolve().parent.parent / "plans"

SERVICE_KEY = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJlLXZhbHVlLTEyMw"
S3_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
ENV = {
    "SUPABASE_URL": "http://127.0.0.1:54321",
    "SUPABASE_SERVICE_ROLE_KEY": SERVICE_KEY,
    "SUPABASE_SECRET_KEY": SERVICE_KEY,  # plans/*.yaml read the secret key variable; a legacy JWT is accepted there
    "SRC_KEY_ID": "GK31c2f218a2e44f485b94239e",
    "SRC_SECRET": S3_SECRET,
    "PGPASSWORD_FOR_TEST": "catalog-pw-9f8e7d",
}

# Eight lines; whatever a test appends starts at line 9.
MINIMAL = """\
version: 1
source:
  type: supabase
  url: ${SUPABASE_URL}
  key: ${SUPABASE_SERVICE_ROLE_KEY}
  buckets: [plugins]
destination:
  bucket: dest-bucket
"""


def parse(text: str, environ: dict[str, str] | None = None):
    return parse_plan(text, source_name="plans/x.yaml", environ=ENV if environ is None else environ)


def error_of(text: str, environ: dict[str, str] | None = None) -> PlanError:
    with pytest.raises(PlanError) as info:
        parse(text, environ)
    return info.value


# --------------------------------------------------------------------------- the examples


@pytest.mark.parametrize("path", sorted(PLANS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_plan_loads(path):
    environ = {
        **ENV,
        "SUPABASE_S3_ENDPOINT": "http://127.0.0.1:54321/storage/v1/s3",
        "SUPABASE_S3_ACCESS_KEY_ID": "GK0example",
        "SUPABASE_S3_SECRET_ACCESS_KEY": S3_SECRET,
    }
    plan = load_plan(path, environ=environ)
    assert plan.name == path.stem
    assert plan.path == str(path)
    assert plan.version == 1
    assert len(plan.fingerprint()) == 64
    assert SERVICE_KEY not in repr(plan) and S3_SECRET not in repr(plan)


def test_example_plans_take_their_settings_from_the_environment():
    environ = {**ENV, "MIGRATE_DEST_BUCKET": "demo-registry", "MIGRATE_DEST_ENDPOINT_URL": "http://127.0.0.1:8333"}
    plan = load_plan(PLANS / "plugin-registry.yaml", environ=environ)
    assert isinstance(plan.source, SupabaseSource)
    assert plan.source.url == "http://127.0.0.1:54321"
    assert plan.source.key == SERVICE_KEY
    assert plan.source.database_url is None  # ${SUPABASE_DB_URL:-} unset: REST inventory
    assert plan.source.bucket_names == ("plugins",)
    assert plan.source.prefixes_for("plugins") == ("plugins/",)
    assert plan.destination.bucket == "demo-registry"
    assert plan.destination.endpoint_url == "http://127.0.0.1:8333"
    assert plan.destination.region == "us-east-1"
    assert plan.destination.bucket_prefix is False  # one source bucket
    assert [r.name for r in plan.rules] == ["plugin-index", "versioned-packages"]
    assert plan.rules[1].metadata.cache_control == "public, max-age=31536000, immutable"
    assert plan.verify.mode == "deep"

    defaults = load_plan(PLANS / "plugin-registry.yaml", environ=ENV)
    assert defaults.destination.bucket == "plugin-registry"
    assert defaults.destination.endpoint_url is None

    assets = load_plan(PLANS / "app-assets.yaml", environ=ENV)
    assert assets.source.bucket_names == ("avatars", "documents")
    assert assets.destination.bucket_prefix is True  # two buckets share one destination
    assert [t.name for t in assets.tiering] == ["old-documents", "large-documents"]
    assert assets.tiering[1].min_size == 100 * MiB


def test_s3_source_resolves_credentials_from_named_variables():
    plan = load_plan(
        PLANS / "s3-to-s3.yaml",
        environ={
            **ENV,
            "SUPABASE_S3_ENDPOINT": "http://127.0.0.1:54321/storage/v1/s3",
            "SUPABASE_S3_ACCESS_KEY_ID": "GK0example",
            "SUPABASE_S3_SECRET_ACCESS_KEY": S3_SECRET,
        },
    )
    source = plan.source
    assert isinstance(source, S3Source)
    assert source.endpoint_url == "http://127.0.0.1:54321/storage/v1/s3"
    assert (source.access_key_id, source.secret_access_key) == ("GK0example", S3_SECRET)
    assert source.secret_access_key_env == "SUPABASE_S3_SECRET_ACCESS_KEY"
    assert source.buckets == (BucketSelection("plugins"), BucketSelection("documents", ("reports/", "invoices/")))
    assert source.prefixes_for("documents") == ("reports/", "invoices/")
    assert source.prefixes_for("plugins") == ("",)
    assert plan.destination.prefix == "from-supabase/"
    assert plan.transfer.max_bandwidth == 200_000_000
    assert plan.verify.sample_percent == 5.0
    assert S3_SECRET not in repr(plan)


# --------------------------------------------------------------------------- defaults


def test_minimal_plan_gets_documented_defaults():
    plan = parse(MINIMAL)
    assert plan.name == "x"  # the file stem
    assert plan.unmatched == "keep"
    assert plan.rules == ()
    assert plan.destination.on_conflict == "skip"
    assert plan.destination.storage_class is None
    assert plan.destination.prefix == ""
    assert plan.destination.bucket_prefix is False
    assert plan.filters.skip_placeholders is True
    t = plan.transfer
    assert (t.concurrency, t.part_size, t.multipart_threshold, t.max_attempts, t.checksum_algorithm, t.max_bandwidth) == (
        16,
        16 * MiB,
        64 * MiB,
        5,
        "SHA256",
        None,
    )
    assert (plan.verify.mode, plan.verify.concurrency, plan.verify.sample) == ("fast", 16, None)
    assert plan.costs.storage_per_gb_month == DEFAULT_STORAGE_PRICES
    assert plan.costs.storage_price(None) == 0.023
    assert plan.costs.storage_price("DEEP_ARCHIVE") == 0.00099
    assert (plan.costs.put_per_1000, plan.costs.get_per_1000) == (0.005, 0.0004)


@pytest.mark.parametrize(
    ("buckets", "mode", "expected"),
    [
        ("[plugins]", "auto", False),
        ("[plugins, avatars]", "auto", True),
        ("all", "auto", True),
        ("[plugins]", "always", True),
        ("[plugins, avatars]", "never", False),
    ],
)
def test_bucket_prefix_follows_the_number_of_buckets_the_plan_names(buckets, mode, expected):
    text = MINIMAL.replace("[plugins]", buckets) + f"  bucket_prefix: {mode}\n"
    assert parse(text).destination.bucket_prefix is expected


def test_buckets_omitted_or_all_means_every_bucket():
    assert parse(MINIMAL.replace("  buckets: [plugins]\n", "")).source.buckets is None
    assert parse(MINIMAL.replace("[plugins]", "all")).source.all_buckets


def test_multipart_threshold_defaults_to_at_least_the_part_size():
    assert parse(MINIMAL + "transfer:\n  part_size: 128MiB\n").transfer.multipart_threshold == 128 * MiB
    assert parse(MINIMAL + "transfer:\n  part_size: 8MiB\n").transfer.multipart_threshold == 64 * MiB


def test_name_key_and_x_keys():
    plan = parse("name: nightly-copy\nx-defaults: &d {cache_control: no-cache}\n" + MINIMAL)
    assert plan.name == "nightly-copy"


def test_yaml_merge_keys_share_rule_settings():
    plan = parse(
        "x-immutable: &immutable\n  cache_control: 'public, max-age=31536000, immutable'\n  content_type: infer\n"
        + MINIMAL
        + "rules:\n  - name: a\n    <<: *immutable\n    match: 'a/{x}'\n    to: 'b/{x}'\n    content_type: text/plain\n"
    )
    meta = plan.rules[0].metadata
    assert meta.cache_control == "public, max-age=31536000, immutable"
    assert meta.content_type == "text/plain"  # explicit keys win over merged ones


def test_choices_are_case_insensitive_and_canonical():
    plan = parse(MINIMAL + "  storage_class: standard_ia\n  on_conflict: OVERWRITE\n")
    assert (plan.destination.storage_class, plan.destination.on_conflict) == ("STANDARD_IA", "overwrite")


# --------------------------------------------------------------------------- environment


def test_env_interpolation_defaults_and_escapes():
    text = MINIMAL.replace("dest-bucket", "${BUCKET_BASE}-${STAGE:-dev}") + (
        "  region: ${REGION:-eu-west-1}\n"
        "  endpoint_url: ${DEST_ENDPOINT:-}\n"
        "rules:\n"
        "  - name: a\n"
        "    match: 'a/{x}'\n"
        "    to: 'b/{x}'\n"
        "    metadata: {note: 'costs $${HOME} ${STAGE:-dev}'}\n"
    )
    plan = parse(text, {**ENV, "BUCKET_BASE": "assets", "STAGE": ""})
    assert plan.destination.bucket == "assets-dev"  # empty counts as unset for :-
    assert plan.destination.region == "eu-west-1"
    assert plan.destination.endpoint_url is None  # an optional value that expands to nothing
    assert plan.rules[0].metadata.metadata == {"note": "costs ${HOME} dev"}
    plan = parse(text, {**ENV, "BUCKET_BASE": "assets", "STAGE": "prod", "DEST_ENDPOINT": "http://127.0.0.1:8333/"})
    assert plan.destination.bucket == "assets-prod"
    assert plan.destination.endpoint_url == "http://127.0.0.1:8333"


def test_templates_are_not_interpolated():
    plan = parse(MINIMAL + "rules:\n  - name: a\n    match: 'a/${x}/{y}'\n    to: '{y}'\n")
    assert plan.rules[0].match == "a/${x}/{y}"


def test_missing_env_var_names_the_variable_and_the_key():
    err = error_of(MINIMAL.replace("dest-bucket", "${MIGRATE_DEST_BUCKET}"), ENV)
    assert str(err) == (
        "plans/x.yaml:8: destination.bucket: environment variable MIGRATE_DEST_BUCKET is not set; "
        "export it or give a default: ${MIGRATE_DEST_BUCKET:-value}"
    )
    assert (err.path, err.line, err.key) == ("plans/x.yaml", 8, "destination.bucket")
    assert err.exit_status is ExitStatus.USAGE


def test_missing_secret_env_var_says_to_export_it():
    environ = {k: v for k, v in ENV.items() if k != "SUPABASE_SERVICE_ROLE_KEY"}
    assert str(error_of(MINIMAL, environ)) == (
        "plans/x.yaml:5: source.key: environment variable SUPABASE_SERVICE_ROLE_KEY is not set; "
        "export it before running migrate (the plan never holds the secret itself)"
    )


def test_required_value_that_expands_to_nothing():
    assert str(error_of(MINIMAL.replace("dest-bucket", "${MIGRATE_DEST_BUCKET:-}"))) == (
        "plans/x.yaml:8: destination.bucket: is empty (MIGRATE_DEST_BUCKET: not set or empty); "
        "name the S3 bucket, e.g. bucket: ${MIGRATE_DEST_BUCKET}"
    )


def test_unclosed_and_invalid_references():
    assert str(error_of(MINIMAL.replace("dest-bucket", "${MIGRATE_DEST_BUCKET"))) == (
        "plans/x.yaml:8: destination.bucket: unclosed '${'; write ${NAME} or ${NAME:-default} (or $${ for a literal ${)"
    )
    assert str(error_of(MINIMAL.replace("dest-bucket", "${1BAD}"))) == (
        "plans/x.yaml:8: destination.bucket: invalid environment reference ${1BAD}; write ${NAME} or ${NAME:-default}"
    )


# --------------------------------------------------------------------------- secrets


def test_literal_jwt_service_key_is_refused_without_echoing_it():
    literal = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.bGl0ZXJhbC1rZXktaW4tZmlsZQ"
    err = error_of(MINIMAL.replace("${SUPABASE_SERVICE_ROLE_KEY}", literal))
    assert str(err) == (
        "plans/x.yaml:5: source.key: looks like a literal secret (a JWT); never put keys in the plan: "
        "write key: ${SUPABASE_SERVICE_ROLE_KEY} and export SUPABASE_SERVICE_ROLE_KEY"
    )
    assert literal not in str(err)


@pytest.mark.parametrize(
    ("value", "shape"),
    [
        ("sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz", "a Supabase secret key"),
        ("0123456789abcdef0123456789abcdef0123456789", "a long key"),
    ],
)
def test_other_literal_keys_are_refused(value, shape):
    err = error_of(MINIMAL.replace("${SUPABASE_SERVICE_ROLE_KEY}", value))
    assert str(err) == (
        f"plans/x.yaml:5: source.key: looks like a literal secret ({shape}); never put keys in the plan: "
        "write key: ${SUPABASE_SERVICE_ROLE_KEY} and export SUPABASE_SERVICE_ROLE_KEY"
    )
    assert value not in str(err)


def test_any_literal_text_in_the_key_is_refused():
    assert str(error_of(MINIMAL.replace("${SUPABASE_SERVICE_ROLE_KEY}", "hunter2"))) == (
        "plans/x.yaml:5: source.key: must be an environment variable reference such as "
        "${SUPABASE_SERVICE_ROLE_KEY}, not literal text; the plan never holds the key itself"
    )


def test_a_secret_hidden_in_a_default_is_refused():
    text = MINIMAL.replace("${SUPABASE_SERVICE_ROLE_KEY}", "${SUPABASE_SERVICE_ROLE_KEY:-" + SERVICE_KEY + "}")
    err = error_of(text)
    assert str(err) == (
        "plans/x.yaml:5: source.key: a default (${SUPABASE_SERVICE_ROLE_KEY:-...}) is not allowed here: "
        "it would put the secret in the plan; write ${SUPABASE_SERVICE_ROLE_KEY}"
    )
    assert SERVICE_KEY not in str(err)


def test_a_jwt_anywhere_in_the_plan_is_refused():
    err = error_of(MINIMAL + "rules:\n  - name: a\n    match: 'a/{x}'\n    to: 'b/{x}'\n    metadata:\n"
                   f"      token-copy: {SERVICE_KEY}\n")
    assert str(err) == (
        "plans/x.yaml:14: rules[0].metadata.token-copy: looks like a literal secret (a JWT); never put credentials "
        "in the plan: put it in an environment variable and write ${ENV_VAR}"
    )


def test_credential_keys_are_refused_and_their_values_masked():
    value = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0LXVuaXF1ZQ"
    err = error_of(MINIMAL + f"  secret_access_key: {value}\n")
    assert str(err) == (
        "plans/x.yaml:9: destination.secret_access_key: credentials never go in the plan file; use the AWS "
        "credential chain, profile: NAME, or access_key_id_env/secret_access_key_env naming environment variables"
    )
    assert redact(value) == "***"


def test_database_url_with_a_literal_password_is_refused():
    text = MINIMAL.replace("  buckets", "  database_url: postgresql://postgres:pw-in-file-123@db:5432/postgres\n  buckets")
    err = error_of(text)
    assert str(err) == (
        "plans/x.yaml:6: source.database_url: has a literal password; put the URL in an environment variable "
        "(database_url: ${SUPABASE_DB_URL}) or just the password (postgresql://postgres:${PGPASSWORD}@host:5432/postgres)"
    )
    assert "pw-in-file-123" not in str(err)
    default = MINIMAL.replace(
        "  buckets", "  database_url: ${SUPABASE_DB_URL:-postgresql://u:pw-in-default@db/postgres}\n  buckets"
    )
    assert "has a literal password" in str(error_of(default))
    query = MINIMAL.replace("  buckets", "  database_url: postgresql://db/postgres?user=u&password=qpw\n  buckets")
    assert "has a literal password" in str(error_of(query))


def test_database_url_password_from_the_environment_is_accepted_and_masked():
    text = MINIMAL.replace(
        "  buckets", "  database_url: postgresql://postgres:${PGPASSWORD_FOR_TEST}@db:5432/postgres\n  buckets"
    )
    plan = parse(text)
    assert plan.source.database_url == "postgresql://postgres:catalog-pw-9f8e7d@db:5432/postgres"
    assert plan.source.database_url_redacted == "postgresql://postgres:***@db:5432/postgres"
    assert plan.to_dict()["source"]["database_url"] == "postgresql://postgres:***@db:5432/postgres"
    assert "catalog-pw-9f8e7d" not in repr(plan)
    assert redact("login failed: catalog-pw-9f8e7d") == "login failed: ***"
    # The whole URL from one variable, no password at all: fine too.
    whole = parse(MINIMAL.replace("  buckets", "  database_url: ${DB}\n  buckets"), {**ENV, "DB": "postgresql://postgres@127.0.0.1/postgres"})
    assert whole.source.database_url == "postgresql://postgres@127.0.0.1/postgres"


def test_secrets_stay_out_of_repr_to_dict_and_fingerprint():
    plan = parse(MINIMAL)
    other_key = parse(MINIMAL, {**ENV, "SUPABASE_SERVICE_ROLE_KEY": SERVICE_KEY + "-rotated"})
    assert plan.source.key == SERVICE_KEY
    assert SERVICE_KEY not in repr(plan)
    assert SERVICE_KEY not in str(plan.to_dict())
    assert plan.fingerprint() == other_key.fingerprint()


# --------------------------------------------------------------------------- S3 credentials


S3_MINIMAL = MINIMAL.replace(
    "  type: supabase\n  url: ${SUPABASE_URL}\n  key: ${SUPABASE_SERVICE_ROLE_KEY}\n",
    "  type: s3\n  endpoint_url: http://127.0.0.1:8333\n",
)  # six lines; line 5 is buckets, so inserted lines start at line 5


def test_s3_credentials_come_from_named_variables():
    plan = parse(S3_MINIMAL.replace("  buckets", "  access_key_id_env: SRC_KEY_ID\n  secret_access_key_env: SRC_SECRET\n  buckets"))
    assert plan.source.access_key_id == "GK31c2f218a2e44f485b94239e"
    assert plan.source.secret_access_key == S3_SECRET
    assert S3_SECRET not in repr(plan) and S3_SECRET not in str(plan.to_dict())
    chain = parse(S3_MINIMAL)
    assert (chain.source.access_key_id, chain.source.profile) == (None, None)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            "  access_key_id_env: SRC_KEY_ID\n",
            "plans/x.yaml:5: source.secret_access_key_env: access_key_id_env needs secret_access_key_env too; "
            "give both, or neither to use the AWS credential chain",
        ),
        (
            "  access_key_id_env: NOPE_ID\n  secret_access_key_env: SRC_SECRET\n",
            "plans/x.yaml:5: source.access_key_id_env: environment variable NOPE_ID is not set; export it, or "
            "remove access_key_id_env to use the AWS credential chain",
        ),
        (
            "  access_key_id_env: AKIAIOSFODNN7EXAMPLE\n  secret_access_key_env: SRC_SECRET\n",
            "plans/x.yaml:5: source.access_key_id_env: looks like a literal secret (an AWS access key id); this key "
            "takes the NAME of the environment variable that holds it, e.g. MY_ACCESS_KEY_ID",
        ),
        (
            "  access_key_id_env: SRC_KEY_ID\n  secret_access_key_env: ${SRC_SECRET}\n",
            "plans/x.yaml:6: source.secret_access_key_env: takes the variable name itself; write SRC_SECRET, "
            "without ${}",
        ),
        (
            "  profile: prod\n  access_key_id_env: SRC_KEY_ID\n  secret_access_key_env: SRC_SECRET\n",
            "plans/x.yaml:5: source.profile: use either a profile or access_key_id_env/secret_access_key_env, "
            "not both",
        ),
    ],
)
def test_s3_credential_errors(lines, message):
    assert str(error_of(S3_MINIMAL.replace("  buckets", lines + "  buckets"))) == message


def test_resolved_s3_secrets_are_registered_for_redaction():
    secret = "s3-secret-only-this-test-7c1d0e"
    parse(
        S3_MINIMAL.replace("  buckets", "  access_key_id_env: SRC_KEY_ID\n  secret_access_key_env: ONLY_HERE\n  buckets"),
        {**ENV, "ONLY_HERE": secret},
    )
    assert redact(f"boom {secret}") == "boom ***"


def test_literal_secret_access_key_in_an_env_key_is_refused_and_masked():
    err = error_of(S3_MINIMAL.replace("  buckets", f"  access_key_id_env: SRC_KEY_ID\n  secret_access_key_env: {S3_SECRET}\n  buckets"))
    assert str(err).startswith("plans/x.yaml:6: source.secret_access_key_env: looks like a literal secret (a long key)")
    assert S3_SECRET not in str(err)


# --------------------------------------------------------------------------- structure errors


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "  bucket_name: x\n",
            "plans/x.yaml:9: destination.bucket_name: unknown key; did you mean 'bucket'? expected one of: "
            "access_key_id_env, bucket, bucket_prefix, endpoint_url, kms_key_id, on_conflict, path, prefix, profile, "
            "region, secret_access_key_env, server_side_encryption, session_token_env, storage_class, type",
        ),
        (
            "rulez: []\n",
            "plans/x.yaml:9: rulez: unknown key; did you mean 'rules'? expected one of: backup, bucket, costs, cutover, destination, filters, "
            "name, rules, source, tiering, transfer, unmatched, verify, version",
        ),
        (
            "  bucket: other-bucket\n",
            "plans/x.yaml:9: destination.bucket: duplicate key (first at line 8); the second would silently win",
        ),
        (
            "transfer:\n  concurrency: sixteen\n",
            "plans/x.yaml:10: transfer.concurrency: expected a whole number, got the text 'sixteen'",
        ),
        (
            "transfer:\n  concurrency: '16'\n",
            "plans/x.yaml:10: transfer.concurrency: expected a whole number, got the text '16'",
        ),
        (
            "transfer:\n  concurrency: 0\n",
            "plans/x.yaml:10: transfer.concurrency: must be between 1 and 512, got 0",
        ),
        (
            "transfer: [16]\n",
            "plans/x.yaml:9: transfer: expected a mapping, got a list",
        ),
        (
            "rules:\n  name: a\n",
            "plans/x.yaml:10: rules: expected a list of rules (- name: ..., match: ..., to: ...), got a mapping",
        ),
        (
            "filters:\n  skip_placeholders: maybe\n",
            "plans/x.yaml:10: filters.skip_placeholders: expected true or false, got the text 'maybe'",
        ),
        (
            "filters:\n  exclude: {a: b}\n",
            "plans/x.yaml:10: filters.exclude: expected a glob or a list of it, got a mapping",
        ),
        (
            "unmatched: drop\n",
            "plans/x.yaml:9: unmatched: 'drop' is not one of: keep, exclude",
        ),
        (
            "  storage_class: STANDARD_AI\n",
            "plans/x.yaml:9: destination.storage_class: 'STANDARD_AI' is not one of: STANDARD, REDUCED_REDUNDANCY, "
            "STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER, DEEP_ARCHIVE, GLACIER_IR, OUTPOSTS, "
            "EXPRESS_ONEZONE; did you mean 'STANDARD_IA'?",
        ),
        (
            "  on_conflict: replace\n",
            "plans/x.yaml:9: destination.on_conflict: 'replace' is not one of: skip, overwrite, fail",
        ),
        (
            "  server_side_encryption: aws:kms\n",
            "plans/x.yaml:9: destination.server_side_encryption: aws:kms needs destination.kms_key_id "
            "(a key id, key ARN or alias/NAME)",
        ),
        (
            "  kms_key_id: alias/x\n",
            "plans/x.yaml:9: destination.kms_key_id: kms_key_id is only used with server_side_encryption: aws:kms",
        ),
        (
            "  prefix: /migrated\n",
            "plans/x.yaml:9: destination.prefix: prefix starts with '/' (an empty first segment)",
        ),
        (
            "  prefix: a/../b\n",
            "plans/x.yaml:9: destination.prefix: prefix has a '..' segment; clients resolve it, so the object "
            "would be unreachable",
        ),
    ],
)
def test_structure_errors_name_file_line_and_key(extra, message):
    assert str(error_of(MINIMAL + extra)) == message


def test_kms_with_a_key_id_is_accepted():
    plan = parse(MINIMAL + "  server_side_encryption: aws:kms\n  kms_key_id: alias/migrate\n")
    assert (plan.destination.server_side_encryption, plan.destination.kms_key_id) == ("aws:kms", "alias/migrate")


def test_bad_destination_bucket_name():
    assert str(error_of(MINIMAL.replace("dest-bucket", "Dest_Bucket"))) == (
        "plans/x.yaml:8: destination.bucket: 'Dest_Bucket' is not a valid S3 bucket name (3-63 characters: "
        "lowercase letters, digits, '.' and '-', starting and ending with a letter or digit)"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "plans/x.yaml: the plan is empty; start with 'version: 1', then source: and destination:"),
        ("- a\n", "plans/x.yaml:1: expected a mapping with version, source and destination, got a list"),
        ("source: {}\n", "plans/x.yaml:1: version: required key is missing; start the plan with 'version: 1'"),
        ("version: 2\n", "plans/x.yaml:1: version: unsupported plan version 2; this migrate reads version: 1"),
        (
            "version: 1\ndestination: {bucket: b-b-b}\n",
            "plans/x.yaml:1: source: required key is missing; say where objects come from (type: supabase or s3)",
        ),
        (
            MINIMAL.split("destination:")[0],
            "plans/x.yaml:1: destination: required key is missing; name at least the S3 bucket to copy into",
        ),
        (
            MINIMAL.replace("  type: supabase\n", ""),
            "plans/x.yaml:3: source.type: required key is missing; one of: supabase, s3. supabase reads the "
            "Storage REST API; s3 reads any S3-compatible endpoint (including Supabase's /storage/v1/s3)",
        ),
        (
            MINIMAL.replace("${SUPABASE_URL}", "https://abc.supabase.co/storage/v1/s3"),
            "plans/x.yaml:4: source.url: that is the S3 protocol endpoint: use type: s3 with endpoint_url, or "
            "give the project URL",
        ),
        (
            MINIMAL.replace("${SUPABASE_URL}", "abc.supabase.co"),
            "plans/x.yaml:4: source.url: expected an http:// or https:// URL, got 'abc.supabase.co'",
        ),
        (
            MINIMAL.replace("  buckets: [plugins]\n", "  prefixes: [a/, a/b/]\n"),
            "plans/x.yaml:6: source.prefixes[1]: prefix 'a/b/' is inside prefix 'a/': both would list the same "
            "objects; keep 'a/'",
        ),
        (
            MINIMAL.replace("[plugins]", "[plugins, plugins]"),
            "plans/x.yaml:6: source.buckets[1]: bucket 'plugins' is listed twice (first at line 6)",
        ),
    ],
)
def test_top_level_errors(text, message):
    assert str(error_of(text)) == message


def test_invalid_yaml_reports_the_file_and_line():
    err = error_of(MINIMAL + "rules:\n  - name: a\n   match: x\n")
    assert str(err) == (
        "plans/x.yaml:11: invalid YAML: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block collection)"
    )
    assert (err.line, err.key) == (11, None)
    assert str(error_of(MINIMAL + "rules:\n\t- name: a\n")) == (
        "plans/x.yaml:10: invalid YAML: found character '\\t' that cannot start any token "
        "(while scanning for the next token); YAML indents with spaces, not tabs"
    )
    assert str(error_of(MINIMAL + "---\nversion: 1\n")) == (
        "plans/x.yaml:9: invalid YAML: expected a single document in the stream, but found another document"
    )


def test_load_plan_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PlanError) as info:
        load_plan(missing)
    assert str(info.value) == f"{missing}: plan file not found; check the path (plans live in plans/)"


# --------------------------------------------------------------------------- rules


RULE = "rules:\n  - name: packages\n    match: '{match}'\n    to: '{to}'\n"  # match on line 11, to on line 12


def rules_error(match: str, to: str) -> str:
    return str(error_of(MINIMAL + RULE.replace("{match}", match).replace("{to}", to)))


def test_bad_template_names_file_line_key_and_hint():
    assert rules_error("x/{a*}", "y") == (
        "plans/x.yaml:11: rules[0].match: unknown placeholder syntax '{a*}'; use {name} for one segment or "
        "{name**} for several"
    )


def test_to_referencing_a_missing_placeholder():
    assert rules_error("plugins/{name}/{version}/{file**}", "registry/{name}/v{versoin}/{file}") == (
        "plans/x.yaml:12: rules[0].to: {versoin} is not captured by match; available here: {bucket}, {file}, "
        "{name}, {version}"
    )


def test_bad_regex_names_the_problem():
    text = MINIMAL + "rules:\n  - name: a\n    regex: 'x/(?P<name>[^/]+'\n    to: 'y/{name}'\n"
    assert str(error_of(text)) == (
        "plans/x.yaml:11: rules[0].regex: regex does not compile: missing ), unterminated subpattern at position 2"
    )


def test_to_referencing_a_group_the_regex_lacks():
    text = MINIMAL + "rules:\n  - name: a\n    regex: 'x/(?P<name>[^/]+)'\n    to: 'y/{file}'\n"
    assert str(error_of(text)) == (
        "plans/x.yaml:12: rules[0].to: {file} is not captured by regex; available here: {bucket}, {name}"
    )


def test_second_rule_errors_point_at_the_second_rule():
    text = MINIMAL + (
        "rules:\n"
        "  - name: a\n"
        "    match: 'a/{x}'\n"
        "    to: 'b/{x}'\n"
        "  - name: b\n"
        "    match: 'c/{x}'\n"
        "    to: '/d/{x}'\n"
    )
    assert str(error_of(text)) == (
        "plans/x.yaml:15: rules[1].to: starts with '/', which gives every key an empty first segment; drop the "
        "leading '/'"
    )


@pytest.mark.parametrize(
    ("rule_text", "message"),
    [
        (
            "  - match: 'a/{x}'\n    to: 'b'\n",
            "plans/x.yaml:10: rules[0].name: required key is missing; give the rule a name; it is recorded in the "
            "manifest",
        ),
        (
            "  - name: a\n    to: 'b'\n",
            "plans/x.yaml:10: rules[0].match: required key is missing; give match: '<template>' such as "
            "'plugins/{name}/{file**}' (or regex: for a regular expression)",
        ),
        (
            "  - name: a\n    match: 'a/{x}'\n",
            "plans/x.yaml:10: rules[0].to: required key is missing; say where matching keys go, e.g. to: "
            "'registry/{name}/{file}' (or exclude: true to leave them out)",
        ),
        (
            "  - name: a\n    match: 'a/{x}'\n    regex: 'a/.*'\n    to: b\n",
            "plans/x.yaml:12: rules[0].regex: give match (a template) or regex, not both",
        ),
        (
            "  - name: a\n    match: 'a/{x}'\n    exclude: true\n    to: b\n",
            "plans/x.yaml:13: rules[0].to: a rule with exclude: true has no 'to'; remove one of them",
        ),
        (
            "  - name: a\n    match: 'a/{x}'\n    to: b\n  - name: a\n    match: 'c'\n    to: d\n",
            "plans/x.yaml:13: rules[1].name: duplicate rule name 'a' (also rules[0]); names are recorded in the "
            "manifest, so each must be unique",
        ),
        (
            "  - name: a\n    bucket: plugin\n    match: 'a/{x}'\n    to: b\n",
            "plans/x.yaml:11: rules[0].bucket: bucket 'plugin' is not among source.buckets (plugins)",
        ),
        (
            "  - name: a\n    match: 'a/{x}'\n    to: b\n    content_type: json\n",
            "plans/x.yaml:13: rules[0].content_type: 'json' is not a MIME type; write e.g. application/json, or "
            "infer to guess from the destination key's extension",
        ),
        (
            "  - name: a\n    match: 'a/{x}'\n    to: b\n    cache_control: \"max-age=1\\nX-Evil: 1\"\n",
            "plans/x.yaml:13: rules[0].cache_control: must be printable ASCII on one line (it becomes an HTTP header)",
        ),
        (
            "  - name: a\n    match: 'a/{x}'\n    to: b\n    metadata:\n      Owner: me\n",
            "plans/x.yaml:14: rules[0].metadata.Owner: 'Owner' is not a valid metadata name: lowercase letters, "
            "digits, '-', '_' and '.' (S3 stores names in lowercase: write 'owner')",
        ),
        (
            "  - name: a\n    match: 'a/{x}'\n    to: b\n    metadata:\n      x-amz-meta-owner: me\n",
            "plans/x.yaml:14: rules[0].metadata.x-amz-meta-owner: write the name without the x-amz-meta- prefix: "
            "'owner'",
        ),
        (
            "  - name: a\n    match: 'a/{x}'\n    to: b\n    metadata:\n      owner: Jürgen\n",
            "plans/x.yaml:14: rules[0].metadata.owner: S3 metadata values must be printable ASCII on one line",
        ),
        (
            "  - name: a\n    match: 'a/{x}'\n    to: b\n    storage_class: glacierr\n",
            "plans/x.yaml:13: rules[0].storage_class: 'glacierr' is not one of: STANDARD, REDUCED_REDUNDANCY, "
            "STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER, DEEP_ARCHIVE, GLACIER_IR, OUTPOSTS, "
            "EXPRESS_ONEZONE; did you mean 'GLACIER'?",
        ),
    ],
)
def test_rule_errors(rule_text, message):
    assert str(error_of(MINIMAL + "rules:\n" + rule_text)) == message


def test_rules_load_in_order_with_their_metadata():
    plan = parse(
        MINIMAL
        + "rules:\n"
        "  - name: index\n"
        "    bucket: plugins\n"
        "    match: 'plugins/{name}/index.json'\n"
        "    to: 'registry/{name}/index.json'\n"
        "    content_type: application/json\n"
        "    cache_control: 'public, max-age=60'\n"
        "    content_disposition: inline\n"
        "    storage_class: standard\n"
        "    metadata: {origin: supabase, revision: 2}\n"
        "  - name: drop\n"
        "    regex: 'scratch/.*'\n"
        "    exclude: true\n"
    )
    index, drop = plan.rules
    assert (index.name, index.buckets, index.match, index.to) == (
        "index",
        ("plugins",),
        "plugins/{name}/index.json",
        "registry/{name}/index.json",
    )
    meta = index.metadata
    assert (meta.content_type, meta.cache_control, meta.content_disposition, meta.storage_class) == (
        "application/json",
        "public, max-age=60",
        "inline",
        "STANDARD",
    )
    assert meta.metadata == {"origin": "supabase", "revision": "2"}
    assert (drop.regex, drop.exclude, drop.to) == ("scratch/.*", True, None)


# --------------------------------------------------------------------------- sizes, filters, tiers, settings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (5242880, 5 * MiB),
        ("512", 512),
        ("512B", 512),
        ("10MiB", 10 * MiB),
        ("10 MiB", 10 * MiB),
        ("10mib", 10 * MiB),
        ("1GB", 10**9),
        ("1.5GiB", 3 * 512 * MiB),
        ("2KB", 2000),
        ("1TiB", 1 << 40),
    ],
)
def test_parse_size(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10M", "ambiguous unit 'M' in '10M'; write MB (powers of 1000) or MiB (powers of 1024)"),
        ("10 parsecs", "unknown unit 'parsecs' in '10 parsecs'; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"),
        ("lots", "'lots' is not a size; write a number of bytes or e.g. 10MiB, 1GB"),
        ("1.0001KB", "'1.0001KB' is not a whole number of bytes"),
        (-1, "a size cannot be negative"),
        (True, "expected a size, got true/false"),
    ],
)
def test_parse_size_refuses_unclear_sizes(value, message):
    with pytest.raises(ValueError) as info:
        parse_size(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("transfer:\n  part_size: 10M\n", "plans/x.yaml:10: transfer.part_size: ambiguous unit 'M' in '10M'; write MB (powers of 1000) or MiB (powers of 1024)"),
        ("transfer:\n  part_size: 1MiB\n", "plans/x.yaml:10: transfer.part_size: must be at least 5 MiB, got 1 MiB"),
        ("transfer:\n  part_size: 6GiB\n", "plans/x.yaml:10: transfer.part_size: must be at most 5 GiB, got 6 GiB"),
        ("transfer:\n  multipart_threshold: 4MiB\n", "plans/x.yaml:10: transfer.multipart_threshold: must be at least 5 MiB, got 4 MiB"),
        ("transfer:\n  part_size: 1.5\n", "plans/x.yaml:10: transfer.part_size: expected a size such as 16MiB or a number of bytes, got the number 1.5"),
        ("transfer:\n  checksum_algorithm: md5\n", "plans/x.yaml:10: transfer.checksum_algorithm: 'md5' is not one of: SHA256, CRC32, CRC32C, CRC64NVME"),
        ("filters:\n  min_size: 2MiB\n  max_size: 1MiB\n", "plans/x.yaml:10: filters.min_size: min_size (2 MiB) is larger than max_size (1 MiB)"),
        ("filters:\n  modified_after: 2025-01-01\n  modified_before: 2024-01-01\n", "plans/x.yaml:10: filters.modified_after: modified_after must be earlier than modified_before (objects with modified_after <= last modified < modified_before are kept)"),
        ("filters:\n  modified_after: yesterday\n", "plans/x.yaml:10: filters.modified_after: 'yesterday' is not an ISO 8601 date; write e.g. 2024-01-31 or 2024-01-31T12:00:00Z"),
        ("filters:\n  exclude: ['tmp/**', 'a**']\n", "plans/x.yaml:10: filters.exclude[1]: glob 'a**': ** must be a whole path segment (as in a/**/b); use * inside a segment"),
        ("tiering:\n  - storage_class: GLACIER\n", "plans/x.yaml:10: tiering[0]: a tier needs a condition (bucket, include, min_size, max_size, modified_after or modified_before); for every object set destination.storage_class instead"),
        ("tiering:\n  - min_size: 1GiB\n", "plans/x.yaml:10: tiering[0].storage_class: required key is missing; one of: STANDARD, REDUCED_REDUNDANCY, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER, DEEP_ARCHIVE, GLACIER_IR, OUTPOSTS, EXPRESS_ONEZONE"),
        ("verify:\n  sample: 0%\n", "plans/x.yaml:10: verify.sample: expected a number of objects (1000) or a percentage ('5%', above 0 and at most 100)"),
        ("verify:\n  mode: thorough\n", "plans/x.yaml:10: verify.mode: 'thorough' is not one of: quick, fast, deep"),
        ("costs:\n  storage_per_gb_month: {STANDARD_AI: 0.01}\n", "plans/x.yaml:10: costs.storage_per_gb_month.STANDARD_AI: 'STANDARD_AI' is not a storage class; one of: STANDARD, REDUCED_REDUNDANCY, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER, DEEP_ARCHIVE, GLACIER_IR, OUTPOSTS, EXPRESS_ONEZONE"),
        ("costs:\n  put_per_1000: -1\n", "plans/x.yaml:10: costs.put_per_1000: must be a price of 0 or more, got -1"),
        ("costs:\n  get_per_1000: cheap\n", "plans/x.yaml:10: costs.get_per_1000: expected a number, got the text 'cheap'"),
    ],
)
def test_setting_errors(extra, message):
    assert str(error_of(MINIMAL + extra)) == message


def test_filters_tiers_and_settings_load():
    plan = parse(
        MINIMAL
        + "filters:\n"
        "  include: 'plugins/**'\n"
        "  exclude: ['**/*.tmp', 'tmp/**']\n"
        "  min_size: 1\n"
        "  max_size: 5GiB\n"
        "  modified_after: 2024-01-01\n"
        "  modified_before: '2025-06-30T12:00:00+02:00'\n"
        "  skip_placeholders: false\n"
        "tiering:\n"
        "  - {bucket: plugins, include: '**/*.zip', min_size: 100MiB, storage_class: glacier_ir}\n"
        "transfer:\n"
        "  concurrency: 4\n"
        "  part_size: 8MiB\n"
        "  multipart_threshold: 5242880\n"
        "  max_attempts: 3\n"
        "  checksum_algorithm: crc64nvme\n"
        "  max_bandwidth: 50MiB/s\n"
        "  max_requests_per_second: 25.5\n"
        "verify: {mode: deep, concurrency: 8, sample: 250}\n"
        "costs:\n"
        "  currency: EUR\n"
        "  storage_per_gb_month: {STANDARD: 0.025, glacier_ir: 0.005}\n"
        "  put_per_1000: 0.0055\n"
    )
    f = plan.filters
    assert f.include == ("plugins/**",)
    assert f.exclude == ("**/*.tmp", "tmp/**")
    assert (f.min_size, f.max_size) == (1, 5 << 30)
    assert f.modified_after == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert f.modified_before == datetime(2025, 6, 30, 10, 0, tzinfo=timezone.utc)
    assert f.skip_placeholders is False
    (tier,) = plan.tiering
    assert (tier.name, tier.buckets, tier.include, tier.min_size, tier.storage_class) == (
        "tier-1",
        ("plugins",),
        ("**/*.zip",),
        100 * MiB,
        "GLACIER_IR",
    )
    t = plan.transfer
    assert (t.concurrency, t.part_size, t.multipart_threshold, t.max_attempts, t.checksum_algorithm, t.max_bandwidth) == (
        4,
        8 * MiB,
        5 * MiB,
        3,
        "CRC64NVME",
        50 * MiB,
    )
    assert t.max_requests_per_second == 25.5
    assert (plan.verify.mode, plan.verify.concurrency, plan.verify.sample) == ("deep", 8, 250)
    c = plan.costs
    assert c.currency == "EUR"
    assert c.storage_price("STANDARD") == 0.025
    assert c.storage_price("GLACIER_IR") == 0.005
    assert c.storage_price("DEEP_ARCHIVE") == DEFAULT_STORAGE_PRICES["DEEP_ARCHIVE"]  # not overridden
    assert c.storage_price("OUTPOSTS") is None
    assert (c.put_per_1000, c.get_per_1000) == (0.0055, 0.0004)


# --------------------------------------------------------------------------- fingerprint


FINGERPRINTED = MINIMAL + """\
rules:
  - name: packages
    match: "plugins/{name}/{version}/{file**}"
    to: "registry/{name}/v{version}/{file}"
    cache_control: "public, max-age=31536000, immutable"
transfer:
  part_size: 16MiB
  concurrency: 16
"""


def test_fingerprint_ignores_whitespace_comments_key_order_and_spelling():
    reformatted = """\
# The same plan, written differently.
version: 1

destination: {bucket: "dest-bucket"}   # flow style
source:
  buckets:
    - plugins
  key: "${SUPABASE_SERVICE_ROLE_KEY}"
  url: ${SUPABASE_URL}
  type: SUPABASE
transfer:
  concurrency: 16
  part_size: 16777216      # the same size, in bytes
rules:
  - to:    'registry/{name}/v{version}/{file}'
    name:  packages
    cache_control: "public, max-age=31536000, immutable"
    match: 'plugins/{name}/{version}/{file**}'
"""
    assert parse(FINGERPRINTED).fingerprint() == parse(reformatted).fingerprint()
    assert parse(FINGERPRINTED).fingerprint() == parse(FINGERPRINTED).fingerprint()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('to: "registry/{name}/v{version}/{file}"', 'to: "registry/{name}/{version}/{file}"'),
        ("cache_control: \"public, max-age=31536000, immutable\"", "cache_control: \"public, max-age=60\""),
        ("bucket: dest-bucket", "bucket: other-bucket"),
        ("part_size: 16MiB", "part_size: 32MiB"),
        ("buckets: [plugins]", "buckets: [plugins, avatars]"),
    ],
)
def test_fingerprint_changes_when_the_migration_changes(old, new):
    assert old in FINGERPRINTED
    assert parse(FINGERPRINTED).fingerprint() != parse(FINGERPRINTED.replace(old, new)).fingerprint()


def test_fingerprint_changes_when_rule_order_changes():
    two = MINIMAL + "rules:\n  - {name: a, match: 'x/{p**}', to: 'a/{p}'}\n  - {name: b, match: 'x/{q}', to: 'b/{q}'}\n"
    swapped = MINIMAL + "rules:\n  - {name: b, match: 'x/{q}', to: 'b/{q}'}\n  - {name: a, match: 'x/{p**}', to: 'a/{p}'}\n"
    assert parse(two).fingerprint() != parse(swapped).fingerprint()


def test_fingerprint_ignores_tuning_name_and_secrets():
    base = parse(FINGERPRINTED).fingerprint()
    assert parse(FINGERPRINTED.replace("concurrency: 16", "concurrency: 64")).fingerprint() == base
    assert parse("name: renamed\n" + FINGERPRINTED).fingerprint() == base
    assert parse(FINGERPRINTED + "verify: {mode: deep}\n").fingerprint() == base
    assert parse(FINGERPRINTED, {**ENV, "SUPABASE_SERVICE_ROLE_KEY": "eyJx.eyJy.other"}).fingerprint() == base


@pytest.mark.parametrize(
    ("name", "fingerprint"),
    [
        ("app-assets.yaml", "db4b8dfaec95acb33cfc68437edf810e2f226d6b382edcb73f9a77094e8d9dbe"),
        ("plugin-registry.yaml", "e21ef799a58ce73ac5614e8f0ab81278d440419e073d1ed0384c49ac9c27c070"),
    ],
)
def test_fingerprints_match_those_of_earlier_versions_so_runs_resume_after_an_upgrade(name, fingerprint):
    # Computed by migrate at d2ea3b9 (the plan as dataclasses) with this environment.
    environ = {**ENV, "SUPABASE_DB_URL": "postgresql://u:pw@h/db"}
    assert load_plan(PLANS / name, environ=environ).fingerprint() == fingerprint


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("rules: [5]\n", "plans/x.yaml:9: rules[0]: expected a rule (a mapping with name, match and to), got the number 5"),
        ("tiering: [x]\n", "plans/x.yaml:9: tiering[0]: expected a tier (a mapping with storage_class and a condition), got the text 'x'"),
        ("filters: 5\n", "plans/x.yaml:9: filters: expected a mapping, got the number 5"),
        ("<<: [1]\n", "plans/x.yaml:9: expected a mapping to merge, got the number 1"),
    ],
)
def test_a_list_item_of_the_wrong_kind_says_what_each_item_is(extra, message):
    assert str(error_of(MINIMAL + extra)) == message


def test_a_choice_that_expands_to_nothing_takes_the_default():
    plan = parse(MINIMAL + "  on_conflict: ${MODE:-}\nunmatched: ''\n")
    assert (plan.destination.on_conflict, plan.unmatched) == ("skip", "keep")
    assert str(error_of(MINIMAL + "tiering:\n  - {min_size: 1, storage_class: ''}\n")).startswith(
        "plans/x.yaml:10: tiering[0].storage_class: required key is missing; one of: STANDARD,"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "must be more than 0 requests per second, got 0"),
        ("fast", "expected a number of requests per second, got the text 'fast'"),
    ],
)
def test_max_requests_per_second_is_a_positive_number(value, message):
    assert str(error_of(MINIMAL + f"transfer:\n  max_requests_per_second: {value}\n")) == f"plans/x.yaml:10: transfer.max_requests_per_second: {message}"
