"""`migrate bucket apply`: lifecycle rules, versioning and default encryption on the destination bucket.

Where each call is tested:
- versioning, default encryption (AES256) and lifecycle rules with
  expiration, noncurrent-version expiration and abort-incomplete-multipart
  (prefix and tag filters), merged with a rule we did not write: SeaweedFS,
  which implements all of these;
- lifecycle transitions to STANDARD_IA, GLACIER_IR, GLACIER, DEEP_ARCHIVE:
  moto's server mode (`moto[server]`, started here on 127.0.0.1 from the
  venv), because SeaweedFS 4.48 answers a rule with Transitions with 501
  NotImplemented (pinned by `test_seaweedfs_refuses_lifecycle_transitions`,
  so we notice when it gains them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import boto3
import botocore.exceptions
import httpx
import pytest

from migrate.cli import main
from migrate.stack.process import free_port

FOREIGN_RULE = {"ID": "keep-logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 90}}

LIFECYCLE = """
bucket:
  versioning: true
  encryption: {algorithm: AES256}
  lifecycle:
    - id: packages-cold
      prefix: registry/
      transitions:
        - {days: 30, storage_class: STANDARD_IA}
        - {days: 90, storage_class: GLACIER_IR}
        - {days: 180, storage_class: GLACIER}
        - {days: 365, storage_class: DEEP_ARCHIVE}
      noncurrent_expiration_days: 30
    - id: scratch
      tags: {tier: scratch}
      expiration_days: 7
    - id: uploads
      abort_incomplete_multipart_days: 3
"""


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 in server mode on 127.0.0.1 (a free port); stopped by PID after the module."""
    port = free_port()
    child = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                assert child.poll() is None and time.monotonic() < deadline, "moto server did not start"
                time.sleep(0.2)
        yield url
    finally:
        child.terminate()
        child.wait(timeout=30)


def _write_plan(path: Path, *, bucket: str, section: str) -> None:
    path.write_text(
        f"""version: 1
name: bucket-{bucket}
source: {{type: s3, buckets: [unused-source]}}
destination:
  bucket: {bucket}
  endpoint_url: ${{TEST_S3_ENDPOINT}}
  region: us-east-1
{section}"""
    )


