"""The Supabase source stores (REST and catalog) against the bundled server: paging, retries, keys, damage."""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import httpx
import psycopg
import pytest

from migrate.errors import ServiceUnavailable
from migrate.stores.catalog import CATALOG_PAGE, CatalogStore
from migrate.stores.supabase import (
    DOT_SEGMENT_REASON,
    LIST_V2_PAGE,
    NO_BYTES,
    OUTSIDE_KEY_SET_REASON,
    SourceBytesMissing,
    SupabaseStore,
    UnaddressableKey,
    auth_headers,
    encode_key,
)
from tests.plan_files import write_supabase_plan

Faults = Callable[..., list[dict[str, Any]]]


def _upload(server: Any, bucket: str, objects: dict[str, bytes]) -> None:
    with httpx.Client(base_url=server.storage_url, headers={"apikey": server.service_key, "Authorization": f"Bearer {server.service_key}"}, timeout=60) as client:

        def put(item: tuple[str, bytes]) -> None:
            response = client.post(f"/object/{bucket}/{encode_key(item[0])}", content=item[1], headers={"Content-Type": "text/plain", "x-upsert": "true"})
            assert response.status_code == 200, response.text

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(put, objects.items()))


def _counter(faults: Faults, method: str, path: str) -> Callable[[], int]:
    """Count requests the server received on `path` (a zero-delay latency rule whose count goes down)."""
    budget = 1_000_000
    faults({"method": method, "path": path, "action": "latency", "delay_ms": 0, "count": budget})

    def seen(server: Any) -> int:
        rules = httpx.get(f"{server.storage_url}/_faults", headers={"apikey": server.service_key}).json()["rules"]
        return budget - next(rule["count"] for rule in rules if rule["path"] == path and rule["action"] == "latency")

    return seen  # type: ignore[return-value]


def _listed(pages: Iterator[Any]) -> list[str]:
    return [info.key for page in pages for info in page]


@pytest.fixture
def nested_bucket(supabase_server: Any, make_supabase_bucket: Callable[..., str]) -> tuple[str, dict[str, bytes]]:
    """23 objects over three folder levels: several pages at a page size of 5."""
    bucket = make_supabase_bucket()
    objects = {f"top-{i:02d}.txt": f"t{i}".encode() for i in range(9)}
    objects |= {f"a/mid-{i:02d}.txt": f"m{i}".encode() for i in range(8)}
    objects |= {f"a/b/deep-{i:02d}.txt": f"d{i}".encode() for i in range(6)}
    _upload(supabase_server, bucket, objects)
    return bucket, objects


# -- paging: every inventory path across pages of its real size, lowered ------------------
def test_list_v2_pages_through_every_object_at_a_lowered_page_size(supabase_server: Any, nested_bucket: tuple[str, dict[str, bytes]], supabase_faults: Faults) -> None:
    bucket, objects = nested_bucket
    seen = _counter(supabase_faults, "POST", "/object/list-v2/")
    store = SupabaseStore(supabase_server.url, supabase_server.secret_key, list_v2_page=5, fetch_user_metadata=False)
    keys = _listed(store.iter_objects(bucket))
    assert sorted(keys) == sorted(objects) and len(keys) == len(objects)  # no page repeated or skipped
    assert seen(supabase_server) == 5  # ceil(23 / 5) pages, each one request


def test_v1_fallback_pages_through_every_folder_at_a_lowered_page_size(supabase_server: Any, nested_bucket: tuple[str, dict[str, bytes]], supabase_faults: Faults) -> None:
    bucket, objects = nested_bucket
    # list-v2 missing (an old self-hosted server): one 404 for the route, then v1 only.
    supabase_faults({"method": "POST", "path": "/object/list-v2/", "action": "status", "status": 404, "count": 1})
    v1_requests = _counter(supabase_faults, "POST", "/object/list/")
    store = SupabaseStore(supabase_server.url, supabase_server.secret_key, list_v1_page=4, fetch_user_metadata=False)
    keys = _listed(store.iter_objects(bucket))
    assert sorted(keys) == sorted(objects) and len(keys) == len(objects)
    rules = httpx.get(f"{supabase_server.storage_url}/_faults", headers={"apikey": supabase_server.service_key}).json()["rules"]
    assert [rule["count"] for rule in rules if rule["status"] == 404 and rule["action"] == "status"] == [0]  # the 404 fired
    # root: 9 objects + folder a (10 rows -> 3 requests of 4); a: 8 + folder b (9 rows -> 3); a/b: 6 rows -> 2
    assert v1_requests(supabase_server) == 8


