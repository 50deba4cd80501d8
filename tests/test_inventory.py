"""The plan stage against the bundled Supabase Storage server (REST and catalog) and SeaweedFS."""

from __future__ import annotations

import base64
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import httpx
import polars as pl
import pytest

from migrate.errors import BucketNotFound
from migrate.inventory import load_manifest, plan_migration
from migrate.plan import parse_plan
from migrate.records import MANIFEST_SCHEMA
from migrate.rundir import RunDirectory
from migrate.stores.catalog import CatalogStore
from migrate.stores.supabase import SupabaseStore, encode_key

SPECIAL_KEYS = [
    "reports/Q1 summary (final).pdf",
    "spaced/naive cafe (v2).txt",
    "odd/semi;colon, comma & amp+plus=eq@at!bang'quote.txt",
    "deep/a/b/c/d/e/f/g/leaf.bin",
    "zero/empty.bin",
    "folder/.emptyFolderPlaceholder",
]
WIDE_FOLDER_COUNT = 2600


class Uploader:
    """Puts objects into the bundled Supabase server over its REST API, as an app would."""

    def __init__(self, server: Any):
        self.base = f"{server.url}/storage/v1"
        self.http = httpx.Client(headers={"apikey": server.service_key, "Authorization": f"Bearer {server.service_key}"}, timeout=30)

    def bucket(self, *, public: bool = False) -> str:
        name = f"inv-{uuid.uuid4().hex[:8]}"
        response = self.http.post(f"{self.base}/bucket", json={"id": name, "name": name, "public": public})
        assert response.status_code == 200, response.text
        return name

    def put(self, bucket: str, key: str, body: bytes, *, content_type: str = "application/octet-stream", metadata: dict[str, str] | None = None) -> None:
        headers = {"Content-Type": content_type, "cache-control": "max-age=120", "x-upsert": "true"}
        if metadata:
            headers["x-metadata"] = base64.b64encode(json.dumps(metadata).encode()).decode()
        response = self.http.post(f"{self.base}/object/{bucket}/{encode_key(key)}", content=body, headers=headers)
        assert response.status_code == 200, (key, response.text)

    def put_many(self, bucket: str, objects: dict[str, bytes]) -> None:
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda item: self.put(bucket, item[0], item[1]), objects.items()))


@pytest.fixture(scope="module")
def uploader(supabase_server: Any) -> Iterator[Uploader]:
    up = Uploader(supabase_server)
    yield up
    up.http.close()


@pytest.fixture(scope="module")
def wide_bucket(uploader: Uploader) -> str:
    """One folder with more than 2,500 objects plus special keys: paging in every list API."""
    bucket = uploader.bucket()
    uploader.put_many(bucket, {f"wide/file-{i:05d}.txt": f"{i}".encode() for i in range(WIDE_FOLDER_COUNT)})
    for key in SPECIAL_KEYS:
        uploader.put(bucket, key, b"" if "empty" in key or "Placeholder" in key else key.encode(), content_type="text/plain", metadata={"origin": "test"})
    return bucket


def _plan(server: Any, bucket: str, *, extra: str = "", database: bool = False, dest: str = "unused-dest") -> Any:
    text = f"""
version: 1
name: inv-{uuid.uuid4().hex[:6]}
source:
  type: supabase
  url: ${{SUPABASE_URL}}
  key: ${{SUPABASE_SERVICE_ROLE_KEY}}
  {"database_url: ${SUPABASE_DB_URL}" if database else ""}
  buckets: [{bucket}]
destination:
  bucket: {dest}
  endpoint_url: http://127.0.0.1:9
  region: us-east-1
{extra}
"""
    env = {"SUPABASE_URL": server.url, "SUPABASE_SERVICE_ROLE_KEY": server.service_key, "SUPABASE_DB_URL": server.database_url}
    return parse_plan(text, source_name="test-plan.yaml", environ=env)


