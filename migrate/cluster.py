"""Run and verify on a Dask cluster: the same engines, sharded across workers.

`migrate run PLAN --executor dask --scheduler tcp://host:8786` (and `verify`)
hands the plan's work to an existing `distributed` cluster instead of local
threads. Design (the why):

- **Shards, not objects, are tasks.** The driver streams the manifest,
  leaves out what its journal already shows as migrated, and cuts the rest
  into shards of bounded count and bytes; an object at or above the
  multipart threshold is a shard of its own. One task per object would
  cost the scheduler ~1 ms each and flood its memory at 10M objects.
- **Each shard runs the local engine** (`transfer_objects` /
  `verify_records`) on the worker, with the worker's own threads, memory
  budget and retry policy, and a scratch journal on the worker's disk.
- **No secret in the task graph.** Tasks carry the plan file's *text*
  (literal secrets are refused at load time, so it only holds `${VAR}`
  references) and the shard's manifest rows. Each worker parses the plan
  against its own environment, so credentials come from the worker's
  environment, instance role or profile, never from the scheduler.
- **Exactly-once outcome.** The driver's journal (the same SQLite journal a
  local run uses) records every shard's per-object rows when the shard
  returns, so `migrate status`, a resumed run and `verify` work as on one
  machine. A shard whose worker died is rerun by Dask on another worker;
  a rerun (or any shard of a driver that resumes an unfinished run) first
  aborts the multipart uploads left under its keys and recognises objects
  already holding the planned bytes (size and plain-MD5 ETag, one HEAD
  each), which are not sent again.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import polars as pl

from migrate.errors import FatalError, MigrateError, UserInputError
from migrate.journal import STATE_DONE, STATE_SKIPPED, JournalRow, TransferJournal, record_fingerprint
from migrate.progress import NullProgress, Progress
from migrate.records import BLOCKING_ACTIONS, ObjectRecord

if TYPE_CHECKING:
    from migrate.plan import Plan
    from migrate.transfer import TransferOptions, TransferResult
    from migrate.verify import VerifyOptions, VerifyStats

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: A shard holds at most this many objects and bytes (a large object is alone).
SHARD_MAX_OBJECTS = 2_000
SHARD_MAX_BYTES = 512 * MiB
#: Shards in flight per worker thread: enough to keep workers busy, few enough to keep the driver's memory flat.
SHARDS_IN_FLIGHT_PER_WORKER = 2


@dataclass(frozen=True)
class Shard:
    """A slice of the manifest that one task handles."""

    index: int
    records: tuple[ObjectRecord, ...]
    #: verify only: the driver's journal rows for these records (digests, no secret).
    journal_rows: tuple[JournalRow, ...] = ()
    #: verify only: the records' positions in the manifest, where the driver files the shard's report rows.
    positions: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        return sum(record.size for record in self.records)


@dataclass
class ShardResult:
    """What one shard did on its worker; picklable, carries no secret."""

    index: int
    worker: str
    rows: list[JournalRow]
    copied: int = 0
    already_done: int = 0
    skipped_existing: int = 0
    recognised: int = 0
    bytes_copied: int = 0
    aborted_uploads: int = 0
    resumed_parts: int = 0
    throttle_events: int = 0
    failures: list[Any] = field(default_factory=list)
    elapsed: float = 0.0
    report: pl.DataFrame | None = None
    #: verify only: the manifest positions of `report`'s rows (the shard's, one row per record).
    positions: tuple[int, ...] = ()


@dataclass
class WorkerThroughput:
    """Per-worker totals for the run summary."""

    shards: int = 0
    objects: int = 0
    bytes: int = 0
    busy_seconds: float = 0.0

    @property
    def mib_per_second(self) -> float:
        return self.bytes / MiB / self.busy_seconds if self.busy_seconds else 0.0


class ShardCutter:
    """`make_shards` one record at a time, for a driver that passes the records on to something else too."""

    def __init__(self, *, multipart_threshold: int, max_objects: int = SHARD_MAX_OBJECTS, max_bytes: int = SHARD_MAX_BYTES) -> None:
        self.multipart_threshold = multipart_threshold
        self.max_objects = max_objects
        self.max_bytes = max_bytes
        self._batch: list[ObjectRecord] = []
        self._positions: list[int] = []
        self._bytes = 0
        self._index = 0

    def add(self, record: ObjectRecord, position: int = -1) -> Shard | None:
        """Take one record (`position`: its place in the manifest); return the shard it completed, if any."""
        if record.size >= self.multipart_threshold:
            return self._shard((record,), (position,))
        done = None
        if self._batch and (len(self._batch) >= self.max_objects or self._bytes + record.size > self.max_bytes):
            done = self.finish()
        self._batch.append(record)
        self._positions.append(position)
        self._bytes += record.size
        return done

    def finish(self) -> Shard | None:
        """The shard of the records taken since the last one, if any."""
        if not self._batch:
            return None
        done = self._shard(tuple(self._batch), tuple(self._positions))
        self._batch, self._positions, self._bytes = [], [], 0
        return done

    def _shard(self, records: tuple[ObjectRecord, ...], positions: tuple[int, ...]) -> Shard:
        self._index += 1
        return Shard(self._index - 1, records, positions=positions)


def make_shards(
    records: Iterable[ObjectRecord],
    *,
    multipart_threshold: int,
    max_objects: int = SHARD_MAX_OBJECTS,
    max_bytes: int = SHARD_MAX_BYTES,
) -> Iterator[Shard]:
    """Cut records into shards of at most `max_objects` and `max_bytes`, in manifest order; large objects alone.

    Lazy: holds one shard's records at a time, whatever the number of records.
    """
    cutter = ShardCutter(multipart_threshold=multipart_threshold, max_objects=max_objects, max_bytes=max_bytes)
    for record in records:
        shard = cutter.add(record)
        if shard is not None:
            yield shard
    last = cutter.finish()
    if last is not None:
        yield last


class _ShardFlow:
    """Shard tasks on the cluster, at most `slots` in flight; results in completion order."""

    def __init__(self, executor: "DaskExecutor", task: Any, kwargs: dict[str, Any]) -> None:
        from distributed import as_completed

        self.executor = executor
        self.client = executor.client()
        self.slots = executor._slots()
        self.task = task
        self.kwargs = kwargs
        self._pending = as_completed()
        self._in_flight = 0

    def submit(self, shard: Shard) -> None:
        # pure=False: a rerun of the same shard is a new task. retries: a task that *raised*
        # (not a dead worker, which the scheduler reschedules by itself) gets one more go.
        executor = self.executor
        future = self.client.submit(
            self.task, executor.plan_text, executor.plan_path, shard, pure=False, retries=1, run_token=executor.run_token, fingerprint=executor.plan_fingerprint, **self.kwargs
        )
        self._pending.add(future)
        self._in_flight += 1

    def room(self, *, every_slot: bool = False) -> Iterator[ShardResult]:
        """Wait until a slot is free (`every_slot`: until none is in flight); yield the results that freed them."""
        while self._in_flight >= (1 if every_slot else self.slots):
            yield self._next()

    def _next(self) -> ShardResult:
        future = next(self._pending)
        self._in_flight -= 1
        result: ShardResult = future.result()
        future.release()
        stats = self.executor.workers[result.worker]
        stats.shards += 1
        stats.objects += len(result.rows) if result.report is None else result.report.height
        stats.bytes += result.bytes_copied
        stats.busy_seconds += result.elapsed
        return result


class DaskExecutor:
    """Runs the transfer and verify engines on a `distributed` cluster.

    `scheduler` is the address (`tcp://host:8786`) or an existing
    `distributed.Client` (tests pass a `LocalCluster`'s client).
    """

    def __init__(self, plan: "Plan", *, scheduler: Any, max_objects: int = SHARD_MAX_OBJECTS, max_bytes: int = SHARD_MAX_BYTES):
        if not plan.path:
            raise UserInputError("--executor dask needs a plan file: workers read the plan's text, not the loaded plan")
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UserInputError("--executor dask needs the `distributed` package: pip install 'migrate[dask]'") from None
        self.plan_text = Path(plan.path).read_text(encoding="utf-8")
        self.plan_path = plan.path
        # Workers interpolate the plan from their own environment; this proves they read the same plan.
        self.plan_fingerprint = plan.fingerprint()
        self.scheduler = scheduler
        self.max_objects = max_objects
        self.max_bytes = max_bytes
        self.workers: dict[str, WorkerThroughput] = defaultdict(WorkerThroughput)
        self._client: Any = None
        self._owns_client = False
        # Names this driver's shard markers on the scheduler (see `_first_attempt`).
        self.run_token = uuid.uuid4().hex

    # -- the client --------------------------------------------------------
    def client(self) -> Any:
        import dask
        from distributed import Client

        if self._client is None:
            if isinstance(self.scheduler, Client):
                self._client = self.scheduler
            else:
                try:
                    # distributed keeps the last `low-level-log-length` (1,000) messages a client sent, for debugging
                    # (dask/distributed#1630): each shard's records, so up to 1,000 shards of them on the driver. Off here.
                    with dask.config.set({"distributed.admin.low-level-log-length": 0}):
                        self._client = Client(self.scheduler, timeout="30s")
                except (OSError, TimeoutError) as err:
                    raise FatalError(f"cannot reach the Dask scheduler at {self.scheduler}: {err}; is it running?") from None
                self._owns_client = True
        return self._client

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()
        self._client = None

    def _slots(self) -> int:
        info = self.client().scheduler_info()
        threads = sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values())
        return max(1, threads) * SHARDS_IN_FLIGHT_PER_WORKER

    def _map_shards(self, shards: Iterator[Shard], task: Any, **kwargs: Any) -> Iterator[ShardResult]:
        """Submit shards, each taken from `shards` only when a slot is free (at most `slots` held); yield results as they complete."""
        flow = _ShardFlow(self, task, kwargs)
        while True:
            yield from flow.room()
            shard = next(shards, None)
            if shard is None:
                break
            flow.submit(shard)
        yield from flow.room(every_slot=True)

    # -- run -----------------------------------------------------------------
    def transfer(
        self,
        records: Iterable[ObjectRecord],
        *,
        journal: TransferJournal,
        options: "TransferOptions",
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        resuming: bool = False,
    ) -> "TransferResult":
        """`transfer_objects` on the cluster: the driver's journal ends up as a local run's would."""
        from migrate.transfer import TransferResult

        progress = progress or NullProgress()
        stop = stop or threading.Event()
        result = TransferResult()
        started = time.monotonic()
        options = self._per_worker_limits(self._probed(options))
        todo = self._not_yet_migrated(records, journal, options, result, progress)
        shards = make_shards(todo, multipart_threshold=options.multipart_threshold, max_objects=self.max_objects, max_bytes=self.max_bytes)

        def marked(shards: Iterator[Shard]) -> Iterator[Shard]:
            for shard in shards:
                if stop.is_set():
                    return
                journal.begin_many([(r, _fingerprint(r, options)) for r in shard.records])
                yield shard

        try:
            for shard_result in self._map_shards(marked(shards), _transfer_shard, options=options, resuming=resuming):
                journal.import_rows(shard_result.rows)
                result.copied += shard_result.copied
                result.already_done += shard_result.already_done + shard_result.recognised
                result.skipped_existing += shard_result.skipped_existing
                result.bytes_copied += shard_result.bytes_copied
                result.aborted_uploads += shard_result.aborted_uploads
                result.resumed_parts += shard_result.resumed_parts
                result.throttle_events += shard_result.throttle_events
                result.failures.extend(shard_result.failures)
                result.planned += len(shard_result.rows)
                progress.advance(objects=len(shard_result.rows), bytes_done=sum(row.size for row in shard_result.rows))
        except KeyboardInterrupt:
            stop.set()
            result.interrupted = True
        result.elapsed = time.monotonic() - started
        return result

    def _per_worker_limits(self, options: "TransferOptions") -> "TransferOptions":
        """Bandwidth and request-rate limits hold for the whole run: each worker gets its share."""
        if options.max_bandwidth is None and options.max_requests_per_second is None:
            return options
        workers = max(1, len(self.client().scheduler_info().get("workers", {})))
        return replace(
            options,
            max_bandwidth=None if options.max_bandwidth is None else max(1, options.max_bandwidth // workers),
            max_requests_per_second=None if options.max_requests_per_second is None else options.max_requests_per_second / workers,
        )

    def _probed(self, options: "TransferOptions") -> "TransferOptions":
        """Find out once, on the driver, whether the destination honours If-None-Match: * (not once per shard)."""
        if options.conditional_writes is not None:
            return options
        if options.on_conflict == "overwrite":
            return replace(options, conditional_writes=False)
        from migrate.plan import parse_plan
        from migrate.stores.factory import open_destination

        plan = parse_plan(self.plan_text, source_name=self.plan_path)
        destination = open_destination(plan, concurrency=1)
        try:
            return replace(options, conditional_writes=destination.supports_conditional_writes(plan.destination.bucket))
        finally:
            destination.close()

    def _not_yet_migrated(
        self, records: Iterable[ObjectRecord], journal: TransferJournal, options: "TransferOptions", result: "TransferResult", progress: Progress
    ) -> Iterator[ObjectRecord]:
        """Records the driver's journal does not show as migrated in their current form (as the local engine decides)."""
        batch: list[ObjectRecord] = []

        def flush() -> Iterator[ObjectRecord]:
            rows = journal.rows([(r.source_bucket, r.source_key) for r in batch])
            for record in batch:
                row = rows.get((record.source_bucket, record.source_key))
                if row is not None and row.state in (STATE_DONE, STATE_SKIPPED) and row.fingerprint == _fingerprint(record, options):
                    result.planned += 1
                    result.already_done += 1
                    progress.advance(objects=1, bytes_done=record.size)
                else:
                    yield record

        for record in records:
            batch.append(record)
            if len(batch) >= 400:
                yield from flush()
                batch = []
        if batch:
            yield from flush()

    # -- verify ----------------------------------------------------------------
    def verify(
        self,
        records: Iterable[ObjectRecord],
        *,
        source: Any,
        destination: Any,
        journal: TransferJournal | None,
        options: "VerifyOptions",
        progress: Progress | None = None,
    ) -> tuple[pl.LazyFrame, "VerifyStats", Any]:
        """`verify_records` on the cluster in one pass over `records`: a local verify's rows, in its order.

        Returns (rows, counts, the spool directory holding the rows: keep it until the report is written).
        The driver runs a listing-only `Audit` over the stream (expected keys, `not-migrated` rows, the
        `unexpected` scan, as locally) and cuts the records to check into shards on the way, at most
        `slots` in flight; each shard's rows are spooled at their manifest positions as they come back.
        """
        from migrate.verify_audit import Audit
        from migrate.verify_checks import VERIFIED_ACTIONS, VerifyStats

        if options.sample is not None:
            raise UserInputError("sampling (--sample) is not available on a cluster; verify everything there, or sample locally")
        progress = progress or NullProgress()
        progress.start(**_verify_totals(records, VERIFIED_ACTIONS), description="verify")
        # The driver's own audit checks no object: the shards do (`check_objects=False`).
        audit = Audit(source=source, destination=destination, journal=None, options=replace(options, check_objects=False), progress=NullProgress())
        shard_options = replace(options, expect_prefixes=())
        counts = {"checked": 0, "blocked": 0, "not_verified": 0}

        def spool(results: Iterable[ShardResult]) -> None:
            for shard_result in results:
                assert shard_result.report is not None
                audit.sink.add_frame(shard_result.positions, shard_result.report)
                progress.advance(objects=shard_result.report.height, bytes_done=int(shard_result.report["size"].fill_null(0).sum()))

        def submit(flow: _ShardFlow, shard: Shard | None) -> None:
            if shard is None:
                return
            spool(flow.room())
            if journal is not None and options.mode in ("quick", "fast"):
                found = journal.rows([(r.source_bucket, r.source_key) for r in shard.records])
                shard = replace(shard, journal_rows=tuple(found.values()))
            flow.submit(shard)

        def passed_on(records: Iterable[ObjectRecord]) -> Iterator[ObjectRecord]:
            # Every record goes on to the driver's audit; the ones to check also go to a shard.
            flow = _ShardFlow(self, _verify_shard, {"options": shard_options})
            cutter = ShardCutter(multipart_threshold=1 << 62, max_objects=self.max_objects, max_bytes=1 << 62)
            for position, record in enumerate(records):
                if record.action in VERIFIED_ACTIONS:
                    counts["checked"] += 1
                    submit(flow, cutter.add(record, position))
                else:
                    counts["blocked" if record.action in BLOCKING_ACTIONS else "not_verified"] += 1
                yield record
            submit(flow, cutter.finish())
            spool(flow.room(every_slot=True))

        try:
            rows, _ = audit.run(passed_on(records))
        except BaseException:
            audit.sink.directory.cleanup()
            raise
        finally:
            progress.close()
        population = counts["checked"] + counts["blocked"]
        return rows, VerifyStats(population=population, checked=counts["checked"], not_verified=counts["not_verified"]), audit.sink.directory


def _verify_totals(records: Iterable[ObjectRecord], actions: Sequence[str]) -> dict[str, int]:
    """Progress totals without a pass over a stream: a manifest scan counts them (polars), a list is counted, else unknown."""
    if hasattr(records, "totals"):  # `verify.ManifestScan`, `records.ManifestRecords`
        objects, total_bytes = records.totals(actions)
    else:
        eligible = [r for r in records if r.action in actions] if isinstance(records, Sequence) else []
        objects, total_bytes = len(eligible), sum(r.size for r in eligible)
    return {"objects": objects, "total_bytes": total_bytes}


def _fingerprint(record: ObjectRecord, options: "TransferOptions") -> str:
    return record_fingerprint(record, sse=options.server_side_encryption, kms_key_id=options.kms_key_id)


# -- what runs on a worker -------------------------------------------------------------
def _worker_context(plan_text: str, plan_path: str, fingerprint: str) -> tuple["Plan", str]:
    """The plan, parsed against *this worker's* environment (its credentials), and the worker's address.

    Raises `FatalError` when the worker's environment makes it a different plan than the driver's
    (say another MIGRATE_DEST_BUCKET): the worker would otherwise write somewhere else.
    """
    from migrate.plan import parse_plan

    try:
        from distributed import get_worker

        address = get_worker().address
    except (ImportError, ValueError):
        address = f"local-{os.getpid()}"
    plan = parse_plan(plan_text, source_name=plan_path)
    if plan.fingerprint() != fingerprint:
        raise FatalError(
            f"Dask worker {address}: {plan_path} reads differently in the worker's environment than in the driver's "
            "(source, destination or rules differ); give the workers the same environment variables as the driver"
        )
    return plan, address


def _first_attempt(shard: Shard, run_token: str) -> bool:
    """False when this shard already started once for this driver (its worker died): then recover first.

    The marker is a scheduler-side `distributed.Event`, set when a shard starts: it outlives the worker.
    """
    try:
        from distributed import Event

        marker = Event(f"migrate-shard-{run_token}-{shard.index}")
        if marker.is_set():
            return False
        marker.set()
        return True
    except (ImportError, ValueError, RuntimeError):
        # Not inside a Dask worker (no client): there is no earlier attempt to know of.
        return True


def _recover(shard: Shard, *, destination: Any, journal: TransferJournal, options: "TransferOptions") -> tuple[int, int]:
    """Before a rerun: abort uploads left under the shard's keys; mark objects already holding the planned bytes done.

    Returns (aborted uploads, recognised objects).
    """
    from migrate.checksums import is_plain_md5

    aborted = recognised = 0
    for record in shard.records:
        assert record.dest_bucket and record.dest_key
        if record.size >= options.multipart_threshold:
            for key, upload_id in destination.list_multipart_uploads(record.dest_bucket, record.dest_key):
                if key == record.dest_key:
                    destination.abort_multipart_upload(record.dest_bucket, key, upload_id)
                    aborted += 1
        if not is_plain_md5(record.source_etag):
            continue
        existing = destination.head(record.dest_bucket, record.dest_key)
        if existing is not None and existing.size == record.size and existing.etag == record.source_etag:
            fingerprint = _fingerprint(record, options)
            journal.begin_many([(record, fingerprint)])
            journal.done(record, sha256=None, md5=record.source_etag, dest_etag=existing.etag, dest_checksum=None, checksum_algorithm=None)
            recognised += 1
    return aborted, recognised


def _transfer_shard(
    plan_text: str, plan_path: str, shard: Shard, *, run_token: str, fingerprint: str, options: "TransferOptions", resuming: bool
) -> ShardResult:
    """One shard through the local transfer engine, with a scratch journal on the worker's disk."""
    from migrate.stores.factory import open_destination, open_source
    from migrate.transfer import transfer_objects

    plan, address = _worker_context(plan_text, plan_path, fingerprint)
    scratch = Path(tempfile.mkdtemp(prefix="migrate-shard-"))
    source = open_source(plan, concurrency=options.concurrency)
    destination = open_destination(plan, concurrency=options.concurrency)
    try:
        with TransferJournal(scratch / "journal.sqlite") as journal:
            aborted = recognised = 0
            if resuming or not _first_attempt(shard, run_token):
                aborted, recognised = _recover(shard, destination=destination, journal=journal, options=options)
            outcome = transfer_objects(shard.records, source=source, destination=destination, journal=journal, options=options)
            rows = list(journal.iter_rows())
        return ShardResult(
            index=shard.index,
            worker=address,
            rows=rows,
            copied=outcome.copied,
            already_done=outcome.already_done - recognised,
            recognised=recognised,
            skipped_existing=outcome.skipped_existing,
            bytes_copied=outcome.bytes_copied,
            aborted_uploads=outcome.aborted_uploads + aborted,
            resumed_parts=outcome.resumed_parts,
            throttle_events=outcome.throttle_events,
            failures=list(outcome.failures),
            elapsed=outcome.elapsed,
        )
    finally:
        source.close()
        destination.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _verify_shard(plan_text: str, plan_path: str, shard: Shard, *, run_token: str, fingerprint: str, options: "VerifyOptions") -> ShardResult:
    """One shard through the local audit; the journal rows it needs travel with it (they hold digests, no secret)."""
    from migrate.stores.factory import open_destination, open_source
    from migrate.verify import verify_records

    plan, address = _worker_context(plan_text, plan_path, fingerprint)
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="migrate-verify-"))
    source = open_source(plan, concurrency=options.concurrency, fetch_user_metadata=False)
    destination = open_destination(plan, concurrency=options.concurrency)
    try:
        rows = shard.journal_rows
        with TransferJournal(scratch / "journal.sqlite") as journal:
            if rows:
                journal.import_rows(rows)
            frame = verify_records(list(shard.records), source=source, destination=destination, journal=journal if rows else None, options=options)
        return ShardResult(index=shard.index, worker=address, rows=[], report=frame, elapsed=time.monotonic() - started, positions=shard.positions)
    finally:
        source.close()
        destination.close()
        shutil.rmtree(scratch, ignore_errors=True)


__all__ = ["DaskExecutor", "Shard", "ShardCutter", "ShardResult", "WorkerThroughput", "make_shards", "SHARD_MAX_BYTES", "SHARD_MAX_OBJECTS"]