def test_catalog_pages_by_keyset_at_a_lowered_page_size(supabase_server: Any, nested_bucket: tuple[str, dict[str, bytes]]) -> None:
    bucket, objects = nested_bucket
    rest = SupabaseStore(supabase_server.url, supabase_server.secret_key, fetch_user_metadata=False)
    catalog = CatalogStore(supabase_server.database_url, rest, page_size=5)
    pages = list(catalog.iter_pages(bucket))
    assert [len(page.objects) for page in pages] == [5, 5, 5, 5, 3]
    keys = [info.key for page in pages for info in page.objects]
    assert keys == sorted(objects, key=lambda k: k.encode()) and len(set(keys)) == len(objects)
    # resuming from a page's position yields exactly the pages after it
    resumed = [info.key for page in catalog.iter_pages(bucket, resume=pages[1].resume) for info in page.objects]
    assert resumed == keys[10:]
    catalog.close()


def test_catalog_at_its_default_page_size_lists_past_one_page(supabase_server: Any, make_supabase_bucket: Callable[..., str]) -> None:
    bucket = make_supabase_bucket()
    count = CATALOG_PAGE + 37
    # Rows only (the catalog listing never reads bytes): seeded straight into storage.objects.
    with psycopg.connect(supabase_server.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO storage.objects (bucket_id, name, metadata) "
            "SELECT %s, 'k/' || lpad(i::text, 6, '0'), jsonb_build_object('size', i, 'eTag', md5(i::text), 'mimetype', 'text/plain') "
            "FROM generate_series(1, %s) AS i",
            (bucket, count),
        )
    catalog = CatalogStore(supabase_server.database_url, SupabaseStore(supabase_server.url, supabase_server.secret_key))
    pages = list(catalog.iter_pages(bucket))
    assert [len(page.objects) for page in pages] == [CATALOG_PAGE, 37]
    keys = [info.key for page in pages for info in page.objects]
    assert len(set(keys)) == count and keys[CATALOG_PAGE] == f"k/{CATALOG_PAGE + 1:06d}"
    catalog.close()


def test_rest_at_its_default_page_size_lists_past_one_page(supabase_server: Any, make_supabase_bucket: Callable[..., str], supabase_faults: Faults) -> None:
    bucket = make_supabase_bucket()
    objects = {f"p/{i:05d}": b"x" for i in range(LIST_V2_PAGE + 12)}
    _upload(supabase_server, bucket, objects)
    v2 = _counter(supabase_faults, "POST", "/object/list-v2/")
    store = SupabaseStore(supabase_server.url, supabase_server.secret_key, fetch_user_metadata=False)
    keys = _listed(store.iter_objects(bucket))
    assert sorted(keys) == sorted(objects) and v2(supabase_server) == 2
    # and v1 at its default page size, across its second page of the same folder
    httpx.delete(f"{supabase_server.storage_url}/_faults", headers={"apikey": supabase_server.service_key})
    supabase_faults({"method": "POST", "path": "/object/list-v2/", "action": "status", "status": 404, "count": 1})
    v1 = _counter(supabase_faults, "POST", "/object/list/")
    assert sorted(_listed(store.iter_objects(bucket))) == sorted(objects)
    assert v1(supabase_server) == 1 + 2  # root (folder p), then p in two pages of 1000


# -- retries -----------------------------------------------------------------------------
def test_listing_retries_5xx_429_and_a_dropped_connection(supabase_server: Any, nested_bucket: tuple[str, dict[str, bytes]], supabase_faults: Faults) -> None:
    bucket, objects = nested_bucket
    supabase_faults(
        {"method": "POST", "path": "/object/list-v2/", "action": "status", "status": 503, "count": 1},
        {"method": "POST", "path": "/object/list-v2/", "action": "drop", "count": 1},
        {"method": "GET", "path": "/object/info/", "action": "status", "status": 500, "count": 2},
        {"method": "GET", "path": "/object/info/", "action": "status", "status": 429, "count": 1},
        {"method": "GET", "path": f"/bucket/{bucket}", "action": "status", "status": 502, "count": 1},
    )
    store = SupabaseStore(supabase_server.url, supabase_server.secret_key, list_v2_page=10)
    assert sorted(_listed(store.iter_objects(bucket))) == sorted(objects)
    rules = httpx.get(f"{supabase_server.storage_url}/_faults", headers={"apikey": supabase_server.service_key}).json()["rules"]
    assert all(rule["count"] == 0 for rule in rules), rules  # every fault fired and was ridden out


