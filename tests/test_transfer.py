"""The transfer engine against a real SeaweedFS (S3 -> S3), with injected faults."""

from __future__ import annotations

import hashlib
import json
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

from migrate.errors import AccessDenied, BucketNotFound, StateDirectoryError
from migrate.journal import TransferJournal
from migrate.progress import RecordingProgress
from migrate.records import ObjectRecord
from migrate.stack.faultproxy import FaultProxy, FaultRule
from migrate.stores.base import ObjectInfo, SourceStore
from migrate.stores.s3 import S3Location, S3Store
from migrate.checksums import MiB
from migrate.transfer import TransferOptions, transfer_objects

PART = 5 * MiB
# Journaled as sent when the source answered no Content-Encoding, Content-Language or Expires.
NO_CARRIED = {"content_encoding": None, "content_language": None, "expires": None}


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
    for index, (key, body) in enumerate(data.items()):
        got = client.get_object(Bucket=dest, Key=prefix + key)
        assert got["Body"].read() == body, key
        assert got["ContentType"] == "image/png"
        assert got.get("CacheControl") == "max-age=60"
        assert got["Metadata"] == {"owner": f"u{index}"}, key  # _seed's own value for this object


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
    assert not result.ok and "`migrate run --replan`" in result.failures[0].error
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


def _peak_rss_of(command: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 300) -> tuple[int, int]:
    """(exit code, peak resident set size in bytes) of one child process, from its own rusage (wait4)."""
    with open(cwd / "child.out", "wb") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            return child.returncode, usage.ru_maxrss * 1024  # Linux: KiB
        if time.monotonic() > deadline:
            child.kill()
            child.wait()
            pytest.fail(f"{command} still running after {timeout}s: {(cwd / 'child.out').read_text()[-2000:]}")
        time.sleep(0.1)


def _s3_plan(path: Path, seaweed: Any, source: str, dest: str) -> Path:
    path.write_text(
        f"""version: 1
name: {path.stem}
source: {{type: s3, endpoint_url: "{seaweed.endpoint_url}", region: us-east-1, buckets: [{source}]}}
destination: {{bucket: {dest}, endpoint_url: "{seaweed.endpoint_url}", region: us-east-1, prefix: moved/, on_conflict: overwrite}}
transfer: {{concurrency: 2, part_size: 5MiB, multipart_threshold: 5MiB}}
"""
    )
    return path


