"""`migrate verify` against a real SeaweedFS: copy with `run`, tamper, audit.

Every tamper is one a real migration can suffer: an object deleted, cut
short, overwritten with other bytes of the same size, re-uploaded with the
wrong Content-Type, a stray object left under the destination prefix.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import sqlite3
import time
import tracemalloc
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import polars as pl
import pytest

from migrate.errors import AccessDenied, BucketNotFound, ExitStatus, ServiceUnavailable
from migrate.journal import TransferJournal
from migrate.progress import RecordingProgress
from migrate.records import Action, ObjectRecord, frame_to_records, records_to_frame
from migrate.report import CSV_FILE, HTML_FILE, REPORT_SCHEMA, load_report
from migrate.stack.faultproxy import FaultProxy, FaultRule
from migrate.stores.base import ObjectInfo
from migrate.stores.s3 import S3Location, S3Store
from migrate.checksums import MiB
from migrate.transfer import TransferOptions, transfer_objects
from migrate.verify import (
    VerifyOptions,
    catalog_cross_check,
    compare_recorded_checksum,
    inventory_frame,
    verify_migration,
    verify_records,
)

PART = 5 * MiB
PREFIX = "moved/"


def _store(seaweed: Any, endpoint_url: str | None = None, **overrides: Any) -> S3Store:
    location = S3Location(
        endpoint_url=endpoint_url or seaweed.endpoint_url,
        region=seaweed.region,
        access_key_id=seaweed.access_key,
        secret_access_key=overrides.get("secret_access_key", seaweed.secret_key),
    )
    return S3Store(location, timeout=20)


def _body(seed: str, size: int) -> bytes:
    return (hashlib.sha256(seed.encode()).digest() * (size // 32 + 1))[:size]


@dataclass
class Migrated:
    """A finished `run` (S3 -> S3, keys renamed under PREFIX) to audit."""

    store: S3Store
    client: Any
    source: str
    dest: str
    records: list[ObjectRecord]
    journal: TransferJournal
    data: dict[str, bytes]

    def dest_key(self, key: str) -> str:
        return PREFIX + key

    def verify(self, *, journal: Any = "default", **options: Any) -> dict[str, dict[str, Any]]:
        """Verify; return the report rows keyed by source key (unexpected rows by dest key)."""
        options.setdefault("concurrency", 4)
        options.setdefault("expect_prefixes", ((self.dest, PREFIX),))
        frame = verify_records(
            self.records,
            source=self.store,
            destination=self.store,
            journal=self.journal if journal == "default" else journal,
            options=VerifyOptions(**options),
        )
        assert dict(frame.schema) == REPORT_SCHEMA
        return {row["source_key"] or row["dest_key"]: row for row in frame.iter_rows(named=True)}

    def put(self, key: str, body: bytes, **extra: Any) -> None:
        """Overwrite the destination copy of `key` with the planned metadata (unless overridden)."""
        args = {"ContentType": "image/png", "CacheControl": "max-age=60", "Metadata": {"owner": "u"}}
        args.update(extra)
        self.client.put_object(Bucket=self.dest, Key=self.dest_key(key), Body=body, **args)


SIZES = {
    "fine": 1000,
    "zero": 0,
    "gone": 100,
    "truncated": 2000,
    "swapped": 3000,
    "swapped-crc": 3000,
    "retyped": 500,
    "big": 2 * PART + 7,
    "big-swapped": 2 * PART + 7,
    "<script>.png": 10,
}


def _migrate(seaweed: Any, make_s3_bucket: Callable[[], str], tmp_path: Path, sizes: dict[str, int]) -> Migrated:
    client = seaweed.client()
    source, dest = make_s3_bucket(), make_s3_bucket()
    data: dict[str, bytes] = {}
    for key, size in sizes.items():
        data[key] = _body(key, size)
        client.put_object(Bucket=source, Key=key, Body=data[key], ContentType="image/png", CacheControl="max-age=60", Metadata={"owner": "u"})
    store = _store(seaweed)
    records = []
    for page in store.iter_objects(source):
        for info in page:
            records.append(
                ObjectRecord(
                    source_bucket=source,
                    source_key=info.key,
                    size=info.size,
                    source_etag=info.etag,
                    dest_bucket=dest,
                    dest_key=PREFIX + info.key,
                    content_type="image/png",
                    cache_control="max-age=60",
                    user_metadata={"owner": "u"},
                    rule="photos",
                )
            )
    journal = TransferJournal(tmp_path / "journal.sqlite")
    options = TransferOptions(concurrency=4, part_size=PART, multipart_threshold=PART, on_conflict="overwrite")
    result = transfer_objects(records, source=store, destination=store, journal=journal, options=options)
    assert result.ok and result.copied == len(sizes), result.failures
    return Migrated(store, client, source, dest, records, journal, data)


@pytest.fixture
def migrated(seaweed: Any, make_s3_bucket: Callable[[], str], tmp_path: Path) -> Iterator[Migrated]:
    m = _migrate(seaweed, make_s3_bucket, tmp_path, SIZES)
    yield m
    m.journal.close()


def _statuses(rows: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {key: row["status"] for key, row in rows.items()}


# -- a good run -------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["fast", "deep"])
def test_untouched_migration_is_all_match(migrated: Migrated, mode: str) -> None:
    progress = RecordingProgress()
    frame = verify_records(
        migrated.records,
        source=migrated.store,
        destination=migrated.store,
        journal=migrated.journal,
        options=VerifyOptions(mode=mode, concurrency=3, expect_prefixes=((migrated.dest, PREFIX),)),
        progress=progress,
    )
    rows = {row["source_key"]: row for row in frame.iter_rows(named=True)}
    assert set(rows) == set(SIZES)
    assert {row["status"] for row in rows.values()} == {"match"}, [r["detail"] for r in rows.values() if r["status"] != "match"]
    # Rows follow the manifest order.
    assert frame["source_key"].to_list() == [r.source_key for r in migrated.records]
    assert progress.objects == len(SIZES) and progress.total_objects == len(SIZES)
    fine = rows["fine"]
    expected_sha = "sha256:" + hashlib.sha256(migrated.data["fine"]).hexdigest()
    assert fine["expected_checksum"] == fine["actual_checksum"] == expected_sha
    assert fine["dest_size"] == 1000 and fine["checked_mode"] == mode
    if mode == "fast":
        assert fine["checksum_basis"] == "journal-sha256"
        # Multipart: the full-object CRC64NVME S3 checked and stored, equal to the CRC of the whole body (no "-N" composite).
        assert rows["big"]["checksum_basis"] == "journal-checksum"
        from awscrt import checksums as crt

        whole = "crc64nvme:" + base64.b64encode(crt.crc64nvme(migrated.data["big"]).to_bytes(8, "big")).decode()
        assert rows["big"]["expected_checksum"] == rows["big"]["actual_checksum"] == whole
    else:
        assert {row["checksum_basis"] for row in rows.values()} == {"deep-read"}
        assert rows["big"]["expected_checksum"] == "sha256:" + hashlib.sha256(migrated.data["big"]).hexdigest()
    report = verify_migration(
        migrated.records,
        plan_name="photos",
        source=migrated.store,
        destination=migrated.store,
        journal=migrated.journal,
        options=VerifyOptions(mode=mode, concurrency=2),
    )
    assert report.exit_status == ExitStatus.OK
    assert report.bytes_verified == sum(SIZES.values())


# -- tampering ---------------------------------------------------------------------
def _tamper(m: Migrated) -> None:
    client = m.client
    client.delete_object(Bucket=m.dest, Key=m.dest_key("gone"))
    m.put("truncated", m.data["truncated"][:-1], ChecksumAlgorithm="SHA256")
    # Other bytes, same size, same metadata; S3 stores a (correct) SHA-256 of the new bytes.
    m.put("swapped", _body("other", 3000), ChecksumAlgorithm="SHA256")
    # The same, but with whatever checksum the client picks by default (no SHA-256 stored).
    m.put("swapped-crc", _body("other-crc", 3000))
    # A multipart copy replaced by a same-size single PUT of other bytes.
    m.put("big-swapped", _body("other-big", 2 * PART + 7), ChecksumAlgorithm="SHA256")
    # Same bytes, wrong Content-Type.
    m.put("retyped", m.data["retyped"], ContentType="text/plain", ChecksumAlgorithm="SHA256")
    client.put_object(Bucket=m.dest, Key=PREFIX + "stray/extra.bin", Body=b"nobody planned me")
    client.put_object(Bucket=m.dest, Key="elsewhere/not-under-the-prefix", Body=b"x")


TAMPERED = {
    "fine": "match",
    "zero": "match",
    "big": "match",
    "<script>.png": "match",
    "gone": "missing",
    "truncated": "size-differs",
    "swapped": "checksum-differs",
    "swapped-crc": "checksum-differs",
    "big-swapped": "checksum-differs",
    "retyped": "metadata-differs",
    PREFIX + "stray/extra.bin": "unexpected",
}


@pytest.mark.parametrize("mode", ["fast", "deep"])
def test_each_kind_of_damage_is_detected(migrated: Migrated, mode: str) -> None:
    _tamper(migrated)
    rows = migrated.verify(mode=mode)
    assert _statuses(rows) == TAMPERED
    assert "not at the destination" in rows["gone"]["detail"]
    assert rows["truncated"]["dest_size"] == 1999 and "1,999 bytes" in rows["truncated"]["detail"]
    assert rows["swapped"]["expected_checksum"] != rows["swapped"]["actual_checksum"]
    if mode == "fast":
        # Caught through the stored checksum against the digest run recorded while streaming.
        assert rows["swapped"]["checksum_basis"] == "journal-sha256"
        assert rows["swapped-crc"]["checksum_basis"] in ("journal-md5", "journal-checksum")
        assert rows["big-swapped"]["checksum_basis"] == "journal-sha256"
    else:
        assert rows["swapped"]["actual_checksum"] == "sha256:" + hashlib.sha256(_body("other", 3000)).hexdigest()
    assert rows["retyped"]["expected_metadata"] == '{"content_type": "image/png"}'
    assert rows["retyped"]["actual_metadata"] == '{"content_type": "text/plain"}'
    stray = rows[PREFIX + "stray/extra.bin"]
    assert stray["source_key"] is None and stray["dest_size"] == len(b"nobody planned me") and stray["checked_mode"] == "listing"


def _count_heads(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the key of every HEAD the store sends from now on."""
    heads: list[str] = []
    original = store.head

    def head(bucket: str, key: str) -> ObjectInfo | None:
        heads.append(key)
        return original(bucket, key)

    monkeypatch.setattr(store, "head", head)
    return heads