def _keys(store: Any, bucket: str) -> dict[str, Any]:
    return {info.key: info for page in store.iter_objects(bucket) for info in page}


def test_rest_v2_and_catalog_list_everything_with_the_same_metadata(supabase_server: Any, wide_bucket: str) -> None:
    rest = SupabaseStore(supabase_server.url, supabase_server.service_key)
    catalog = CatalogStore(supabase_server.database_url, SupabaseStore(supabase_server.url, supabase_server.service_key))
    via_rest, via_catalog = _keys(rest, wide_bucket), _keys(catalog, wide_bucket)
    assert len(via_rest) == WIDE_FOLDER_COUNT + len(SPECIAL_KEYS)
    assert set(via_rest) == set(via_catalog)
    for key in SPECIAL_KEYS:
        assert via_rest[key] == via_catalog[key], key
        assert via_rest[key].user_metadata == {"origin": "test"}
        assert via_rest[key].content_type == "text/plain" and via_rest[key].cache_control == "max-age=120"
    assert via_rest["zero/empty.bin"].size == 0
    assert via_rest["deep/a/b/c/d/e/f/g/leaf.bin"].etag and len(via_rest["deep/a/b/c/d/e/f/g/leaf.bin"].etag) == 32


def test_rest_falls_back_to_v1_folder_walking(supabase_server: Any, wide_bucket: str, supabase_faults: Any) -> None:
    rest = SupabaseStore(supabase_server.url, supabase_server.service_key, fetch_user_metadata=False)
    supabase_faults({"method": "POST", "path": "/object/list-v2/", "action": "status", "status": 404, "count": 1})
    v1_budget = 100_000
    supabase_faults({"method": "POST", "path": "/object/list/", "action": "latency", "delay_ms": 0, "count": v1_budget})
    keys = _keys(rest, wide_bucket)
    rules = httpx.get(f"{supabase_server.url}/storage/v1/_faults", headers={"apikey": supabase_server.service_key}).json()["rules"]
    assert rules[0]["status"] == 404 and rules[0]["count"] == 0  # the injected 404 fired
    assert v1_budget - rules[1]["count"] > 0  # and v1 did the listing (the fixture clears both rules)
    assert len(keys) == WIDE_FOLDER_COUNT + len(SPECIAL_KEYS)
    assert sorted(k for k in keys if not k.startswith("wide/")) == sorted(SPECIAL_KEYS), sorted(k for k in keys if not k.startswith("wide/"))


def test_plan_writes_a_manifest_with_rewrites_filters_and_placeholders(supabase_server: Any, wide_bucket: str, tmp_path: Path) -> None:
    plan = _plan(
        supabase_server,
        wide_bucket,
        extra="""
rules:
  - name: wide
    match: "wide/{name}"
    to: "flat/{bucket}/{name}"
    cache_control: "public, max-age=31536000, immutable"
  - name: deep
    regex: '^deep/(?P<rest>.+)/(?P<leaf>[^/]+)$'
    to: "shallow/{leaf}"
unmatched: keep
""",
    )
    result = plan_migration(plan, state_dir=tmp_path / "state", reports_dir=tmp_path / "reports")
    manifest = load_manifest(RunDirectory.for_plan(plan.name, state_dir=tmp_path / "state"))
    assert dict(manifest.schema) == MANIFEST_SCHEMA
    rows = {row["source_key"]: row for row in manifest.iter_rows(named=True)}
    assert rows["wide/file-00007.txt"]["dest_key"] == f"flat/{wide_bucket}/file-00007.txt"
    assert rows["wide/file-00007.txt"]["rule"] == "wide"
    assert rows["wide/file-00007.txt"]["cache_control"] == "public, max-age=31536000, immutable"
    assert rows["deep/a/b/c/d/e/f/g/leaf.bin"]["dest_key"] == "shallow/leaf.bin"
    assert rows["folder/.emptyFolderPlaceholder"]["action"] == "excluded"
    assert rows["spaced/naive cafe (v2).txt"]["action"] == "copy" and rows["spaced/naive cafe (v2).txt"]["dest_key"] == "spaced/naive cafe (v2).txt"
    assert json.loads(rows["reports/Q1 summary (final).pdf"]["user_metadata"]) == {"origin": "test"}
    assert result.summary["actions"]["copy"]["objects"] == WIDE_FOLDER_COUNT + len(SPECIAL_KEYS) - 1
    assert result.runnable
    assert (result.report_dir / "summary.md").read_text().count("| copy |") == 1
    summary = json.loads((result.report_dir / "summary.json").read_text())
    assert summary["estimate"]["put_requests"] == WIDE_FOLDER_COUNT + len(SPECIAL_KEYS) - 1
    assert summary["by_rule"]["wide"]["copy_objects"] == WIDE_FOLDER_COUNT


