"""One benchmark session's state and its basic move: one timed copy into a fresh bucket, checked.

Used by every stage (bench/harness.py: A, B, M and verify; bench/supabase_stages.py:
S and C). A copy run is a child process measured by bench/measure.py; its
destination is checked by bench/checks.py and then deleted unless kept.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from bench.checks import CheckResult, check_copy, check_user_metadata
from bench.contenders import BenchContext, CopyJob, SupabaseSource
from bench.datasets import DatasetSpec, ExpectedObject, MiB, empty_and_delete_bucket, seed_s3_bucket
from bench.environment import process_cpu_seconds
from bench.measure import Measurement, log_tail
from bench.report import RunRecord

MD5_SAMPLE = 64
#: The contender name of `migrate run` timed alone (its `migrate plan` left out), derived from each `migrate` run.
RUN_ALONE = "migrate run alone"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Session:
    """Everything one benchmark invocation knows and has measured."""

    args: argparse.Namespace
    specs: dict[str, DatasetSpec]
    ctx: BenchContext
    admin: Any  # boto3 client for seeding, checking and cleaning up
    seaweed: Any
    runs: list[RunRecord] = field(default_factory=list)
    verify_runs: list[RunRecord] = field(default_factory=list)
    memory_runs: list[RunRecord] = field(default_factory=list)
    inventory_runs: list[RunRecord] = field(default_factory=list)
    seeding: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    expected: dict[str, dict[str, ExpectedObject]] = field(default_factory=dict)
    kept_buckets: dict[str, tuple[str, Path]] = field(default_factory=dict)
    profile_section: str | None = None
    source_at_start: str = ""
    # Other servers of ours whose CPU counts as "server CPU" (the Supabase server during S).
    server_pids: list[int] = field(default_factory=list)
    # Where dataset S's expected user metadata lives: key -> {name: value}.
    expected_metadata: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        return 1 if self.args.quick else self.args.runs

    def server_cpu(self) -> float | None:
        """user + sys CPU so far of every server serving the runs (SeaweedFS, and the Supabase server during S)."""
        total = 0.0
        for pid in [self.seaweed.process.pid, *self.server_pids]:
            cpu = process_cpu_seconds(pid)
            if cpu is None:
                return None
            total += cpu
        return total

    def stamp(self) -> dict[str, Any]:
        """What to note about the moment a run starts: the machine's load and the code under test (the snapshot)."""
        return {"load": os.getloadavg()[0], "source": self.source_at_start}


# -- copies ------------------------------------------------------------------
def seed_dataset(session: Session, spec: DatasetSpec) -> str:
    bucket = f"src-{spec.name.lower()}"
    log(f"seeding dataset {spec.name}: {spec.count} objects into s3://{bucket}")
    scratch = session.ctx.work_dir / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    expected, seeded = seed_s3_bucket(session.admin, bucket, spec, seed=session.args.seed, scratch=scratch)
    session.expected[spec.name] = expected
    session.seeding.append(
        [spec.name, "SeaweedFS (S3 PUT, 32 threads)" if not spec.is_large else "SeaweedFS (S3 PUT, streamed from a temp file)",
         f"{seeded.objects:,}", f"{seeded.bytes / MiB:,.1f}", f"{seeded.seconds:.1f}"]
    )
    log(f"seeded {spec.name} in {seeded.seconds:.1f}s")
    return bucket


def check_run(session: Session, spec: DatasetSpec, bucket: str, measurement: Measurement, log_path: Path, round_no: int) -> tuple[bool, str]:
    if measurement.timed_out:
        return False, f"timed out after {session.ctx.timeout:.0f}s"
    if measurement.exit_code != 0:
        return False, f"exit {measurement.exit_code}: {log_tail(log_path, lines=2)}"
    result: CheckResult = check_copy(
        session.admin,
        bucket,
        session.expected[spec.name],
        sample=None if spec.is_large else MD5_SAMPLE,
        seed=session.args.seed * 1000 + round_no,
    )
    metadata = session.expected_metadata.get(spec.name)
    if not result.ok or metadata is None:
        return result.ok, result.summary()
    carried, checked = check_user_metadata(session.admin, bucket, metadata, sample=MD5_SAMPLE, seed=session.args.seed * 1000 + round_no)
    return result.ok, f"{result.summary()}; user metadata on {carried}/{checked} sampled"


