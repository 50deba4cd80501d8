"""`migrate backup` end to end on the local stack: the bundled Supabase server as the source, a tmp
folder and a SeaweedFS bucket as the two targets; snapshots, dedup, prune, restore, kills, a lost target."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from migrate.backup.state import BackupState
from migrate.cli import main
from migrate.stores.supabase import encode_key

MiB = 1024 * 1024


def _body(seed: str, size: int) -> bytes:
    return (hashlib.sha256(seed.encode()).digest() * (size // 32 + 1))[:size]


SOURCE: dict[str, tuple[bytes, str, str, dict[str, str]]] = {
    "docs/readme.txt": (b"hello backups\n", "text/plain", "max-age=60", {"owner": "ops"}),
    "docs/empty.txt": (b"", "text/plain", "no-cache", {}),
    "img/logo.png": (_body("logo", 3000), "image/png", "public, max-age=31536000", {"w": "32", "h": "32"}),
    "img/copy-of-logo.png": (_body("logo", 3000), "image/png", "max-age=5", {}),  # same bytes: one body
    "odd/a key, with (odd) chars & ? @$=+;.bin": (_body("odd", 999), "application/octet-stream", "max-age=1", {"k": "v"}),
    "big/archive.tar": (_body("big", 11 * MiB + 3), "application/x-tar", "max-age=7", {"part": "multi"}),
}


class World:
    """A seeded Supabase bucket, a local target folder, an S3 target bucket, and a plan naming them."""

    def __init__(self, server: Any, seaweed: Any, bucket: str, s3_bucket: str, tmp: Path, monkeypatch: pytest.MonkeyPatch):
        self.server, self.seaweed, self.bucket, self.s3_bucket, self.tmp = server, seaweed, bucket, s3_bucket, tmp
        self.s3 = seaweed.client()
        self.local = tmp / "backups"
        self.local.mkdir()
        self.http = httpx.Client(base_url=f"{server.url}/storage/v1", headers={"apikey": server.service_key, "Authorization": f"Bearer {server.service_key}"}, timeout=60)
        for env, value in {
            "SUPABASE_URL": server.url, "SUPABASE_SERVICE_ROLE_KEY": server.service_key,
            "AWS_ACCESS_KEY_ID": seaweed.access_key, "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
            "BACKUP_ENDPOINT": seaweed.endpoint_url,
        }.items():
            monkeypatch.setenv(env, value)
        self.plan = tmp / "backup.yaml"
        self.write_plan()
        self.current: dict[str, tuple[bytes, str, str, dict[str, str]]] = {}
        self.created: list[str] = []
        for key, value in SOURCE.items():
            self.upload(key, *value)

    def write_plan(self, *, endpoint: str = "${BACKUP_ENDPOINT}", s3_extra: str = "", keep: int = 3, order: str = "local-first") -> None:
        local = f"    - {{type: local, path: {self.local}}}\n"
        s3 = f"    - {{type: s3, bucket: {self.s3_bucket}, prefix: snaps/, endpoint_url: \"{endpoint}\", region: us-east-1{s3_extra}}}\n"
        targets = local + s3 if order == "local-first" else s3 + local
        self.plan.write_text(
            f"""version: 1
name: bk-{self.bucket}
source:
  type: supabase
  url: ${{SUPABASE_URL}}
  key: ${{SUPABASE_SERVICE_ROLE_KEY}}
  buckets: [{self.bucket}]