def test_quick_mode_proves_an_untouched_migration_from_the_listing_without_a_head(migrated: Migrated, monkeypatch: pytest.MonkeyPatch) -> None:
    heads = _count_heads(migrated.store, monkeypatch)
    rows = migrated.verify(mode="quick")
    assert _statuses(rows) == {key: "match" for key in SIZES}
    assert heads == []
    assert {row["checked_mode"] for row in rows.values()} == {"quick"}
    fine = rows["fine"]
    md5 = hashlib.md5(migrated.data["fine"]).hexdigest()
    assert (fine["checksum_basis"], fine["expected_checksum"], fine["actual_checksum"]) == ("listing-md5", f"md5:{md5}", f"md5:{md5}")
    # Multipart: the listed ETag is the one the destination answered when `run` completed the upload.
    big = rows["big"]
    assert big["checksum_basis"] == "listing-etag" and big["expected_checksum"] == big["actual_checksum"] and big["dest_etag"].endswith("-3")


def test_quick_mode_heads_only_what_the_listing_cannot_prove(migrated: Migrated, monkeypatch: pytest.MonkeyPatch) -> None:
    _tamper(migrated)
    heads = _count_heads(migrated.store, monkeypatch)
    rows = migrated.verify(mode="quick")
    # `retyped` has the same bytes (same ETag) and only other headers: quick mode does not re-read headers.
    assert _statuses(rows) == {**TAMPERED, "retyped": "match"}
    assert rows["retyped"]["checksum_basis"] == "listing-md5" and rows["retyped"]["checked_mode"] == "quick"
    # Missing, other size, other ETag: one HEAD each, then fast mode's full check (stored SHA-256 vs the journal).
    assert sorted(heads) == sorted(migrated.dest_key(k) for k in ("gone", "truncated", "swapped", "swapped-crc", "big-swapped"))
    assert rows["swapped"]["checksum_basis"] == "journal-sha256" and rows["swapped"]["checked_mode"] == "fast"
    assert rows["big-swapped"]["checksum_basis"] == "journal-sha256"
    assert "not at the destination" in rows["gone"]["detail"] and rows["truncated"]["dest_size"] == 1999
    stray = rows[PREFIX + "stray/extra.bin"]
    assert stray["checked_mode"] == "listing" and stray["dest_size"] == len(b"nobody planned me")


