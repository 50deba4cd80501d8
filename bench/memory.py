"""The memory curve: peak RSS of `migrate plan`, `run`, `verify --mode fast` and `status` against object count.

    python -m bench.memory                                  # plan at 100k, 1M, 10M; run/verify/status at 100k, 1M
    python -m bench.memory --sizes 100000,1000000 --stages plan,run

What is measured: each command is one child process started by the bench
launcher (bench/launcher.py, a bare interpreter forked before this script
imports anything heavy), so the child's `os.wait4` ru_maxrss is its own and
not the RSS this script carries into a fork.

The data, per size N (everything is ours and removed afterwards):
- a PostgreSQL database `wt_scale_mem_<N>` with the bundled Supabase
  server's schema and N `storage.objects` rows in one bucket, written with
  COPY (indexes built after the load, as a restore does); 1,000 keys per
  folder, sizes 0-4095 bytes in the catalog, user metadata on every row;
- `plan` lists them through the catalog source (`source.database_url`);
  nothing is read from the REST API (no --audit-source), so no bytes are
  needed for it;
- `run`, `verify` and `status` need bytes: every row is a zero-byte object
  whose blob is a hard link to one empty file (the server's own layout,
  see bench/supabase_seed.py), served by the bundled Supabase server over
  REST, copied into a local destination folder (`destination: {type:
  local}`) on /dev/shm. Why: it is the real catalog source and the real
  run path (journal, checksums, conflict checks, fsync) end to end, with
  no third-party S3 server in the process table whose memory or speed
  would blur migrate's own; tmpfs keeps 1M fsyncs from measuring the disk.

Writes bench/results/<UTC date>-memory.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench.measure import log_tail, run_measured, start_launcher, stop_launcher

DEFAULT_SIZES = (100_000, 1_000_000, 10_000_000)
STAGES = ("plan", "run", "verify", "status")
# run/verify/status copy real objects: above this many, the curve stops (time, not memory).
DEFAULT_RUN_MAX = 1_000_000
BUCKET = "memcurve"
ADMIN_URL = os.environ.get("WT_SCALE_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_PREFIX = "wt_scale_mem_"
RESULTS = Path(__file__).resolve().parent / "results"
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
COPY_BLOCK = 50_000
LINKS_PER_FILE = 60_000
TIMEOUT = 3 * 3600


@dataclass
class Point:
    stage: str
    objects: int
    rss_mib: float
    wall: float
    cpu: float
    exit_code: int
    ratio: float | None = None
    note: str = ""
    code: str = ""  # what was measured: "" for this checkout, else the --code folder's label


def _database_url(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def create_database(name: str) -> str:
    import psycopg

    assert name.startswith(DB_PREFIX), name
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return _database_url(name)


def drop_database(name: str) -> None:
    import psycopg

    assert name.startswith(DB_PREFIX), name
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def object_key(index: int) -> str:
    return f"d{index // 1000:05d}/file-{index:08d}.bin"


def _catalog_lines(start: int, stop: int, *, zero_bytes: bool) -> bytes:
    """COPY text rows (bucket_id, name, version, metadata, user_metadata) for objects start..stop-1."""
    lines = []
    for index in range(start, stop):
        size = 0 if zero_bytes else index % 4096
        etag = EMPTY_MD5 if zero_bytes else f"{index:032x}"
        metadata = (
            f'{{"eTag": "\\\\"{etag}\\\\"", "size": {size}, "mimetype": "application/octet-stream", '
            f'"cacheControl": "max-age=3600", "lastModified": "2024-01-01T00:00:00.000Z", '
            f'"contentLength": {size}, "httpStatusCode": 200}}'
        )
        lines.append(f"{BUCKET}\t{object_key(index)}\tv{index:012d}\t{metadata}\t{{\"owner\": \"d{index // 1000:05d}\"}}\n")
    return "".join(lines).encode()


def seed_catalog(database_url: str, objects: int, *, zero_bytes: bool) -> float:
    """The bundled server's schema plus `objects` rows, loaded with COPY; returns seconds."""
    import psycopg

    from migrate.stack.supabase_server.catalog import ensure_schema

    started = time.perf_counter()
    ensure_schema(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        indexes = [row[0] for row in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'storage' AND tablename = 'objects' AND indexname <> 'objects_pkey'")]
        for name in indexes:
            conn.execute(f'DROP INDEX storage."{name}"')
        conn.execute("INSERT INTO storage.buckets (id, name, public) VALUES (%s, %s, false)", (BUCKET, BUCKET))
        with conn.cursor() as cursor:
            with cursor.copy("COPY storage.objects (bucket_id, name, version, metadata, user_metadata) FROM STDIN") as copy:
                for start in range(0, objects, COPY_BLOCK):
                    copy.write(_catalog_lines(start, min(objects, start + COPY_BLOCK), zero_bytes=zero_bytes))
    ensure_schema(database_url)  # recreates the listing indexes (IF NOT EXISTS) over the loaded rows
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ANALYZE storage.objects")
    return time.perf_counter() - started


def seed_blobs(data_dir: Path, objects: int) -> float:
    """One blob per row, each a hard link to an empty file (zero-byte objects cost no inode each)."""
    started = time.perf_counter()
    blobs = data_dir / "blobs"
    data_dir.mkdir(parents=True, exist_ok=True)
    made: set[str] = set()
    for index in range(objects):
        if index % LINKS_PER_FILE == 0:  # ext4 allows 65,000 links to one inode
            empty = data_dir / f"empty-{index // LINKS_PER_FILE}"
            empty.write_bytes(b"")
        version = f"v{index:012d}"
        folder = blobs / version[:2]
        if version[:2] not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(version[:2])
        os.link(empty, folder / version)
    return time.perf_counter() - started


PLAN = """\
version: 1
name: memcurve
source:
  type: supabase
  url: ${SUPABASE_URL}
  key: ${SUPABASE_SERVICE_ROLE_KEY}
  database_url: ${SUPABASE_DB_URL}
  buckets: [memcurve]
destination:
  type: local
  path: ${MEM_DEST}
  bucket: memcurve-copy
unmatched: keep
"""


def migrate_command(python: str, code: str | None = None) -> list[str]:
    """argv that runs `migrate` from this checkout, or from the package in folder `code` (an export of another commit)."""
    if not code:
        return [python, "-m", "migrate"]
    # An editable install's finder comes before sys.path: drop it so `code` is what runs.
    boot = (
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]; "
        f"sys.path.insert(0, {code!r}); sys.argv[0] = 'migrate'; from migrate.cli import main; sys.exit(main())"
    )
    return [python, "-c", boot]


def _measure(stage: str, objects: int, argv: list[str], *, env: dict[str, str], work: Path) -> Point:
    log = work / f"{stage}.log"
    measured = run_measured(argv, env=env, log_path=log, timeout=TIMEOUT, cwd=work)
    note = "" if measured.exit_code == 0 else f"exit {measured.exit_code}: {log_tail(log)}"
    point = Point(stage, objects, round(measured.max_rss_mib, 1), round(measured.wall, 1), round(measured.cpu, 1), measured.exit_code, note=note)
    print(f"  {stage:<7} {objects:>10,} objects: {point.rss_mib:7.1f} MiB peak RSS, {point.wall:7.1f} s wall, {point.cpu:7.1f} s cpu {note}", flush=True)
    return point


def measure_size(objects: int, stages: list[str], *, run_max: int, python: str, code: str | None) -> list[Point]:
    """Seed N rows, run the stages asked for, clean up; returns one point per stage measured."""
    from migrate.stack.supabase_server import launch

    byte_stages = [s for s in stages if s != "plan" and objects <= run_max]
    plan_stages = [s for s in stages if s == "plan"]
    if not byte_stages and not plan_stages:
        return []
    name = f"{DB_PREFIX}{objects}_{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix=f"wt_scale_mem_{objects}_", dir="/work/tmp" if Path("/work/tmp").is_dir() else None))
    dest = Path(tempfile.mkdtemp(prefix="wt_scale_dest_", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    server = None
    points: list[Point] = []
    try:
        database_url = create_database(name)
        seconds = seed_catalog(database_url, objects, zero_bytes=bool(byte_stages))
        print(f"{objects:,} catalog rows in {seconds:.0f}s", flush=True)
        secret = secrets.token_urlsafe(32)
        url, key = "http://127.0.0.1:9", "unused"
        if byte_stages:
            print(f"  blobs: {seed_blobs(work / 'server', objects):.0f}s", flush=True)
            server = launch(database_url=database_url, data_dir=work / "server", jwt_secret=secret)
            url, key = server.url, server.service_key
        (work / "plan.yaml").write_text(PLAN)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "SUPABASE_URL": url,
            "SUPABASE_SERVICE_ROLE_KEY": key,
            "SUPABASE_DB_URL": database_url,
            "MEM_DEST": str(dest),
        }
        migrate = migrate_command(python, code)
        common = ["--state-dir", str(work / "state"), "--reports-dir", str(work / "reports")]
        argvs = {
            "plan": [*migrate, "plan", "plan.yaml", *common],
            "run": [*migrate, "run", "plan.yaml", *common, "--no-progress"],
            "verify": [*migrate, "verify", "plan.yaml", *common, "--mode", "fast", "--no-progress"],
            "status": [*migrate, "status", "plan.yaml", *common],
        }
        for stage in STAGES:
            if stage in plan_stages or stage in byte_stages:
                points.append(_measure(stage, objects, argvs[stage], env=env, work=work))
            elif stage == "plan" and byte_stages:
                _measure(stage, objects, argvs[stage], env=env, work=work)  # so `run` measures the run, not a plan first
    finally:
        if server is not None:
            server.stop()
        drop_database(name)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)
    return points


def with_ratios(points: list[Point]) -> list[Point]:
    base = {(p.stage, p.code): p.rss_mib for p in points if p.objects == 100_000 and p.exit_code == 0}
    for point in points:
        if base.get((point.stage, point.code)):
            point.ratio = round(point.rss_mib / base[(point.stage, point.code)], 2)
    return points


def render_markdown(points: list[Point], *, date: str, environment: str) -> str:
    lines = [
        f"# Memory curve, {date}",
        "",
        "Peak RSS (ru_maxrss of the `migrate` child, started by bench/launcher.py) against object count.",
        "`python -m bench.memory` (bench/memory.py's docstring says what the data, the source and the destination are and why).",
        "",
        environment,
        "",
        "| stage | code | objects | RSS MiB | ratio to 100k | wall s | cpu s | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for p in sorted(points, key=lambda p: (p.code != "", p.code, STAGES.index(p.stage), p.objects)):
        ratio = f"{p.ratio:.2f}" if p.ratio is not None else "-"
        lines.append(f"| {p.stage} | {p.code or 'this branch'} | {p.objects:,} | {p.rss_mib:.1f} | {ratio} | {p.wall:.1f} | {p.cpu:.1f} | {p.note} |")
    return "\n".join(lines) + "\n"


def plot(points: list[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for code in sorted({p.code for p in points}):
        for stage in STAGES:
            curve = sorted((p.objects, p.rss_mib) for p in points if p.stage == stage and p.code == code and p.exit_code == 0)
            if curve:
                style = "--" if code else "-"
                axes.plot([x for x, _ in curve], [y for _, y in curve], style, marker="o", label=f"migrate {stage}" + (f" ({code})" if code else ""))
    axes.axhline(400, color="grey", linestyle="--", linewidth=1, label="400 MiB target")
    axes.set_xscale("log")
    axes.set_xlabel("objects")
    axes.set_ylabel("peak RSS (MiB)")
    axes.set_ylim(bottom=0)
    axes.set_title("migrate peak RSS against object count")
    axes.legend()
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _sizes(text: str) -> list[int]:
    return sorted({int(float(part)) for part in text.split(",") if part.strip()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=_sizes, default=list(DEFAULT_SIZES), help="object counts, comma-separated (default 100000,1000000,10000000)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--run-max", type=int, default=DEFAULT_RUN_MAX, help="largest size run/verify/status are measured at (default 1000000)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the .md/.json/.png go (default bench/results)")
    parser.add_argument("--tag", default="", help="appended to the file names (e.g. -before)")
    parser.add_argument("--code", help="measure the migrate package in this folder instead (PYTHONPATH), e.g. an export of main")
    parser.add_argument("--label", default="", help="names what --code is in the results (e.g. main@7b1e4ec)")
    parser.add_argument("--combine", type=Path, nargs="+", help="measure nothing: write one curve from the points of these .json results")
    parser.add_argument("--note", default="", help="a line added to the .md (what the figures are, what was left out)")
    args = parser.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages: {', '.join(sorted(unknown))}")
    points: list[Point] = []
    if args.combine:
        for path in args.combine:
            saved = json.loads(path.read_text())
            label = saved.get("label") or ""
            points += [Point(**{**{k: v for k, v in p.items() if k != "ratio"}, "code": p.get("code") or label}) for p in saved["points"]]
    else:
        start_launcher()  # first, while this process is small (see bench/launcher.py)
        try:
            for objects in args.sizes:
                points += measure_size(objects, stages, run_max=args.run_max, python=sys.executable, code=args.code)
            for point in points:
                point.code = args.label if args.code else ""
        finally:
            stop_launcher()
    with_ratios(points)
    now = datetime.now(timezone.utc)
    date = now.strftime("%Y-%m-%d")
    environment = f"Machine: {os.cpu_count()} cores, shared; written {now.isoformat(timespec='minutes')}; code: {args.code or 'this checkout'}."
    if args.combine:
        environment = f"Combined {now.isoformat(timespec='minutes')} from {', '.join(path.name for path in args.combine)} (each measured with `python -m bench.memory`)."
    if args.note:
        environment += "\n\n" + args.note
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{date}-memory{args.tag}"
    stem.with_suffix(".md").write_text(render_markdown(points, date=date, environment=environment))
    stem.with_suffix(".json").write_text(json.dumps({"measured_at": now.isoformat(), "code": args.code, "label": args.label, "points": [asdict(p) for p in points]}, indent=2) + "\n")
    try:
        plot(points, stem.with_suffix(".png"))
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'); no plot", file=sys.stderr)
    print(f"wrote {stem}.md/.json/.png")
    return 0 if all(p.exit_code == 0 for p in points) else 1


if __name__ == "__main__":
    raise SystemExit(main())