transfer: {{part_size: 5MiB, multipart_threshold: 5MiB, max_attempts: 4}}
backup:
  keep: {keep}
  targets:
{targets}"""
        )

    def upload(self, key: str, body: bytes, content_type: str, cache_control: str, metadata: dict[str, str]) -> None:
        headers = {"Content-Type": content_type, "cache-control": cache_control, "x-upsert": "true"}
        if metadata:
            headers["x-metadata"] = base64.b64encode(json.dumps(metadata).encode()).decode()
        response = self.http.post(f"/object/{self.bucket}/{encode_key(key)}", content=body, headers=headers)
        assert response.status_code == 200, response.text
        self.current[key] = (body, content_type, cache_control, metadata)

    def migrate(self, *args: str, expect: int | None = 0) -> dict[str, Any]:
        """Run `migrate backup ...` in-process with --json; returns the JSON document."""
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["backup", *args, str(self.plan), "--state-dir", str(self.tmp / "state"), "--json"])
        if expect is not None:
            assert code == expect, out.getvalue()
        text = out.getvalue()
        document: dict[str, Any] = json.loads(text) if text.strip() else {}
        document["_exit"] = code
        return document

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "migrate", "backup", *args, str(self.plan), "--state-dir", str(self.tmp / "state"), "--json"]

    def s3_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.s3_bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys

    def local_bodies(self) -> set[str]:
        return {p.name for p in (self.local / "bodies").glob("*/*")}

    def s3_bodies(self) -> set[str]:
        return {k.rsplit("/", 1)[-1] for k in self.s3_keys("snaps/bodies/")}

    def snapshots_names(self) -> list[str]:
        return list(self.snapshots())

    def snapshots(self) -> dict[str, list[str]]:
        listing = self.migrate("list")
        return {t["target"]: [s["snapshot_id"] for s in t["snapshots"]] for t in listing["targets"]}

    def fresh_bucket(self) -> str:
        name = f"r-{uuid.uuid4().hex[:8]}"
        assert self.http.post("/bucket", json={"id": name, "name": name}).status_code == 200
        self.created.append(name)
        return name

    def assert_restored(self, bucket: str, expected: dict[str, tuple[bytes, str, str, dict[str, str]]]) -> None:
        for key, (body, content_type, cache_control, metadata) in expected.items():
            got = self.http.get(f"/object/authenticated/{bucket}/{encode_key(key)}")
            assert got.status_code == 200, (key, got.text)
            assert got.content == body, key
            info = self.http.get(f"/object/info/{bucket}/{encode_key(key)}").json()
            assert info["content_type"] == content_type, key
            assert info["cache_control"] == cache_control, key
            assert (info.get("metadata") or {}) == metadata, key
        listed = self.http.post(f"/object/list-v2/{bucket}", json={"prefix": "", "limit": 1000, "with_delimiter": False}).json()
        assert len(listed["objects"]) == len(expected)


@pytest.fixture
def world(supabase_server: Any, seaweed: Any, make_supabase_bucket: Callable[..., str], make_s3_bucket: Callable[[], str],
          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    env = World(supabase_server, seaweed, make_supabase_bucket(), make_s3_bucket(), tmp_path, monkeypatch)
    yield env
    for name in env.created:
        env.http.post(f"/bucket/{name}/empty", json={})
        env.http.request("DELETE", f"/bucket/{name}", json={})
    env.http.close()


def test_two_targets_get_each_snapshot_unchanged_costs_nothing_a_change_adds_one_body(world: World) -> None:
    first = world.migrate()
    assert first["objects"] == len(SOURCE) and first["ok"]
    unique = len({hashlib.sha256(v[0]).hexdigest() for v in SOURCE.values()})
    assert [t["snapshot_written"] for t in first["targets"]] == [True, True]
    assert [t["bodies_written"] for t in first["targets"]] == [unique, unique]
    assert len(world.local_bodies()) == unique and len(world.s3_bodies()) == unique
    assert world.s3.list_multipart_uploads(Bucket=world.s3_bucket).get("Uploads", []) == []

    local_mtimes = {p: p.stat().st_mtime_ns for p in (world.local / "bodies").glob("*/*")}
    second = world.migrate()
    assert second["objects_read"] == 0, "unchanged objects must not be read from the source again"
    assert [t["bodies_written"] for t in second["targets"]] == [0, 0]
    assert {p: p.stat().st_mtime_ns for p in (world.local / "bodies").glob("*/*")} == local_mtimes
    assert len(world.s3_bodies()) == unique

    world.upload("docs/readme.txt", b"hello backups, changed\n", "text/plain", "max-age=60", {"owner": "ops"})
    third = world.migrate()
    assert third["objects_read"] == 1
    assert [t["bodies_written"] for t in third["targets"]] == [1, 1]
    assert len(world.local_bodies()) == unique + 1 and len(world.s3_bodies()) == unique + 1
    listing = world.migrate("list")["targets"]
    total = sum(len(v[0]) for v in world.current.values())
    for target in listing:
        assert [(s["objects"], s["bytes"]) for s in target["snapshots"]][-1] == (len(SOURCE), total)
        assert target["bodies"] == unique + 1
    snapshots = world.snapshots()
    assert [len(ids) for ids in snapshots.values()] == [3, 3]
    assert list(snapshots.values())[0] == list(snapshots.values())[1]


def test_keep_three_the_fourth_backup_prunes_the_first_and_every_kept_snapshot_restores(world: World) -> None:
    states: dict[str, dict[str, tuple[bytes, str, str, dict[str, str]]]] = {}
    ids: list[str] = []
    for round_number in range(4):
        if round_number:
            world.upload("docs/readme.txt", f"version {round_number}\n".encode(), "text/plain", f"max-age={round_number}", {"round": str(round_number)})
        result = world.migrate()
        ids.append(result["snapshot_id"])
        states[result["snapshot_id"]] = dict(world.current)
    first_only_body = hashlib.sha256(SOURCE["docs/readme.txt"][0]).hexdigest()
    snapshots = world.snapshots()
    for target_ids in snapshots.values():
        assert target_ids == ids[1:], "the first snapshot is pruned, the last three kept, on both targets"
    assert first_only_body not in world.local_bodies() and first_only_body not in world.s3_bodies()
    assert world.migrate("verify", "--deep")["ok"]
    for index, snapshot_id in enumerate(ids[1:]):
        fresh = world.fresh_bucket()
        target = "1" if index % 2 == 0 else "2"
        dry = world.migrate("restore", "--snapshot", snapshot_id, "--target", target, "--to", f"supabase:{fresh}")
        assert dry["dry_run"] and dry["objects"] == len(SOURCE) and dry["restored"] == 0
        assert world.http.post(f"/object/list-v2/{fresh}", json={"prefix": "", "limit": 10}).json()["objects"] == []
        done = world.migrate("restore", "--snapshot", snapshot_id, "--target", target, "--to", f"supabase:{fresh}", "--yes")
        assert done["restored"] == len(SOURCE) and done["ok"]
        world.assert_restored(fresh, states[snapshot_id])


def test_restore_a_prefix_into_a_local_folder_and_an_s3_bucket(world: World, make_s3_bucket: Callable[[], str]) -> None:
    world.migrate()
    folder = world.tmp / "restored"
    result = world.migrate("restore", "--prefix", "img/", "--to", f"local:{folder}", "--yes")
    assert result["restored"] == 2
    from migrate.stores.local import LocalStore

    store = LocalStore(folder)
    for key in ("img/logo.png", "img/copy-of-logo.png"):
        assert (folder / world.bucket / key).read_bytes() == SOURCE[key][0]
        info = store.head(world.bucket, key)
        assert info is not None and (info.content_type, info.cache_control, info.user_metadata) == SOURCE[key][1:]
    assert not (folder / world.bucket / "docs").exists()
    again = world.migrate("restore", "--prefix", "img/", "--to", f"local:{folder}", "--yes", expect=3)
    assert len(again["failures"]) == 2 and all("already exists" in f["error"] for f in again["failures"])
    dest = make_s3_bucket()
    result = world.migrate("restore", "--target", "2", "--to", f"s3://{dest}/again", "--yes")
    assert result["restored"] == len(SOURCE)
    for key, (body, content_type, cache_control, metadata) in SOURCE.items():
        got = world.s3.get_object(Bucket=dest, Key=f"again/{key}")
        assert got["Body"].read() == body
        assert (got["ContentType"], got["CacheControl"], got["Metadata"]) == (content_type, cache_control, metadata)


def test_source_faults_are_retried_and_the_snapshot_is_byte_exact(world: World, supabase_faults: Callable[..., Any]) -> None:
    supabase_faults(
        {"method": "GET", "path": "/object/authenticated/", "action": "status", "status": 503, "count": 2},
        {"method": "GET", "path": "/object/authenticated/", "action": "truncate", "after_bytes": 100, "count": 2},
    )
    result = world.migrate()
    assert result["ok"] and result["objects"] == len(SOURCE)
    assert world.migrate("verify", "--deep")["ok"]
    fresh = world.fresh_bucket()
    world.migrate("restore", "--to", f"supabase:{fresh}", "--yes")
    world.assert_restored(fresh, world.current)


def test_a_large_object_changed_between_the_two_passes_is_not_stored_and_no_upload_is_left(world: World) -> None:
    """The source really changes (a new upload to the server) right after the hashing pass of the large object."""
    from migrate.backup.snapshot import take_backup
    from migrate.plan import load_plan
    from migrate.stores.supabase import SupabaseStore

    key = "big/archive.tar"
    changed = _body("big-changed", 11 * MiB + 3)

    class ChangesAfterHashing(SupabaseStore):
        reads = 0

        def open(self, bucket: str, name: str, *, offset: int = 0, length: int | None = None) -> Any:
            if name == key:
                ChangesAfterHashing.reads += 1
                if ChangesAfterHashing.reads == 4:  # pass 1 read 3 parts; pass 2 starts
                    world.upload(key, changed, "application/x-tar", "max-age=7", {"part": "multi"})
            return super().open(bucket, name, offset=offset, length=length)

    plan = load_plan(world.plan)
    source = ChangesAfterHashing(world.server.url, world.server.service_key)
    result = take_backup(plan, state_dir=world.tmp / "state", source=source, workers=1)
    source.close()
    assert [f[1] for f in result.failures] == [key] and "changed while being backed up" in result.failures[0][2]
    assert not any(t.snapshot_written for t in result.targets)
    assert world.s3.list_multipart_uploads(Bucket=world.s3_bucket).get("Uploads", []) == []
    assert not any((world.local / ".migrate-store" / "uploads").iterdir())
    assert world.migrate()["ok"]
    fresh = world.fresh_bucket()
    world.migrate("restore", "--to", f"supabase:{fresh}", "--yes")
    world.assert_restored(fresh, world.current)


def test_verify_finds_missing_and_corrupt_bodies(world: World) -> None:
    world.migrate()
    assert world.migrate("verify")["ok"]
    sha = hashlib.sha256(SOURCE["img/logo.png"][0]).hexdigest()
    path = world.local / "bodies" / sha[:2] / sha
    path.write_bytes(b"X" * path.stat().st_size)  # same size, other bytes
    deep = world.migrate("verify", "--deep", "--target", "1", expect=3)
    assert deep["verified"][0]["wrong_checksum"] == [sha]
    world.s3.delete_object(Bucket=world.s3_bucket, Key=f"snaps/bodies/{sha[:2]}/{sha}")
    fast = world.migrate("verify", "--target", "2", expect=3)
    assert fast["verified"][0]["missing"] == [sha]
    # Restore refuses the corrupt body rather than writing it.
    fresh = world.fresh_bucket()
    result = world.migrate("restore", "--target", "1", "--to", f"supabase:{fresh}", "--yes", expect=3)
    # Both keys share that body: both are refused, nothing else is.
    assert sorted(f["key"] for f in result["failures"]) == ["img/copy-of-logo.png", "img/logo.png"]
    assert world.http.get(f"/object/info/{fresh}/img/logo.png").status_code != 200


def test_a_lost_local_target_does_not_stop_the_s3_one(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(world.local)
    result = world.migrate(expect=3)
    local, s3 = result["targets"]
    assert not local["ok"] and "does not exist" in local["error"] and not local["snapshot_written"]
    assert s3["ok"] and s3["snapshot_written"]
    assert len(world.s3_keys("snaps/snapshots/")) == 1
    capsys.readouterr()
    assert main(["backup", str(world.plan), "--state-dir", str(world.tmp / "state"), "--no-prune"]) == 3
    out = capsys.readouterr().out
    assert "NO SNAPSHOT" in out and "does not exist" in out and "snapshot written" in out
    assert main(["backup", "list", str(world.plan), "--state-dir", str(world.tmp / "state"), "-q"]) == 3
    assert capsys.readouterr().out == ""


def test_a_target_missing_one_body_gets_no_snapshot_until_a_rerun_completes_it(world: World) -> None:
    from migrate.stack.faultproxy import FaultProxy, FaultRule

    sha = hashlib.sha256(SOURCE["docs/readme.txt"][0]).hexdigest()
    host, port = world.seaweed.endpoint_url.rsplit("//", 1)[1].split(":")
    with FaultProxy(host, int(port)) as proxy:
        proxy.add(FaultRule(action="error500", method="PUT", path=f"/bodies/{sha[:2]}/{sha}", count=100))
        world.write_plan(endpoint=proxy.endpoint_url)
        result = world.migrate(expect=3)
        local, s3 = result["targets"]
        assert local["snapshot_written"] and not s3["snapshot_written"] and s3["failed_objects"] == 1
        assert world.s3_keys("snaps/snapshots/") == []
        proxy.clear()
        rerun = world.migrate()
    assert [t["bodies_written"] for t in rerun["targets"]] == [0, 1]
    assert len(world.s3_keys("snaps/snapshots/")) == 1


def test_no_secret_reaches_backup_files_or_output(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.write_plan(endpoint="http://127.0.0.1:9")  # the S3 target fails: its error is reported too
    documents = [world.migrate(expect=3), world.migrate("list", expect=3)]
    assert "127.0.0.1:9" in json.dumps(documents)  # the failure is reported, without secrets
    out, err = capsys.readouterr()
    secrets = [world.server.service_key, world.seaweed.secret_key]
    texts = [out, err, json.dumps(documents)] + [p.read_bytes().decode("latin-1") for root in (world.tmp / "state", world.local) for p in root.rglob("*") if p.is_file()]
    for secret in secrets:
        assert not any(secret in text for text in texts)


def test_every_target_lost_is_exit_4(world: World) -> None:
    shutil.rmtree(world.local)
    world.write_plan(endpoint="http://127.0.0.1:9")
    result = world.migrate(expect=None)
    assert result["_exit"] == 4


def test_an_overlapping_backup_exits_4_naming_the_holder(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    state = BackupState.for_plan(f"bk-{world.bucket}", state_dir=world.tmp / "state")
    with state.lock():
        child = subprocess.run(world.command(), capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert child.returncode == 4, child.stderr
    assert f"pid {os.getpid()}" in child.stderr and "Traceback" not in child.stderr
    assert not (world.local / "snapshots").exists()
    world.migrate()  # the lock is free again


def _wait_for(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sigkill_during_backup_leaves_everything_restorable_and_the_rerun_completes(world: World, supabase_faults: Callable[..., Any]) -> None:
    world.migrate()
    before = world.snapshots()
    state_before = dict(world.current)
    world.upload("big/archive.tar", _body("big-2", 11 * MiB + 5), "application/x-tar", "max-age=8", {"part": "again"})
    world.upload("docs/new.txt", b"new", "text/plain", "max-age=1", {})
    # Slow every ranged read of the big object so the kill lands inside its multipart upload.
    supabase_faults({"method": "GET", "path": "/object/authenticated/", "action": "latency", "delay_ms": 400, "count": None})
    child = subprocess.Popen(world.command("--workers", "1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    uploads = world.tmp / "backups" / ".migrate-store" / "uploads"
    _wait_for(lambda: uploads.is_dir() and any(p.name.isdigit() for u in uploads.iterdir() for p in u.iterdir()))
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    world.http.delete("/_faults")
    assert world.snapshots() == before, "a killed backup must not leave a visible snapshot"
    assert world.migrate("verify", "--deep")["ok"]
    for target in ("1", "2"):
        fresh = world.fresh_bucket()
        world.migrate("restore", "--target", target, "--to", f"supabase:{fresh}", "--yes")
        world.assert_restored(fresh, state_before)
    rerun = world.migrate()
    assert rerun["ok"]
    assert rerun["targets"][0]["resumed_parts"] >= 1, "the large upload continues from its last part"
    assert world.s3.list_multipart_uploads(Bucket=world.s3_bucket).get("Uploads", []) == []
    assert not any(uploads.iterdir())
    fresh = world.fresh_bucket()
    world.migrate("restore", "--target", "2", "--to", f"supabase:{fresh}", "--yes")
    world.assert_restored(fresh, world.current)


def test_ctrl_c_during_backup_exits_130_and_the_rerun_completes(world: World, supabase_faults: Callable[..., Any]) -> None:
    supabase_faults({"method": "GET", "path": "/object/authenticated/", "action": "latency", "delay_ms": 400, "count": None})
    child = subprocess.Popen(world.command("--workers", "1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    _wait_for(lambda: (world.tmp / "state" / "backups" / f"bk-{world.bucket}" / "journal.sqlite").exists())
    time.sleep(1.0)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "Traceback" not in err and "rerun" in err
    world.http.delete("/_faults")
    assert not (world.local / "snapshots").exists()
    assert world.migrate()["ok"]


def test_sigkill_during_prune_leaves_every_kept_snapshot_restorable(world: World) -> None:
    from migrate.stack.faultproxy import FaultProxy

    class SlowDeletes(FaultProxy):
        """SeaweedFS behind a proxy that takes 0.5 s per DELETE, and records which it saw."""

        deletes: list[str] = []

        def _forward(self, handler: Any) -> None:
            if handler.command == "DELETE":
                self.deletes.append(handler.path)
                time.sleep(0.5)
            super()._forward(handler)

    host, port = world.seaweed.endpoint_url.rsplit("//", 1)[1].split(":")
    with SlowDeletes(host, int(port)) as proxy:
        world.write_plan(endpoint=proxy.endpoint_url, order="s3-first")
        states: dict[str, tuple[bytes, str, str, dict[str, str]]] = {}
        for round_number in range(5):
            world.upload("docs/readme.txt", f"round {round_number}\n".encode(), "text/plain", "max-age=3", {})
            states[world.migrate("--no-prune")["snapshot_id"]] = world.current["docs/readme.txt"]
        child = subprocess.Popen(world.command("prune"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
        # Two manifests go first, then bodies: kill once a body deletion is under way.
        _wait_for(lambda: any("/bodies/" in path for path in proxy.deletes))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert any("/snapshots/" in path for path in proxy.deletes)
        remaining = world.snapshots()
        assert all(len(ids) >= 3 for ids in remaining.values())
        assert world.migrate("verify", "--deep")["ok"], "every snapshot still listed has every body"
        for snapshot_id in remaining[world.snapshots_names()[0]]:
            fresh = world.fresh_bucket()
            world.migrate("restore", "--target", "1", "--snapshot", snapshot_id, "--to", f"supabase:{fresh}", "--yes")
            world.assert_restored(fresh, {**world.current, "docs/readme.txt": states[snapshot_id]})
        pruned = world.migrate("prune")
        assert all(len(t["kept"]) == 3 for t in pruned["targets"])
        fresh = world.fresh_bucket()
        world.migrate("restore", "--target", "1", "--to", f"supabase:{fresh}", "--yes")
        world.assert_restored(fresh, world.current)


def test_sse_kms_and_storage_class_are_sent_on_every_s3_body_and_manifest(world: World) -> None:
    """SeaweedFS has no KMS (it answers 500 to aws:kms), so what we prove locally is the headers we send,
    recorded by a proxy in front of it; that AWS then encrypts with the key is AWS's side (S3 PutObject /
    CreateMultipartUpload: x-amz-server-side-encryption, -aws-kms-key-id, x-amz-storage-class)."""
    from migrate.stack.faultproxy import FaultProxy

    class Recording(FaultProxy):
        seen: list[tuple[str, str, dict[str, str]]] = []

        def _forward(self, handler: Any) -> None:
            self.seen.append((handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()}))
            super()._forward(handler)

    def writes() -> list[tuple[str, str, dict[str, str]]]:
        found = [(m, p, h) for m, p, h in Recording.seen if "/snaps/" in p and ((m == "PUT" and "partNumber=" not in p) or (m == "POST" and "uploads" in p))]
        Recording.seen.clear()
        return found

    host, port = world.seaweed.endpoint_url.rsplit("//", 1)[1].split(":")
    with Recording(host, int(port)) as proxy:
        # A storage class SeaweedFS accepts: the whole snapshot lands, every write carries the class.
        world.write_plan(endpoint=proxy.endpoint_url, s3_extra=", storage_class: STANDARD_IA")
        result = world.migrate()
        sent = writes()
        assert any("/snaps/bodies/" in p for _, p, _ in sent) and any("/snaps/snapshots/" in p for _, p, _ in sent)
        assert any(m == "POST" for m, _, _ in sent), "the large body goes multipart"
        assert all(h.get("x-amz-storage-class") == "STANDARD_IA" for _, _, h in sent)
        assert all("x-amz-server-side-encryption" not in h for _, _, h in sent)
        # SSE-KMS: the headers go out on every body write; SeaweedFS refuses them, which is reported (exit 3).
        world.upload("docs/kms.txt", b"secret", "text/plain", "max-age=1", {})
        world.write_plan(endpoint=proxy.endpoint_url, s3_extra=", server_side_encryption: aws:kms, kms_key_id: alias/backups")
        result = world.migrate(expect=3)
        sent = writes()
    assert sent and all(h.get("x-amz-server-side-encryption") == "aws:kms" for _, _, h in sent)
    assert all(h.get("x-amz-server-side-encryption-aws-kms-key-id") == "alias/backups" for _, _, h in sent)
    local, s3 = result["targets"]
    assert local["snapshot_written"] and not s3["snapshot_written"] and s3["error"]


def test_backup_plan_keys_are_checked(tmp_path: Path) -> None:
    from migrate.errors import PlanError
    from migrate.plan import parse_plan

    base = "version: 1\nsource: {type: s3, buckets: [a]}\n"
    plan = parse_plan(base + "backup: {targets: [{type: local, path: /b}, {type: s3, bucket: bkt, prefix: p}], keep_daily: 7}\n", source_name="p.yaml", environ={})
    assert plan.destination is None and plan.backup is not None
    assert (plan.backup.keep, plan.backup.keep_daily, plan.backup.keep_weekly) == (3, 7, 0)
    assert [t.name for t in plan.backup.targets] == ["local:/b", "s3://bkt/p/"]
    for bad, message in (
        ("backup: {targets: []}", "non-empty list"),
        ("backup: {targets: [{type: local, path: /b}], keep: 0}", "keep"),
        ("backup: {targets: [{type: local, path: /b, storage_class: GLACIER}]}", "storage_class"),
        ("backup: {targets: [{type: s3, bucket: bkt, server_side_encryption: aws:kms}]}", "kms_key_id"),
        ("backup: {targets: [{type: local, path: /b}, {type: local, path: /b}]}", "twice"),
        ("backup: {targets: [{type: ftp}]}", "type"),
    ):
        with pytest.raises(PlanError, match=message):
            parse_plan(base + bad + "\n", source_name="p.yaml", environ={})
    with pytest.raises(PlanError, match="destination"):
        parse_plan(base, source_name="p.yaml", environ={})


def test_options_that_do_not_apply_are_refused(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backup", str(world.plan), "--deep", "--state-dir", str(world.tmp / "state")]) == 2
    assert "--deep does not apply" in capsys.readouterr().err
    assert main(["backup", "restore", str(world.plan), "--state-dir", str(world.tmp / "state")]) == 2


def test_an_s3_sources_content_encoding_language_and_expires_are_kept_in_the_snapshot_and_restored(
    seaweed: Any, make_s3_bucket: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An S3 source's listing is completed with a HEAD per object for a backup: its Content-Encoding,
    Content-Language and Expires go into the snapshot row and come back on a restore (local folder and S3)."""
    import contextlib
    import gzip
    import io

    import polars as pl

    from migrate.stores.local import LocalStore

    source, restored = make_s3_bucket(), make_s3_bucket()
    s3 = seaweed.client()
    body = gzip.compress(b"compressed, and kept so " * 200, mtime=0)
    carried = {"ContentEncoding": "gzip", "ContentLanguage": "de-CH", "Expires": "Wed, 01 Dec 2094 16:00:00 GMT"}
    s3.put_object(Bucket=source, Key="site/app.js", Body=body, ContentType="text/javascript", **carried)
    for env, value in {"AWS_ACCESS_KEY_ID": seaweed.access_key, "AWS_SECRET_ACCESS_KEY": seaweed.secret_key, "SRC_ENDPOINT": seaweed.endpoint_url}.items():
        monkeypatch.setenv(env, value)
    (tmp_path / "backups").mkdir()
    plan = tmp_path / "backup.yaml"
    plan.write_text(
        f"""version: 1
name: bk-{source}
source: {{type: s3, endpoint_url: "${{SRC_ENDPOINT}}", region: us-east-1, buckets: [{source}]}}
destination: {{bucket: {restored}, endpoint_url: "${{SRC_ENDPOINT}}", region: us-east-1}}
backup:
  targets:
    - {{type: local, path: {tmp_path / "backups"}}}
"""
    )

    def backup(*args: str) -> None:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            code = main(["backup", *args, str(plan), "--state-dir", str(tmp_path / "state"), "--json"])
        assert code == 0, out.getvalue()

    backup()
    (manifest,) = (tmp_path / "backups" / "snapshots").glob("*.parquet")
    row = pl.read_parquet(manifest).row(0, named=True)
    assert (row["content_encoding"], row["content_language"], row["expires"]) == ("gzip", "de-CH", carried["Expires"])
    backup("restore", "--to", f"local:{tmp_path / 'restored'}", "--yes")
    info = LocalStore(tmp_path / "restored").head(source, "site/app.js")
    assert info is not None and (info.content_encoding, info.content_language, info.expires) == ("gzip", "de-CH", carried["Expires"])
    backup("restore", "--to", f"s3://{restored}/again", "--yes")
    got = s3.get_object(Bucket=restored, Key="again/site/app.js")
    assert got["Body"].read() == body
    assert (got["ContentEncoding"], got["ContentLanguage"], got["ExpiresString"]) == ("gzip", "de-CH", carried["Expires"])
    # A snapshot taken before these columns existed still restores, without them.
    pl.read_parquet(manifest).drop("content_encoding", "content_language", "expires").write_parquet(manifest)
    backup("restore", "--to", f"local:{tmp_path / 'from-older'}", "--yes")
    older = LocalStore(tmp_path / "from-older").head(source, "site/app.js")
    assert older is not None and (older.content_type, older.content_encoding) == ("text/javascript", None)
