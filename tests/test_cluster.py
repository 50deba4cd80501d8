"""Run and verify on a Dask cluster: a `distributed.LocalCluster` of worker processes on the local stack.

The workers are real processes (the Nanny restarts one that is killed);
they read credentials from their own environment, which they inherit from
this test process when the cluster starts, never from the task graph.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

distributed = pytest.importorskip("distributed")

from migrate.cluster import DaskExecutor, make_shards  # noqa: E402
from migrate.journal import TransferJournal  # noqa: E402
from migrate.plan import load_plan  # noqa: E402
from migrate.records import ObjectRecord  # noqa: E402
from migrate.rundir import RunDirectory  # noqa: E402
from migrate.stores.supabase import encode_key  # noqa: E402
from migrate.pipeline import run_migration, verify_plan  # noqa: E402

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]


def _body(index: int, size: int) -> bytes:
    return (hashlib.sha256(f"cluster-{index}".encode()).digest() * (size // 32 + 1))[:size]


# -- the pure part ------------------------------------------------------------------------
def test_make_shards_bounds_count_and_bytes_and_isolates_large_objects() -> None:
    sizes = [10, 20, 30, 40, 1000, 50, 60, 70, 80, 90]
    records = [ObjectRecord(source_bucket="b", source_key=f"k{i}", size=s) for i, s in enumerate(sizes)]
    shards = list(make_shards(records, multipart_threshold=1000, max_objects=3, max_bytes=120))
    assert [[r.source_key for r in s.records] for s in shards] == [
        ["k0", "k1", "k2"],  # 3 objects: the count bound
        ["k4"],  # at the multipart threshold: alone
        ["k3", "k5"],  # 40 + 50 = 90; + 60 would pass 120 bytes
        ["k6"],
        ["k7"],
        ["k8"],
        ["k9"],
    ]
    assert [s.index for s in shards] == list(range(len(shards)))
    assert sorted(r.source_key for s in shards for r in s.records) == sorted(r.source_key for r in records)


# -- the cluster ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(supabase_server: Any, seaweed: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Two worker processes, one thread each; credentials in *their* environment (inherited at start)."""
    from distributed import Client, LocalCluster

    env = {
        "SUPABASE_URL": supabase_server.url,
        "SUPABASE_SERVICE_ROLE_KEY": supabase_server.service_key,
        "AWS_ACCESS_KEY_ID": seaweed.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
        "MIGRATE_DEST_ENDPOINT_URL": seaweed.endpoint_url,
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    local = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        local_directory=str(tmp_path_factory.mktemp("dask")),
        silence_logs=40,
    )
    client = Client(local)
    try:
        yield client
    finally:
        client.close()
        local.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class World:
    """A seeded Supabase bucket, an empty S3 bucket, and a plan file whose secrets are `${VAR}` references."""

    def __init__(self, server: Any, seaweed: Any, bucket: str, tmp: Path):
        self.server, self.bucket, self.tmp = server, bucket, tmp
        self.s3 = seaweed.client()
        self.dest = f"dask-{uuid.uuid4().hex[:8]}"
        self.s3.create_bucket(Bucket=self.dest)
        self.data: dict[str, bytes] = {}
        self.plan_path = tmp / "cluster.yaml"
        # The bucket name is no secret: literal, so workers started before this test can read it.
        self.plan_path.write_text(
            f"""version: 1
name: dask-{self.dest}
source: {{type: supabase, url: "${{SUPABASE_URL}}", key: "${{SUPABASE_SERVICE_ROLE_KEY}}", buckets: [{bucket}]}}
destination: {{bucket: {self.dest}, endpoint_url: "${{MIGRATE_DEST_ENDPOINT_URL}}", region: us-east-1, on_conflict: skip}}
rules:
  - name: all
    match: "{{path**}}"
    to: "moved/{{path}}"
transfer: {{concurrency: 2, part_size: 5MiB, multipart_threshold: 5MiB, max_attempts: 6}}
"""
        )
        self.state = tmp / "state"

    def upload(self, objects: dict[str, int]) -> None:
        headers = {"apikey": self.server.service_key, "Authorization": f"Bearer {self.server.service_key}"}
        with httpx.Client(headers=headers, timeout=60) as http:
            for index, (key, size) in enumerate(objects.items()):
                body = _body(index, size)
                response = http.post(
                    f"{self.server.url}/storage/v1/object/{self.bucket}/{encode_key(key)}",
                    content=body,
                    # Not application/octet-stream: SeaweedFS sniffs a type for those (AWS keeps what was sent).
                    headers={"Content-Type": "application/x-migrate-test", "x-upsert": "true"},
                )
                assert response.status_code == 200, response.text
                self.data[key] = body

    def plan(self) -> Any:
        return load_plan(self.plan_path)

    def assert_migrated(self) -> None:
        listed = {item["Key"] for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.dest) for item in page.get("Contents", [])}
        assert listed == {f"moved/{key}" for key in self.data}
        for key, body in self.data.items():
            assert self.s3.get_object(Bucket=self.dest, Key=f"moved/{key}")["Body"].read() == body, key
        assert self.s3.list_multipart_uploads(Bucket=self.dest).get("Uploads", []) == []

    def journal_counts(self) -> dict[str, tuple[int, int]]:
        path = RunDirectory.for_plan(self.plan().name, state_dir=self.state).journal
        if not path.exists():
            return {}
        with TransferJournal(path, readonly=True) as journal:
            return journal.counts()


