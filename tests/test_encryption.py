"""Server-side encryption per rule (migrate/encryption.py), like the storage class.

AES256 is checked at a real SeaweedFS (it stores and reports SSE-S3).
SSE-KMS cannot be tested on SeaweedFS (it has no KMS: a PUT with aws:kms
answers InternalError), so for KMS the headers `run` sends are checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from migrate.encryption import EncryptionSettings
from migrate.plan import parse_plan
from migrate.records import ObjectRecord
from migrate.stores.s3 import write_settings
from migrate.transfer import Transfer, TransferOptions

PLAN = """version: 1
name: sse
source: {type: s3, buckets: [src-bucket], endpoint_url: 'http://127.0.0.1:1'}
destination: {bucket: dst-bucket, endpoint_url: 'http://127.0.0.1:1', server_side_encryption: AES256}
rules:
  - {name: secrets, match: "secret/{f**}", to: "s/{f}", server_side_encryption: "aws:kms", kms_key_id: "arn:aws:kms:eu-west-1:111122223333:key/k1"}
  - {name: rest, match: "{f**}", to: "{f}"}
"""


def test_rule_encryption_overrides_the_destinations() -> None:
    plan = parse_plan(PLAN, source_name="sse.yaml")
    settings = EncryptionSettings.from_plan(plan)
    assert settings.for_rule("secrets") == ("aws:kms", "arn:aws:kms:eu-west-1:111122223333:key/k1")
    assert settings.for_rule("rest") == settings.for_rule(None) == ("AES256", None)


def test_a_rule_kms_key_without_aws_kms_is_refused() -> None:
    from migrate.errors import PlanError

    bad = PLAN.replace('server_side_encryption: "aws:kms", ', "")
    with pytest.raises(PlanError, match=r"sse.yaml:6: rules\[0\].kms_key_id: kms_key_id is only used with server_side_encryption: aws:kms"):
        parse_plan(bad, source_name="sse.yaml")


def test_kms_headers_sent_for_the_rules_objects() -> None:
    options = TransferOptions(server_side_encryption="AES256", encryption_by_rule={"secrets": ("aws:kms", "key-1")})
    transfer = Transfer.__new__(Transfer)  # only _write_args is exercised: no stores, no pool
    transfer.options = options
    secret = ObjectRecord(source_bucket="b", source_key="secret/a", size=1, rule="secrets")
    plain = ObjectRecord(source_bucket="b", source_key="a", size=1, rule="rest")
    assert {k: v for k, v in write_settings(as_headers=True, **transfer._write_args(secret, None)).items() if "encryption" in k} == {
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": "key-1",
    }
    assert {k: v for k, v in write_settings(as_headers=True, **transfer._write_args(plain, None)).items() if "encryption" in k} == {
        "x-amz-server-side-encryption": "AES256"
    }


def test_aes256_for_one_rule_only_at_the_destination_and_verified(
    supabase_server: Any, seaweed: Any, make_supabase_bucket: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_cli import SOURCE, Env

    world = Env(supabase_server, seaweed, make_supabase_bucket(), tmp_path, monkeypatch)
    world.upload(SOURCE)
    world.write_plan(
        rules="""
  - name: index
    match: "plugins/{name}/index.json"
    to: "registry/{name}/index.json"
    cache_control: "public, max-age=60"
    server_side_encryption: AES256
  - name: packages
    match: "plugins/{name}/{version}/{file**}"
    to: "registry/{name}/v{version}/{file}"
    cache_control: "public, max-age=31536000, immutable"
"""
    )
    assert world.migrate("plan") == 0
    assert world.migrate("run") == 0
    for key in SOURCE:
        head = world.s3.head_object(Bucket=world.dest, Key=world.dest_key(key))
        assert head.get("ServerSideEncryption") == ("AES256" if key.endswith("index.json") else None), key
    capsys.readouterr()
    assert world.migrate("verify") == 0, capsys.readouterr().out
    # Rewrite the index without SSE behind migrate's back: verify names it.
    index = world.dest_key("plugins/alpha/index.json")
    world.s3.put_object(Bucket=world.dest, Key=index, Body=world.data["plugins/alpha/index.json"], CacheControl="public, max-age=60",
                        ContentType=world.s3.head_object(Bucket=world.dest, Key=index)["ContentType"], Metadata={"uploader": "u2"})
    assert world.migrate("verify") == 3
    assert "metadata-differs 1" in capsys.readouterr().out