def test_quick_mode_without_a_journal_heads_every_object(migrated: Migrated, monkeypatch: pytest.MonkeyPatch) -> None:
    heads = _count_heads(migrated.store, monkeypatch)
    rows = migrated.verify(mode="quick", journal=None)
    assert _statuses(rows) == {key: "match" for key in SIZES}
    # Nothing recorded what `run` sent: the headers can only be proven by a HEAD.
    assert sorted(heads) == sorted(migrated.dest_key(k) for k in SIZES)
    assert {row["checked_mode"] for row in rows.values()} == {"fast"}


def test_quick_mode_outside_the_listed_prefix_falls_back_to_head(migrated: Migrated, monkeypatch: pytest.MonkeyPatch) -> None:
    heads = _count_heads(migrated.store, monkeypatch)
    rows = migrated.verify(mode="quick", expect_prefixes=())
    assert _statuses(rows) == {key: "match" for key in SIZES}
    assert len(heads) == len(SIZES)


def test_damage_makes_the_report_incomplete(migrated: Migrated) -> None:
    _tamper(migrated)
    report = verify_migration(
        migrated.records,
        plan_name="photos",
        source=migrated.store,
        destination=migrated.store,
        journal=migrated.journal,
        options=VerifyOptions(concurrency=4, expect_prefixes=((migrated.dest, PREFIX),)),
    )
    assert report.exit_status == ExitStatus.INCOMPLETE
    counts = report.counts()
    assert (counts["missing"], counts["checksum-differs"], counts["unexpected"], counts["match"]) == (1, 3, 1, 4)
    assert report.failing()["status"].to_list()[0] == "missing"


def test_only_an_extra_object_is_enough_to_fail(migrated: Migrated) -> None:
    migrated.client.put_object(Bucket=migrated.dest, Key=PREFIX + "zz-extra", Body=b"?")
    rows = migrated.verify()
    assert [key for key, row in rows.items() if row["status"] != "match"] == [PREFIX + "zz-extra"]
    # Without the prefix to scan, nothing is looked for.
    assert {row["status"] for row in migrated.verify(expect_prefixes=()).values()} == {"match"}


def test_planned_encryption_and_storage_class_are_checked(migrated: Migrated) -> None:
    rows = migrated.verify(server_side_encryption="AES256")
    assert {row["status"] for row in rows.values()} == {"metadata-differs"}
    assert "server_side_encryption is None, planned 'AES256'" in rows["fine"]["detail"]
    migrated.put("fine", migrated.data["fine"], ServerSideEncryption="AES256", StorageClass="STANDARD_IA", ChecksumAlgorithm="SHA256")
    rows = migrated.verify(server_side_encryption="AES256")
    assert rows["fine"]["status"] == "metadata-differs"
    assert rows["fine"]["actual_metadata"] == '{"storage_class": "STANDARD_IA"}'
    migrated.records = [replace(r, storage_class="STANDARD_IA") if r.source_key == "fine" else r for r in migrated.records]
    assert migrated.verify(server_side_encryption="AES256")["fine"]["status"] == "match"


# -- without the journal ----------------------------------------------------------------
def test_independent_audit_without_a_journal(migrated: Migrated) -> None:
    migrated.put("swapped", _body("other", 3000))
    report_rows = migrated.verify(journal=None)
    assert _statuses(report_rows)["swapped"] == "checksum-differs"
    assert report_rows["swapped"]["checksum_basis"] == "source-etag"
    fine = report_rows["fine"]
    assert fine["status"] == "match" and fine["checksum_basis"] == "source-etag"
    assert fine["expected_checksum"] == "md5:" + hashlib.md5(migrated.data["fine"]).hexdigest()
    # Multipart at the destination, single part at the source: no checksum can be compared,
    # so it matches on size only and says so.
    big = report_rows["big"]
    assert big["status"] == "match" and big["checksum_basis"] == "none" and big["expected_checksum"] is None
    assert "no checksum could be compared" in big["detail"]
    report = verify_migration(
        migrated.records,
        plan_name="audit",
        source=migrated.store,
        destination=migrated.store,
        journal=None,
        options=VerifyOptions(concurrency=4),
    )
    assert report.size_only_matches == 2
    assert "by size only" in report.summary_text()


def test_a_journal_from_an_earlier_plan_is_not_trusted(migrated: Migrated) -> None:
    # The record changed since the run (new cache control): its journal digests describe another copy.
    migrated.records = [replace(r, cache_control="no-cache") if r.source_key == "fine" else r for r in migrated.records]
    rows = migrated.verify()
    assert rows["fine"]["status"] == "metadata-differs"
    assert rows["fine"]["checksum_basis"] == "source-etag"
    assert "earlier plan" in rows["fine"]["detail"]


# -- sampling -----------------------------------------------------------------------
def test_sample_is_seeded_and_states_its_confidence(seaweed: Any, make_s3_bucket: Callable[[], str], tmp_path: Path) -> None:
    m = _migrate(seaweed, make_s3_bucket, tmp_path, {f"k{i:02d}": 50 + i for i in range(30)})
    try:
        first = m.verify(sample=10, seed=7, expect_prefixes=())
        again = m.verify(sample=10, seed=7, expect_prefixes=())
        other = m.verify(sample=10, seed=8, expect_prefixes=())
        assert len(first) == 10 and set(first) == set(again) and set(first) != set(other)
        assert set(first) <= {r.source_key for r in m.records}
        assert sorted(first) == list(first)  # manifest order
        report = verify_migration(
            m.records, plan_name="p", source=m.store, destination=m.store, journal=m.journal, options=VerifyOptions(sample=10, seed=7)
        )
        assert (report.population, report.objects_checked, report.sampled) == (30, 10, True)
        confidence = report.sample_confidence()
        assert confidence is not None and confidence.upper_bound == pytest.approx(1 - 0.05 ** (1 / 10))
        assert "fewer than 25.9%" in report.summary_text()
        # With damage in the sample, the observed rate is reported instead.
        victim = sorted(first)[0]
        m.client.delete_object(Bucket=m.dest, Key=PREFIX + victim)
        damaged = verify_migration(
            m.records, plan_name="p", source=m.store, destination=m.store, journal=m.journal, options=VerifyOptions(sample=10, seed=7)
        )
        assert damaged.exit_status == ExitStatus.INCOMPLETE
        assert "1 differ (observed rate 10.0%" in damaged.summary_text()
        # A sample as large as the manifest is a full audit.
        full = verify_migration(
            m.records, plan_name="p", source=m.store, destination=m.store, journal=m.journal, options=VerifyOptions(sample=100)
        )
        assert full.objects_checked == 30 and not full.sampled and full.sample_confidence() is None
    finally:
        m.journal.close()


