"""The transfer engine against a real SeaweedFS (S3 -> S3), with injected faults."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from migrate.errors import AccessDenied, BucketNotFound
from migrate.journal import TransferJournal
from migrate.progress import RecordingProgress
from migrate.records import ObjectRecord
from migrate.stack.faultproxy import FaultProxy, FaultRule
from migrate.stores.base import ObjectInfo, SourceStore
from migrate.stores.s3 import S3Location, S3Store
from migrate.transfer import MiB, TransferOptions, transfer_objects

PART = 5 * MiB


def _store(seaweed: Any, endpoint_url: str | None = None, **overrides: Any) -> S3Store:
    location = S3Location(
        endpoint_url=endpoint_url or seaweed.endpoint_url,
        region=seaweed.region,
        access_key_id=overrides.get("access_key_id", seaweed.access_key),
        secret_access_key=overrides.get("secret_access_key", seaweed.secret_key),
    )
    return S3Store(location, timeout=20)


@pytest.fixture
def buckets(seaweed: Any) -> tuple[str, str]:
    client = seaweed.client()
    source, dest = f"src-{uuid.uuid4().hex[:8]}", f"dst-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=source)
    client.create_bucket(Bucket=dest)
    return source, dest


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[TransferJournal]:
    with TransferJournal(tmp_path / "journal.sqlite") as j:
        yield j


def _seed(seaweed: Any, bucket: str, sizes: dict[str, int], *, seed: int = 1) -> dict[str, bytes]:
    client = seaweed.client()
    data: dict[str, bytes] = {}
    for index, (key, size) in enumerate(sizes.items()):
        body = (hashlib.sha256(f"{seed}-{index}".encode()).digest() * (size // 32 + 1))[:size]
        client.put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="image/png", CacheControl="max-age=60", Metadata={"owner": f"u{index}"}
        )
        data[key] = body
    return data


def _records(store: S3Store, source: str, dest: str, *, prefix: str = "moved/") -> list[ObjectRecord]:
    records = []
    for page in store.iter_objects(source):
        for info in page:
            head = store.head(source, info.key)
            assert head is not None
            records.append(
                ObjectRecord(
                    source_bucket=source,
                    source_key=info.key,
                    size=info.size,
                    source_etag=info.etag,
                    dest_bucket=dest,
                    dest_key=prefix + info.key,
                    content_type=head.content_type,
                    cache_control=head.cache_control,
                    user_metadata=head.user_metadata,
                )
            )
    return records


def _options(**overrides: Any) -> TransferOptions:
    values: dict[str, Any] = {"concurrency": 4, "part_size": PART, "multipart_threshold": PART, "on_conflict": "overwrite", "max_attempts": 4}
    values.update(overrides)
    return TransferOptions(**values)


def _assert_copied(seaweed: Any, dest: str, data: dict[str, bytes], prefix: str = "moved/") -> None:
    client = seaweed.client()
    for key, body in data.items():
        got = client.get_object(Bucket=dest, Key=prefix + key)
        assert got["Body"].read() == body, key
        assert got["ContentType"] == "image/png"
        assert got.get("CacheControl") == "max-age=60"
        assert got["Metadata"]["owner"].startswith("u")


SIZES = {
    "zero": 0,
    "one": 1,
    "small/a b (1).png": 1000,
    "part-minus-1": PART - 1,
    "part-exact": PART,
    "part-plus-1": PART + 1,
    "deep/x/y/z/three-parts-and-a-bit": 3 * PART + 7,
}


def test_copies_are_byte_exact_with_metadata_and_digests(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal) -> None:
    source, dest = buckets
    data = _seed(seaweed, source, SIZES)
    store = _store(seaweed)
    progress = RecordingProgress()
    result = transfer_objects(_records(store, source, dest), source=store, destination=store, journal=journal, options=_options(), progress=progress)
    assert result.ok, result.failures
    assert result.copied == len(SIZES)
    assert result.bytes_copied == sum(SIZES.values())
    assert progress.objects == len(SIZES) and progress.bytes_done == sum(SIZES.values())
    _assert_copied(seaweed, dest, data)
    rows = {row.source_key: row for row in journal.iter_rows()}
    for key, body in data.items():
        assert rows[key].state == "done"
        # Whole-object digests computed while streaming, multipart included.
        assert rows[key].sha256 == hashlib.sha256(body).hexdigest(), key
        assert rows[key].md5 == hashlib.md5(body).hexdigest(), key
    # The destination stored our SHA-256 for single-part objects.
    head = store.head(dest, "moved/small/a b (1).png")
    assert head is not None and head.checksums.get("sha256")


def test_rerun_moves_nothing_and_then_only_the_new_object(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal) -> None:
    source, dest = buckets
    _seed(seaweed, source, {"a": 10, "b": 20, "big": PART + 3})
    store = _store(seaweed)
    first = transfer_objects(_records(store, source, dest), source=store, destination=store, journal=journal, options=_options())
    assert first.copied == 3
    again = transfer_objects(_records(store, source, dest), source=store, destination=store, journal=journal, options=_options())
    assert (again.copied, again.already_done, again.bytes_copied) == (0, 3, 0)
    new = _seed(seaweed, source, {"c-new": 30}, seed=9)
    delta = transfer_objects(_records(store, source, dest), source=store, destination=store, journal=journal, options=_options())
    assert (delta.copied, delta.already_done, delta.bytes_copied) == (1, 3, 30)
    assert seaweed.client().get_object(Bucket=dest, Key="moved/c-new")["Body"].read() == new["c-new"]


def test_changed_source_object_is_copied_again(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal) -> None:
    source, dest = buckets
    _seed(seaweed, source, {"a": 10, "b": 20})
    store = _store(seaweed)
    transfer_objects(_records(store, source, dest), source=store, destination=store, journal=journal, options=_options())
    changed = _seed(seaweed, source, {"a": 11}, seed=5)
    result = transfer_objects(_records(store, source, dest), source=store, destination=store, journal=journal, options=_options())
    assert (result.copied, result.already_done) == (1, 1)
    assert seaweed.client().get_object(Bucket=dest, Key="moved/a")["Body"].read() == changed["a"]


def test_source_changed_since_plan_is_a_failure_not_a_copy(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal) -> None:
    source, dest = buckets
    _seed(seaweed, source, {"a": 10})
    store = _store(seaweed)
    records = _records(store, source, dest)
    _seed(seaweed, source, {"a": 12}, seed=3)  # changes after planning
    result = transfer_objects(records, source=store, destination=store, journal=journal, options=_options())
    assert not result.ok and "run `migrate plan` again" in result.failures[0].error
    assert store.head(dest, "moved/a") is None


def test_injected_s3_faults_are_retried_and_result_is_byte_exact(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal) -> None:
    source, dest = buckets
    data = _seed(seaweed, source, {"a": 1000, "b": 2000, "big": 2 * PART + 5})
    direct = _store(seaweed)
    records = _records(direct, source, dest)
    host, port = seaweed.endpoint_url.split("//")[1].split(":")
    with FaultProxy(host, int(port)) as proxy:
        proxy.add(FaultRule("slowdown", method="PUT", path=f"/{dest}/moved/a$", count=2))
        proxy.add(FaultRule("error500", method="PUT", path=f"/{dest}/moved/big", query="partNumber=2", count=1))
        proxy.add(FaultRule("drop", method="PUT", path=f"/{dest}/moved/b$", count=1))
        proxy.add(FaultRule("truncate", method="GET", path=f"/{source}/big", count=1, after_bytes=1000))
        proxy.add(FaultRule("truncate", method="GET", path=f"/{source}/a$", count=1, after_bytes=10))
        via_proxy = _store(seaweed, endpoint_url=proxy.endpoint_url)
        result = transfer_objects(records, source=via_proxy, destination=via_proxy, journal=journal, options=_options())
        injected = {action for action, _, _ in proxy.injected}
    assert result.ok, result.failures
    assert injected == {"slowdown", "error500", "drop", "truncate"}
    assert result.throttle_events >= 2
    _assert_copied(seaweed, dest, data)
    attempts = {row.source_key: row.attempts for row in journal.iter_rows()}
    # a: one truncated read + two SlowDowns. b's dropped connection may be
    # absorbed by the one free retry on a reused keep-alive connection.
    assert attempts["a"] >= 3


def test_persistent_fault_fails_one_object_and_the_run_goes_on(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal) -> None:
    source, dest = buckets
    _seed(seaweed, source, {"good-1": 10, "bad": 10, "good-2": 10})
    direct = _store(seaweed)
    records = _records(direct, source, dest)
    host, port = seaweed.endpoint_url.split("//")[1].split(":")
    with FaultProxy(host, int(port)) as proxy:
        proxy.add(FaultRule("error500", method="PUT", path=f"/{dest}/moved/bad$", count=100))
        result = transfer_objects(
            records, source=direct, destination=_store(seaweed, endpoint_url=proxy.endpoint_url), journal=journal, options=_options(max_attempts=3)
        )
    assert result.copied == 2 and len(result.failures) == 1
    assert result.failures[0].source_key == "bad" and "InternalError" in result.failures[0].error
    assert journal.counts()["failed"][0] == 1
    # Next run, with the fault gone, moves only that object.
    again = transfer_objects(records, source=direct, destination=direct, journal=journal, options=_options())
    assert (again.copied, again.already_done) == (1, 2)


class CorruptingStore(SourceStore):
    """Flips one byte of every read of `key`: a source whose bytes disagree with its eTag."""

    kind = "corrupting"

    def __init__(self, inner: S3Store, key: str):
        self.inner, self.key, self.reads = inner, key, 0

    def list_buckets(self) -> list[str]:
        return self.inner.list_buckets()

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[list[ObjectInfo]]:
        return self.inner.iter_objects(bucket, prefix)

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        return self.inner.head(bucket, key)

    def open(self, bucket: str, key: str, *, offset: int = 0, length: int | None = None) -> tuple[ObjectInfo, Iterator[bytes]]:
        info, chunks = self.inner.open(bucket, key, offset=offset, length=length)
        if key != self.key:
            return info, chunks
        self.reads += 1

        def corrupted() -> Iterator[bytes]:
            for index, chunk in enumerate(chunks):
                yield bytes([chunk[0] ^ 0xFF]) + chunk[1:] if index == 0 and chunk else chunk

        return info, corrupted()


@pytest.mark.parametrize("size", [1000, 2 * PART + 1], ids=["single", "multipart"])
def test_corrupted_source_bytes_never_count_as_migrated(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal, size: int) -> None:
    source, dest = buckets
    _seed(seaweed, source, {"victim": size, "fine": 10})
    direct = _store(seaweed)
    corrupting = CorruptingStore(direct, "victim")
    result = transfer_objects(_records(direct, source, dest), source=corrupting, destination=direct, journal=journal, options=_options(max_attempts=2))
    assert [f.source_key for f in result.failures] == ["victim"]
    assert "do not match the source eTag" in result.failures[0].error
    assert direct.head(dest, "moved/victim") is None
    assert direct.list_multipart_uploads(dest) == []  # the bad upload was aborted, not left to cost money
    assert direct.head(dest, "moved/fine") is not None


def test_conflict_policies(seaweed: Any, buckets: tuple[str, str], tmp_path: Path) -> None:
    source, dest = buckets
    _seed(seaweed, source, {"k": 10})
    store = _store(seaweed)
    seaweed.client().put_object(Bucket=dest, Key="moved/k", Body=b"theirs")
    records = _records(store, source, dest)

    with TransferJournal(tmp_path / "skip.sqlite") as j:
        skipped = transfer_objects(records, source=store, destination=store, journal=j, options=_options(on_conflict="skip"))
    assert skipped.skipped_existing == 1 and skipped.copied == 0
    with TransferJournal(tmp_path / "fail.sqlite") as j:
        failed = transfer_objects(records, source=store, destination=store, journal=j, options=_options(on_conflict="fail"))
    assert "on_conflict is 'fail'" in failed.failures[0].error
    assert seaweed.client().get_object(Bucket=dest, Key="moved/k")["Body"].read() == b"theirs"
    with TransferJournal(tmp_path / "over.sqlite") as j:
        over = transfer_objects(records, source=store, destination=store, journal=j, options=_options(on_conflict="overwrite"))
    assert over.copied == 1
    assert seaweed.client().get_object(Bucket=dest, Key="moved/k")["Body"].read() != b"theirs"


def test_missing_destination_bucket_and_bad_credentials_stop_the_run(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal) -> None:
    source, _ = buckets
    _seed(seaweed, source, {"a": 10})
    store = _store(seaweed)
    records = _records(store, source, "no-such-bucket-here")
    with pytest.raises(BucketNotFound):
        transfer_objects(records, source=store, destination=store, journal=journal, options=_options())
    wrong = _store(seaweed, secret_access_key="not-the-secret")
    with pytest.raises(AccessDenied) as caught:
        transfer_objects(_records(store, source, buckets[1]), source=store, destination=wrong, journal=journal, options=_options())
    assert "not-the-secret" not in str(caught.value)


def test_stop_leaves_the_rest_resumable(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal) -> None:
    source, dest = buckets
    _seed(seaweed, source, {f"k{i:02d}": 100 for i in range(20)})
    store = _store(seaweed)
    stop = threading.Event()

    class StopAfterFive(RecordingProgress):
        def advance(self, *, objects: int = 0, bytes_done: int = 0) -> None:
            super().advance(objects=objects, bytes_done=bytes_done)
            if self.objects >= 5:
                stop.set()

    records = _records(store, source, dest)
    first = transfer_objects(records, source=store, destination=store, journal=journal, options=_options(concurrency=1), progress=StopAfterFive(), stop=stop)
    assert 5 <= first.copied < 20
    second = transfer_objects(records, source=store, destination=store, journal=journal, options=_options(concurrency=1))
    assert second.copied == 20 - first.copied and second.already_done == first.copied


def test_memory_stays_within_the_budget(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal) -> None:
    from migrate.transfer import Transfer

    source, dest = buckets
    _seed(seaweed, source, {"big-1": 4 * PART, "big-2": 3 * PART + 1, **{f"s{i}": 1000 for i in range(10)}})
    store = _store(seaweed)
    options = _options(concurrency=2)
    engine = Transfer(source=store, destination=store, journal=journal, options=options, progress=RecordingProgress(), stop=threading.Event())
    result = engine.run(_records(store, source, dest))
    assert result.ok
    assert 0 < engine.budget.peak_in_use <= options.concurrency * options.part_size


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from migrate.journal import TransferJournal
    from migrate.records import ObjectRecord
    from migrate.stores.s3 import S3Location, S3Store
    from migrate.transfer import TransferOptions, transfer_objects
    endpoint, key, secret, source, dest, size, etag, journal_path = sys.argv[1:]

    class SlowStore(S3Store):
        def open(self, *args, **kwargs):
            time.sleep(0.3)  # slow enough to be killed between parts
            return super().open(*args, **kwargs)

    store = SlowStore(S3Location(endpoint_url=endpoint, region="us-east-1", access_key_id=key, secret_access_key=secret))
    record = ObjectRecord(source_bucket=source, source_key="huge", size=int(size), source_etag=etag, dest_bucket=dest, dest_key="moved/huge")
    options = TransferOptions(concurrency=1, part_size=5 * 1024 * 1024, multipart_threshold=5 * 1024 * 1024, on_conflict="overwrite")
    with TransferJournal(Path(journal_path)) as journal:
        transfer_objects([record], source=store, destination=store, journal=journal, options=options)
    """
)