def test_catalog_plan_equals_rest_plan(supabase_server: Any, wide_bucket: str, tmp_path: Path) -> None:
    rest = plan_migration(_plan(supabase_server, wide_bucket), state_dir=tmp_path / "a", reports_dir=tmp_path / "r")
    catalog = plan_migration(_plan(supabase_server, wide_bucket, database=True), state_dir=tmp_path / "b", reports_dir=tmp_path / "r")
    assert catalog.summary["source"]["kind"] == "supabase-catalog" and rest.summary["source"]["kind"] == "supabase"
    columns = [c for c in MANIFEST_SCHEMA if c != "last_modified"]
    left = rest.manifest.select(columns).sort("source_key")
    right = catalog.manifest.select(columns).sort("source_key")
    assert left.equals(right)


def test_collisions_are_reported_with_both_sources_and_block_the_run(supabase_server: Any, uploader: Uploader, tmp_path: Path) -> None:
    bucket = uploader.bucket()
    uploader.put(bucket, "a/logo.png", b"1")
    uploader.put(bucket, "b/logo.png", b"2")
    uploader.put(bucket, "c/unique.png", b"3")
    plan = _plan(supabase_server, bucket, extra='rules:\n  - {name: flatten, match: "{dir}/{file}", to: "all/{file}"}\n')
    result = plan_migration(plan, state_dir=tmp_path, reports_dir=tmp_path / "r")
    collided = result.manifest.filter(pl.col("action") == "collision")
    assert sorted(collided["source_key"].to_list()) == ["a/logo.png", "b/logo.png"]
    assert all(f"{bucket}/a/logo.png" in reason and f"{bucket}/b/logo.png" in reason for reason in collided["reason"].to_list())
    assert not result.runnable and result.collisions == 2


def test_invalid_destination_keys_are_flagged(supabase_server: Any, uploader: Uploader, tmp_path: Path) -> None:
    bucket = uploader.bucket()
    uploader.put(bucket, "x/ok.txt", b"1")
    uploader.put(bucket, "y/" + "long" * 250 + ".txt", b"2")  # 1006 bytes: fine at the source
    plan = _plan(supabase_server, bucket, extra='rules:\n  - {name: r, match: "{d}/{f}", to: "archive/2024/january/{d}/{f}"}\n')
    result = plan_migration(plan, state_dir=tmp_path, reports_dir=tmp_path / "r")
    actions = dict(zip(result.manifest["source_key"], result.manifest["action"]))
    assert actions["x/ok.txt"] == "copy"
    assert actions["y/" + "long" * 250 + ".txt"] == "invalid-key"  # 1027 bytes after the rewrite: over S3's 1024
    assert "1024" in result.manifest.filter(pl.col("action") == "invalid-key")["reason"][0]
    # Issue 10: what S3 cannot hold blocks the run (plan exits 3) until it is excluded.
    assert result.invalid_keys == 1 and result.unwritable == 1 and not result.runnable