# -- which records are verified -------------------------------------------------------------
def test_only_copy_and_skip_existing_records_are_verified(migrated: Migrated) -> None:
    frame = records_to_frame(migrated.records)
    extra = [
        ObjectRecord(source_bucket=migrated.source, source_key="ignored.tmp", size=1, dest_bucket=migrated.dest, dest_key=PREFIX + "ignored.tmp", action=Action.EXCLUDED.value),
        # Planned as already there: it must still be there, with its bytes.
        ObjectRecord(
            source_bucket=migrated.source, source_key="fine", size=1000, source_etag=migrated.records[0].source_etag, dest_bucket=migrated.dest, dest_key=PREFIX + "pre-existing", action=Action.SKIP_EXISTING.value
        ),
    ]
    migrated.client.put_object(Bucket=migrated.dest, Key=PREFIX + "ignored.tmp", Body=b"x")
    records = list(frame_to_records(frame)) + extra
    report = verify_migration(
        records,
        plan_name="p",
        source=migrated.store,
        destination=migrated.store,
        journal=migrated.journal,
        options=VerifyOptions(concurrency=2, expect_prefixes=((migrated.dest, PREFIX),)),
    )
    rows = {row["dest_key"]: row for row in report.frame.iter_rows(named=True)}
    # An excluded record is not verified, but the key it maps is not "unexpected" either.
    assert PREFIX + "ignored.tmp" not in rows and report.not_verified == 1
    assert rows[PREFIX + "pre-existing"]["status"] == "missing" and rows[PREFIX + "pre-existing"]["action"] == "skip-existing"


# -- failures of the audit itself vs failures of objects ----------------------------------------
def test_bad_credentials_and_missing_bucket_stop_the_audit(migrated: Migrated, seaweed: Any) -> None:
    wrong = _store(seaweed, secret_access_key="not-the-secret")
    with pytest.raises(AccessDenied) as caught:
        verify_records(migrated.records, source=wrong, destination=wrong, journal=None, options=VerifyOptions())
    assert "not-the-secret" not in str(caught.value)
    nowhere = [replace(r, dest_bucket="no-such-bucket-here") for r in migrated.records]
    with pytest.raises(BucketNotFound):
        verify_records(nowhere, source=migrated.store, destination=migrated.store, journal=None, options=VerifyOptions(mode="deep"))


def test_an_unreachable_server_is_fatal_not_a_list_of_errors(migrated: Migrated, seaweed: Any) -> None:
    from migrate.stack.process import free_port

    nobody = _store(seaweed, endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ServiceUnavailable):
        verify_records(migrated.records, source=nobody, destination=nobody, journal=None, options=VerifyOptions(max_attempts=2))
    # The server going away in the middle of the audit: also fatal, not "objects differ".
    host, port = seaweed.endpoint_url.split("//")[1].split(":")
    with FaultProxy(host, int(port)) as proxy:

        class OutageAfterTwo(RecordingProgress):
            def advance(self, *, objects: int = 0, bytes_done: int = 0) -> None:
                super().advance(objects=objects, bytes_done=bytes_done)
                if self.objects == 2:
                    proxy.add(FaultRule("drop", method="HEAD", count=10_000))

        via_proxy = _store(seaweed, endpoint_url=proxy.endpoint_url)
        with pytest.raises(ServiceUnavailable, match="unreachable|cannot reach"):
            verify_records(
                migrated.records,
                source=via_proxy,
                destination=via_proxy,
                journal=migrated.journal,
                options=VerifyOptions(concurrency=1, max_attempts=2),
                progress=OutageAfterTwo(),
            )


def test_transient_faults_are_retried_and_persistent_ones_are_errors(migrated: Migrated, seaweed: Any) -> None:
    host, port = seaweed.endpoint_url.split("//")[1].split(":")
    with FaultProxy(host, int(port)) as proxy:
        proxy.add(FaultRule("error500", method="HEAD", path=f"/{migrated.dest}/{PREFIX}fine$", count=2))
        proxy.add(FaultRule("slowdown", method="HEAD", path=f"/{migrated.dest}/{PREFIX}zero$", count=1))
        proxy.add(FaultRule("error500", method="HEAD", path=f"/{migrated.dest}/{PREFIX}swapped$", count=100))
        proxy.add(FaultRule("truncate", method="GET", path=f"/{migrated.source}/big$", count=1, after_bytes=1000))
        via_proxy = _store(seaweed, endpoint_url=proxy.endpoint_url)
        fast = verify_records(
            migrated.records, source=via_proxy, destination=via_proxy, journal=migrated.journal, options=VerifyOptions(concurrency=2, max_attempts=3)
        )
        deep = verify_records(
            [r for r in migrated.records if r.source_key == "big"],
            source=via_proxy,
            destination=via_proxy,
            journal=None,
            options=VerifyOptions(mode="deep", max_attempts=3),
        )
        injected = {action for action, _, _ in proxy.injected}
    rows = {row["source_key"]: row for row in fast.iter_rows(named=True)}
    assert injected == {"error500", "slowdown", "truncate"}
    assert rows["fine"]["status"] == rows["zero"]["status"] == "match"
    assert rows["swapped"]["status"] == "error" and "could not check" in rows["swapped"]["detail"]
    assert deep["status"].to_list() == ["match"]


def test_deep_mode_streams_instead_of_buffering(seaweed: Any, make_s3_bucket: Callable[[], str], tmp_path: Path) -> None:
    m = _migrate(seaweed, make_s3_bucket, tmp_path, {"huge": 6 * PART})
    try:
        tracemalloc.start()
        try:
            frame = verify_records(m.records, source=m.store, destination=m.store, journal=None, options=VerifyOptions(mode="deep", concurrency=1))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert frame["status"].to_list() == ["match"]
        # Both sides (2 x 30 MiB) were read; only a few 1 MiB chunks were ever held.
        assert peak < 8 * MiB, peak
    finally:
        m.journal.close()


# -- the report on disk -----------------------------------------------------------------------
def test_report_files_load_with_the_schema_and_escape_keys(migrated: Migrated, tmp_path: Path) -> None:
    migrated.client.delete_object(Bucket=migrated.dest, Key=PREFIX + "<script>.png")
    report = verify_migration(
        migrated.records,
        plan_name="photos",
        source=migrated.store,
        destination=migrated.store,
        journal=migrated.journal,
        options=VerifyOptions(concurrency=4),
    )
    path = report.write(tmp_path / "reports")
    assert path.parent == tmp_path / "reports" and path.name.startswith("photos-") and path.name.endswith("Z")
    assert sorted(p.name for p in path.iterdir()) == ["report.csv", "report.parquet", "summary.html", "summary.md"]
    loaded = load_report(path)
    assert dict(loaded.schema) == REPORT_SCHEMA and loaded.equals(report.frame)
    assert pl.read_csv(path / CSV_FILE, schema=REPORT_SCHEMA).equals(report.frame)
    page = (path / HTML_FILE).read_text()
    assert "<script>.png" not in page and html.escape("<script>.png") in page
    assert str(path / HTML_FILE) in report.summary_text()


