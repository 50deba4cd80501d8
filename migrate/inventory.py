"""The `plan` stage: inventory the source, apply the plan, write the dry-run manifest.

Nothing is written to the destination: with `check_destination` it is only
read (HEAD). Inventory pages are turned into records and written as Parquet
part files one page at a time, so Python never holds every record; the
manifest is assembled from those parts in bounded memory (duplicates
dropped, collisions marked: migrate/manifest.py), the summary is a set of
streaming polars queries over the written file, and the result replaces the
run directory's manifest atomically. Only --check-destination and
--audit-source load the whole manifest (they visit every row anyway).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from functools import cached_property
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from migrate.errors import UserInputError
from migrate.estimate import Estimate, estimate, format_duration, human_size
from migrate.manifest import assemble_manifest, scan_manifest
from migrate.progress import NullProgress, Progress
from migrate.records import BLOCKING_ACTIONS, MANIFEST_SCHEMA, Action, ObjectRecord, records_to_frame
from migrate.retry import call_with_retries
from migrate.rewrite import compile_plan
from migrate.rundir import RunDirectory, atomic_path, atomic_write_text
from migrate.source_audit import SourceAudit, audit_source_bytes, manifest_objects
from migrate.stores.base import SourceStore
from migrate.stores.s3 import S3Store
from migrate.checksums import is_plain_md5

if TYPE_CHECKING:
    from migrate.plan import Plan

log = logging.getLogger(__name__)

LARGEST_SHOWN = 10


@dataclass
class PlanResult:
    """What `plan` found and wrote."""

    plan_name: str
    plan_fingerprint: str
    run_dir: RunDirectory
    report_dir: Path
    estimate: Estimate
    summary: dict[str, Any] = field(default_factory=dict)
    elapsed: float = 0.0
    source_audit: SourceAudit | None = None

    @cached_property
    def manifest(self) -> pl.DataFrame:
        """The whole manifest, read on first use (library callers and tests; the CLI never loads it)."""
        return load_manifest(self.run_dir)

    @property
    def collisions(self) -> int:
        return int(self.summary["actions"].get(Action.COLLISION.value, {}).get("objects", 0))

    @property
    def invalid_keys(self) -> int:
        return int(self.summary["actions"].get(Action.INVALID_KEY.value, {}).get("objects", 0))

    @property
    def unwritable(self) -> int:
        """Objects that cannot be migrated as they are (invalid key or user metadata, unreadable source key);
        `run` refuses until they are excluded."""
        actions = self.summary["actions"]
        return sum(int(actions.get(action, {}).get("objects", 0)) for action in BLOCKING_ACTIONS)

    @property
    def runnable(self) -> bool:
        """A plan with collisions must not run (two sources would fight over one key), nor one with unwritable objects."""
        return self.collisions == 0 and self.unwritable == 0

    def summary_text(self) -> str:
        return render_summary_text(self.summary)


CHECKPOINT_FILE = "checkpoint.json"


class ListingCheckpoint:
    """Where an interrupted inventory stands, kept beside its Parquet parts in the run directory.

    One entry per listing unit (a bucket and prefix, in plan order): how many
    part files it has written and the store's resume position after the last
    one (list-v2 cursor, v1 folder stack, or catalog keyset name). A part file
    is written before the checkpoint names it, so a kill between the two
    leaves a part the checkpoint does not count, which is deleted on load.
    A checkpoint made for another plan fingerprint or source kind is
    discarded; a completed plan removes it.
    """

    def __init__(self, parts_dir: Path, *, fingerprint: str, source_kind: str):
        self.parts_dir = parts_dir
        self.path = parts_dir / CHECKPOINT_FILE
        self.fingerprint = fingerprint
        self.source_kind = source_kind
        self.buckets: list[str] | None = None
        self.units: dict[str, dict[str, Any]] = {}
        self.resumed = False

    @classmethod
    def open(cls, parts_dir: Path, *, fingerprint: str, source_kind: str) -> "ListingCheckpoint":
        """Load the checkpoint if it belongs to this plan and source; otherwise start clean."""
        checkpoint = cls(parts_dir, fingerprint=fingerprint, source_kind=source_kind)
        try:
            saved = json.loads(checkpoint.path.read_text())
        except (OSError, ValueError):
            saved = None
        if isinstance(saved, dict) and saved.get("plan_fingerprint") == fingerprint and saved.get("source_kind") == source_kind:
            checkpoint.buckets = saved.get("buckets")
            checkpoint.units = dict(saved.get("units") or {})
            checkpoint.resumed = bool(checkpoint.units)
        else:
            shutil.rmtree(parts_dir, ignore_errors=True)
        parts_dir.mkdir(parents=True, exist_ok=True)
        checkpoint._drop_uncounted_parts()
        return checkpoint

    @staticmethod
    def part_path(parts_dir: Path, unit: int, number: int) -> Path:
        return parts_dir / f"part-{unit:04d}-{number:06d}.parquet"

    def _drop_uncounted_parts(self) -> None:
        for part in self.parts_dir.glob("part-*.parquet"):
            _, unit, number = part.stem.split("-")
            state = self.units.get(str(int(unit)))
            if state is None or int(number) >= int(state["parts"]):
                part.unlink(missing_ok=True)

    def unit(self, index: int, bucket: str, prefix: str) -> dict[str, Any]:
        """The saved state of a listing unit; one that cannot resume mid-way starts over."""
        state = self.units.get(str(index))
        if state is None or state.get("bucket") != bucket or state.get("prefix") != prefix:
            state = {"bucket": bucket, "prefix": prefix, "parts": 0, "resume": None, "done": False}
        elif not state["done"] and state["resume"] is None and state["parts"]:
            for number in range(int(state["parts"])):
                self.part_path(self.parts_dir, index, number).unlink(missing_ok=True)
            state = {**state, "parts": 0}
        self.units[str(index)] = state
        return state

    def save(self) -> None:
        document = {"plan_fingerprint": self.fingerprint, "source_kind": self.source_kind, "buckets": self.buckets, "units": self.units}
        atomic_write_text(self.path, json.dumps(document))

    def has_progress(self) -> bool:
        """Whether any listing page is saved (a resume would skip work)."""
        return any(int(state["parts"]) or state["done"] for state in self.units.values())

    def clear(self) -> None:
        shutil.rmtree(self.parts_dir, ignore_errors=True)


def _refuse_unreadable(record: ObjectRecord, source: SourceStore) -> ObjectRecord:
    """Mark a record whose source key the store cannot read safely `unreadable-key` (an excluded one stays excluded)."""
    if record.action != Action.EXCLUDED.value:
        reason = source.unreadable_reason(record.source_key)
        if reason is not None:
            record.action, record.reason = Action.UNREADABLE_KEY.value, reason
    return record


def _write_parts(
    plan: "Plan", source: SourceStore, checkpoint: ListingCheckpoint, progress: Progress
) -> tuple[int, list[str]]:
    """List every selected bucket/prefix; write one Parquet part per page, checkpointed. Returns (objects listed, buckets)."""
    builder = compile_plan(plan)
    if checkpoint.buckets is None:
        checkpoint.buckets = list(plan.source.bucket_names or source.list_buckets())
    buckets = list(checkpoint.buckets)
    listed = 0
    units = [(bucket, prefix) for bucket in buckets for prefix in plan.source.prefixes_for(bucket)]
    for index, (bucket, prefix) in enumerate(units):
        state = checkpoint.unit(index, bucket, prefix)
        if state["done"]:
            continue
        # The store raises BucketNotFound / AccessDenied with one clear line.
        for page in source.iter_pages(bucket, prefix, resume=state["resume"]):
            records = [_refuse_unreadable(builder.build(bucket, info), source) for info in page.objects]
            records_to_frame(records).write_parquet(checkpoint.part_path(checkpoint.parts_dir, index, int(state["parts"])))
            state["parts"] += 1
            state["resume"] = page.resume
            checkpoint.save()
            listed += len(records)
            progress.advance(objects=len(records), bytes_done=sum(r.size for r in records))
        state["done"] = True
        checkpoint.save()
    return listed, buckets


def _check_destination(manifest: pl.DataFrame, destination: S3Store, *, concurrency: int, max_attempts: int) -> pl.DataFrame:
    """Mark `copy` rows already at the destination with the same size (and MD5, when comparable) as skip-existing."""
    copies = manifest.filter(pl.col("action") == Action.COPY.value).select("source_bucket", "source_key", "dest_bucket", "dest_key", "size", "source_etag")
    if copies.height == 0:
        return manifest

    def probe(row: dict[str, Any]) -> tuple[str, str, str | None]:
        info = call_with_retries(lambda: destination.head(row["dest_bucket"], row["dest_key"]), max_attempts=max_attempts)
        if info is None:
            return row["source_bucket"], row["source_key"], None
        same_size = info.size == row["size"]
        comparable = is_plain_md5(row["source_etag"]) and is_plain_md5(info.etag)
        if same_size and (not comparable or info.etag == row["source_etag"]):
            how = "same size and MD5" if comparable else "same size (no comparable checksum)"
            return row["source_bucket"], row["source_key"], f"already at the destination with the {how}"
        return row["source_bucket"], row["source_key"], "exists at the destination but differs; on_conflict decides"

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        found = list(pool.map(probe, copies.iter_rows(named=True)))
    marks = pl.DataFrame(
        [(b, k, reason) for b, k, reason in found if reason is not None],
        schema={"source_bucket": pl.Utf8, "source_key": pl.Utf8, "_dest_note": pl.Utf8},
        orient="row",
    )
    if marks.height == 0:
        return manifest
    joined = manifest.join(marks, on=["source_bucket", "source_key"], how="left", maintain_order="left")
    skip = pl.col("_dest_note").str.starts_with("already") & (pl.col("action") == Action.COPY.value)
    return joined.with_columns(
        pl.when(skip).then(pl.lit(Action.SKIP_EXISTING.value)).otherwise(pl.col("action")).alias("action"),
        pl.when(pl.col("_dest_note").is_not_null()).then(pl.col("_dest_note")).otherwise(pl.col("reason")).alias("reason"),
    ).select(list(MANIFEST_SCHEMA))


PROBLEM_ACTIONS = (Action.COLLISION.value, *BLOCKING_ACTIONS)


def summarise(manifest: pl.LazyFrame | pl.DataFrame, plan: "Plan", *, buckets: list[str], elapsed: float, est: Estimate, source_kind: str) -> dict[str, Any]:
    """The dry-run summary as plain data (printed, written as JSON and Markdown).

    Every figure is an aggregate (or a top-N) of one streaming query over the
    manifest, so a lazy scan of the written file never loads its rows.
    """
    rows = manifest.lazy()

    def grouped(column: str) -> pl.LazyFrame:
        return rows.group_by(column, "action").agg(pl.len().alias("objects"), pl.col("size").sum().alias("bytes")).sort(column, "action")

    problems = rows.filter(pl.col("action").is_in(PROBLEM_ACTIONS))
    queries = {
        "listed": rows.select(pl.len()),
        "actions": rows.group_by("action").agg(pl.len(), pl.col("size").sum()).sort("action"),
        "by_bucket": grouped("source_bucket"),
        "by_rule": grouped("rule"),
        "largest": rows.filter(pl.col("action") == Action.COPY.value)
        .sort("size", descending=True)
        .head(LARGEST_SHOWN)
        .select("source_bucket", "source_key", "dest_key", "size"),
        "problems": problems.select("source_bucket", "source_key", "dest_key", "action", "reason").head(200),
        "problem_count": problems.select(pl.len()),
        "excluded_reasons": rows.filter(pl.col("action") == Action.EXCLUDED.value)
        .group_by("reason")
        .agg(pl.len().alias("objects"))
        .sort("objects", descending=True)
        .head(10),
    }
    found = dict(zip(queries, pl.collect_all(queries.values(), engine="streaming")))

    def by(frame: pl.DataFrame) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for key, action, objects, size in frame.iter_rows():
            entry = out.setdefault(str(key) if key is not None else "(no rule)", {})
            entry[f"{action}_objects"] = int(objects)
            entry[f"{action}_bytes"] = int(size or 0)
        return out

    largest = found["largest"]
    return {
        "plan": plan.name,
        "plan_fingerprint": plan.fingerprint(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {"kind": source_kind, "buckets": buckets},
        "destination": {"bucket": plan.destination.bucket, "prefix": plan.destination.prefix, "endpoint_url": plan.destination.endpoint_url},
        "listed_objects": int(found["listed"].item()),
        "inventory_seconds": round(elapsed, 2),
        "actions": {str(action): {"objects": int(objects), "bytes": int(size or 0)} for action, objects, size in found["actions"].iter_rows()},
        "by_bucket": by(found["by_bucket"]),
        "by_rule": by(found["by_rule"]),
        "largest": [dict(zip(largest.columns, row)) for row in largest.iter_rows()],
        "problems": [dict(zip(("source_bucket", "source_key", "dest_key", "action", "reason"), row)) for row in found["problems"].iter_rows()],
        "problem_count": int(found["problem_count"].item()),
        "excluded_reasons": [{"reason": r, "objects": int(n)} for r, n in found["excluded_reasons"].iter_rows()],
        "estimate": est.to_dict(),
        "transfer": {"concurrency": plan.transfer.concurrency, "part_size": plan.transfer.part_size, "multipart_threshold": plan.transfer.multipart_threshold},
    }


def render_summary_text(summary: dict[str, Any]) -> str:
    """A human summary for the terminal and summary.md."""
    est = summary["estimate"]
    actions = summary["actions"]
    lines = [
        f"Plan {summary['plan']}: {summary['listed_objects']} objects listed from {summary['source']['kind']} "
        f"({', '.join(summary['source']['buckets']) or 'no buckets'}) in {summary['inventory_seconds']}s",
        "",
        "| action | objects | bytes |",
        "|---|---:|---:|",
    ]
    for action, counts in actions.items():
        lines.append(f"| {action} | {counts['objects']} | {human_size(counts['bytes'])} |")
    lines += ["", "Per source bucket:", "", "| bucket | copy objects | copy bytes | excluded |", "|---|---:|---:|---:|"]
    for bucket, counts in summary["by_bucket"].items():
        lines.append(f"| {bucket} | {counts.get('copy_objects', 0)} | {human_size(counts.get('copy_bytes', 0))} | {counts.get('excluded_objects', 0)} |")
    lines += ["", "Per rule:", "", "| rule | copy objects | copy bytes |", "|---|---:|---:|"]
    for rule, counts in summary["by_rule"].items():
        lines.append(f"| {rule} | {counts.get('copy_objects', 0)} | {human_size(counts.get('copy_bytes', 0))} |")
    if summary["largest"]:
        lines += ["", f"Largest objects (top {len(summary['largest'])}):", ""]
        lines += [f"- {human_size(row['size'])}  {row['source_bucket']}/{row['source_key']} -> {row['dest_key']}" for row in summary["largest"]]
    if summary["excluded_reasons"]:
        lines += ["", "Excluded, by reason:", ""]
        lines += [f"- {row['objects']} x {row['reason']}" for row in summary["excluded_reasons"]]
    if summary["problem_count"]:
        lines += ["", f"Problems ({summary['problem_count']}, resolve them (fix the rules or exclude the objects) before `migrate run`):", ""]
        lines += [f"- {row['action']}: {row['source_bucket']}/{row['source_key']}: {row['reason']}" for row in summary["problems"][:50]]
    if summary.get("source_audit"):
        lines += ["", summary["source_audit"]["text"]]
    storage = ", ".join(f"{cls} {est['currency']} {cost:.2f}" for cls, cost in est["storage_cost_per_month"].items()) or "nothing"
    lines += [
        "",
        f"Estimate: {est['objects']} objects, {human_size(est['bytes'])}, {est['multipart_objects']} multipart; "
        f"{est['put_requests']} PUT-class + {est['get_requests']} GET requests ({est['currency']} {est['request_cost']:.4f}); "
        f"storage per month: {storage}; duration ~{format_duration(est['duration_seconds'])} "
        f"({est['assumptions']}).",
    ]
    return "\n".join(lines)


def plan_migration(
    plan: "Plan",
    *,
    state_dir: str | Path | None = None,
    reports_dir: str | Path = "reports",
    check_destination: bool = False,
    use_catalog: bool | None = None,
    audit_source: bool = False,
    audit_sample: int | None = None,
    source: SourceStore | None = None,
    destination: S3Store | None = None,
    progress: Progress | None = None,
) -> PlanResult:
    """Inventory the plan's source, apply its rules, write the manifest and the dry-run summary.

    Writes `<state>/runs/<plan>/manifest.parquet` (+ manifest.json) and
    `reports/<plan>-plan-<timestamp>/summary.{md,json}`. Reads the
    destination only with `check_destination`; never writes to it.
    With `audit_source`, reads the first byte of every listed object (or of
    `audit_sample` of them) to find catalog rows without bytes.
    A listing that stops (killed, or the source unreachable after retries)
    continues from its checkpoint on the next call with the same plan.
    """
    from migrate.stores.factory import open_destination, open_source

    if audit_sample is not None and (not audit_source or audit_sample < 1):
        # A sample without the audit would be a setting accepted and ignored.
        raise UserInputError("--sample N goes with --audit-source and must be at least 1")
    progress = progress or NullProgress()
    started = time.monotonic()
    owns_source = source is None
    source = source or open_source(plan, use_catalog=use_catalog, headers_from_read=True)
    run_dir = RunDirectory.for_plan(plan.name, state_dir=state_dir)
    run_dir.ensure()
    checkpoint = ListingCheckpoint.open(run_dir.path / ".inventory-parts", fingerprint=plan.fingerprint(), source_kind=source.kind)
    if checkpoint.resumed:
        log.info("continuing the inventory from its checkpoint in %s", checkpoint.parts_dir)
    tmp: Path | None = None
    try:
        progress.start(objects=0, total_bytes=0, description="listing")
        try:
            _, buckets = _write_parts(plan, source, checkpoint, progress)
        except BaseException:
            # Keep a checkpoint only when it holds listing progress: a plan that
            # fails before its first page (bad key, missing bucket) writes nothing.
            if not checkpoint.has_progress():
                checkpoint.clear()
            raise
        parts = sorted(checkpoint.parts_dir.glob("part-*.parquet"))
        tmp = atomic_path(run_dir.manifest)
        # Overlapping prefixes list an object twice (kept once); colliding destination keys are marked.
        assemble_manifest(parts, tmp, work_dir=checkpoint.parts_dir / "keys")
        if check_destination:
            owns_destination = destination is None
            destination = destination or open_destination(plan)
            try:
                checked = _check_destination(
                    pl.read_parquet(tmp), destination, concurrency=plan.transfer.concurrency, max_attempts=plan.transfer.max_attempts
                )
                checked.write_parquet(tmp)
                del checked
            finally:
                if owns_destination:
                    destination.close()
        audit = None
        if audit_source:
            if not hasattr(source, "has_bytes"):
                raise UserInputError(f"{plan.path or plan.name}: --audit-source reads Supabase sources only (this source is {source.kind})")
            # Every listed row, a batch at a time: the audit holds only the probes in flight (or the sample).
            listed = manifest_objects(scan_manifest(tmp))
            audit = audit_source_bytes(listed, source, sample=audit_sample, concurrency=plan.transfer.concurrency)  # type: ignore[arg-type]
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)  # the old manifest stays as it was
        raise
    finally:
        progress.close()
        if owns_source:
            source.close()
    elapsed = time.monotonic() - started
    manifest = scan_manifest(tmp)
    est = estimate(
        manifest.filter(pl.col("action") == Action.COPY.value),
        part_size=plan.transfer.part_size,
        multipart_threshold=plan.transfer.multipart_threshold,
        concurrency=plan.transfer.concurrency,
        storage_prices=plan.costs.storage_per_gb_month,
        put_per_1000=plan.costs.put_per_1000,
        get_per_1000=plan.costs.get_per_1000,
        currency=plan.costs.currency,
        default_storage_class=plan.destination.storage_class,
    )
    summary = summarise(manifest, plan, buckets=buckets, elapsed=elapsed, est=est, source_kind=source.kind)
    if audit is not None:
        summary["source_audit"] = audit.summary()
    copies = summary["actions"].get(Action.COPY.value, {"objects": 0, "bytes": 0})

    tmp.replace(run_dir.manifest)
    run_dir.write_info(
        {
            "plan": plan.name,
            "plan_path": plan.path,
            "plan_fingerprint": plan.fingerprint(),
            "created_at": summary["created_at"],
            "objects": summary["listed_objects"],
            "copy_objects": copies["objects"],
            "copy_bytes": copies["bytes"],
            "collisions": summary["actions"].get(Action.COLLISION.value, {}).get("objects", 0),
        }
    )
    checkpoint.clear()  # the manifest is complete: the next plan lists from the start
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    report_dir = Path(reports_dir) / f"{run_dir.path.name}-plan-{stamp}"
    atomic_write_text(report_dir / "summary.json", json.dumps(summary, indent=2, default=str))
    atomic_write_text(report_dir / "summary.md", f"# Dry run: {plan.name}\n\n" + render_summary_text(summary) + "\n")
    if audit is not None and audit.missing:
        audit.rows().sink_csv(report_dir / "source-audit.csv")
    return PlanResult(
        plan_name=plan.name,
        plan_fingerprint=plan.fingerprint(),
        run_dir=run_dir,
        report_dir=report_dir,
        estimate=est,
        summary=summary,
        elapsed=elapsed,
        source_audit=audit,
    )


def load_manifest(run_dir: RunDirectory) -> pl.DataFrame:
    """Read a run directory's whole manifest, checking it has exactly the manifest schema."""
    return scan_manifest(run_dir.manifest).collect()

