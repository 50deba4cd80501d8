"""The source audit: rows without bytes (through verify too) and bytes without rows (the bundled server's data dir)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import psycopg
import pytest

import migrate.report_spool as report_spool
from migrate.report import CATALOG_ONLY
from migrate.sampling import reservoir
from migrate.source_audit import audit_source_bytes, blobs_without_rows
from migrate.stores.supabase import NO_BYTES, SupabaseStore
from tests.test_stores_supabase import _upload


@pytest.fixture
def damaged_bucket(supabase_server: Any, make_supabase_bucket: Callable[..., str]) -> str:
    """Twenty good objects, two catalog rows without bytes."""
    bucket = make_supabase_bucket()
    _upload(supabase_server, bucket, {f"good/{i:02d}": f"body {i}".encode() for i in range(20)})
    with psycopg.connect(supabase_server.database_url, autocommit=True) as conn:
        for name in ("lost/a", "lost/b"):
            conn.execute("INSERT INTO storage.objects (bucket_id, name, version, metadata) VALUES (%s, %s, %s, '{\"size\": 3}')", (bucket, name, str(uuid.uuid4())))
    return bucket


def test_full_and_sampled_audits(supabase_server: Any, damaged_bucket: str) -> None:
    store = SupabaseStore(supabase_server.url, supabase_server.secret_key, fetch_user_metadata=False)
    listed = [(damaged_bucket, info.key, info.size) for page in store.iter_objects(damaged_bucket) for info in page]
    full = audit_source_bytes(listed, store, concurrency=8)
    assert (full.population, full.checked) == (22, 22) and [key for _, key, _ in full.missing] == ["lost/a", "lost/b"]
    frame = full.frame()
    assert frame["status"].to_list() == [CATALOG_ONLY] * 2 and all(NO_BYTES in d for d in frame["detail"].to_list())
    sampled = audit_source_bytes(listed, store, sample=5, seed=3)
    assert sampled.checked == 5 and sampled.sampled and "a sample of 5 of 22" in sampled.text()
    store.close()


class _CountedProbes:
    """The real store, counting the probes that have returned (to see how far ahead of them the audit reads)."""

    def __init__(self, store: SupabaseStore) -> None:
        self.store = store
        self.returned = 0
        self.probed: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def has_bytes(self, bucket: str, key: str, *, size: int) -> bool:
        try:
            return self.store.has_bytes(bucket, key, size=size)
        finally:
            with self._lock:
                self.returned += 1
                self.probed.append((bucket, key))


def _listing(supabase_server: Any, bucket: str) -> tuple[SupabaseStore, list[tuple[str, str, int]]]:
    store = SupabaseStore(supabase_server.url, supabase_server.secret_key, fetch_user_metadata=False)
    return store, [(bucket, info.key, info.size) for page in store.iter_objects(bucket) for info in page]


def test_the_audit_takes_objects_from_its_stream_only_as_probes_free_up(supabase_server: Any, damaged_bucket: str) -> None:
    """A list of every catalog row was gigabytes at 10M objects: the audit holds the probes in flight, a few per worker."""
    store, listed = _listing(supabase_server, damaged_bucket)
    probes = _CountedProbes(store)
    ahead: list[int] = []  # for each object taken: objects taken so far minus probes returned

    def stream() -> Iterator[tuple[str, str, int]]:
        for taken, item in enumerate(listed, start=1):
            ahead.append(taken - probes.returned)
            yield item

    audit = audit_source_bytes(stream(), probes, concurrency=2)
    assert (audit.population, audit.checked) == (22, 22) and [key for _, key, _ in audit.missing] == ["lost/a", "lost/b"]
    assert max(ahead) <= 2 * 2 + 1, ahead  # two probes in flight per worker, plus the one being submitted
    store.close()


def test_a_sampled_audit_probes_the_seeded_reservoir_of_the_stream(supabase_server: Any, damaged_bucket: str) -> None:
    """Same stream and seed: the objects verify's checks would sample (migrate.sampling.reservoir), each once."""
    store, listed = _listing(supabase_server, damaged_bucket)
    probes = _CountedProbes(store)
    audit = audit_source_bytes(iter(listed), probes, sample=5, seed=3)
    expected = [(bucket, key) for bucket, key, _ in reservoir(listed, 5, seed=3)]
    assert sorted(probes.probed) == sorted(expected) and len(set(expected)) == 5
    assert (audit.population, audit.checked, audit.sampled) == (22, 5, True)
    assert sorted(key for _, key, _ in audit.missing) == sorted(key for _, key in expected if key.startswith("lost/"))
    store.close()