def test_retry_after_is_honoured(supabase_server: Any, nested_bucket: tuple[str, dict[str, bytes]], supabase_faults: Faults) -> None:
    bucket, _ = nested_bucket
    supabase_faults({"method": "POST", "path": "/object/list-v2/", "action": "status", "status": 429, "count": 1, "retry_after": 2})
    store = SupabaseStore(supabase_server.url, supabase_server.secret_key, fetch_user_metadata=False)
    started = time.monotonic()
    list(store.iter_objects(bucket))
    # The policy's own first backoff is at most 0.2 s: only the header explains 2 s.
    assert time.monotonic() - started >= 2.0


def test_faults_that_outlast_the_attempts_stop_with_exit_4_naming_the_host(supabase_server: Any, nested_bucket: tuple[str, dict[str, bytes]], supabase_faults: Faults) -> None:
    bucket, _ = nested_bucket
    supabase_faults({"method": "POST", "path": "/object/list-v2/", "action": "status", "status": 503, "count": None})
    store = SupabaseStore(supabase_server.url, supabase_server.secret_key, max_attempts=2)
    with pytest.raises(ServiceUnavailable) as caught:
        list(store.iter_objects(bucket))
    message = str(caught.value)
    assert supabase_server.url.split("//")[1] in message and "rerun the same command to continue" in message
    assert supabase_server.secret_key not in message and int(caught.value.exit_status) == 4


def test_an_unreachable_url_is_service_unavailable() -> None:
    store = SupabaseStore("http://127.0.0.1:9", "sb_secret_unused", max_attempts=2)
    with pytest.raises(ServiceUnavailable, match="127.0.0.1:9"):
        store.check_bucket("anything")
    dns = SupabaseStore("http://no-such-host.invalid", "sb_secret_unused", max_attempts=1)
    with pytest.raises(ServiceUnavailable, match="no-such-host.invalid"):
        dns.list_buckets()


# -- keys -------------------------------------------------------------------------------
def test_secret_keys_go_in_apikey_only_and_jwts_in_both_headers(supabase_server: Any) -> None:
    assert auth_headers("sb_secret_abc") == {"apikey": "sb_secret_abc"}
    assert auth_headers(supabase_server.service_key) == {"apikey": supabase_server.service_key, "Authorization": f"Bearer {supabase_server.service_key}"}
    # The bundled server refuses an sb_secret_ bearer as the hosted gateway does: what we send must pass.
    refused = httpx.get(f"{supabase_server.storage_url}/bucket", headers={"apikey": supabase_server.secret_key, "Authorization": f"Bearer {supabase_server.secret_key}"})
    assert refused.status_code >= 400
    for key in (supabase_server.secret_key, supabase_server.service_key):
        store = SupabaseStore(supabase_server.url, key)
        assert isinstance(store.list_buckets(), list)
        store.close()