def test_empty_bucket_and_missing_bucket(supabase_server: Any, uploader: Uploader, tmp_path: Path) -> None:
    empty = uploader.bucket()
    result = plan_migration(_plan(supabase_server, empty), state_dir=tmp_path, reports_dir=tmp_path / "r")
    assert result.manifest.height == 0 and result.estimate.objects == 0
    with pytest.raises(BucketNotFound) as caught:
        plan_migration(_plan(supabase_server, "no-such-bucket"), state_dir=tmp_path, reports_dir=tmp_path / "r")
    assert "no-such-bucket" in str(caught.value)
    with pytest.raises(BucketNotFound):
        plan_migration(_plan(supabase_server, "no-such-bucket", database=True), state_dir=tmp_path, reports_dir=tmp_path / "r")


def test_check_destination_marks_objects_already_there(supabase_server: Any, uploader: Uploader, seaweed: Any, tmp_path: Path) -> None:
    bucket = uploader.bucket()
    uploader.put(bucket, "same.txt", b"identical")
    uploader.put(bucket, "other.txt", b"source bytes")
    uploader.put(bucket, "new.txt", b"new")
    dest = f"chk-{uuid.uuid4().hex[:8]}"
    client = seaweed.client()
    client.create_bucket(Bucket=dest)
    client.put_object(Bucket=dest, Key="same.txt", Body=b"identical")
    client.put_object(Bucket=dest, Key="other.txt", Body=b"different!!!")
    plan = _with_destination(_plan(supabase_server, bucket, dest=dest), seaweed)
    result = plan_migration(plan, state_dir=tmp_path, reports_dir=tmp_path / "r", check_destination=True)
    actions = dict(zip(result.manifest["source_key"], result.manifest["action"]))
    assert actions == {"same.txt": "skip-existing", "other.txt": "copy", "new.txt": "copy"}
    reasons = dict(zip(result.manifest["source_key"], result.manifest["reason"]))
    assert "differs" in reasons["other.txt"]
    assert client.list_objects_v2(Bucket=dest)["KeyCount"] == 2  # nothing written


def _with_destination(plan: Any, seaweed: Any) -> Any:
    """Point a plan's destination at the SeaweedFS fixture (credentials as the plan loader would resolve them)."""
    destination = plan.destination.model_copy(
        update={"endpoint_url": seaweed.endpoint_url, "access_key_id": seaweed.access_key, "secret_access_key": seaweed.secret_key}
    )
    return plan.model_copy(update={"destination": destination})


# -- faults, checkpoints, and the source audit (issue 9 item 1, issue 10 item 6) ------------------
def _manifest_without_times(result: Any) -> pl.DataFrame:
    return result.manifest.drop("last_modified").sort("source_key")


def test_plan_under_injected_faults_equals_a_fault_free_plan(supabase_server: Any, wide_bucket: str, supabase_faults: Any, tmp_path: Path) -> None:
    plan = _plan(supabase_server, wide_bucket)
    clean = plan_migration(plan, state_dir=tmp_path / "clean", reports_dir=tmp_path / "r")
    # About 10% of the plan's ~2,610 requests fail once each (500, 503, 429 in turn), plus list-v2 faults and one drop.
    statuses = (500, 503, 429)
    rules = [
        {"method": "GET", "path": f"/object/info/{wide_bucket}/wide/file-{i:05d}\\.txt$", "action": "status", "status": statuses[i % 3], "count": 1}
        for i in range(0, WIDE_FOLDER_COUNT, 10)
    ]
    rules += [
        {"method": "POST", "path": "/object/list-v2/", "action": "status", "status": 503, "count": 1},
        {"method": "POST", "path": "/object/list-v2/", "action": "drop", "count": 1},
        {"method": "GET", "path": f"/bucket/{wide_bucket}", "action": "status", "status": 500, "count": 1},
    ]
    supabase_faults(*rules)
    faulted = plan_migration(plan, state_dir=tmp_path / "faulted", reports_dir=tmp_path / "r")
    left = httpx.get(f"{supabase_server.url}/storage/v1/_faults", headers={"apikey": supabase_server.service_key}).json()["rules"]
    assert len(left) == len(rules) and all(rule["count"] == 0 for rule in left)  # every fault fired
    assert _manifest_without_times(faulted).equals(_manifest_without_times(clean))