def test_many_rows_without_bytes_go_to_disk_and_the_plan_reports_them_sorted(
    supabase_server: Any, damaged_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row of a catalog may have lost its bytes: past one part they are sorted on disk, and source-audit.csv is unchanged."""
    import polars as pl

    from migrate.inventory import plan_migration
    from migrate.plan import parse_plan

    lost = [f"lost/many/{i:03d}" for i in (37, 5, 19, 0, 28, 11, 33, 2, 24, 16, 8, 30, 13, 21, 1, 35, 26, 6)]
    with psycopg.connect(supabase_server.database_url, autocommit=True) as conn:
        for name in lost:
            conn.execute("INSERT INTO storage.objects (bucket_id, name, version, metadata) VALUES (%s, %s, %s, '{\"size\": 3}')", (damaged_bucket, name, str(uuid.uuid4())))
    monkeypatch.setattr(report_spool, "_ROWS_PER_PART", 4)  # 20 rows without bytes: five sorted parts, merged when read
    text = f"""version: 1
name: many-{damaged_bucket}
source: {{type: supabase, url: "${{U}}", key: "${{K}}", buckets: [{damaged_bucket}]}}
destination: {{bucket: unused, region: us-east-1}}
"""
    plan = parse_plan(text, source_name="many.yaml", environ={"U": supabase_server.url, "K": supabase_server.secret_key})
    result = plan_migration(plan, state_dir=tmp_path, reports_dir=tmp_path / "r", audit_source=True)
    audit = result.source_audit
    assert audit is not None and len(audit.missing) == 20
    expected = sorted(["lost/a", "lost/b", *lost])
    assert [key for _, key, _ in audit.missing] == expected and audit.missing.head(3) == [(damaged_bucket, key, 3) for key in expected[:3]]
    written = pl.read_csv(tmp_path / "r" / result.report_dir.name / "source-audit.csv")
    assert written["source_key"].to_list() == expected and set(written["status"].to_list()) == {CATALOG_ONLY}
    assert result.summary["source_audit"]["rows_without_bytes"] == 20 and result.summary["source_audit"]["examples"][0] == f"{damaged_bucket}/lost/a"


def test_verify_reports_rows_without_bytes_in_the_catalog_section(supabase_server: Any, damaged_bucket: str, seaweed: Any, tmp_path: Path) -> None:
    from migrate.inventory import plan_migration
    from migrate.plan import parse_plan
    from migrate.pipeline import verify_plan

    dest = f"au-{uuid.uuid4().hex[:8]}"
    seaweed.client().create_bucket(Bucket=dest)
    text = f"""version: 1
name: audit-{dest}
source: {{type: supabase, url: "${{U}}", key: "${{K}}", buckets: [{damaged_bucket}]}}
destination: {{bucket: {dest}, endpoint_url: "{seaweed.endpoint_url}", region: us-east-1, access_key_id_env: A, secret_access_key_env: S}}
"""
    plan = parse_plan(text, source_name="audit.yaml", environ={"U": supabase_server.url, "K": supabase_server.secret_key, "A": seaweed.access_key, "S": seaweed.secret_key})
    plan_migration(plan, state_dir=tmp_path, reports_dir=tmp_path / "r")
    report = verify_plan(plan, state_dir=tmp_path, reports_dir=tmp_path / "r")
    catalog = report.catalog_rows
    assert sorted(catalog["source_key"].to_list()) == ["lost/a", "lost/b"]
    assert set(catalog["status"].to_list()) == {CATALOG_ONLY}


def test_blobs_without_rows_are_listed_from_the_backend(supabase_server: Any, damaged_bucket: str) -> None:
    data_dir = Path(supabase_server.process.log_path).parent
    stray = data_dir / "blobs" / "ab" / f"ab{uuid.uuid4().hex[2:]}"
    stray.write_bytes(b"nobody's bytes")
    try:
        with psycopg.connect(supabase_server.database_url) as conn:
            versions = [row[0] for row in conn.execute("SELECT version FROM storage.objects WHERE version IS NOT NULL")]
        assert stray in blobs_without_rows(data_dir, versions)
        assert not any(path.name in set(versions) for path in blobs_without_rows(data_dir, versions))
    finally:
        stray.unlink()


def test_a_self_hosted_s3_backend_is_compared_with_the_catalog(supabase_server: Any, damaged_bucket: str, seaweed: Any) -> None:
    """The upstream layout (`<tenant>/<bucket>/<name>/<version>` in one global bucket), on SeaweedFS."""
    from migrate.source_audit import backend_key, compare_backend
    from migrate.stores.catalog import CatalogStore
    from migrate.stores.s3 import S3Location, S3Store

    catalog = CatalogStore(supabase_server.database_url, SupabaseStore(supabase_server.url, supabase_server.secret_key))
    rows = [(damaged_bucket, name, version) for name, version in catalog.object_versions(damaged_bucket)]
    assert len(rows) == 22
    backend = f"gb-{uuid.uuid4().hex[:8]}"
    client = seaweed.client()
    client.create_bucket(Bucket=backend)
    for bucket, name, version in rows:
        if not name.startswith("lost/"):  # the two damaged rows have no bytes in the backend either
            client.put_object(Bucket=backend, Key=backend_key("tenant-1", bucket, name, version), Body=b"x")
    client.put_object(Bucket=backend, Key=f"tenant-1/{damaged_bucket}/good/00/not-a-version", Body=b"orphan")
    store = S3Store(S3Location(endpoint_url=seaweed.endpoint_url, region="us-east-1", access_key_id=seaweed.access_key, secret_access_key=seaweed.secret_key))
    stored = [(info.key, info.size) for page in store.iter_objects(backend, "tenant-1/") for info in page]
    unnamed, lost = compare_backend(stored, rows, tenant="tenant-1")
    assert unnamed == [(f"tenant-1/{damaged_bucket}/good/00/not-a-version", 6)]
    assert lost == [(damaged_bucket, "lost/a"), (damaged_bucket, "lost/b")]
    catalog.close()


def test_run_reports_a_row_without_bytes_as_such(supabase_server: Any, damaged_bucket: str, seaweed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from migrate.cli import main

    dest = f"nb-{uuid.uuid4().hex[:8]}"
    seaweed.client().create_bucket(Bucket=dest)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"version: 1\nname: nobytes-{dest}\nsource: {{type: supabase, url: \"${{U}}\", key: \"${{K}}\", buckets: [{damaged_bucket}]}}\n"
        f"destination: {{bucket: {dest}, endpoint_url: \"{seaweed.endpoint_url}\", region: us-east-1, access_key_id_env: A, secret_access_key_env: S}}\n"
        "transfer: {max_attempts: 2}\n"
    )
    for name, value in {"U": supabase_server.url, "K": supabase_server.secret_key, "A": seaweed.access_key, "S": seaweed.secret_key}.items():
        monkeypatch.setenv(name, value)
    common = [str(plan), "--state-dir", str(tmp_path / "s"), "--reports-dir", str(tmp_path / "r")]
    assert main(["plan", *common, "--audit-source"]) == 3  # found before anything is copied
    assert "2 objects have a catalog row but no bytes at the source" in capsys.readouterr().err
    assert main(["run", *common, "--no-progress"]) == 3
    failed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("  failed:")]
    assert len(failed) == 2 and all(NO_BYTES in line and "500" not in line for line in failed), failed
