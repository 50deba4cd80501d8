"""Local threads vs a Dask LocalCluster of 2 worker processes, same dataset, same machine.

    .venv/bin/python -m bench.cluster            # dataset A (5,000 objects of 1-64 KiB), 3 rounds
    .venv/bin/python -m bench.cluster --quick    # 300 objects, 1 round

On 2 cores a cluster cannot be faster than local threads: the point is the
cost per object of sharding, scheduling and shipping journal rows, which a
real cluster pays too. Each round runs `migrate plan` once (not timed), then
`migrate run` locally and `migrate run --executor dask` into fresh buckets,
alternating which goes first. Wall time is the driver's; CPU is the driver
process plus, for Dask, the worker processes (read with psutil before and
after). Results go to bench/results/<date>-cluster[-quick].md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from bench.datasets import dataset_specs, empty_and_delete_bucket, seed_s3_bucket
from bench.measure import run_measured, stop_launcher

REPO = Path(__file__).resolve().parents[1]
PLAN = REPO / "bench" / "plans" / "s3-to-s3.yaml"
RESULTS = REPO / "bench" / "results"


def _migrate(command: str, state: Path, *extra: str) -> list[str]:
    return [str(Path(sys.executable).parent / "migrate"), command, str(PLAN), "--state-dir", str(state), "--reports-dir", str(state / "reports"), *extra]


def _set_environment(values: dict[str, str]) -> None:
    """Runs on each worker (`client.run`): a module function, since a bound `os.environ.update` would carry the driver's copy."""
    os.environ.update(values)


def _workers_cpu(client: Any) -> float:
    pids = client.run(os.getpid).values()
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="300 objects, one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds

    from distributed import Client, LocalCluster

    from migrate.stack.seaweed import launch

    spec = dataset_specs(quick=args.quick)["A"]
    scratch = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    seaweed = launch(data_dir=scratch / "seaweed", access_key=f"AKBENCH{uuid.uuid4().hex[:8].upper()}", secret_key=uuid.uuid4().hex)
    admin = seaweed.client()
    source = f"src-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "BENCH_S3_ENDPOINT": seaweed.endpoint_url,
        "BENCH_S3_ACCESS_KEY": seaweed.access_key,
        "BENCH_S3_SECRET_KEY": seaweed.secret_key,
        "BENCH_SOURCE_BUCKET": source,
    }
    runs: list[dict[str, Any]] = []
    try:
        expected, seeded = seed_s3_bucket(admin, source, spec, seed=args.seed, scratch=scratch)
        # Workers read credentials from their own environment: give it to them before they start.
        os.environ.update({k: v for k, v in env.items() if k.startswith("BENCH_")})
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, silence_logs=40)
        client = Client(cluster)
        try:
            for round_no in range(1, rounds + 1):
                order = ("local", "dask") if round_no % 2 else ("dask", "local")
                for contender in order:
                    dest = f"dst-{uuid.uuid4().hex[:6]}"
                    admin.create_bucket(Bucket=dest)
                    run_env = {**env, "BENCH_DEST_BUCKET": dest, "BENCH_ON_CONFLICT": "skip"}
                    # The plan text is parsed on the workers too, against their own environment.
                    client.run(_set_environment, {"BENCH_DEST_BUCKET": dest, "BENCH_ON_CONFLICT": "skip"})
                    state = scratch / f"state-{dest}"
                    log = scratch / f"{dest}.log"
                    planned = run_measured(_migrate("plan", state), env=run_env, log_path=log, timeout=900)
                    extra = ("--executor", "dask", "--scheduler", cluster.scheduler_address) if contender == "dask" else ()
                    cpu_before = _workers_cpu(client)
                    measured = run_measured(_migrate("run", state, "--no-progress", *extra), env=run_env, log_path=log, timeout=1800)
                    workers_cpu = _workers_cpu(client) - cpu_before if contender == "dask" else 0.0
                    copied = sum(page.get("KeyCount", 0) for page in admin.get_paginator("list_objects_v2").paginate(Bucket=dest))
                    ok = planned.exit_code == 0 and measured.exit_code == 0 and copied == len(expected)
                    runs.append(
                        {
                            "round": round_no,
                            "contender": contender,
                            "ok": ok,
                            "objects": copied,
                            "wall": measured.wall,
                            "driver_cpu": measured.cpu,
                            "workers_cpu": workers_cpu,
                            "driver_rss_mib": measured.max_rss_mib,
                        }
                    )
                    print(f"round {round_no} {contender}: {measured.wall:.2f}s, {copied}/{len(expected)} objects, ok={ok}", flush=True)
                    empty_and_delete_bucket(admin, dest)
        finally:
            client.close()
            cluster.close()
        empty_and_delete_bucket(admin, source)
    finally:
        stop_launcher()
        seaweed.stop()
    _write(runs, spec.count, seeded.bytes, quick=args.quick)
    return 0 if all(run["ok"] for run in runs) else 1


def _write(runs: list[dict[str, Any]], objects: int, total_bytes: int, *, quick: bool) -> None:
    def median(contender: str, key: str) -> float:
        values = [run[key] for run in runs if run["contender"] == contender and run["ok"]]
        return statistics.median(values) if values else float("nan")

    def spread(contender: str, key: str) -> str:
        values = [run[key] for run in runs if run["contender"] == contender and run["ok"]]
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})" if values else "n/a"

    local_wall, dask_wall = median("local", "wall"), median("dask", "wall")
    overhead_ms = (dask_wall - local_wall) / objects * 1000
    cpu_local = median("local", "driver_cpu")
    cpu_dask = statistics.median([r["driver_cpu"] + r["workers_cpu"] for r in runs if r["contender"] == "dask" and r["ok"]] or [float("nan")])
    stamp = datetime.now(timezone.utc)
    name = f"{stamp:%Y-%m-%d}-cluster{'-quick' if quick else ''}"
    lines = [
        f"# Local threads vs Dask LocalCluster (2 workers x 1 thread), {stamp:%Y-%m-%d %H:%M} UTC",
        "",
        f"Dataset A: {objects} objects, {total_bytes / 1024 / 1024:.1f} MiB, SeaweedFS -> SeaweedFS on this 2-core machine; "
        f"{len(runs) // 2} rounds, alternating; medians (min-max). Load average at the end: {os.getloadavg()[0]:.2f}.",
        "",
        "| executor | wall s | objects/s | CPU s (driver + workers) | driver peak RSS MiB |",
        "|---|---|---|---|---|",
        f"| local threads | {spread('local', 'wall')} | {objects / local_wall:.0f} | {cpu_local:.2f} | {median('local', 'driver_rss_mib'):.0f} |",
        f"| dask, 2 workers | {spread('dask', 'wall')} | {objects / dask_wall:.0f} | {cpu_dask:.2f} | {median('dask', 'driver_rss_mib'):.0f} |",
        "",
        f"Overhead of the cluster per object (wall, median difference): **{overhead_ms:.2f} ms**; "
        f"CPU per object: local {cpu_local / objects * 1000:.2f} ms, dask {cpu_dask / objects * 1000:.2f} ms.",
        "Each Dask worker runs the engine with the plan's 16 threads, so the cluster has 32 transfer threads on 2 cores;",
        "the driver's CPU includes its Dask client. Shards: up to 2,000 objects / 512 MiB (defaults).",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps({"objects": objects, "bytes": total_bytes, "runs": runs}, indent=1))
    print("\n".join(lines))
    print(f"\nwritten: bench/results/{name}.md")


if __name__ == "__main__":
    raise SystemExit(main())