def test_a_plan_killed_mid_listing_resumes_from_its_checkpoint(supabase_server: Any, uploader: Uploader, supabase_faults: Any, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    bucket = uploader.bucket()
    pages = 4
    objects = {f"k/{i:05d}.txt": b"v" for i in range(pages * 1000 - 10)}  # four list-v2 pages at the default size
    uploader.put_many(bucket, objects)
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(
        f"version: 1\nname: kill-{bucket}\nsource:\n  type: supabase\n  url: ${{SUPABASE_URL}}\n  key: ${{SUPABASE_SECRET_KEY}}\n  buckets: [{bucket}]\n"
        "destination:\n  bucket: unused\n  endpoint_url: http://127.0.0.1:9\n  region: us-east-1\n"
    )
    env = {**os.environ, "SUPABASE_URL": supabase_server.url, "SUPABASE_SECRET_KEY": supabase_server.secret_key}
    state = tmp_path / "state"
    checkpoint = state / "runs" / f"kill-{bucket}" / ".inventory-parts" / "checkpoint.json"
    supabase_faults({"method": "POST", "path": "/object/list-v2/", "action": "latency", "delay_ms": 1500, "count": None})
    child = subprocess.Popen(
        [sys.executable, "-m", "migrate", "plan", str(plan_path), "--state-dir", str(state), "--reports-dir", str(tmp_path / "r")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    written = 0
    while time.monotonic() < deadline and written < 2:
        try:
            written = json.loads(checkpoint.read_text())["units"]["0"]["parts"]
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert written >= 2 and child.returncode == -signal.SIGKILL
    httpx.delete(f"{supabase_server.url}/storage/v1/_faults", headers={"apikey": supabase_server.service_key})
    budget = 100_000
    supabase_faults({"method": "POST", "path": "/object/list-v2/", "action": "latency", "delay_ms": 0, "count": budget})

    def requests_so_far() -> int:
        rules = httpx.get(f"{supabase_server.url}/storage/v1/_faults", headers={"apikey": supabase_server.service_key}).json()["rules"]
        return budget - int(rules[0]["count"])

    environ = {"SUPABASE_URL": supabase_server.url, "SUPABASE_SECRET_KEY": supabase_server.secret_key}
    plan = parse_plan(plan_path.read_text(), source_name=str(plan_path), environ=environ)
    resumed = plan_migration(plan, state_dir=state, reports_dir=tmp_path / "r")
    resumed_pages = requests_so_far()
    fresh = plan_migration(plan, state_dir=tmp_path / "fresh", reports_dir=tmp_path / "r")
    full_pages = requests_so_far() - resumed_pages
    assert full_pages == pages and resumed_pages <= pages - written
    assert _manifest_without_times(resumed).equals(_manifest_without_times(fresh)) and resumed.manifest.height == len(objects)
    assert not checkpoint.parent.exists()  # a completed plan clears its checkpoint


def test_a_checkpoint_of_another_plan_is_discarded(supabase_server: Any, wide_bucket: str, tmp_path: Path) -> None:
    from migrate.inventory import ListingCheckpoint

    plan = _plan(supabase_server, wide_bucket)
    parts = RunDirectory.for_plan(plan.name, state_dir=tmp_path).path / ".inventory-parts"
    stale = ListingCheckpoint.open(parts, fingerprint="another-plan", source_kind="supabase")
    stale.unit(0, wide_bucket, "")["done"] = True  # claims the bucket is listed, with no parts
    stale.save()
    result = plan_migration(plan, state_dir=tmp_path, reports_dir=tmp_path / "r")
    assert result.manifest.height == WIDE_FOLDER_COUNT + len(SPECIAL_KEYS)


def test_audit_source_finds_rows_without_bytes_before_anything_is_copied(supabase_server: Any, uploader: Uploader, tmp_path: Path) -> None:
    import psycopg

    bucket = uploader.bucket()
    for i in range(30):
        uploader.put(bucket, f"ok/{i:02d}.txt", f"body {i}".encode())
    with psycopg.connect(supabase_server.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO storage.objects (bucket_id, name, version, metadata) "
            "SELECT %s, 'ghost/' || i, gen_random_uuid()::text, jsonb_build_object('size', 7, 'eTag', md5(i::text)) FROM generate_series(1, 3) AS i",
            (bucket,),
        )
        version = conn.execute("SELECT version FROM storage.objects WHERE bucket_id = %s AND name = 'ok/05.txt'", (bucket,)).fetchone()[0]
    blob = Path(supabase_server.process.log_path).parent / "blobs" / version[:2] / version  # the server's data dir
    blob.unlink()  # bytes deleted behind Supabase's back
    for database in (False, True):
        result = plan_migration(_plan(supabase_server, bucket, database=database), state_dir=tmp_path / str(database), reports_dir=tmp_path / "r", audit_source=True)
        assert result.source_audit is not None
        missing = sorted(key for _, key, _ in result.source_audit.missing)
        assert missing == ["ghost/1", "ghost/2", "ghost/3", "ok/05.txt"] and result.source_audit.checked == 33
        assert "no bytes at the source" in result.summary_text()


def test_an_s3_source_plan_lists_without_a_head_per_object(seaweed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ListObjectsV2 alone: no filter or rule decides on headers, so the manifest leaves them to `run`'s GET (null)."""
    from migrate.stores.s3 import S3Store

    client = seaweed.client()
    source, dest = f"src-{uuid.uuid4().hex[:8]}", f"dst-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=source)
    for n in range(5):
        client.put_object(Bucket=source, Key=f"k{n}.png", Body=b"x" * n, ContentType="image/png", Metadata={"owner": "u"})

    def no_head(self: Any, bucket: str, key: str) -> None:
        raise AssertionError(f"HEAD {bucket}/{key} during plan")

    monkeypatch.setattr(S3Store, "head", no_head)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    plan = parse_plan(
        f"""version: 1
name: s3-nohead
source: {{type: s3, endpoint_url: "{seaweed.endpoint_url}", region: us-east-1, buckets: [{source}]}}
destination: {{bucket: {dest}, endpoint_url: "{seaweed.endpoint_url}", region: us-east-1}}
rules:
  - {{name: all, match: "{{file**}}", to: "{{file}}", metadata: {{tier: gold}}}}
""",
        source_name="s3-nohead.yaml",
        environ=dict(os.environ),
    )
    result = plan_migration(plan, state_dir=tmp_path / "state", reports_dir=tmp_path / "reports")
    manifest = result.manifest
    assert manifest.height == 5
    assert manifest["content_type"].null_count() == 5 and manifest["cache_control"].null_count() == 5
    assert set(manifest["user_metadata"].to_list()) == {'{"tier": "gold"}'}


def test_only_the_plan_and_run_stages_list_an_s3_source_without_heads() -> None:
    """A backup keeps the listed headers itself: its S3 listing still HEADs each object; plan and run take them from the GET."""
    from migrate.stores.factory import open_source

    plan = parse_plan(
        'version: 1\nname: f\nsource: {type: s3, endpoint_url: "http://127.0.0.1:1", region: us-east-1, buckets: [src-a]}\ndestination: {bucket: dst-b}\n',
        source_name="f.yaml",
        environ={"AWS_ACCESS_KEY_ID": "AKTEST", "AWS_SECRET_ACCESS_KEY": "secret"},
    )
    assert open_source(plan).fetch_metadata is True  # type: ignore[attr-defined]
    assert open_source(plan, headers_from_read=True).fetch_metadata is False  # type: ignore[attr-defined]