# -- fast-mode checksum rules (pure) ------------------------------------------------------------
def test_recorded_checksum_rules_never_claim_a_comparison_not_made() -> None:
    from migrate.journal import JournalRow

    body = b"hello"
    sha_hex, md5_hex = hashlib.sha256(body).hexdigest(), hashlib.md5(body).hexdigest()
    sha_b64 = base64.b64encode(hashlib.sha256(body).digest()).decode()
    row = JournalRow("s", "k", "d", "k", 5, "fp", "done", 1, None, sha_hex, md5_hex, md5_hex, sha_b64, "SHA256", None, None)
    single = ObjectInfo("k", 5, etag=md5_hex, checksums={"sha256": sha_b64})
    assert compare_recorded_checksum(dest=single, journal_row=row, source_etag=None).outcome == "match"
    bad = ObjectInfo("k", 5, etag=md5_hex, checksums={"sha256": base64.b64encode(b"x" * 32).decode()})
    assert compare_recorded_checksum(dest=bad, journal_row=row, source_etag=md5_hex).outcome == "differs"
    # SSE-KMS ETags are not MD5s: never compared as such.
    kms = ObjectInfo("k", 5, etag="0" * 32, server_side_encryption="aws:kms")
    verdict = compare_recorded_checksum(dest=kms, journal_row=None, source_etag=md5_hex)
    assert verdict.outcome == "none" and verdict.expected is None and "SSE-KMS" in verdict.note
    multipart = ObjectInfo("k", 5, etag="abc-2")
    assert compare_recorded_checksum(dest=multipart, journal_row=None, source_etag=md5_hex).basis == "none"


# -- catalog cross-check (pure) ------------------------------------------------------------------
def test_catalog_cross_check_reports_both_directions() -> None:
    catalog_pages = [[ObjectInfo("a.png", 10, "e-a"), ObjectInfo("lost.png", 5, "e-l")], [ObjectInfo("z.png", 7, "e-z")]]
    storage = {"a.png": ObjectInfo("a.png", 10, "e-a"), "orphan.bin": (3, None), "z.png": ObjectInfo("z.png", 8, "e-z"), "lost.png": None}
    frame = catalog_cross_check(catalog_pages, storage, bucket="photos")
    assert dict(frame.schema) == REPORT_SCHEMA
    got = {(row["source_bucket"], row["source_key"]): row for row in frame.iter_rows(named=True)}
    assert {key: row["status"] for key, row in got.items()} == {
        ("photos", "lost.png"): "catalog-only",
        ("photos", "orphan.bin"): "storage-only",
        ("photos", "z.png"): "catalog-differs",
    }
    assert got[("photos", "lost.png")]["size"] == 5 and got[("photos", "orphan.bin")]["size"] == 3
    assert "7 bytes" in got[("photos", "z.png")]["detail"] and "8 bytes" in got[("photos", "z.png")]["detail"]
    # The same from frames (e.g. the manifest's columns) gives the same rows.
    as_frames = catalog_cross_check(
        pl.DataFrame({"source_bucket": ["photos"] * 3, "source_key": ["a.png", "lost.png", "z.png"], "size": [10, 5, 7]}),
        inventory_frame(storage, bucket="photos"),
    )
    assert as_frames["status"].to_list() == ["catalog-only", "storage-only", "catalog-differs"]
    assert catalog_cross_check([("b", "k", 1, "e")], [("b", "k", 1, "e")]).height == 0
    with pytest.raises(TypeError):
        inventory_frame([ObjectInfo("k", 1)])  # no bucket


def test_catalog_rows_do_not_fail_the_migration(migrated: Migrated) -> None:
    catalog_rows = catalog_cross_check([("photos", "lost", 1, None)], [], bucket=None)
    report = verify_migration(
        migrated.records,
        plan_name="p",
        source=migrated.store,
        destination=migrated.store,
        journal=migrated.journal,
        options=VerifyOptions(concurrency=4),
        catalog_rows=catalog_rows,
    )
    assert report.counts()["catalog-only"] == 1 and report.exit_status == ExitStatus.OK
    assert "Supabase catalog cross-check" in report.to_html()


# -- one property damaged at a time, every object with metadata of its own ----------------------
# Each object carries values no other object has, so metadata that lands on the
# wrong object, or a comparison that is dropped, shows up as a wrong row.
def _own_metadata(key: str) -> dict[str, Any]:
    return {
        "ContentType": f"application/x-{key}",
        "CacheControl": f"max-age={100 + len(key) * 7}",
        "ContentDisposition": f'attachment; filename="{key}.bin"',
        "Metadata": {"owner": f"owner-{key}", "tag": f"t-{key}"},
    }


OWN_KEYS = ("keep", "keep-2", "user-value", "user-extra", "user-swapped", "type", "cache", "disposition", "gone", "short", "bytes", "broken")


@pytest.fixture
def own_migrated(seaweed: Any, make_s3_bucket: Callable[[], str], tmp_path: Path) -> Iterator[Migrated]:
    client = seaweed.client()
    source, dest = make_s3_bucket(), make_s3_bucket()
    store = _store(seaweed)
    data, records = {}, []
    for key in OWN_KEYS:
        data[key] = _body(key, 700 + len(key))
        client.put_object(Bucket=source, Key=key, Body=data[key], **_own_metadata(key))
        head = store.head(source, key)
        assert head is not None
        records.append(
            ObjectRecord(
                source_bucket=source,
                source_key=key,
                size=head.size,
                source_etag=head.etag,
                dest_bucket=dest,
                dest_key=PREFIX + key,
                content_type=head.content_type,
                cache_control=head.cache_control,
                content_disposition=head.content_disposition,
                user_metadata=head.user_metadata,
            )
        )
    journal = TransferJournal(tmp_path / "journal.sqlite")
    options = TransferOptions(concurrency=4, part_size=PART, multipart_threshold=PART, on_conflict="overwrite")
    result = transfer_objects(records, source=store, destination=store, journal=journal, options=options)
    assert result.ok and result.copied == len(OWN_KEYS), result.failures
    m = Migrated(store, client, source, dest, records, journal, data)
    yield m
    journal.close()