def _apply(plan: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["bucket", "apply", str(plan), "--json", *args]) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_lifecycle_diff_apply_merge_and_idempotence_on_moto(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TEST_S3_ENDPOINT", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "moto-test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "moto-test-secret")
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = f"life-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [FOREIGN_RULE]})
    plan = tmp_path / "bucket.yaml"
    _write_plan(plan, bucket=bucket, section=LIFECYCLE)

    # Dry run: the diff, and nothing changes.
    assert main(["bucket", "apply", str(plan)]) == 0
    text = capsys.readouterr().out
    for line in ("+ lifecycle rule migrate-packages-cold", "+ lifecycle rule migrate-scratch", "+ lifecycle rule migrate-uploads",
                 "= lifecycle rule keep-logs (not written by migrate; kept)", "~ versioning: never enabled -> Enabled", "Dry run: nothing was changed"):
        assert line in text, line
    assert [r["ID"] for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]] == ["keep-logs"]
    assert "Status" not in client.get_bucket_versioning(Bucket=bucket)

    applied = _apply(plan, "--yes", capsys=capsys)
    assert applied["applied"] and applied["lifecycle"]["added"] == ["migrate-packages-cold", "migrate-scratch", "migrate-uploads"]
    rules = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert set(rules) == {"keep-logs", "migrate-packages-cold", "migrate-scratch", "migrate-uploads"}
    assert rules["keep-logs"]["Expiration"] == {"Days": 90}
    assert [(t["Days"], t["StorageClass"]) for t in rules["migrate-packages-cold"]["Transitions"]] == [
        (30, "STANDARD_IA"), (90, "GLACIER_IR"), (180, "GLACIER"), (365, "DEEP_ARCHIVE")]
    assert rules["migrate-packages-cold"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    assert rules["migrate-scratch"]["Filter"] == {"Tag": {"Key": "tier", "Value": "scratch"}}
    assert rules["migrate-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 3}
    assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    # Second apply: nothing to do.
    again = _apply(plan, "--yes", capsys=capsys)
    assert again["changes"] is False and again["applied"] is False

    # A rule dropped from the plan and one changed: our rule goes, theirs stays.
    _write_plan(plan, bucket=bucket, section=LIFECYCLE.replace("expiration_days: 7", "expiration_days: 14").split("    - id: uploads")[0])
    assert main(["bucket", "apply", str(plan), "--yes"]) == 0
    text = capsys.readouterr().out
    assert "~ lifecycle rule migrate-scratch" in text and "- lifecycle rule migrate-uploads" in text and "Applied." in text
    rules = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert set(rules) == {"keep-logs", "migrate-packages-cold", "migrate-scratch"}
    assert rules["migrate-scratch"]["Expiration"] == {"Days": 14}


SEAWEED_SECTION = """
bucket:
  versioning: true
  encryption: {algorithm: AES256}
  lifecycle:
    - {id: old-versions, prefix: registry/, noncurrent_expiration_days: 30}
    - {id: scratch, tags: {tier: scratch}, expiration_days: 7}
    - {id: uploads, abort_incomplete_multipart_days: 3}
"""


def test_versioning_encryption_and_expiry_rules_on_seaweedfs(
    seaweed: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TEST_S3_ENDPOINT", seaweed.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    client = seaweed.client()
    client.put_bucket_lifecycle_configuration(Bucket=s3_bucket, LifecycleConfiguration={"Rules": [FOREIGN_RULE]})
    plan = tmp_path / "bucket.yaml"
    _write_plan(plan, bucket=s3_bucket, section=SEAWEED_SECTION)
    dry = _apply(plan, capsys=capsys)
    assert dry["changes"] and not dry["applied"] and dry["versioning"] == {"current": None, "desired": "Enabled"}
    assert dry["lifecycle"] == {"added": ["migrate-old-versions", "migrate-scratch", "migrate-uploads"], "changed": [], "removed": [], "kept": ["keep-logs"]}
    assert "Status" not in client.get_bucket_versioning(Bucket=s3_bucket)
    assert [r["ID"] for r in client.get_bucket_lifecycle_configuration(Bucket=s3_bucket)["Rules"]] == ["keep-logs"]

    assert _apply(plan, "--yes", capsys=capsys)["applied"]
    assert client.get_bucket_versioning(Bucket=s3_bucket)["Status"] == "Enabled"
    encryption = client.get_bucket_encryption(Bucket=s3_bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert encryption["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    rules = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=s3_bucket)["Rules"]}
    assert set(rules) == {"keep-logs", "migrate-old-versions", "migrate-scratch", "migrate-uploads"}
    assert rules["keep-logs"]["Expiration"] == {"Days": 90}
    assert rules["migrate-scratch"]["Filter"] == {"Tag": {"Key": "tier", "Value": "scratch"}}
    assert rules["migrate-old-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30

    again = _apply(plan, "--yes", capsys=capsys)
    assert again["changes"] is False and again["applied"] is False


def test_seaweedfs_refuses_lifecycle_transitions(seaweed: Any, s3_bucket: str) -> None:
    rule = {"ID": "x", "Status": "Enabled", "Filter": {"Prefix": ""}, "Transitions": [{"Days": 30, "StorageClass": "STANDARD_IA"}]}
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        seaweed.client().put_bucket_lifecycle_configuration(Bucket=s3_bucket, LifecycleConfiguration={"Rules": [rule]})
    assert refused.value.response["Error"]["Code"] == "NotImplemented"


def test_plan_without_bucket_section_is_exit_2(seaweed: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TEST_S3_ENDPOINT", seaweed.endpoint_url)
    plan = tmp_path / "bucket.yaml"
    _write_plan(plan, bucket=s3_bucket, section="")
    assert main(["bucket", "apply", str(plan)]) == 2
    assert "no bucket: section" in capsys.readouterr().err


def test_rules_read_back_in_other_shapes_are_not_a_change() -> None:
    """AWS may answer a rule in another shape than we wrote it (legacy top-level Prefix, tags reordered,
    an empty Filter for "everything"); those are the same rule and must not make a second apply write."""
    from migrate.bucket_config import BucketChanges, diff_lifecycle, lifecycle_rule_shape
    from migrate.plan import LifecycleRule, LifecycleTransition

    ours = [
        LifecycleRule(id="everything", abort_incomplete_multipart_days=3),
        LifecycleRule(id="tagged", prefix="logs/", tags={"b": "2", "a": "1"}, expiration_days=9),
        LifecycleRule(id="cold", prefix="x/", transitions=(LifecycleTransition(30, "STANDARD_IA"), LifecycleTransition(90, "GLACIER"))),
    ]
    read_back = [
        {"ID": "migrate-everything", "Status": "Enabled", "Filter": {}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3}},
        {"ID": "migrate-tagged", "Status": "Enabled", "Expiration": {"Days": 9},
         "Filter": {"And": {"Prefix": "logs/", "Tags": [{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "1"}]}}},
        {"ID": "migrate-cold", "Status": "Enabled", "Prefix": "x/",
         "Transitions": [{"Days": 90, "StorageClass": "GLACIER"}, {"Days": 30, "StorageClass": "STANDARD_IA"}]},
    ]
    changes = BucketChanges(bucket="b")
    diff_lifecycle(read_back, [lifecycle_rule_shape(rule) for rule in ours], changes)
    assert changes.empty and not (changes.added or changes.changed or changes.removed)
    # A real difference still is one.
    read_back[1]["Expiration"] = {"Days": 10}
    changes = BucketChanges(bucket="b")
    diff_lifecycle(read_back, [lifecycle_rule_shape(rule) for rule in ours], changes)
    assert changes.changed == ["migrate-tagged"] and changes.lifecycle is not None
