"""Driver peak RSS of `migrate verify --executor dask` against manifest size (and a local verify for scale).

    .venv/bin/python -m bench.cluster_memory                          # 20k and 200k objects, this checkout
    .venv/bin/python -m bench.cluster_memory --sizes 600000 --executors dask
    .venv/bin/python -m bench.cluster_memory --code /tmp/main-export --label main@1a3ba0f --tag=-before

What is measured: the driver, one `migrate verify PLAN --mode fast
--executor dask --scheduler ...` child started by the bench launcher
(bench/launcher.py), so its `os.wait4` ru_maxrss is its own; the scheduler
and the two workers (a `distributed.LocalCluster`, 1 thread each) live in
this process and its children and are not counted. `--code` runs the driver
from another checkout's package; the workers always run this checkout's
(their shard code is what both drivers call; only the driver differs).

The data, per size N: a synthetic manifest of N `copy` records written
straight into the run directory (no `plan`, no `run`: the driver's memory is
the point, not a copy), and the N zero-byte objects written into a local
destination folder (`destination: {type: local}`, on /dev/shm) with the
store's own `put_object`, each with the planned Content-Type and the MD5 of
nothing as the source eTag, so every row is a `match` proven against the
source eTag. The source is an S3 endpoint nobody listens on: fast mode never
reads the source (the records carry their Content-Type, so no source HEAD).

Writes bench/results/<UTC date>-cluster-rss<tag>.{md,json} (not `*-memory.json`: bench/render.py reads those as
bench/memory.py's curve).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.measure import log_tail, run_measured, start_launcher, stop_launcher
from bench.memory import EMPTY_MD5, migrate_command, object_key

RESULTS = Path(__file__).resolve().parent / "results"
BUCKET = "clustermem"
BATCH = 50_000
TIMEOUT = 3600

PLAN = """\
version: 1
name: clustermem
source:
  type: s3
  endpoint_url: http://127.0.0.1:9
  region: us-east-1
  access_key_id_env: CLUSTERMEM_KEY
  secret_access_key_env: CLUSTERMEM_SECRET
  buckets: [clustermem-source]
destination:
  type: local
  path: ${CLUSTERMEM_DEST}
  bucket: clustermem
unmatched: keep
"""


def seed(plan_path: Path, state: Path, objects: int) -> None:
    """The manifest of `objects` copy records in the plan's run directory, and the objects at the destination."""
    import polars as pl

    from migrate.plan import load_plan
    from migrate.records import ObjectRecord, records_to_frame
    from migrate.rundir import RunDirectory
    from migrate.stores.local import LocalStore

    plan = load_plan(plan_path)
    run_dir = RunDirectory.for_plan(plan.name, state_dir=state)
    run_dir.path.mkdir(parents=True, exist_ok=True)
    store = LocalStore(os.environ["CLUSTERMEM_DEST"])
    (store.root / BUCKET).mkdir(parents=True, exist_ok=True)
    frames = []
    for start in range(0, objects, BATCH):
        batch = []
        for index in range(start, min(objects, start + BATCH)):
            key = object_key(index)
            batch.append(
                ObjectRecord(
                    source_bucket="clustermem-source", source_key=key, size=0, dest_bucket=BUCKET, dest_key=key, source_etag=EMPTY_MD5,
                    content_type="application/octet-stream", rule="keep", action="copy",
                )
            )
            store.put_object(BUCKET, key, b"", content_type="application/octet-stream")
        frames.append(records_to_frame(batch))
    pl.concat(frames).write_parquet(run_dir.manifest)


def measure(objects: int, *, scheduler: str, python: str, code: str | None, shard_objects: int, work: Path, executors: list[str]) -> list[dict[str, Any]]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "CLUSTERMEM_DEST": os.environ["CLUSTERMEM_DEST"],
        "CLUSTERMEM_KEY": "unused",
        "CLUSTERMEM_SECRET": "unused-secret",
    }
    common = ["verify", "plan.yaml", "--state-dir", str(work / "state"), "--mode", "fast", "--no-progress"]
    points = []
    for executor, extra in (("dask", ["--executor", "dask", "--scheduler", scheduler, "--shard-objects", str(shard_objects)]), ("local", [])):
        if executor not in executors:
            continue
        log = work / f"verify-{executor}.log"
        argv = [*migrate_command(python, code), *common, "--reports-dir", str(work / f"reports-{executor}"), *extra]
        measured = run_measured(argv, env=env, log_path=log, timeout=TIMEOUT, cwd=work)
        matched = _matches(work / f"reports-{executor}")
        note = "" if measured.exit_code == 0 and matched == objects else f"exit {measured.exit_code}, {matched} matches: {log_tail(log)}"
        point = {"executor": executor, "objects": objects, "rss_mib": round(measured.max_rss_mib, 1), "wall": round(measured.wall, 1), "cpu": round(measured.cpu, 1), "exit_code": measured.exit_code, "note": note}
        print(f"  {executor:<5} {objects:>9,} objects: {point['rss_mib']:7.1f} MiB driver peak RSS, {point['wall']:6.1f} s wall {note}", flush=True)
        points.append(point)
    return points