def _rewrite_metadata(m: Migrated, key: str, **changed: Any) -> None:
    """Rewrite the destination copy in place (same bytes) with its planned metadata but `changed`."""
    args = {**_own_metadata(key), **changed}
    m.client.copy_object(
        Bucket=m.dest, Key=m.dest_key(key), CopySource={"Bucket": m.dest, "Key": m.dest_key(key)}, MetadataDirective="REPLACE", **args
    )


def _damage_one_property_each(m: Migrated) -> None:
    _rewrite_metadata(m, "user-value", Metadata={"owner": "owner-user-value", "tag": "t-changed"})
    _rewrite_metadata(m, "user-extra", Metadata={**_own_metadata("user-extra")["Metadata"], "added": "x"})
    # Another object's user metadata landed on this one.
    _rewrite_metadata(m, "user-swapped", Metadata=_own_metadata("keep")["Metadata"])
    _rewrite_metadata(m, "type", ContentType="application/x-keep")
    _rewrite_metadata(m, "cache", CacheControl="no-store")
    _rewrite_metadata(m, "disposition", ContentDisposition='attachment; filename="keep.bin"')
    m.client.delete_object(Bucket=m.dest, Key=m.dest_key("gone"))
    m.client.put_object(Bucket=m.dest, Key=m.dest_key("short"), Body=m.data["short"][:-3], **_own_metadata("short"))
    m.client.put_object(Bucket=m.dest, Key=m.dest_key("bytes"), Body=_body("not-bytes", len(m.data["bytes"])), ChecksumAlgorithm="SHA256", **_own_metadata("bytes"))
    m.client.put_object(Bucket=m.dest, Key=PREFIX + "stray", Body=b"left behind", **_own_metadata("stray"))


def _meta_json(**fields: Any) -> str:
    return json.dumps(fields, sort_keys=True)


@pytest.mark.parametrize("mode", ["fast", "deep"])
def test_each_damaged_property_has_its_own_status_and_detail(own_migrated: Migrated, seaweed: Any, mode: str) -> None:
    m = own_migrated
    _damage_one_property_each(m)
    host, port = seaweed.endpoint_url.split("//")[1].split(":")
    # `broken` cannot be read at the destination at all: an `error` row, the audit goes on.
    broken_method = "HEAD" if mode == "fast" else "GET"
    with FaultProxy(host, int(port)) as proxy:
        proxy.add(FaultRule("error500", method=broken_method, path=f"/{m.dest}/{PREFIX}broken$", count=100))
        via_proxy = _store(seaweed, endpoint_url=proxy.endpoint_url)
        frame = verify_records(
            m.records,
            source=via_proxy,
            destination=via_proxy,
            journal=m.journal,
            options=VerifyOptions(mode=mode, concurrency=3, max_attempts=2, expect_prefixes=((m.dest, PREFIX),)),
        )
    rows = {row["source_key"] or row["dest_key"]: row for row in frame.iter_rows(named=True)}
    assert _statuses(rows) == {
        "keep": "match",
        "keep-2": "match",
        "user-value": "metadata-differs",
        "user-extra": "metadata-differs",
        "user-swapped": "metadata-differs",
        "type": "metadata-differs",
        "cache": "metadata-differs",
        "disposition": "metadata-differs",
        "gone": "missing",
        "short": "size-differs",
        "bytes": "checksum-differs",
        "broken": "error",
        PREFIX + "stray": "unexpected",
    }
    planned = {key: _own_metadata(key) for key in OWN_KEYS}

    def user(key: str) -> dict[str, str]:
        return planned[key]["Metadata"]

    expected_columns = {
        "user-value": ({"user_metadata": user("user-value")}, {"user_metadata": {"owner": "owner-user-value", "tag": "t-changed"}}),
        "user-extra": ({"user_metadata": user("user-extra")}, {"user_metadata": dict(sorted({**user("user-extra"), "added": "x"}.items()))}),
        "user-swapped": ({"user_metadata": user("user-swapped")}, {"user_metadata": user("keep")}),
        "type": ({"content_type": "application/x-type"}, {"content_type": "application/x-keep"}),
        "cache": ({"cache_control": planned["cache"]["CacheControl"]}, {"cache_control": "no-store"}),
        "disposition": ({"content_disposition": 'attachment; filename="disposition.bin"'}, {"content_disposition": 'attachment; filename="keep.bin"'}),
    }
    for key, (expected, actual) in expected_columns.items():
        row = rows[key]
        # Only the damaged field is named: nothing else about the object is reported as differing.
        assert (row["expected_metadata"], row["actual_metadata"]) == (_meta_json(**expected), _meta_json(**actual)), key
        (field,) = expected
        assert row["detail"].startswith(f"metadata not as planned: {field} is {actual[field]!r}, planned {expected[field]!r}"), row["detail"]
    for key in ("keep", "keep-2"):
        assert rows[key]["expected_metadata"] is None and rows[key]["detail"] == "", rows[key]
    assert "not at the destination" in rows["gone"]["detail"]
    assert rows["short"]["dest_size"] == len(m.data["short"]) - 3
    assert rows["bytes"]["expected_checksum"] != rows["bytes"]["actual_checksum"]
    assert rows["broken"]["detail"].startswith("could not check: ") and ("500" in rows["broken"]["detail"] or "InternalError" in rows["broken"]["detail"])
    assert rows[PREFIX + "stray"]["dest_size"] == len(b"left behind")


# -- the catalog cross-check through verify_plan ---------------------------------------------------
def _copy_catalog(server_database_url: str, catalog_url: str, bucket: str) -> None:
    """A second `storage.objects` holding the server's rows for `bucket`: the catalog the plan's database_url names."""
    import psycopg

    from migrate.stack.supabase_server.catalog import ensure_schema

    ensure_schema(catalog_url)
    with psycopg.connect(server_database_url) as conn:
        objects = conn.execute(
            "SELECT name, metadata::text, user_metadata::text, updated_at FROM storage.objects WHERE bucket_id = %s", (bucket,)
        ).fetchall()
    with psycopg.connect(catalog_url) as conn:
        conn.execute("INSERT INTO storage.buckets (id, name) VALUES (%s, %s)", (bucket, bucket))
        for name, metadata, user_metadata, updated_at in objects:
            conn.execute(
                "INSERT INTO storage.objects (bucket_id, name, metadata, user_metadata, updated_at) VALUES (%s, %s, %s::jsonb, %s::jsonb, %s)",
                (bucket, name, metadata, user_metadata, updated_at),
            )