MIXED = {**{f"small/{i:03d}.txt": 100 + 37 * i for i in range(40)}, "big/one.bin": 11 * MiB + 3, "big/two.bin": 6 * MiB}


@pytest.fixture
def world(supabase_server: Any, seaweed: Any, make_supabase_bucket: Callable[..., str], tmp_path: Path) -> World:
    created = World(supabase_server, seaweed, make_supabase_bucket(), tmp_path)
    created.upload(MIXED)
    return created


def _executor(world: World, cluster: Any, **kwargs: Any) -> DaskExecutor:
    return DaskExecutor(world.plan(), scheduler=cluster, max_objects=kwargs.pop("max_objects", 8), **kwargs)


def test_mixed_sizes_run_byte_exact_on_the_cluster_and_the_journal_is_the_drivers(world: World, cluster: Any) -> None:
    executor = _executor(world, cluster)
    outcome = run_migration(world.plan(), state_dir=world.state, reports_dir=world.tmp / "reports", executor=executor)
    result = outcome.result
    assert result.failures == []
    assert result.copied == len(MIXED)
    assert result.bytes_copied == sum(MIXED.values())
    world.assert_migrated()
    # The driver's journal holds every object, as after a local run: status and verify read it.
    assert world.journal_counts() == {"done": (len(MIXED), sum(MIXED.values()))}
    # 40 small objects in shards of 8 and two large ones alone: 7 shards, spread over the workers.
    assert sum(stats.shards for stats in executor.workers.values()) == 7
    assert sum(stats.bytes for stats in executor.workers.values()) == sum(MIXED.values())
    # A second run finds everything done in the driver's journal and sends nothing.
    again = run_migration(world.plan(), state_dir=world.state, reports_dir=world.tmp / "reports", executor=_executor(world, cluster))
    assert (again.result.copied, again.result.already_done) == (0, len(MIXED))


def test_no_credential_travels_in_the_task_graph(world: World, cluster: Any, supabase_server: Any, seaweed: Any) -> None:
    sent: list[bytes] = []
    original = cluster.submit

    def spy(func: Any, *args: Any, **kwargs: Any) -> Any:
        import pickle

        sent.append(pickle.dumps((args, {k: v for k, v in kwargs.items() if k not in ("pure", "retries")})))
        return original(func, *args, **kwargs)

    cluster.submit = spy
    try:
        run_migration(world.plan(), state_dir=world.state, reports_dir=world.tmp / "reports", executor=_executor(world, cluster))
    finally:
        del cluster.submit
    assert sent
    for payload in sent:
        for secret in (supabase_server.service_key, seaweed.secret_key):
            assert secret.encode() not in payload


def _worker_pids(cluster: Any) -> dict[str, int]:
    return dict(cluster.run(os.getpid))


def test_a_worker_killed_mid_shard_ends_byte_exact_with_no_upload_left(world: World, cluster: Any, supabase_faults: Any) -> None:
    # Slow every source read so the multipart shards are mid-flight when the workers die.
    supabase_faults({"action": "latency", "method": "GET", "path": r"/object/", "delay_ms": 250, "count": None})
    executor = _executor(world, cluster)
    outcome: dict[str, Any] = {}

    def drive() -> None:
        outcome["run"] = run_migration(world.plan(), state_dir=world.state, reports_dir=world.tmp / "reports", executor=executor)

    driver = threading.Thread(target=drive)
    driver.start()
    deadline = time.monotonic() + 120
    while not world.s3.list_multipart_uploads(Bucket=world.dest).get("Uploads"):
        assert time.monotonic() < deadline, "no multipart upload started"
        time.sleep(0.05)
    before = _worker_pids(cluster)
    for pid in before.values():
        os.kill(pid, signal.SIGKILL)
    driver.join(timeout=300)
    assert not driver.is_alive()
    assert set(_worker_pids(cluster).values()).isdisjoint(before.values()), "the Nanny restarted the killed workers"
    result = outcome["run"].result
    assert result.failures == []
    # The rerun shard aborted the upload its dead worker had open (assert_migrated checks none is left).
    assert result.aborted_uploads >= 1
    world.assert_migrated()
    assert world.journal_counts() == {"done": (len(MIXED), sum(MIXED.values()))}