class CountingStore(S3Store):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.ranges: list[int] = []

    def open(self, bucket: str, key: str, *, offset: int = 0, length: int | None = None) -> tuple[ObjectInfo, Iterator[bytes]]:
        self.ranges.append(offset)
        return super().open(bucket, key, offset=offset, length=length)


def test_sigkill_during_multipart_resumes_without_resending_parts(seaweed: Any, buckets: tuple[str, str], tmp_path: Path) -> None:
    source, dest = buckets
    size = 8 * PART + 123
    data = _seed(seaweed, source, {"huge": size})
    etag = hashlib.md5(data["huge"]).hexdigest()
    journal_path = tmp_path / "journal.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, seaweed.endpoint_url, seaweed.access_key, seaweed.secret_key, source, dest, str(size), etag, str(journal_path)],
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    done_parts = 0
    while time.monotonic() < deadline and child.poll() is None:
        if journal_path.exists():
            try:
                with TransferJournal(journal_path, readonly=True) as peek:
                    uploads = peek.open_uploads()
                    done_parts = len(peek.parts(uploads[0].upload_id)) if uploads else 0
            except sqlite3.OperationalError:  # the child has created the file but not its tables yet
                done_parts = 0
            if done_parts >= 3:
                break
        time.sleep(0.05)
    assert child.poll() is None, f"child finished before it could be killed: {child.stderr.read() if child.stderr else ''}"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()

    store = CountingStore(S3Location(endpoint_url=seaweed.endpoint_url, region="us-east-1", access_key_id=seaweed.access_key, secret_access_key=seaweed.secret_key))
    assert store.head(dest, "moved/huge") is None  # nothing half-written counts as an object
    record = ObjectRecord(source_bucket=source, source_key="huge", size=size, source_etag=etag, dest_bucket=dest, dest_key="moved/huge")
    with TransferJournal(journal_path) as journal:
        result = transfer_objects([record], source=store, destination=store, journal=journal, options=_options(concurrency=2))
        assert result.ok, result.failures
        assert result.resumed_parts >= 3
        # Parts completed before the kill were not read (or sent) again.
        assert 0 not in store.ranges and len(store.ranges) == 9 - result.resumed_parts
        assert journal.counts() == {"done": (1, size)}
    assert seaweed.client().get_object(Bucket=dest, Key="moved/huge")["Body"].read() == data["huge"]
    assert store.list_multipart_uploads(dest) == []