def test_peak_memory_of_a_run_is_bounded_by_the_budget_not_the_object_sizes(seaweed: Any, buckets: tuple[str, str], tmp_path: Path) -> None:
    """The real peak RSS of a `migrate run` child moving objects 6x its in-flight budget (2 workers x 5 MiB parts).

    The start-up allowance is measured, not assumed: the same command moving one
    1 KiB object. Buffering even one whole 64 MiB object breaks the bound.
    """
    source, dest = buckets
    client = seaweed.client()
    client.create_bucket(Bucket=source + "-tiny")
    client.put_object(Bucket=source + "-tiny", Key="tiny", Body=b"x" * 1024)
    big = 64 * MiB
    chunk = os.urandom(MiB)
    for key in ("big-1", "big-2"):
        upload = client.create_multipart_upload(Bucket=source, Key=key)["UploadId"]
        parts = []
        for number in range(1, big // (16 * MiB) + 1):
            etag = client.upload_part(Bucket=source, Key=key, UploadId=upload, PartNumber=number, Body=chunk * 16)["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
        client.complete_multipart_upload(Bucket=source, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
    env = {**os.environ, "AWS_ACCESS_KEY_ID": seaweed.access_key, "AWS_SECRET_ACCESS_KEY": seaweed.secret_key}
    budget = 2 * PART

    def run(plan: Path) -> int:
        command = [sys.executable, "-m", "migrate", "run", str(plan), "--state-dir", str(tmp_path / "state"), "--reports-dir", str(tmp_path / "reports"), "--no-progress"]
        code, peak = _peak_rss_of(command, env=env, cwd=tmp_path)
        assert code == 0, (tmp_path / "child.out").read_text()
        return peak

    start_up = run(_s3_plan(tmp_path / "tiny.yaml", seaweed, source + "-tiny", dest))
    peak = run(_s3_plan(tmp_path / "big.yaml", seaweed, source, dest))
    assert client.head_object(Bucket=dest, Key="moved/big-2")["ContentLength"] == big
    # Generous: the parts in flight may be held two or three times over (read
    # buffer, request body, digests), plus allocator slack; still far below one object.
    assert peak - start_up < 4 * budget + 8 * MiB, (peak / MiB, start_up / MiB)
    print(f"peak RSS {peak / MiB:.0f} MiB, start-up {start_up / MiB:.0f} MiB, budget {budget / MiB:.0f} MiB")


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

        def open_into(self, *args, **kwargs):
            time.sleep(0.3)  # parts are read through here
            return super().open_into(*args, **kwargs)

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

    def open_into(self, bucket: str, key: str, buffer: memoryview, *, offset: int) -> tuple[ObjectInfo, Iterator[memoryview]]:
        # Parts are read into pooled buffers through here (the lean path never calls `open`).
        self.ranges.append(offset)
        return super().open_into(bucket, key, buffer, offset=offset)


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
            except (sqlite3.OperationalError, StateDirectoryError):  # the child has created the file but not its tables yet
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


class _AbortsUploadMidRun:
    """The real source store, except that reading part 2 of `key` first aborts the destination's upload behind the engine's back."""

    def __init__(self, inner: S3Store, client: Any, dest: str, key: str):
        self._inner, self._client, self._dest, self._key = inner, client, dest, key
        self.aborted: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _abort_before_part_2(self, key: str, offset: int) -> None:
        if key == self._key and offset == PART and not self.aborted:
            for upload in self._client.list_multipart_uploads(Bucket=self._dest).get("Uploads", []):
                self._client.abort_multipart_upload(Bucket=self._dest, Key=upload["Key"], UploadId=upload["UploadId"])
                self.aborted.append(upload["UploadId"])

    def open(self, bucket: str, key: str, *, offset: int = 0, length: int | None = None) -> Any:
        self._abort_before_part_2(key, offset)
        return self._inner.open(bucket, key, offset=offset, length=length)

    def open_into(self, bucket: str, key: str, buffer: memoryview, *, offset: int) -> Any:
        # Parts are read through here (pooled buffers).
        self._abort_before_part_2(key, offset)
        return self._inner.open_into(bucket, key, buffer, offset=offset)


def test_an_upload_that_vanishes_mid_run_is_restarted_once(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal) -> None:
    """S3 answers NoSuchUpload (a 404) for parts of an aborted upload: the object starts again, not "not found"."""
    source, dest = buckets
    data = _seed(seaweed, source, {"big": 3 * PART + 11})
    store = _store(seaweed)
    client = seaweed.client()
    flaky = _AbortsUploadMidRun(store, client, dest, "big")
    progress = RecordingProgress()
    result = transfer_objects(
        _records(store, source, dest), source=flaky, destination=store, journal=journal, options=_options(concurrency=1), progress=progress  # type: ignore[arg-type]
    )
    assert len(flaky.aborted) == 1
    assert progress.bytes_done == len(data["big"])  # the lost part is not counted twice
    assert result.failures == [] and result.copied == 1 and result.restarted_uploads == 1
    _assert_copied(seaweed, dest, data)
    assert client.list_multipart_uploads(Bucket=dest).get("Uploads", []) == []


@pytest.mark.parametrize("algorithm", ["SHA256", "CRC32", "CRC32C", "CRC64NVME"])
def test_every_named_checksum_works_and_multipart_gets_a_full_object_crc(
    seaweed: Any, buckets: tuple[str, str], journal: TransferJournal, algorithm: str
) -> None:
    """Each checksum a plan may name is sent and checked; a multipart object carries one whole-object CRC S3 checked and stores."""
    from migrate.checksums import Digests, full_object_algorithm

    source, dest = buckets
    data = _seed(seaweed, source, {"small": 1000, "multi": 2 * PART + 99})
    store = _store(seaweed)
    result = transfer_objects(_records(store, source, dest), source=store, destination=store, journal=journal, options=_options(checksum_algorithm=algorithm))
    assert result.failures == [] and result.copied == 2
    client = seaweed.client()
    for key, expected_algorithm in (("small", algorithm), ("multi", full_object_algorithm(algorithm))):
        whole = Digests(expected_algorithm, md5=False)
        whole.update(data[key])
        head = client.head_object(Bucket=dest, Key="moved/" + key, ChecksumMode="ENABLED")
        assert head[f"Checksum{expected_algorithm}"] == whole.s3_checksum()[1], key  # type: ignore[index]
        if key == "multi":
            assert head["ChecksumType"] == "FULL_OBJECT"
            assert journal.rows([(source, key)])[(source, key)].dest_checksum == whole.s3_checksum()[1]  # type: ignore[index]


class _StopAfterOnePart(RecordingProgress):
    """Sets `stop` once one part's bytes have moved: the run ends with its upload open."""

    def __init__(self, stop: threading.Event):
        super().__init__()
        self._stop = stop

    def advance(self, *, objects: int = 0, bytes_done: int = 0) -> None:
        super().advance(objects=objects, bytes_done=bytes_done)
        if self.bytes_done >= PART:
            self._stop.set()


def _one_big_object(seaweed: Any, buckets: tuple[str, str]) -> tuple[str, str, dict[str, bytes], S3Store, Any, list[ObjectRecord]]:
    """A 3-part source object `big`: (source, dest, data, store, boto3 client, records)."""
    source, dest = buckets
    data = _seed(seaweed, source, {"big": 3 * PART + 5})
    store = _store(seaweed)
    return source, dest, data, store, seaweed.client(), _records(store, source, dest)


def test_an_upload_that_vanished_between_runs_starts_again_on_resume(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal) -> None:
    """Stopped after part 1, the upload aborted behind migrate's back: the next run's ListParts gets NoSuchUpload and starts the object afresh."""
    source, dest, data, store, client, records = _one_big_object(seaweed, buckets)
    stop = threading.Event()
    first = transfer_objects(records, source=store, destination=store, journal=journal, options=_options(concurrency=1), progress=_StopAfterOnePart(stop), stop=stop)
    assert first.copied == 0
    uploads = client.list_multipart_uploads(Bucket=dest).get("Uploads", [])
    assert len(uploads) == 1 and journal.open_uploads()
    client.abort_multipart_upload(Bucket=dest, Key=uploads[0]["Key"], UploadId=uploads[0]["UploadId"])
    second = transfer_objects(records, source=store, destination=store, journal=journal, options=_options(concurrency=1))
    assert second.failures == [] and second.copied == 1 and second.resumed_parts == 0
    _assert_copied(seaweed, dest, data)
    assert client.list_multipart_uploads(Bucket=dest).get("Uploads", []) == []


def test_an_upload_begun_with_sha256_parts_is_started_afresh(
    seaweed: Any, buckets: tuple[str, str], journal: TransferJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload an older version began with SHA-256 part checksums cannot take CRC parts: it is aborted and the object sent whole again."""
    import migrate.transfer as transfer_module

    source, dest, data, store, client, records = _one_big_object(seaweed, buckets)
    stop = threading.Event()
    with monkeypatch.context() as patch:  # the old behaviour: SHA-256 part checksums, composite
        patch.setattr(transfer_module, "full_object_algorithm", lambda algorithm: algorithm)
        transfer_objects(records, source=store, destination=store, journal=journal, options=_options(concurrency=1), progress=_StopAfterOnePart(stop), stop=stop)
    old = client.list_multipart_uploads(Bucket=dest).get("Uploads", [])
    assert len(old) == 1
    result = transfer_objects(records, source=store, destination=store, journal=journal, options=_options(concurrency=1))
    assert result.failures == [] and result.copied == 1 and result.resumed_parts == 0
    _assert_copied(seaweed, dest, data)
    assert client.list_multipart_uploads(Bucket=dest).get("Uploads", []) == []
    assert client.head_object(Bucket=dest, Key="moved/big", ChecksumMode="ENABLED").get("ChecksumType") == "FULL_OBJECT"


# Storage classes SeaweedFS stores and answers back (as AWS does); None is STANDARD, which S3 omits.
CLASSES = ["STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "REDUCED_REDUNDANCY", "GLACIER_IR", None]
OWN_SIZES = {"s-0": 10, "s-1": 1000, "s-2": PART - 1, "m-3": PART, "m-4": PART + 1, "m-5": 2 * PART + 3}


def test_each_object_gets_exactly_its_own_headers(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal) -> None:
    """Content-Type, Cache-Control, Content-Disposition, user metadata, storage class and SSE, per object,
    single-part and multipart: every object carries values no other object has, so a header that lands on
    the wrong object (or is not sent) fails the exact comparison."""
    source, dest = buckets
    data = _seed(seaweed, source, OWN_SIZES)
    store = _store(seaweed)
    planned = {}
    records = []
    for record in _records(store, source, dest):
        i = list(OWN_SIZES).index(record.source_key)
        record.content_type = f"application/x-type-{i}"
        record.cache_control = f"max-age={1000 + i}"
        record.content_disposition = f'attachment; filename="file-{i}.bin"'
        record.user_metadata = {"owner": f"u{i}", f"only-{i}": f"v{i}"}
        record.storage_class = CLASSES[i]
        planned[record.dest_key] = record
        records.append(record)
    result = transfer_objects(records, source=store, destination=store, journal=journal, options=_options(server_side_encryption="AES256"))
    assert result.ok and result.copied == len(OWN_SIZES), result.failures
    client = seaweed.client()
    for dest_key, record in planned.items():
        got = client.head_object(Bucket=dest, Key=dest_key)
        assert {
            "ContentLength": got["ContentLength"],
            "ContentType": got["ContentType"],
            "CacheControl": got.get("CacheControl"),
            "ContentDisposition": got.get("ContentDisposition"),
            "Metadata": got["Metadata"],
            "StorageClass": got.get("StorageClass"),
            "ServerSideEncryption": got.get("ServerSideEncryption"),
        } == {
            "ContentLength": record.size,
            "ContentType": record.content_type,
            "CacheControl": record.cache_control,
            "ContentDisposition": record.content_disposition,
            "Metadata": record.user_metadata,
            "StorageClass": record.storage_class,
            "ServerSideEncryption": "AES256",
        }, dest_key
        assert client.get_object(Bucket=dest, Key=dest_key)["Body"].read() == data[record.source_key]


class LateWriterStore(S3Store):
    """A destination where another writer creates `key` while our multipart upload of it is in flight."""

    def __init__(self, *args: Any, key: str, writer: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.key, self.writer, self.wrote = key, writer, False

    def upload_part(self, bucket: str, key: str, *args: Any, **kwargs: Any) -> str:
        if key == self.key and not self.wrote:
            self.wrote = True
            self.writer.put_object(Bucket=bucket, Key=key, Body=b"written meanwhile")
        return super().upload_part(bucket, key, *args, **kwargs)


@pytest.mark.parametrize("conditional_writes", [None, False], ids=["probed", "head-first"])
@pytest.mark.parametrize("policy", ["skip", "fail", "overwrite"])
def test_conflict_policies_for_multipart_objects(seaweed: Any, buckets: tuple[str, str], tmp_path: Path, policy: str, conditional_writes: bool | None) -> None:
    """Objects above the multipart threshold: one already at the destination, one written there by someone
    else while our upload runs (only If-None-Match on CompleteMultipartUpload can notice), one free."""
    source, dest = buckets
    data = _seed(seaweed, source, {"there": 2 * PART + 3, "late": PART + 11, "free": PART + 5})
    client = seaweed.client()
    client.put_object(Bucket=dest, Key="moved/there", Body=b"theirs")
    location = _store(seaweed).location
    destination = LateWriterStore(location, timeout=20, key="moved/late", writer=client)
    options = _options(on_conflict=policy, conditional_writes=conditional_writes, concurrency=2)
    with TransferJournal(tmp_path / "j.sqlite") as journal:
        result = transfer_objects(_records(_store(seaweed), source, dest), source=_store(seaweed), destination=destination, journal=journal, options=options)
        states = {row.source_key: row.state for row in journal.iter_rows()}

    def body(key: str) -> bytes:
        return client.get_object(Bucket=dest, Key=f"moved/{key}")["Body"].read()

    assert body("free") == data["free"]
    assert client.list_multipart_uploads(Bucket=dest).get("Uploads", []) == []  # nothing left behind
    if policy == "overwrite":
        assert result.ok and result.copied == 3 and result.skipped_existing == 0
        assert (body("there"), body("late")) == (data["there"], data["late"])
        return
    # skip and fail never replace what someone else wrote, found before or during the upload.
    assert (body("there"), body("late")) == (b"theirs", b"written meanwhile")
    assert result.copied == 1 and result.bytes_copied == data["free"].__len__()
    if policy == "skip":
        assert result.ok and result.skipped_existing == 2
        assert states == {"there": "skipped", "late": "skipped", "free": "done"}
    else:
        assert sorted(f.source_key for f in result.failures) == ["late", "there"]
        assert all("already exists and destination.on_conflict is 'fail'" in f.error for f in result.failures)
        assert states == {"there": "failed", "late": "failed", "free": "done"}


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


def test_records_from_a_listing_alone_get_the_source_headers_from_the_get(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal) -> None:
    """An S3 source's plan sends no HEAD: its records carry no headers (only a rule's). `run` takes Content-Type,
    Cache-Control and user metadata from the GET (multipart: a HEAD before CreateMultipartUpload), puts the
    record's values on top, and journals what each write carried."""
    source, dest = buckets
    sizes = {"small": 1000, "big": PART + 7, "ruled": 2000}  # "ruled" last: _assert_copied numbers the rest in order
    data = _seed(seaweed, source, sizes)
    store = _store(seaweed)
    records = [
        ObjectRecord(source_bucket=source, source_key=info.key, size=info.size, source_etag=info.etag, dest_bucket=dest, dest_key="moved/" + info.key)
        for page in store.iter_objects(source)
        for info in page
    ]
    ruled = next(record for record in records if record.source_key == "ruled")
    ruled.cache_control, ruled.user_metadata = "no-store", {"tier": "gold"}  # a rule's values, on top of the source's
    result = transfer_objects(records, source=store, destination=store, journal=journal, options=_options())
    assert result.ok and result.copied == 3, result.failures
    client = seaweed.client()
    plain = {key: body for key, body in data.items() if key != "ruled"}
    _assert_copied(seaweed, dest, plain)
    got = client.get_object(Bucket=dest, Key="moved/ruled")
    owner = f"u{list(sizes).index('ruled')}"
    assert (got["Body"].read(), got["ContentType"], got.get("CacheControl"), got["Metadata"]) == (data["ruled"], "image/png", "no-store", {"owner": owner, "tier": "gold"})
    sent = {key: json.loads(journal.row(source, key).sent_headers) for key in sizes}  # type: ignore[union-attr]
    assert sent["ruled"] == {"content_type": "image/png", "cache_control": "no-store", "content_disposition": None, "user_metadata": {"owner": owner, "tier": "gold"}, **NO_CARRIED}
    assert sent["big"]["user_metadata"] == {"owner": f"u{list(sizes).index('big')}"} and sent["big"]["cache_control"] == "max-age=60"


def test_source_metadata_s3_cannot_carry_fails_the_object_in_run(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal) -> None:
    """The plan cannot see an S3 source's user metadata without a HEAD: a rule's key that collides with the
    source's once lowercased is refused by `run`, for that object only."""
    source, dest = buckets
    _seed(seaweed, source, {"a": 10, "b": 10})
    store = _store(seaweed)
    records = [
        ObjectRecord(source_bucket=source, source_key=info.key, size=info.size, source_etag=info.etag, dest_bucket=dest, dest_key="moved/" + info.key)
        for page in store.iter_objects(source)
        for info in page
    ]
    records[0].user_metadata = {"Owner": "rule"}  # the source has "owner"
    result = transfer_objects(records, source=store, destination=store, journal=journal, options=_options())
    assert result.copied == 1 and [failure.source_key for failure in result.failures] == ["a"]
    assert "user metadata S3 cannot carry" in result.failures[0].error


def test_identical_bytes_found_at_the_destination_journal_the_source_headers(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal) -> None:
    """A record whose headers come from the GET, already at the destination byte for byte (a run killed before its
    journal caught up): migrated without a write, and the journal holds the headers that write carried, for verify."""
    source, dest = buckets
    data = _seed(seaweed, source, {"k": 100})
    client = seaweed.client()
    client.put_object(Bucket=dest, Key="moved/k", Body=data["k"], ContentType="image/png", CacheControl="max-age=60", Metadata={"owner": "u0"})
    store = _store(seaweed)
    records = [
        ObjectRecord(source_bucket=source, source_key=info.key, size=info.size, source_etag=info.etag, dest_bucket=dest, dest_key="moved/k")
        for page in store.iter_objects(source)
        for info in page
    ]
    result = transfer_objects(records, source=store, destination=store, journal=journal, options=_options(on_conflict="fail"))
    assert result.ok and result.skipped_existing == 1 and result.copied == 0, result.failures
    journal.flush()
    sent = json.loads(journal.row(source, "k").sent_headers)  # type: ignore[union-attr]
    assert sent == {"content_type": "image/png", "cache_control": "max-age=60", "content_disposition": None, "user_metadata": {"owner": "u0"}, **NO_CARRIED}


# Content-Encoding, Content-Language and Expires as a source answers them. The small one's Expires names the
# wrong weekday (1 Dec 2094 is a Wednesday): boto3 would send "Wed, ..."; it must arrive as the source's text.
CARRIED = {"small.json.gz": ("gzip", "de-CH, en", "Thu, 01 Dec 2094 16:00:00 GMT"), "big.bin.gz": ("gzip", "fr", "Thu, 01 Dec 2094 16:00:00 GMT")}


def _gzip_sources(seaweed: Any, source: str) -> dict[str, bytes]:
    """A small and a multipart gzip-compressed object, written raw (the lean PUT) so the source keeps the headers' text."""
    import gzip
    import random

    from migrate.stores.s3 import _NO_SETTINGS

    bodies = {
        "small.json.gz": gzip.compress(b'{"hello": "world"}' * 500, mtime=0),
        "big.bin.gz": gzip.compress(random.Random(7).randbytes(PART + 4096), mtime=0),  # random bytes do not shrink: multipart
    }
    writer = _store(seaweed)
    for key, body in bodies.items():
        encoding, language, expires = CARRIED[key]
        settings = {**_NO_SETTINGS, "content_type": "application/json", "content_encoding": encoding, "content_language": language, "expires": expires}
        writer.put_object(source, key, body, content_md5=hashlib.md5(body).digest(), **settings)
    return bodies


def _raw_headers(client: Any, bucket: str, key: str) -> tuple[str | None, str | None, str | None]:
    headers = client.head_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPHeaders"]
    return headers.get("content-encoding"), headers.get("content-language"), headers.get("expires")


@pytest.mark.parametrize("lean", [True, False], ids=["lean-http", "boto3"])
def test_content_encoding_language_and_expires_arrive_as_the_source_answered_and_gzip_bytes_stay_compressed(
    seaweed: Any, buckets: tuple[str, str], journal: TransferJournal, lean: bool
) -> None:
    """A gzip-compressed object served with Content-Encoding: gzip keeps it, with its Content-Language and
    Expires text, single PUT and multipart, on both data paths. The stored bytes are the compressed ones, byte for
    byte (no reader of ours decodes a body), and the digests `run` journals are over those bytes."""
    source, dest = buckets
    bodies = _gzip_sources(seaweed, source)
    client = seaweed.client()
    assert {key: _raw_headers(client, source, key) for key in bodies} == CARRIED  # the source holds the text as written
    store = S3Store(S3Location(endpoint_url=seaweed.endpoint_url, region=seaweed.region, access_key_id=seaweed.access_key, secret_access_key=seaweed.secret_key),
                    timeout=20, fast_data_path=lean)
    records = [
        ObjectRecord(source_bucket=source, source_key=info.key, size=info.size, source_etag=info.etag, dest_bucket=dest, dest_key="moved/" + info.key)
        for page in store.iter_objects(source)
        for info in page
    ]
    result = transfer_objects(records, source=store, destination=store, journal=journal, options=_options())
    assert result.ok and result.copied == 2, result.failures
    journal.flush()
    for key, body in bodies.items():
        assert _raw_headers(client, dest, "moved/" + key) == CARRIED[key], key
        stored = client.get_object(Bucket=dest, Key="moved/" + key)["Body"].read()
        assert stored == body and stored[:2] == b"\x1f\x8b", key  # the gzip stream itself, not what it decompresses to
        row = journal.row(source, key)
        assert row is not None
        sent = json.loads(row.sent_headers or "{}")
        assert (sent["content_encoding"], sent["content_language"], sent["expires"]) == CARRIED[key]
    small = journal.row(source, "small.json.gz")
    assert small is not None and small.sha256 == hashlib.sha256(bodies["small.json.gz"]).hexdigest()
    assert small.md5 == hashlib.md5(bodies["small.json.gz"]).hexdigest()


def test_an_expires_the_destination_cannot_parse_fails_that_object_naming_it(seaweed: Any, buckets: tuple[str, str], journal: TransferJournal, tmp_path: Path) -> None:
    """Expires travels as the source's text; "0" (a common "already expired") is no date to SeaweedFS, which
    answers MalformedDate: that object fails with a message naming the value sent, the others are copied."""
    from migrate.stores.local import LocalStore
    from migrate.stores.s3 import _NO_SETTINGS

    _, dest = buckets
    (tmp_path / "src").mkdir()
    source = LocalStore(tmp_path / "src")
    for key, expires in {"expired": "0", "dated": "Wed, 01 Dec 2094 16:00:00 GMT"}.items():
        source.put_object("b", key, b"body", content_md5=hashlib.md5(b"body").digest(), **{**_NO_SETTINGS, "expires": expires})
    records = [ObjectRecord(source_bucket="b", source_key=key, size=4, dest_bucket=dest, dest_key=key) for key in ("expired", "dated")]
    result = transfer_objects(records, source=source, destination=_store(seaweed), journal=journal, options=_options())
    assert result.copied == 1 and [failure.source_key for failure in result.failures] == ["expired"]
    assert "cannot parse a date" in result.failures[0].error and "Expires: '0'" in result.failures[0].error
    assert seaweed.client().head_object(Bucket=dest, Key="dated")["ResponseMetadata"]["HTTPHeaders"]["expires"] == "Wed, 01 Dec 2094 16:00:00 GMT"