# -- rows without bytes ---------------------------------------------------------------------
def test_a_row_without_bytes_is_reported_as_such(supabase_server: Any, make_supabase_bucket: Callable[..., str]) -> None:
    bucket = make_supabase_bucket()
    _upload(supabase_server, bucket, {"kept.txt": b"kept", "lost.txt": b"lost", "empty.txt": b""})
    with psycopg.connect(supabase_server.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO storage.objects (bucket_id, name, version, metadata) VALUES (%s, 'ghost.txt', %s, '{\"size\": 5}')", (bucket, str(uuid.uuid4())))
    store = SupabaseStore(supabase_server.url, supabase_server.secret_key)
    assert store.has_bytes(bucket, "kept.txt", size=4) and store.has_bytes(bucket, "empty.txt", size=0)
    assert not store.has_bytes(bucket, "ghost.txt", size=5)
    with pytest.raises(SourceBytesMissing, match=NO_BYTES):
        store.open(bucket, "ghost.txt")
    store.close()


# -- end to end with a new secret key; the source changing between plan and run ----------------
def _write_plan(path: Any, name: str, bucket: str, concurrency: int = 4, extra: str = "") -> None:
    write_supabase_plan(
        path,
        name=name,
        bucket=bucket,
        dest="${MIGRATE_DEST_BUCKET}",
        endpoint="${MIGRATE_DEST_ENDPOINT_URL}",
        key_variable="SUPABASE_SECRET_KEY",
        extra=f"transfer: {{concurrency: {concurrency}, max_attempts: 3}}\n{extra}",
    )


def _cli_env(supabase_server: Any, seaweed: Any, dest: str) -> dict[str, str]:
    """The environment the `_write_plan` plan reads: the server's sb_secret_ key, the SeaweedFS destination."""
    import os

    return {
        **os.environ,
        "SUPABASE_URL": supabase_server.url,
        "SUPABASE_SECRET_KEY": supabase_server.secret_key,  # apikey only: a bearer would be refused
        "AWS_ACCESS_KEY_ID": seaweed.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
        "MIGRATE_DEST_ENDPOINT_URL": seaweed.endpoint_url,
        "MIGRATE_DEST_BUCKET": dest,
    }


def _cli(plan: Any, tmp: Any, *args: str, env: dict[str, str], timeout: float = 300) -> Any:
    import subprocess
    import sys

    command = [sys.executable, "-m", "migrate", *args, str(plan), "--state-dir", str(tmp / "state"), "--reports-dir", str(tmp / "reports")]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def test_plan_run_verify_with_an_sb_secret_key_and_twenty_objects_changed_after_plan(
    supabase_server: Any, make_supabase_bucket: Callable[..., str], seaweed: Any, tmp_path: Any
) -> None:
    bucket = make_supabase_bucket()
    objects = {f"obj/{i:02d}.bin": f"first version {i}".encode() for i in range(30)}
    _upload(supabase_server, bucket, objects)
    dest = f"sk-{uuid.uuid4().hex[:8]}"
    seaweed.client().create_bucket(Bucket=dest)
    env = _cli_env(supabase_server, seaweed, dest)
    plan = tmp_path / "plan.yaml"
    _write_plan(plan, f"sk-{dest}", bucket)
    assert _cli(plan, tmp_path, "plan", env=env).returncode == 0
    changed = {key: f"second, longer version {i}".encode() for i, key in enumerate(sorted(objects)[:20])}
    _upload(supabase_server, bucket, changed)
    # Twenty failures on a pool of 8 connections: each must give its connection back, so the run ends promptly.
    first = _cli(plan, tmp_path, "run", "--no-progress", env=env, timeout=180)
    assert first.returncode == 3, first.stderr
    assert f"20 objects changed at the source since the plan; run `migrate run --replan {plan}`" in first.stderr
    assert "Traceback" not in first.stderr
    second = _cli(plan, tmp_path, "run", "--replan", "--no-progress", env=env, timeout=180)
    assert second.returncode == 0, second.stderr
    s3 = seaweed.client()
    for key, body in {**objects, **changed}.items():
        assert s3.get_object(Bucket=dest, Key=key)["Body"].read() == body, key
    verified = _cli(plan, tmp_path, "verify", "--mode", "deep", "--no-progress", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr


#: Keys the API accepts (limits.ts isValidKey), each beside the key a dot-segment key would be read as.
ODD_KEYS = {
    "c/d.txt": b"c/d.txt, its own bytes",
    "b.txt": b"b.txt, its own bytes",
    "x": b"x, its own bytes",
    "sp ace/a+b=c&d;e,f$g@h (1)!.txt": b"spaces and punctuation",
    "q?mark.txt": b"a question mark",
    "trailing-dot./..x": b"dots inside segments are no dot segments",
}
#: Keys outside isValidKey (`%`, `#`, `~`, non-ASCII) that a catalog can still hold (written before the check,
#: or by SQL; renamed in SQL here). Upstream's findObject checks the key on every read too: never readable.
CATALOG_ONLY_KEYS = {"100%.txt": b"a percent sign", "hash#tag.txt": b"a hash", "ünï/naïve café~.txt": b"unicode and a tilde"}
#: Read through httpx these name `c/d.txt`, `b.txt` and `x`.
DOT_SEGMENT_KEYS = {"c/./d.txt": b"c/./d.txt, not c/d.txt", "a/../b.txt": b"a/../b.txt, not b.txt", "x/.": b"x/., not x"}


def test_plan_run_verify_of_odd_keys_refuses_the_unreadable_and_copies_every_other_key_with_its_own_bytes(
    supabase_server: Any, make_supabase_bucket: Callable[..., str], seaweed: Any, tmp_path: Any
) -> None:
    import polars as pl

    bucket = make_supabase_bucket()
    _upload(supabase_server, bucket, ODD_KEYS)
    for index, (key, body) in enumerate(CATALOG_ONLY_KEYS.items()):
        _upload(supabase_server, bucket, {f"renamed-{index}": body})
        with psycopg.connect(supabase_server.database_url, autocommit=True) as conn:
            conn.execute("UPDATE storage.objects SET name = %s WHERE bucket_id = %s AND name = %s", (key, bucket, f"renamed-{index}"))
    for key, body in DOT_SEGMENT_KEYS.items():
        _put_as_is(supabase_server, bucket, key, body)
    dest = f"odd-{uuid.uuid4().hex[:8]}"
    seaweed.client().create_bucket(Bucket=dest)
    env = _cli_env(supabase_server, seaweed, dest)
    plan = tmp_path / "plan.yaml"
    _write_plan(plan, f"odd-{dest}", bucket)

    planned = _cli(plan, tmp_path, "plan", env=env)
    assert planned.returncode == 3, planned.stdout + planned.stderr
    assert "6 objects cannot be migrated as they are" in planned.stderr
    manifest = pl.read_parquet(next((tmp_path / "state").rglob("manifest.parquet")))
    rows = {key: (action, reason) for key, action, reason in manifest.select("source_key", "action", "reason").iter_rows()}
    assert rows == {
        **{key: ("copy", None) for key in ODD_KEYS},
        **{key: ("unreadable-key", OUTSIDE_KEY_SET_REASON) for key in CATALOG_ONLY_KEYS},
        **{key: ("unreadable-key", DOT_SEGMENT_REASON) for key in DOT_SEGMENT_KEYS},
    }
    summary = next((tmp_path / "reports").rglob("summary.md")).read_text()
    assert f"- unreadable-key: {bucket}/c/./d.txt: {DOT_SEGMENT_REASON}" in summary

    refused = _cli(plan, tmp_path, "run", "--no-progress", env=env)
    assert refused.returncode == 2 and "6 planned objects cannot be migrated as they are (first: " in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and seaweed.client().list_objects_v2(Bucket=dest)["KeyCount"] == 0
    unverified = _cli(plan, tmp_path, "verify", "--no-progress", env=env)
    assert unverified.returncode == 3, unverified.stdout + unverified.stderr
    report = pl.read_parquet(next((tmp_path / "reports").rglob("report.parquet")))
    not_migrated = report.filter(pl.col("status") == "not-migrated")
    details = dict(not_migrated.select("source_key", "detail").iter_rows())
    assert sorted(details) == sorted({**DOT_SEGMENT_KEYS, **CATALOG_ONLY_KEYS})
    assert all(details[key].startswith(DOT_SEGMENT_REASON) for key in DOT_SEGMENT_KEYS)

    # The user excludes them (or renames them at the source): every other key is copied with its own bytes.
    excluded = ", ".join(f"'{key}'" for key in {**DOT_SEGMENT_KEYS, **CATALOG_ONLY_KEYS})
    _write_plan(plan, f"odd-{dest}", bucket, extra=f"filters: {{exclude: [{excluded}]}}\n")
    assert _cli(plan, tmp_path, "plan", env=env).returncode == 0
    ran = _cli(plan, tmp_path, "run", "--no-progress", env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    s3 = seaweed.client()
    copied = {item["Key"] for item in s3.list_objects_v2(Bucket=dest)["Contents"]}
    assert copied == set(ODD_KEYS)
    for key, body in ODD_KEYS.items():
        assert s3.get_object(Bucket=dest, Key=key)["Body"].read() == body, key
    verified = _cli(plan, tmp_path, "verify", "--mode", "deep", "--no-progress", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_catalog_reconnects_after_a_dropped_connection_and_continues_from_its_position(supabase_server: Any, nested_bucket: tuple[str, dict[str, bytes]]) -> None:
    bucket, objects = nested_bucket
    catalog = CatalogStore(supabase_server.database_url, SupabaseStore(supabase_server.url, supabase_server.secret_key), page_size=5)
    keys: list[str] = []
    killed = []
    for page in catalog.iter_pages(bucket):
        keys += [info.key for info in page.objects]
        if not killed:
            assert catalog._conn is not None
            pid = catalog._conn.info.backend_pid
            with psycopg.connect(supabase_server.database_url, autocommit=True) as admin:
                killed.append(admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0])
    assert killed == [True]
    assert keys == sorted(objects, key=lambda k: k.encode())  # every row once, in order
    catalog.close()


def _unreachable_plan(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, key: str) -> list[str]:
    """A plan whose Supabase URL and destination answer nowhere; returns the CLI arguments after the command."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "version: 1\nname: unreachable\nsource: {type: supabase, url: \"${SUPABASE_URL}\", key: \"${SUPABASE_SECRET_KEY}\", buckets: [b]}\n"
        "destination: {bucket: dest-unused, endpoint_url: \"http://127.0.0.1:9\", region: us-east-1}\ntransfer: {max_attempts: 2}\n"
    )
    monkeypatch.setenv("SUPABASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SUPABASE_SECRET_KEY", key)
    return [str(plan), "--state-dir", str(tmp_path / "s"), "--reports-dir", str(tmp_path / "r")]


def test_plan_against_an_unreachable_supabase_exits_4_in_one_line(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from migrate.cli import main

    assert main(["plan", *_unreachable_plan(tmp_path, monkeypatch, "sb_secret_not-a-real-key-123")]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "127.0.0.1:9" in err[0] and "rerun the same command to continue" in err[0], err
    assert "sb_secret_not-a-real-key-123" not in err[0] and "Traceback" not in err[0]


def test_v1_resumes_from_a_page_position(supabase_server: Any, nested_bucket: tuple[str, dict[str, bytes]], supabase_faults: Faults) -> None:
    bucket, objects = nested_bucket
    store = SupabaseStore(supabase_server.url, supabase_server.secret_key, list_v1_page=4, fetch_user_metadata=False)
    supabase_faults({"method": "POST", "path": "/object/list-v2/", "action": "status", "status": 404, "count": 1})
    pages = list(store.iter_pages(bucket))
    assert len(pages) >= 4 and json.loads(pages[1].resume or "{}")["api"] == "v1"
    done = [info.key for page in pages[:2] for info in page.objects]
    rest = [info.key for page in store.iter_pages(bucket, resume=pages[1].resume) for info in page.objects]
    assert sorted(done + rest) == sorted(objects) and not set(done) & set(rest)


def test_plan_refuses_a_sample_without_the_audit(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from migrate.cli import main

    common = _unreachable_plan(tmp_path, monkeypatch, "sb_secret_x")
    for extra in (["--sample", "5"], ["--audit-source", "--sample", "0"]):
        assert main(["plan", *common, *extra]) == 2
        assert "--sample N goes with --audit-source" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # nothing written


def _put_as_is(server: Any, bucket: str, key: str, body: bytes) -> None:
    """Upload under exactly `key`: dot segments sent as `%2E` (httpx would drop a literal `.` segment, and
    upstream's router decodes `%2E` back: find-my-way sanitizeUrl runs decodeURI over the path)."""
    path = "/".join("%2E" * len(part) if part in (".", "..") else urllib.parse.quote(part, safe="") for part in key.split("/"))
    response = httpx.post(
        f"{server.storage_url}/object/{bucket}/{path}",
        content=body,
        headers={"apikey": server.service_key, "Authorization": f"Bearer {server.service_key}", "Content-Type": "text/plain"},
    )
    assert response.status_code == 200 and response.json()["Key"] == f"{bucket}/{key}", response.text


def test_object_info_reaches_keys_storage3_would_rewrite(supabase_server: Any, make_supabase_bucket: Callable[..., str]) -> None:
    """Why /object/info does not go through storage3: storage3 2.34 drops empty segments (`a//b.txt` becomes
    `a/b.txt`), a valid Supabase key (upstream isValidKey allows `/`)."""
    bucket = make_supabase_bucket()
    _upload(supabase_server, bucket, {"a//b.txt": b"double slash"})
    store = SupabaseStore(supabase_server.url, supabase_server.secret_key)
    info = store.head(bucket, "a//b.txt")
    assert info is not None and info.size == len(b"double slash")
    with pytest.raises(Exception) as caught:  # the store's response hook raises before storage3 sees the answer
        store.storage.from_(bucket).info("a//b.txt")  # storage3 asks for a/b.txt, which does not exist
    assert "Object not found" in caught.value.response.text  # type: ignore[attr-defined]
    store.close()


def test_a_dot_segment_key_is_refused_and_never_reads_its_neighbour(
    supabase_server: Any, make_supabase_bucket: Callable[..., str], supabase_faults: Faults
) -> None:
    """`c/./d.txt` next to `c/d.txt`: httpx sends `/c/./d.txt` as `/c/d.txt` (RFC 3986 5.2.4), so any
    request for it could answer with the neighbour's bytes. The store asks nothing and says why."""
    bucket = make_supabase_bucket()
    _upload(supabase_server, bucket, {"c/d.txt": b"the neighbour"})
    _put_as_is(supabase_server, bucket, "c/./d.txt", b"the dot segment key")
    assert httpx.URL(f"{supabase_server.storage_url}/object/{bucket}/c/./d.txt").raw_path.endswith(b"/c/d.txt")
    gets = _counter(supabase_faults, "GET", f"/object/authenticated/{bucket}/")
    infos = _counter(supabase_faults, "GET", f"/object/info/{bucket}/")
    for fetch_user_metadata in (True, False):
        store = SupabaseStore(supabase_server.url, supabase_server.secret_key, fetch_user_metadata=fetch_user_metadata)
        listed = {info.key: info.size for page in store.iter_objects(bucket) for info in page}
        assert listed == {"c/d.txt": 13, "c/./d.txt": 19}  # names come in JSON bodies: listed as they are
        for read in (lambda: store.head(bucket, "c/./d.txt"), lambda: store.open(bucket, "c/./d.txt")):
            with pytest.raises(UnaddressableKey, match=r"'c/\./d\.txt': the key has a '\.' or '\.\.' segment"):
                read()
        assert store.unreadable_reason("c/./d.txt") == DOT_SEGMENT_REASON and store.unreadable_reason("c/d.txt") is None
        _, chunks = store.open(bucket, "c/d.txt")
        assert b"".join(chunks) == b"the neighbour"
        store.close()
    # One GET (c/d.txt, twice: one per store) and one info call (c/d.txt, the metadata-fetching store) reached the server.
    assert (gets(supabase_server), infos(supabase_server)) == (2, 1)
    # v1 folder walking (list-v2 missing) reaches the key through its folder `.`, names in JSON bodies too.
    supabase_faults({"method": "POST", "path": "/object/list-v2/", "action": "status", "status": 404, "count": 1})
    store = SupabaseStore(supabase_server.url, supabase_server.secret_key, fetch_user_metadata=False)
    assert sorted(info.key for page in store.iter_objects(bucket) for info in page) == ["c/./d.txt", "c/d.txt"]
    store.close()


# -- requests per object ----------------------------------------------------------------------
def test_plan_asks_info_once_per_object_and_run_reads_each_object_once(
    supabase_server: Any, make_supabase_bucket: Callable[..., str], seaweed: Any, supabase_faults: Faults, tmp_path: Any
) -> None:
    """The REST path's request budget: plan = list pages + one /object/info per object (user metadata is
    not in list rows); run = one GET per object and nothing else at the source (its eTag and length are
    the SourceChanged check)."""
    bucket = make_supabase_bucket()
    objects = {f"n/{i:02d}.bin": f"body {i}".encode() for i in range(12)}
    _upload(supabase_server, bucket, objects)
    dest = f"rq-{uuid.uuid4().hex[:8]}"
    seaweed.client().create_bucket(Bucket=dest)
    env = _cli_env(supabase_server, seaweed, dest)
    plan = tmp_path / "plan.yaml"
    _write_plan(plan, f"rq-{dest}", bucket)
    info = _counter(supabase_faults, "GET", "/object/info/")
    reads = _counter(supabase_faults, "GET", "/object/authenticated/")
    assert _cli(plan, tmp_path, "plan", env=env).returncode == 0
    assert (info(supabase_server), reads(supabase_server)) == (len(objects), 0)  # type: ignore[call-arg]
    ran = _cli(plan, tmp_path, "run", "--no-progress", env=env)
    assert ran.returncode == 0, ran.stderr
    assert (info(supabase_server), reads(supabase_server)) == (len(objects), len(objects))  # type: ignore[call-arg]
    s3 = seaweed.client()
    for key, body in objects.items():
        assert s3.get_object(Bucket=dest, Key=key)["Body"].read() == body, key


# -- the raw reader (stores/supabase_http.py) ---------------------------------------------------
def test_raw_reads_ride_out_drops_and_cut_bodies_and_keep_no_broken_connection(
    supabase_server: Any, make_supabase_bucket: Callable[..., str], supabase_faults: Faults
) -> None:
    from migrate.errors import TransientError

    bucket = make_supabase_bucket()
    _upload(supabase_server, bucket, {"x.txt": b"0123456789" * 100})
    store = SupabaseStore(supabase_server.url, supabase_server.secret_key)
    assert store._reader is not None  # no proxy in the test environment
    _, chunks = store.open(bucket, "x.txt")
    assert b"".join(chunks) == b"0123456789" * 100  # a kept-alive connection now sits idle
    supabase_faults({"method": "GET", "path": "/object/authenticated/", "action": "truncate", "after_bytes": 10, "count": 1})
    _, chunks = store.open(bucket, "x.txt")
    with pytest.raises(TransientError, match="body (cut off|ended after 10 of 1000 bytes)"):
        b"".join(chunks)
    supabase_faults({"method": "GET", "path": "/object/authenticated/", "action": "drop", "count": 1})
    with pytest.raises(TransientError, match="connection problem"):
        store.open(bucket, "x.txt")
    supabase_faults({"method": "GET", "path": "/object/info/", "action": "status", "status": 503, "count": 1})
    with pytest.raises(TransientError, match="503"):  # an error answer: retried by the caller
        store.head(bucket, "x.txt")
    assert store.head(bucket, "x.txt") is not None
    _, chunks = store.open(bucket, "x.txt", offset=5, length=3)
    assert b"".join(chunks) == b"567"
    store.close()


def test_a_proxy_from_the_environment_keeps_the_reads_on_httpx(supabase_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxied = SupabaseStore(supabase_server.url, supabase_server.secret_key)
    assert proxied._reader is None
    proxied.close()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = SupabaseStore(supabase_server.url, supabase_server.secret_key)
    assert direct._reader is not None
    direct.close()


@pytest.mark.parametrize("reader", ["http.client", "httpx"])
def test_a_gzip_encoded_answer_is_read_as_its_bytes_never_decompressed(reader: str) -> None:
    """A Supabase (or a CDN in front of it) answering an object with `Content-Encoding: gzip`: the store asks for
    `identity` and hands on the body as sent, on the raw reader and on the httpx path (a proxy applies), so the
    digests `run` computes are over the stored bytes. A real HTTP server on 127.0.0.1 answers."""
    import gzip
    import hashlib
    import http.server
    import threading

    body = gzip.compress(b"a page that was stored compressed " * 300, mtime=0)
    asked: list[str | None] = []

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
            asked.append(self.headers.get("Accept-Encoding"))
            self.send_response(200)
            for name, value in {"Content-Type": "text/html", "Content-Encoding": "gzip", "Content-Length": str(len(body)),
                                "ETag": f'"{hashlib.md5(body).hexdigest()}"'}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        store = SupabaseStore(f"http://127.0.0.1:{server.server_address[1]}", "sb_secret_not-a-real-key")
        if reader == "httpx":
            store._reader = None  # what the store does when a proxy from the environment applies
        info, chunks = store.open("b", "page.html")
        assert b"".join(chunks) == body and info.size == len(body)
        assert asked == ["identity"]
        store.close()
    finally:
        server.shutdown()
        server.server_close()