UNICODE_KEY = "ünïcode/naïve café.txt"
ODD_KEYS = ["plus+and=equals", "q?mark#hash", "100% sure~tilde", "spaces and (parens)", "ünïcode/naïve café.txt", "semi;colon,comma&amp$"]


@pytest.mark.parametrize("fast", [True, False], ids=["lean-http", "boto3"])
def test_both_data_paths_sign_odd_keys_and_keep_metadata(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal, fast: bool) -> None:
    source, dest = buckets
    data = _seed(seaweed, source, {key: 100 + i for i, key in enumerate(ODD_KEYS)} | {"multi": PART + 9})
    store = S3Store(
        S3Location(endpoint_url=seaweed.endpoint_url, region=seaweed.region, access_key_id=seaweed.access_key, secret_access_key=seaweed.secret_key),
        fast_data_path=fast,
    )
    assert (store.http is not None) == fast
    result = transfer_objects(_records(store, source, dest), source=store, destination=store, journal=journal, options=_options())
    assert result.ok, result.failures
    _assert_copied(seaweed, dest, data)
    head = store.head(dest, "moved/" + UNICODE_KEY)
    assert head is not None and head.checksums.get("sha256") and head.user_metadata == {"owner": f"u{ODD_KEYS.index(UNICODE_KEY)}"}