def _drive_cli(world: World, scheduler: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "migrate", "run", str(world.plan_path), "--state-dir", str(world.state), "--reports-dir", str(world.tmp / "reports"), "--no-progress", "--executor", "dask", "--scheduler", scheduler, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def test_the_driver_killed_and_restarted_resumes(world: World, cluster: Any, supabase_faults: Any) -> None:
    supabase_faults({"action": "latency", "method": "GET", "path": r"/object/", "delay_ms": 300, "count": None})
    scheduler = cluster.scheduler.address
    first = _drive_cli(world, scheduler, "--shard-objects", "4")
    deadline = time.monotonic() + 120
    while world.journal_counts().get("done", (0, 0))[0] < 8:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "no shard finished"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done_before = world.journal_counts()["done"][0]
    assert done_before < len(MIXED)
    second = _drive_cli(world, scheduler, "--shard-objects", "4")
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    copied = int(out.split("Copied ", 1)[1].split(" ", 1)[0])
    # What the killed driver had recorded is not sent again.
    assert copied <= len(MIXED) - done_before
    world.assert_migrated()
    assert world.journal_counts() == {"done": (len(MIXED), sum(MIXED.values()))}


def test_verify_on_the_cluster_gives_the_local_report(world: World, cluster: Any) -> None:
    plan = world.plan()
    run_migration(plan, state_dir=world.state, reports_dir=world.tmp / "reports")
    # Damage two objects and plant an unexpected one, so the report has more than matches to agree on.
    world.s3.put_object(Bucket=world.dest, Key="moved/small/003.txt", Body=b"not the bytes")
    world.s3.delete_object(Bucket=world.dest, Key="moved/small/004.txt")
    world.s3.put_object(Bucket=world.dest, Key="moved/stray.txt", Body=b"x")
    for mode in ("fast", "deep"):
        local = verify_plan(plan, mode=mode, state_dir=world.state, reports_dir=world.tmp / "reports-local")
        remote = verify_plan(plan, mode=mode, state_dir=world.state, reports_dir=world.tmp / "reports-dask", executor=_executor(world, cluster, max_objects=5))
        assert local.counts() == remote.counts(), (local.frame.filter(local.frame["status"] != "match").select("dest_key", "status", "detail").to_dicts())
        assert local.counts()["match"] == len(MIXED) - 2 and local.counts()["unexpected"] == 1
        assert local.frame.drop("checked_at").to_dicts() == remote.frame.drop("checked_at").to_dicts()
        assert remote.exit_status == local.exit_status != 0


def _set_environment(name: str, value: str | None) -> None:
    """Runs on each worker through `client.run` (a bound `os.environ.update` would carry this process's copy)."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def test_a_worker_whose_environment_makes_another_plan_stops_the_run(world: World, cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from migrate.errors import FatalError

    # The driver and the workers resolve ${CLUSTER_TEST_DEST} to different buckets: no worker may write anywhere.
    world.plan_path.write_text(world.plan_path.read_text().replace(f"bucket: {world.dest},", "bucket: \"${CLUSTER_TEST_DEST}\","))
    monkeypatch.setenv("CLUSTER_TEST_DEST", world.dest)
    cluster.run(_set_environment, "CLUSTER_TEST_DEST", "somewhere-else")
    try:
        with pytest.raises(FatalError, match="reads differently in the worker's environment"):
            run_migration(world.plan(), state_dir=world.state, reports_dir=world.tmp / "reports", executor=_executor(world, cluster))
    finally:
        cluster.run(_set_environment, "CLUSTER_TEST_DEST", None)
    assert world.s3.list_objects_v2(Bucket=world.dest)["KeyCount"] == 0


def test_verify_refuses_sample_with_the_dask_executor_in_one_line(world: World, cluster: Any) -> None:
    # `cluster` sets the credentials in the environment; no scheduler listens on port 9: the refusal comes before any client is made.
    done = subprocess.run(
        [sys.executable, "-m", "migrate", "verify", str(world.plan_path), "--state-dir", str(world.state), "--reports-dir", str(world.tmp / "reports"),
         "--no-progress", "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9", "--sample", "3"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "--sample is not available with --executor dask" in done.stderr
    assert not (world.tmp / "reports").exists()


# -- verify in bounded driver memory ------------------------------------------------------
def _migrated_records(world: World) -> list[ObjectRecord]:
    """Migrate the world locally; its manifest's records, in manifest order."""
    from migrate.manifest import scan_manifest
    from migrate.records import frame_to_records

    plan = world.plan()
    run_migration(plan, state_dir=world.state, reports_dir=world.tmp / "reports")
    return list(frame_to_records(scan_manifest(RunDirectory.for_plan(plan.name, state_dir=world.state).manifest).collect()))


def _verify(world: World, records: Any, executor: DaskExecutor | None = None, progress: Any = None) -> Any:
    from migrate.stores.factory import open_destination, open_source
    from migrate.verify import VerifyOptions, verify_migration

    plan = world.plan()
    source = open_source(plan, concurrency=2, fetch_user_metadata=False)
    destination = open_destination(plan, concurrency=2)
    journal_path = RunDirectory.for_plan(plan.name, state_dir=world.state).journal
    options = VerifyOptions(mode="fast", concurrency=2, expect_prefixes=((world.dest, "moved/"),))
    try:
        with TransferJournal(journal_path, readonly=True) as journal:
            return verify_migration(
                records, plan_name=plan.name, source=source, destination=destination, journal=journal, options=options, progress=progress, executor=executor
            )
    finally:
        source.close()
        destination.close()


def test_cluster_verify_reads_its_records_as_shards_come_back_not_all_first(world: World, cluster: Any) -> None:
    from migrate.progress import RecordingProgress

    records = _migrated_records(world)
    taken = 0

    def stream() -> Iterator[ObjectRecord]:
        nonlocal taken
        for record in records:
            taken += 1
            yield record

    class FirstResult(RecordingProgress):
        """Notes how many records the driver had taken when the first shard's rows came back."""

        taken_at_first: int | None = None

        def advance(self, *, objects: int = 0, bytes_done: int = 0) -> None:
            if self.taken_at_first is None:
                self.taken_at_first = taken
            super().advance(objects=objects, bytes_done=bytes_done)

    # By address, as the CLI does: the executor makes its own client.
    executor = DaskExecutor(world.plan(), scheduler=cluster.scheduler.address, max_objects=2)
    progress = FirstResult()
    try:
        remote = _verify(world, stream(), executor=executor, progress=progress)
        slots = executor._slots()  # 2 workers x 1 thread x SHARDS_IN_FLIGHT_PER_WORKER
        # distributed logs the messages a client sent (each shard's records); the driver's client keeps none.
        assert len(executor.client().scheduler_comm.recent_message_log) == 0
    finally:
        executor.close()
    # `slots` shards in flight, one more being cut, and the record that closed it: never the whole manifest.
    assert progress.taken_at_first is not None and progress.taken_at_first <= (slots + 1) * 2 + 1 < len(records)
    assert progress.objects == len(records) and taken == len(records)
    local = _verify(world, iter(records))
    assert local.frame.drop("checked_at").to_dicts() == remote.frame.drop("checked_at").to_dicts()


def test_cluster_verify_files_not_migrated_rows_and_counts_as_a_local_verify_does(world: World, cluster: Any) -> None:
    records = _migrated_records(world)
    world.s3.put_object(Bucket=world.dest, Key="moved/stray.txt", Body=b"x")
    # Planned objects S3 cannot hold, and one the rules excluded, between the copied ones.
    unwritable = ObjectRecord(
        source_bucket=world.bucket, source_key="bad\x01key", size=3, dest_bucket=world.dest, dest_key="moved/bad\x01key", action="invalid-key", reason="a control character in the key"
    )
    excluded = ObjectRecord(source_bucket=world.bucket, source_key="tmp/skip.txt", size=5, action="excluded", reason="filters.exclude")
    mixed = records[:7] + [unwritable] + records[7:20] + [excluded] + records[20:]
    local = _verify(world, iter(mixed))
    remote = _verify(world, iter(mixed), executor=_executor(world, cluster, max_objects=4))
    assert local.counts()["not-migrated"] == 1 and local.counts()["unexpected"] == 1
    assert local.frame.drop("checked_at").to_dicts() == remote.frame.drop("checked_at").to_dicts()
    assert (remote.population, remote.not_verified) == (local.population, local.not_verified) == (len(records) + 1, 1)
