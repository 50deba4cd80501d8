"""The benchmark: start the servers, seed the datasets, run every contender in turn, write the report.

    python -m bench [--datasets A,B,S,C] [--runs 3] [--quick] [--profile] [--memory-curve]

Stages, in order:

0. With --memory-curve: `python -m bench.memory` (when bench/memory.py exists).
1. SeaweedFS on 127.0.0.1 (migrate.stack.seaweed) holds the source and
   destination buckets; each dataset is seeded from the seed (timed, reported).
2. Copies (datasets A, B): rounds of every contender in turn (A B C A B C
   ...), each into a fresh destination bucket that is checked (count, sizes,
   MD5s) and then deleted. `migrate` is `migrate plan` + `migrate run` on
   bench/plans/s3-to-s3.yaml timed together (what a user runs, against
   `rclone copy`); `migrate run alone` is derived from the same runs.
3. Verification (A, B): `rclone check` and `rclone check --download` against
   the destination `migrate` wrote, alternating with `migrate verify --mode
   quick|fast|deep` (the CLI).
4. Memory (M, with B): `migrate run --workers 8` moves one 1 GiB object
   (16 MiB parts); peak RSS of the child.
5. Supabase source (S) and inventory (C), bench/supabase_stages.py: the
   bundled Supabase server, seeded straight into its PostgreSQL catalog and
   blob directory; `migrate` over REST vs rclone/s5cmd over its S3 endpoint;
   catalog vs REST listing.
6. The Markdown report and the headline table in bench/results/, plus the raw runs as JSON.

Everything the harness starts (servers, children) it stops by PID; every
database it creates is named migrate_bench_* and dropped; the work directory
(datasets, downloads, journals) is removed at the end unless --keep-work.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.contenders import CONTENDERS, BenchContext, CopyJob, Endpoint, find_tools, migrate_env, plan_for, run_migrate
from bench.datasets import DatasetSpec, MiB, dataset_specs, empty_and_delete_bucket
from bench.environment import machine_info, source_fingerprint, tool_versions
from bench.measure import Measurement, log_tail, run_measured, start_launcher, stop_launcher
from bench.session import Session, dataset_record, log, run_alone_record, seed_dataset, timed_copy

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
#: What `--contenders` defaults to; `migrate-overwrite` and `boto3-floor` are there for the asking (A, B).
COPY_CONTENDERS = ("migrate", "rclone-default", "rclone-tuned", "s5cmd")
DATASETS = ("A", "B", "S", "C")
# The memory bench: `migrate run --workers 8` with the plan's default 16 MiB parts.
MEMORY_PART_SIZE = 16 * MiB
MEMORY_CONCURRENCY = 8


# -- copies ------------------------------------------------------------------
def bench_copies(session: Session, spec: DatasetSpec) -> None:
    source = seed_dataset(session, spec)
    for round_no in range(session.rounds):
        for name in contenders_for(session, spec):
            record = timed_copy(
                session,
                spec,
                contender=name,
                run=CONTENDERS[name].run,
                source=source,
                round_no=round_no,
                keep_dest=name == "migrate",
            )
            session.runs.append(record)
            derived = run_alone_record(record)
            if derived is not None:
                session.runs.append(derived)
    if "verify" in session.args.stages:
        bench_verify(session, spec, source)


def contenders_for(session: Session, spec: DatasetSpec) -> list[str]:
    """The chosen contenders; `migrate-overwrite` (a HEAD-less variant) only on the small objects, where it matters."""
    return [name for name in session.args.contenders if name != "migrate-overwrite" or not spec.is_large]


# -- verification ------------------------------------------------------------
def migrate_verify_command_available(ctx: BenchContext) -> bool:
    """True when `migrate verify` is a CLI command: it is what gets timed, as a user runs it."""
    out = subprocess.run(
        [str(ctx.tools.python.parent / "migrate"), "verify", "--help"], capture_output=True, text=True, cwd=ctx.work_dir, env=ctx.python_env()
    )
    return out.returncode == 0



def verify_report_figures(reports_dir: Path, result_path: Path) -> None:
    """Count the statuses of the report `migrate verify` wrote (REPORT_SCHEMA parquet) into `result_path`."""
    import polars as pl

    reports = sorted(reports_dir.rglob("report.parquet"))
    if not reports:
        return
    frame = pl.read_parquet(reports[-1])
    statuses = dict(frame.group_by("status").len().iter_rows())
    bases = dict(frame.group_by("checksum_basis").len().iter_rows())
    result_path.write_text(json.dumps({"statuses": statuses, "checksum_basis": {str(k): v for k, v in bases.items()}, "rows": frame.height}))


def bench_verify(session: Session, spec: DatasetSpec, source: str) -> None:
    """rclone check / check --download against `migrate` verify quick, fast / deep, alternating, on the last `migrate` copy."""
    kept = session.kept_buckets.get(spec.name)
    if kept is None:
        session.notes.append(f"Verification of {spec.name} skipped: no valid `migrate` copy to verify.")
        return
    dest, migrate_run_dir = kept
    rclone = str(session.ctx.tools.rclone)
    verify_job = CopyJob(dataset=spec.name, source_bucket=source, dest_bucket=dest, run_dir=migrate_run_dir)
    checks: list[tuple[str, list[str] | None, str | None]] = [
        ("rclone check", [rclone, "check", f"src:{source}", f"dst:{dest}"], None),
        ("migrate verify quick", None, "quick"),
        ("migrate verify fast", None, "fast"),
        ("rclone check --download", [rclone, "check", "--download", f"src:{source}", f"dst:{dest}"], None),
        ("migrate verify deep", None, "deep"),
    ]
    have_cli = migrate_verify_command_available(session.ctx)
    for round_no in range(session.rounds):
        for name, argv, mode in checks:
            if mode is not None and not have_cli:
                continue
            run_dir = session.ctx.work_dir / "runs" / f"verify-{spec.name}-{len(session.verify_runs)}"
            log_path = run_dir / "child.log"
            result_path = run_dir / "verify.json"
            stamp = session.stamp()
            before = session.server_cpu()
            if mode is None:
                assert argv is not None
                measurement = run_measured(argv, env=session.ctx.rclone_env(), log_path=log_path, timeout=session.ctx.timeout)
            else:
                # The CLI as a user runs it, on the run directory `migrate plan` + `migrate run` left.
                argv = [
                    str(session.ctx.tools.python.parent / "migrate"), "verify", str(plan_for(verify_job)),
                    "--state-dir", str(migrate_run_dir / "state"), "--reports-dir", str(run_dir / "reports"),
                    "--mode", mode, "--no-progress",
                ]
                measurement = run_measured(argv, env=migrate_env(session.ctx, verify_job), log_path=log_path, timeout=session.ctx.timeout, cwd=run_dir)
                verify_report_figures(run_dir / "reports", result_path)
            after = session.server_cpu()
            figures: dict[str, Any] | None = None
            if mode is None:
                text = log_path.read_text(errors="replace")
                matched = re.search(r"(\d+) matching files", text)
                unchecked = re.search(r"(\d+) hashes could not be checked", text)
                valid = measurement.exit_code == 0 and matched is not None and int(matched.group(1)) == spec.count
                note = f"{matched.group(1) if matched else '?'} matching"
                if unchecked:
                    note += f"; {unchecked.group(1)} hashes could not be checked (sizes only)"
            else:
                figures = json.loads(result_path.read_text()) if result_path.is_file() else None
                statuses = (figures or {}).get("statuses", {})
                valid = measurement.exit_code == 0 and statuses.get("match") == spec.count
                note = ", ".join(f"{count} {status}" for status, count in statuses.items()) or "no result"
                if figures and figures.get("checksum_basis"):
                    note += "; basis " + ", ".join(f"{basis} {count}" for basis, count in figures["checksum_basis"].items())
            if measurement.exit_code != 0 and not figures:
                note = f"exit {measurement.exit_code}: {log_tail(log_path, lines=2)}"
            record = dataset_record(
                session, spec, contender=name, round_no=round_no, measurement=measurement, valid=valid, check=note,
                cpu_span=(before, after), engine=figures, stamp=stamp,
            )
            session.verify_runs.append(record)
            log(f"verify {spec.name} round {round_no + 1} {name}: {measurement.wall:.2f}s, CPU {measurement.cpu:.2f}s -- {note}")
            if valid and not session.args.keep_work:
                shutil.rmtree(run_dir, ignore_errors=True)
    empty_and_delete_bucket(session.admin, dest)
    if not session.args.keep_work:
        shutil.rmtree(migrate_run_dir, ignore_errors=True)
    session.kept_buckets.pop(spec.name, None)


# -- memory ------------------------------------------------------------------
def bench_memory(session: Session) -> None:
    """One large object through `migrate run --workers 8` (16 MiB parts: the plan's default), rclone for context."""
    spec = session.specs["M"]
    source = seed_dataset(session, spec)

    def migrate_bounded(ctx: BenchContext, job: CopyJob) -> Measurement:
        return run_migrate(ctx, job, workers=MEMORY_CONCURRENCY)

    for round_no in range(session.rounds):
        session.memory_runs.append(timed_copy(session, spec, contender="migrate", run=migrate_bounded, source=source, round_no=round_no))
        session.memory_runs.append(
            timed_copy(session, spec, contender="rclone-default", run=CONTENDERS["rclone-default"].run, source=source, round_no=round_no)
        )
    empty_and_delete_bucket(session.admin, source)


# -- driver ------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmark migrate against rclone, s5cmd and a boto3 floor.")
    parser.add_argument(
        "--datasets",
        default=",".join(DATASETS),
        help="comma-separated: A (small objects), B (large objects, + the 1 GiB memory object), S (Supabase source), C (inventory); default A,B,S,C",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per contender (default 3; --quick uses 1)")
    parser.add_argument("--quick", action="store_true", help="tiny datasets, one run each: a smoke test (about two minutes)")
    parser.add_argument(
        "--contenders",
        default=",".join(COPY_CONTENDERS),
        help=f"comma-separated, from {','.join(CONTENDERS)} (default {','.join(COPY_CONTENDERS)}; S runs only migrate, rclone-*, s5cmd)",
    )
    parser.add_argument(
        "--memory-curve", action="store_true", help="first run `python -m bench.memory` (if bench/memory.py exists); its table is reported either way"
    )
    parser.add_argument("--skip", default="", help="comma-separated stages to skip: verify, memory")
    parser.add_argument("--skip-rest-metadata", action="store_true", help="inventory: skip the one-info-call-per-object REST listing")
    parser.add_argument("--profile", action="store_true", help="also profile migrate on dataset A with py-spy (needs py-spy in the venv)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds before a child is killed (default 1800)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where datasets and downloads go (default: a new temporary directory)")
    parser.add_argument("--keep-work", action="store_true", help="keep the work directory (logs, journals) afterwards")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--label", default="", help="appended to the results file names (--datasets A --label perf: <date>-A-perf.md), so a branch's run does not replace the recorded one"
    )
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    args.datasets = [d.strip().upper() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {', '.join(DATASETS)}")
    args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    bad = [c for c in args.contenders if c not in CONTENDERS]
    if bad:
        parser.error(f"unknown contender(s) {bad}; choose from {', '.join(CONTENDERS)}")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    args.stages = {"verify", "memory"} - skip
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def run_memory_curve(args: argparse.Namespace) -> str | None:
    """`python -m bench.memory` (another developer's script) before anything else; a note when it is absent or fails."""
    if not (REPO / "bench" / "memory.py").is_file():
        return "--memory-curve: bench/memory.py does not exist yet, so the memory curve was not run (an existing results file is still reported)."
    log("memory curve: running python -m bench.memory")
    done = subprocess.run([sys.executable, "-m", "bench.memory"], cwd=REPO, check=False)
    if done.returncode != 0:
        return f"--memory-curve: `python -m bench.memory` exited {done.returncode}; the table below (if any) is from an earlier run."
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    memory_note = run_memory_curve(args) if args.memory_curve else None
    # First, while this process is small: every measured child is started by it (see bench/launcher.py).
    start_launcher()
    from migrate.stack.seaweed import find_weed, launch

    from bench.render import headline, render
    from bench.supabase_stages import bench_inventory, bench_supabase_copies

    started = datetime.now(timezone.utc)
    tools = find_tools(REPO)
    weed = find_weed()
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="migrate-bench-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "tmp").mkdir(exist_ok=True)
    log(f"work directory {work_dir}")
    machine, versions = machine_info(), tool_versions(tools, weed)
    access_key, secret_key = f"bench{secrets.token_hex(4)}", secrets.token_hex(20)
    seaweed = launch(data_dir=work_dir / "seaweed", access_key=access_key, secret_key=secret_key, log_path=work_dir / "seaweed.log")
    log(f"SeaweedFS at {seaweed.endpoint_url} (pid {seaweed.process.pid})")
    status = 0
    try:
        endpoint = Endpoint(url=seaweed.endpoint_url, access_key=access_key, secret_key=secret_key)
        ctx = BenchContext(endpoint=endpoint, tools=tools, work_dir=work_dir, timeout=args.timeout)
        session = Session(args=args, specs=dataset_specs(quick=args.quick), ctx=ctx, admin=_pooled_client(endpoint), seaweed=seaweed)
        if memory_note:
            session.notes.append(memory_note)
        session.source_at_start = snapshot_code(REPO, ctx.snapshot)
        log(f"measuring a snapshot of migrate/ (source hash {session.source_at_start}) in {ctx.snapshot}")
        try:
            for name in args.datasets:
                if name in ("A", "B"):
                    bench_copies(session, session.specs[name])
            if "memory" in args.stages and "B" in args.datasets:
                bench_memory(session)
            if args.profile and "A" in args.datasets:
                from bench.profile import profile_migrate

                session.profile_section = profile_migrate(session, REPO, args.results_dir, started)
            if "S" in args.datasets:
                bench_supabase_copies(session)
            if "C" in args.datasets:
                bench_inventory(session)
        except Exception:  # noqa: BLE001 - still write what was measured
            status = 1
            trace = traceback.format_exc()
            log("benchmark failed:\n" + trace)
            session.notes.append("The benchmark stopped early on an error: " + trace.strip().splitlines()[-1])
        session.notes.extend(cli_notes(ctx))
        live = source_fingerprint(REPO)
        if live != session.source_at_start:
            session.notes.append(
                f"migrate/ in the working tree changed while this benchmark ran (now {live}); every `migrate` child ran the "
                f"snapshot taken at the start ({session.source_at_start}), so the figures are of one version of the code."
            )
        report = render(session, started, machine, versions)
        args.results_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{started:%Y-%m-%d}-{'-'.join(args.datasets)}{'-quick' if args.quick else ''}{f'-{args.label}' if args.label else ''}"
        out = args.results_dir / f"{stem}.md"
        out.write_text(report.render())
        # The table the README quotes: <date>-headline.md for the full default set, suffixed otherwise.
        full = args.datasets == list(DATASETS) and not args.quick and not args.label
        headline_path = args.results_dir / (f"{started:%Y-%m-%d}-headline.md" if full else f"{stem}-headline.md")
        headline_path.write_text(headline(session, started, report_name=out.name))
        log(f"headline written to {headline_path}")
        raw = {
            "started": started.isoformat(),
            "args": {k: (sorted(v) if isinstance(v, set) else str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "runs": [r.to_json() for r in session.runs + session.verify_runs + session.memory_runs + session.inventory_runs],
        }
        (args.results_dir / f"{stem}.json").write_text(json.dumps(raw, indent=1, default=str))
        log(f"report written to {out}")
    finally:
        seaweed.stop()
        stop_launcher()
        if not args.keep_work:
            shutil.rmtree(work_dir, ignore_errors=True)
        else:
            log(f"work directory kept: {work_dir}")
    return status


def snapshot_code(repo: Path, target: Path) -> str:
    """Copy migrate/ (as it is now, committed or not) to `target`; returns its source hash.

    Others may edit the working tree while a benchmark runs for an hour; every
    `migrate` child imports this copy instead, so all rounds measure one version.
    """
    import shutil as _shutil

    _shutil.copytree(repo / "migrate", target / "migrate", ignore=_shutil.ignore_patterns("__pycache__"))
    return source_fingerprint(target, package="migrate")


def _pooled_client(endpoint: Endpoint) -> Any:
    """The harness's own client (seeding with 32 threads, checks, clean-up); never timed."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint.url,
        aws_access_key_id=endpoint.access_key,
        aws_secret_access_key=endpoint.secret_key,
        region_name=endpoint.region,
        config=Config(max_pool_connections=32, s3={"addressing_style": "path"}, read_timeout=300, retries={"max_attempts": 5, "mode": "standard"}),
    )


def cli_notes(ctx: BenchContext) -> list[str]:
    """What the report should say about the CLI commands bench/ would rather time."""
    import subprocess

    out = subprocess.run([str(ctx.tools.python.parent / "migrate"), "--help"], capture_output=True, text=True, cwd=ctx.work_dir, env=ctx.python_env())
    notes = []
    if out.returncode != 0 or not re.search(r"^\s+run\s", out.stdout, re.M):
        notes.append("`migrate run` is not in `migrate --help`: the `migrate` rows could not be measured through the CLI.")
    if re.search(r"^\s+verify\s", out.stdout, re.M):
        notes.append("`migrate verify` rows time the CLI command (`migrate verify PLAN --mode quick|fast|deep --no-progress`) on the run directory `migrate run` left.")
    else:
        notes.append("`migrate verify` is not in `migrate --help`: only the rclone baselines of the verify stage were measured.")
    return notes