def test_identical_bytes_at_the_destination_count_as_migrated_even_under_fail(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal) -> None:
    """A run killed after its PUT but before the journal caught up must not turn into a failure."""
    source, dest = buckets
    data = _seed(seaweed, source, {"same": 50, "new": 60})
    seaweed.client().put_object(Bucket=dest, Key="moved/same", Body=data["same"])
    store = _store(seaweed)
    result = transfer_objects(_records(store, source, dest), source=store, destination=store, journal=journal, options=_options(on_conflict="fail"))
    assert result.ok and (result.copied, result.skipped_existing) == (1, 1)
    assert {row.source_key: row.state for row in journal.iter_rows()} == {"same": "done", "new": "done"}


class HeadCountingStore(S3Store):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.heads: list[str] = []

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        self.heads.append(key)
        return super().head(bucket, key)


@pytest.mark.parametrize("conditional", [None, False], ids=["probed-conditional-writes", "head-before-write"])
def test_skip_policy_uses_conditional_writes_instead_of_a_head_per_object(
    seaweed: Any, buckets: tuple[str, str], journal: TransferJournal, conditional: bool | None
) -> None:
    source, dest = buckets
    _seed(seaweed, source, {f"k{i}": 10 + i for i in range(6)})
    seaweed.client().put_object(Bucket=dest, Key="moved/k3", Body=b"someone else's")
    reader = _store(seaweed)
    records = _records(reader, source, dest)
    writer = HeadCountingStore(
        S3Location(endpoint_url=seaweed.endpoint_url, region=seaweed.region, access_key_id=seaweed.access_key, secret_access_key=seaweed.secret_key)
    )
    result = transfer_objects(records, source=reader, destination=writer, journal=journal, options=_options(on_conflict="skip", conditional_writes=conditional))
    assert (result.copied, result.skipped_existing) == (5, 1)
    assert seaweed.client().get_object(Bucket=dest, Key="moved/k3")["Body"].read() == b"someone else's"
    if conditional is None:  # SeaweedFS honours If-None-Match: only the refused key is looked at
        assert writer.heads == ["moved/k3"]
    else:
        assert sorted(writer.heads) == [f"moved/k{i}" for i in range(6)]
    assert not [k for k in seaweed.client().list_objects_v2(Bucket=dest).get("Contents", []) if ".migrate-probe" in k["Key"]]