def run_alone_record(record: RunRecord) -> RunRecord | None:
    """`migrate run` alone, from a `migrate` (plan + run) record's extras: reported beside the headline."""
    run = (record.engine or {}).get("run")
    if record.contender != "migrate" or not isinstance(run, dict):
        return None
    return replace(record, contender=RUN_ALONE, measurement=Measurement(**run), server_cpu=None, engine=None)


def run_extras(run_dir: Path) -> dict[str, Any] | None:
    """What a contender measured besides its timed command (migrate: the plan and the no-op rerun)."""
    path = run_dir / "extra.json"
    if not path.is_file():
        return None
    return dict(json.loads(path.read_text()))


def dataset_record(
    session: Session,
    spec: DatasetSpec,
    *,
    contender: str,
    round_no: int,
    measurement: Measurement,
    valid: bool,
    check: str,
    cpu_span: tuple[float | None, float | None],
    engine: dict[str, Any] | None,
    stamp: dict[str, Any],
) -> RunRecord:
    """The record of one run over the whole of `spec` (objects and bytes as seeded); `cpu_span`: server CPU before and after."""
    before, after = cpu_span
    return RunRecord(
        dataset=spec.name,
        contender=contender,
        round=round_no,
        objects=spec.count,
        bytes=sum(item.size for item in session.expected[spec.name].values()),
        measurement=measurement,
        valid=valid,
        check=check,
        server_cpu=(after - before) if before is not None and after is not None else None,
        engine=engine,
        **stamp,
    )


def timed_copy(
    session: Session,
    spec: DatasetSpec,
    *,
    contender: str,
    run: Callable[[BenchContext, CopyJob], Measurement],
    source: str,
    round_no: int,
    label: str | None = None,
    keep_dest: bool = False,
    supabase: SupabaseSource | None = None,
) -> RunRecord:
    """One fresh destination bucket, one timed child, one check; the bucket is deleted unless kept.

    `supabase`: the source bucket is on the bundled Supabase server (dataset S), not on the SeaweedFS.
    """
    name = label or contender
    dest = re.sub(r"[^a-z0-9-]", "-", f"dst-{spec.name}-{name}-{round_no}".lower())
    session.admin.create_bucket(Bucket=dest)
    run_dir = session.ctx.work_dir / "runs" / dest
    run_dir.mkdir(parents=True, exist_ok=True)
    job = CopyJob(dataset=spec.name, source_bucket=source, dest_bucket=dest, run_dir=run_dir, supabase=supabase)
    stamp = session.stamp()
    before = session.server_cpu()
    measurement = run(session.ctx, job)
    after = session.server_cpu()
    valid, note = check_run(session, spec, dest, measurement, job.log, round_no)
    record = dataset_record(
        session, spec, contender=name, round_no=round_no, measurement=measurement, valid=valid, check=note,
        cpu_span=(before, after), engine=run_extras(run_dir), stamp=stamp,
    )
    log(
        f"{spec.name} round {round_no + 1} {name}: {measurement.wall:.2f}s, {record.objects_per_s:.0f} obj/s, "
        f"{record.mib_per_s:.1f} MiB/s, CPU {measurement.cpu:.2f}s, RSS {record.rss_mib:.0f} MiB -- {note}"
    )
    if keep_dest and valid:
        # The latest valid `migrate` copy (bucket + run directory) is what the verify stage audits.
        previous = session.kept_buckets.get(spec.name)
        if previous:
            empty_and_delete_bucket(session.admin, previous[0])
            if not session.args.keep_work:
                shutil.rmtree(previous[1], ignore_errors=True)
        session.kept_buckets[spec.name] = (dest, run_dir)
        return record
    empty_and_delete_bucket(session.admin, dest)
    if valid and not session.args.keep_work:
        shutil.rmtree(run_dir, ignore_errors=True)
    return record