def _matches(reports: Path) -> int:
    import polars as pl

    found = sorted(reports.glob("**/report.parquet"))
    return pl.read_parquet(found[-1]).filter(pl.col("status") == "match").height if found else -1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_memory", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20000,200000", help="object counts, comma-separated")
    parser.add_argument("--shard-objects", type=int, default=2000, help="--shard-objects of the dask driver (default: the CLI's 2,000)")
    parser.add_argument("--executors", default="dask,local", help="which drivers to measure: dask, local or both (default)")
    parser.add_argument("--code", help="run the driver from the migrate package in this folder (e.g. an export of main)")
    parser.add_argument("--label", default="", help="what --code is, for the results (e.g. main@1a3ba0f)")
    parser.add_argument("--tag", default="", help="appended to the result file names")
    args = parser.parse_args(argv)
    sizes = [int(float(part)) for part in args.sizes.split(",") if part.strip()]
    start_launcher()  # first, while this process is small (see bench/launcher.py)
    points: list[dict[str, Any]] = []
    try:
        from distributed import Client, LocalCluster

        for objects in sizes:
            work = Path(tempfile.mkdtemp(prefix=f"cluster-mem-{objects}-"))
            dest = Path(tempfile.mkdtemp(prefix="cluster-mem-dest-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
            # The workers parse the plan against their own environment: set it before they start.
            os.environ.update({"CLUSTERMEM_DEST": str(dest), "CLUSTERMEM_KEY": "unused", "CLUSTERMEM_SECRET": "unused-secret"})
            try:
                (work / "plan.yaml").write_text(PLAN)
                seed(work / "plan.yaml", work / "state", objects)
                print(f"{objects:,} objects seeded", flush=True)
                cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, silence_logs=40)
                client = Client(cluster)
                try:
                    points += measure(objects, scheduler=cluster.scheduler_address, python=sys.executable, code=args.code, shard_objects=args.shard_objects, work=work, executors=args.executors.split(","))
                finally:
                    client.close()
                    cluster.close()
            finally:
                shutil.rmtree(work, ignore_errors=True)
                shutil.rmtree(dest, ignore_errors=True)
    finally:
        stop_launcher()
    _write(points, args)
    return 0 if all(not p["note"] for p in points) else 1


def _write(points: list[dict[str, Any]], args: argparse.Namespace) -> None:
    now = datetime.now(timezone.utc)
    code = args.label or args.code or "this checkout"
    lines = [
        f"# Driver peak RSS of `migrate verify --mode fast`, {now:%Y-%m-%d %H:%M} UTC ({code})",
        "",
        "`python -m bench.cluster_memory` (its docstring says what the data is). Dask: LocalCluster, 2 workers x 1 thread,"
        f" --shard-objects {args.shard_objects}; the driver is one child process, its ru_maxrss. Machine: {os.cpu_count()} cores, shared;"
        f" load average at the end {os.getloadavg()[0]:.2f}.",
        "",
        "| executor | objects | driver peak RSS MiB | wall s | cpu s | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for p in points:
        lines.append(f"| {p['executor']} | {p['objects']:,} | {p['rss_mib']:.1f} | {p['wall']:.1f} | {p['cpu']:.1f} | {p['note']} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"{now:%Y-%m-%d}-cluster-rss{args.tag}"
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    stem.with_suffix(".json").write_text(json.dumps({"measured_at": now.isoformat(), "code": code, "shard_objects": args.shard_objects, "points": points}, indent=1) + "\n")
    print("\n".join(lines))
    print(f"wrote {stem}.md/.json")


if __name__ == "__main__":
    raise SystemExit(main())