def test_bandwidth_limit_holds_across_all_workers(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal) -> None:
    """transfer.max_bandwidth: 3 MiB over 4 workers at 1 MiB/s takes at least (3 MiB - one second's burst) / rate."""
    source, dest = buckets
    sizes = {f"bw/{n}": 768 * 1024 for n in range(4)}
    data = _seed(seaweed, source, sizes)
    store = _store(seaweed)
    started = time.monotonic()
    result = transfer_objects(
        _records(store, source, dest), source=store, destination=store, journal=journal, options=_options(max_bandwidth=MiB)
    )
    elapsed = time.monotonic() - started
    assert result.ok, result.failures
    assert elapsed >= (sum(sizes.values()) - MiB) / MiB  # >= 2 s: the lower bound the limit implies
    _assert_copied(seaweed, dest, data)


def test_request_rate_limit_holds_across_all_workers(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal) -> None:
    """transfer.max_requests_per_second: 12 small objects = 24 requests (a GET and a PUT each) at 10/s take >= 2.3 s."""
    source, dest = buckets
    sizes = {f"rps/{n}": 10 for n in range(12)}
    data = _seed(seaweed, source, sizes)
    store = _store(seaweed)
    records = _records(store, source, dest)
    started = time.monotonic()
    result = transfer_objects(records, source=store, destination=store, journal=journal, options=_options(max_requests_per_second=10.0))
    elapsed = time.monotonic() - started
    assert result.ok, result.failures
    assert elapsed >= (2 * len(sizes) - 1) / 10.0
    _assert_copied(seaweed, dest, data)


def test_a_truncated_s3_error_body_is_a_retried_transient_fault(seaweed: Any, buckets: tuple[str, str]) -> None:
    """The 404 answer's XML is cut short by the fault proxy: a TransientError (retried), then the real answer."""
    from migrate.errors import ObjectNotFound, TransientError
    from migrate.retry import call_with_retries

    source, _ = buckets
    host, port = seaweed.endpoint_url.removeprefix("http://").split(":")
    with FaultProxy(host, int(port)) as proxy:
        store = _store(seaweed, proxy.endpoint_url)
        proxy.add(FaultRule(action="truncate", method="GET", path=rf"/{source}/missing", after_bytes=20, count=1))
        with pytest.raises(TransientError):
            store.open(source, "missing")
        proxy.add(FaultRule(action="truncate", method="GET", path=rf"/{source}/missing", after_bytes=20, count=1))
        with pytest.raises(ObjectNotFound):
            call_with_retries(lambda: store.open(source, "missing"), max_attempts=3)
        assert [action for action, _, _ in proxy.injected] == ["truncate", "truncate"]