def test_verify_plan_with_a_catalog_audits_bytes_not_the_listing(
    supabase_server: Any,
    supabase_http: Any,
    supabase_bucket: str,
    seaweed: Any,
    s3_bucket: str,
    make_database: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psycopg

    from migrate.inventory import plan_migration
    from migrate.pipeline import run_migration, verify_plan
    from migrate.plan import load_plan
    from tests.plan_files import write_supabase_plan

    for key in ("same.txt", "resized.txt", "uncatalogued.txt"):
        response = supabase_http.post(f"/object/{supabase_bucket}/{key}", content=key.encode() * 3, headers={"Content-Type": "text/plain"})
        assert response.status_code == 200, response.text
    catalog_url = make_database("catalog")
    _copy_catalog(supabase_server.database_url, catalog_url, supabase_bucket)
    for name, value in {
        "SUPABASE_URL": supabase_server.url,
        "SUPABASE_SERVICE_ROLE_KEY": supabase_server.service_key,
        "SUPABASE_DB_URL": catalog_url,
        "AWS_ACCESS_KEY_ID": seaweed.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
    }.items():
        monkeypatch.setenv(name, value)
    plan_file = write_supabase_plan(
        tmp_path / "catalog.yaml",
        name=f"catalog-{s3_bucket}",
        bucket=supabase_bucket,
        dest=s3_bucket,
        endpoint=seaweed.endpoint_url,
        database_url=True,
        extra='rules:\n  - {name: all, match: "{path**}", to: "copied/{path}"}\n',
    )
    plan = load_plan(plan_file)
    state, reports = tmp_path / "state", tmp_path / "reports"
    plan_migration(plan, state_dir=state, reports_dir=reports)
    assert run_migration(plan, state_dir=state, reports_dir=reports).result.copied == 3
    clean = verify_plan(plan, state_dir=state, reports_dir=reports)
    assert clean.frame["status"].to_list() == ["match"] * 3 and clean.exit_status == ExitStatus.OK

    # The catalog section is the source audit now: a row whose bytes are gone is found by reading its
    # first byte (tests/test_source_audit.py plants such rows and checks them through verify_plan). A row
    # that merely disagrees with the REST listing proves nothing, since both read storage.objects.
    with psycopg.connect(catalog_url) as conn:
        conn.execute(
            "UPDATE storage.objects SET metadata = jsonb_set(metadata, '{size}', '999') WHERE bucket_id = %s AND name = 'resized.txt'",
            (supabase_bucket,),
        )
    report = verify_plan(plan, state_dir=state, reports_dir=reports)
    assert {row["source_key"]: row["status"] for row in report.frame.iter_rows(named=True)} == dict.fromkeys(("same.txt", "resized.txt", "uncatalogued.txt"), "match")
    assert report.exit_status == ExitStatus.OK
    assert report.path is not None and load_report(report.path).equals(report.frame)


def test_deep_verify_reads_obey_the_plan_rate_limits(migrated: Migrated) -> None:
    """transfer.max_bandwidth / max_requests_per_second hold for verify's reads: lower bounds only."""
    total = sum(SIZES.values())
    started = time.monotonic()
    rows = migrated.verify(mode="deep", max_bandwidth=4 * MiB)
    elapsed = time.monotonic() - started
    assert set(_statuses(rows).values()) == {"match"}
    # Both sides are read in deep mode: 2 x total bytes at 4 MiB/s, less one second's burst.
    assert elapsed >= (2 * total - 4 * MiB) / (4 * MiB)
    started = time.monotonic()
    rows = migrated.verify(mode="deep", max_requests_per_second=10.0)
    elapsed = time.monotonic() - started
    assert set(_statuses(rows).values()) == {"match"}
    # At least one source read and one destination read per record.
    assert elapsed >= (2 * len(SIZES) - 1) / 10.0


def _headerless_records(seaweed: Any, make_s3_bucket: Callable[[], str], sizes: dict[str, int]) -> tuple[Any, S3Store, str, list[ObjectRecord]]:
    """Source objects with headers of their own, and records as an S3 source's plan makes them: no headers (from the GET)."""
    client = seaweed.client()
    source, dest = make_s3_bucket(), make_s3_bucket()
    for key, size in sizes.items():
        client.put_object(Bucket=source, Key=key, Body=_body(key, size), ContentType="image/png", CacheControl="max-age=60", Metadata={"owner": "u"})
    store = _store(seaweed)
    records = [
        ObjectRecord(source_bucket=source, source_key=info.key, size=info.size, source_etag=info.etag, dest_bucket=dest, dest_key=PREFIX + info.key)
        for page in store.iter_objects(source)
        for info in page
    ]
    return client, store, dest, records


@pytest.mark.parametrize("mode", ["fast", "deep"])
def test_headers_taken_from_the_get_are_verified_against_what_run_sent(seaweed: Any, make_s3_bucket: Callable[[], str], tmp_path: Path, mode: str) -> None:
    """Records of an S3 source's plan carry no headers (run takes them from the GET): verify compares the
    destination with the headers the journal says were sent, so a faithful copy matches and a changed one does not."""
    client, store, dest, records = _headerless_records(seaweed, make_s3_bucket, {"kept": 100, "changed": 100, "big": 2 * PART + 7})
    with TransferJournal(tmp_path / "journal.sqlite") as journal:
        options = TransferOptions(concurrency=4, part_size=PART, multipart_threshold=PART, on_conflict="overwrite")
        result = transfer_objects(records, source=store, destination=store, journal=journal, options=options)
        assert result.ok and result.copied == 3, result.failures
        client.copy_object(
            Bucket=dest, Key=PREFIX + "changed", CopySource={"Bucket": dest, "Key": PREFIX + "changed"},
            MetadataDirective="REPLACE", ContentType="image/png", CacheControl="max-age=60", Metadata={"owner": "someone-else"},
        )
        frame = verify_records(records, source=store, destination=store, journal=journal, options=VerifyOptions(mode=mode, concurrency=2))
    rows = {row["source_key"]: row for row in frame.iter_rows(named=True)}
    assert {key: row["status"] for key, row in rows.items()} == {"kept": "match", "big": "match", "changed": "metadata-differs"}
    assert "someone-else" in rows["changed"]["detail"]


@pytest.mark.parametrize("mode", ["fast", "deep"])
def test_headers_from_the_get_without_a_journal_are_compared_with_the_source(
    seaweed: Any, make_s3_bucket: Callable[[], str], tmp_path: Path, mode: str
) -> None:
    """The state directory is lost: nothing says which headers `run` sent. verify takes the source's (a HEAD in fast
    mode, the read in deep), never the manifest's nulls: a faithful copy matches, a changed one does not, and the
    detail says where the expectation came from."""
    client, store, dest, records = _headerless_records(seaweed, make_s3_bucket, {"kept": 100, "changed": 100})
    assert store.headers_on_read
    with TransferJournal(tmp_path / "journal.sqlite") as journal:
        options = TransferOptions(concurrency=2, part_size=PART, multipart_threshold=PART, on_conflict="overwrite")
        assert transfer_objects(records, source=store, destination=store, journal=journal, options=options).ok
    client.copy_object(
        Bucket=dest, Key=PREFIX + "changed", CopySource={"Bucket": dest, "Key": PREFIX + "changed"},
        MetadataDirective="REPLACE", ContentType="image/png", CacheControl="no-store", Metadata={"owner": "u"},
    )
    frame = verify_records(records, source=store, destination=store, journal=None, options=VerifyOptions(mode=mode, concurrency=2))
    rows = {row["source_key"]: row for row in frame.iter_rows(named=True)}
    assert {key: row["status"] for key, row in rows.items()} == {"kept": "match", "changed": "metadata-differs"}
    assert "no-store" in rows["changed"]["detail"] and "max-age=60" in rows["changed"]["detail"]
    assert all("compared with the source's" in row["detail"] for row in rows.values())


def test_a_manifest_scan_yields_every_record_in_order_a_slice_at_a_time(tmp_path: Path) -> None:
    from migrate.verify import ManifestScan

    records = [
        ObjectRecord(source_bucket="s", source_key=f"k{i}", size=i, dest_bucket="d", dest_key=f"k{i}", action="excluded" if i % 4 == 0 else "copy")
        for i in range(11)
    ]
    records_to_frame(records).write_parquet(tmp_path / "manifest.parquet")
    scan = ManifestScan(pl.scan_parquet(tmp_path / "manifest.parquet"), slice_rows=3)
    assert list(scan) == records
    assert scan.totals(["copy"]) == (8, sum(i for i in range(11) if i % 4))


# Headers `run` carries exactly as the source answered them (no manifest column; README "Headers from the GET").
CARRIED_ON_SOURCE = {"ContentEncoding": "gzip", "ContentLanguage": "de-CH", "Expires": "Wed, 01 Dec 2094 16:00:00 GMT"}


def _migrated_with_carried_headers(seaweed: Any, make_s3_bucket: Callable[[], str], journal: TransferJournal) -> tuple[Any, S3Store, str, list[ObjectRecord]]:
    """Objects with Content-Encoding, Content-Language and Expires (one multipart), copied by `run` from records
    as an S3 source's plan makes them; then "stripped" loses its Content-Encoding at the destination in an in-place copy
    (same bytes, same ETag) and "intact" stays as `run` wrote it."""
    client = seaweed.client()
    source, dest = make_s3_bucket(), make_s3_bucket()
    for key, size in {"intact": 100, "stripped": 100, "big": PART + 7}.items():
        client.put_object(Bucket=source, Key=key, Body=_body(key, size), ContentType="application/json", **CARRIED_ON_SOURCE)
    store = _store(seaweed)
    records = [
        ObjectRecord(source_bucket=source, source_key=info.key, size=info.size, source_etag=info.etag, dest_bucket=dest, dest_key=PREFIX + info.key)
        for page in store.iter_objects(source)
        for info in page
    ]
    options = TransferOptions(concurrency=2, part_size=PART, multipart_threshold=PART, on_conflict="overwrite")
    result = transfer_objects(records, source=store, destination=store, journal=journal, options=options)
    assert result.ok and result.copied == 3, result.failures
    journal.flush()
    client.copy_object(
        Bucket=dest, Key=PREFIX + "stripped", CopySource={"Bucket": dest, "Key": PREFIX + "stripped"}, MetadataDirective="REPLACE",
        ContentType="application/json", ContentLanguage="de-CH", Expires=CARRIED_ON_SOURCE["Expires"],
    )
    assert "ContentEncoding" not in client.head_object(Bucket=dest, Key=PREFIX + "stripped")
    return client, store, dest, records


@pytest.mark.parametrize(("mode", "with_journal"), [("fast", True), ("deep", True), ("fast", False), ("deep", False), ("quick", False)])
def test_a_carried_header_removed_at_the_destination_is_metadata_differs(
    seaweed: Any, make_s3_bucket: Callable[[], str], tmp_path: Path, mode: str, with_journal: bool
) -> None:
    """Against the journal's sent headers, or (no journal) the source's own: a destination object that lost its
    Content-Encoding is `metadata-differs` and says so; the faithful copies match. Quick mode HEADs what its listing
    cannot prove (here everything: no journal), so it finds it too."""
    with TransferJournal(tmp_path / "journal.sqlite") as journal:
        _, store, _, records = _migrated_with_carried_headers(seaweed, make_s3_bucket, journal)
        options = VerifyOptions(mode=mode, concurrency=2)  # type: ignore[arg-type]
        frame = verify_records(records, source=store, destination=store, journal=journal if with_journal else None, options=options)
    rows = {row["source_key"]: row for row in frame.iter_rows(named=True)}
    assert {key: row["status"] for key, row in rows.items()} == {"intact": "match", "big": "match", "stripped": "metadata-differs"}
    assert "content_encoding is None, planned 'gzip'" in rows["stripped"]["detail"]
    assert json.loads(rows["stripped"]["expected_metadata"]) == {"content_encoding": "gzip"}


def test_a_journal_from_before_carried_headers_were_recorded_does_not_fail_them(seaweed: Any, make_s3_bucket: Callable[[], str], tmp_path: Path) -> None:
    """A journal row whose sent headers predate Content-Encoding, Content-Language and Expires says nothing about
    them ("not recorded", not "sent none"): an older run's copy without them is not failed for it."""
    with TransferJournal(tmp_path / "journal.sqlite") as journal:
        _, store, _, records = _migrated_with_carried_headers(seaweed, make_s3_bucket, journal)
    with sqlite3.connect(tmp_path / "journal.sqlite") as db:  # as the older `run` journaled them: four keys
        for (key, sent) in db.execute("SELECT source_key, sent_headers FROM objects").fetchall():
            older = {name: value for name, value in json.loads(sent).items() if name in ("content_type", "cache_control", "content_disposition", "user_metadata")}
            db.execute("UPDATE objects SET sent_headers = ? WHERE source_key = ?", (json.dumps(older, sort_keys=True), key))
    with TransferJournal(tmp_path / "journal.sqlite") as journal:
        for mode in ("fast", "deep"):
            frame = verify_records(records, source=store, destination=store, journal=journal, options=VerifyOptions(mode=mode, concurrency=2))  # type: ignore[arg-type]
            assert {row["source_key"]: row["status"] for row in frame.iter_rows(named=True)} == {"intact": "match", "big": "match", "stripped": "match"}, mode
