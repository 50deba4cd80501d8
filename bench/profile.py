"""Where `migrate`'s client CPU goes per object: py-spy over one copy of dataset A.

py-spy (not a project dependency: `pip install py-spy` into the venv for a
one-off) samples the thread holding the GIL `RATE` times a second and
writes collapsed stacks. Each stack is put in
one bucket by its innermost recognisable frame (signing inside botocore is
"signing" even though it was called from `put_object`), and the share of
samples becomes CPU milliseconds per object.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bench.measure import run_measured
from bench.report import table

if TYPE_CHECKING:
    from bench.session import Session

RATE = 250

# (bucket, pattern on "function (file:line)"), tried innermost frame first.
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    ("import / interpreter start-up", re.compile(r"<frozen importlib|_find_and_load|_call_with_frames_removed")),
    ("botocore: SigV4 signing (incl. payload SHA-256 over plain HTTP)", re.compile(r"botocore/auth\.py|botocore/signers\.py")),
    ("botocore: response parsing", re.compile(r"botocore/parsers\.py")),
    ("botocore: request serialisation + validation", re.compile(r"botocore/(serialize|validate)\.py")),
    ("botocore: checksums (httpchecksum)", re.compile(r"botocore/httpchecksum\.py")),
    ("HTTP + socket I/O (urllib3, http.client, botocore httpsession)", re.compile(r"urllib3/|http/client\.py|socket\.py|ssl\.py|botocore/httpsession\.py|botocore/awsrequest\.py|botocore/response\.py")),
    ("botocore: events, endpoint rules, client plumbing", re.compile(r"botocore/")),
    ("boto3", re.compile(r"boto3/")),
    ("migrate: MD5 + SHA-256 while streaming (Digests.update)", re.compile(r"update \(migrate/checksums\.py")),
    ("migrate: journal (SQLite)", re.compile(r"migrate/journal\.py|sqlite3")),
    ("migrate: retry wrapper (tenacity)", re.compile(r"tenacity/|migrate/retry\.py")),
    ("migrate: manifest read (polars)", re.compile(r"polars/|migrate/records\.py")),
    ("migrate: engine (scheduling, buffers, stores)", re.compile(r"migrate/")),
    ("thread pool, locks, queues", re.compile(r"concurrent/futures|threading\.py|queue\.py")),
]
INCLUSIVE: list[tuple[str, re.Pattern[str]]] = [
    ("any botocore/boto3 frame", re.compile(r"botocore/|boto3/")),
    ("botocore signing (auth.py)", re.compile(r"botocore/auth\.py")),
    ("botocore payload hash for the signature (auth.py payload)", re.compile(r"payload \(botocore/auth\.py")),
    ("Digests.update (migrate's MD5 + SHA-256)", re.compile(r"update \(migrate/checksums\.py")),
    ("journal (migrate/journal.py)", re.compile(r"migrate/journal\.py")),
    ("S3Store.put_object (whole PUT incl. botocore)", re.compile(r"put_object \(migrate/stores/s3\.py")),
    ("S3Store.open + reading the GET body", re.compile(r"(open|chunks) \(migrate/stores/s3\.py")),
    ("record_fingerprint", re.compile(r"record_fingerprint")),
]


def categorise(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
    return "other"


def parse_collapsed(path: Path) -> list[tuple[list[str], int]]:
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        frames, _, count = line.rpartition(" ")
        try:
            stacks.append((frames.split(";"), int(count)))
        except ValueError:
            continue
    return stacks


def summarise(stacks: list[tuple[list[str], int]], *, objects: int, rate: int) -> tuple[list[list[str]], list[list[str]], int]:
    total = sum(count for _, count in stacks)
    by_category: Counter[str] = Counter()
    for frames, count in stacks:
        by_category[categorise(frames)] += count
    rows = [
        [name, f"{100 * count / total:.1f}%", f"{1000 * count / rate / objects:.3f}"]
        for name, count in by_category.most_common()
    ]
    inclusive_rows = []
    for name, pattern in INCLUSIVE:
        count = sum(c for frames, c in stacks if any(pattern.search(f) for f in frames))
        inclusive_rows.append([name, f"{100 * count / total:.1f}%", f"{1000 * count / rate / objects:.3f}"])
    return rows, inclusive_rows, total


def top_functions(stacks: list[tuple[list[str], int]], limit: int = 15) -> list[list[str]]:
    total = sum(count for _, count in stacks)
    leaves: Counter[str] = Counter()
    for frames, count in stacks:
        leaves[frames[-1]] += count
    return [[f"`{name}`", f"{100 * count / total:.1f}%"] for name, count in leaves.most_common(limit)]


def profile_migrate(session: "Session", repo: Path, results: Path, started: datetime) -> str:
    """`migrate plan`, then `migrate run` on dataset A under py-spy; returns the report section and writes the raw profile."""
    py_spy = session.ctx.tools.python.parent / "py-spy"
    if not py_spy.is_file():
        found = shutil.which("py-spy")
        if not found:
            return "## Profile\n\nSkipped: py-spy is not installed (`.venv/bin/pip install py-spy` for a one-off; it is not a project dependency)."
        py_spy = Path(found)
    from bench.contenders import CopyJob, migrate_argv, migrate_env
    from bench.datasets import empty_and_delete_bucket

    spec = session.specs["A"]
    dest = "dst-a-profile"
    session.admin.create_bucket(Bucket=dest)
    run_dir = session.ctx.work_dir / "runs" / "profile-a"
    run_dir.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    raw = results / f"{started:%Y-%m-%d}-profile-A{'-quick' if session.args.quick else ''}.collapsed.txt"
    job = CopyJob(dataset="A", source_bucket="src-a", dest_bucket=dest, run_dir=run_dir)
    env = migrate_env(session.ctx, job)
    log_path = run_dir / "child.log"
    run_measured(migrate_argv(session.ctx, job, "plan"), env=env, log_path=log_path, timeout=session.ctx.timeout, cwd=run_dir)
    # --gil: only the thread holding the GIL is sampled, so the samples are the
    # Python-level CPU the engine spends (threads waiting on sockets or on the
    # GIL are not counted; C code that releases the GIL, like hashing large
    # buffers, is not either).
    argv = [str(py_spy), "record", "--gil", "--format", "raw", "--rate", str(RATE), "--output", str(raw), "--"]
    argv += migrate_argv(session.ctx, job, "run", "--no-progress")
    measurement = run_measured(argv, env=env, log_path=log_path, timeout=session.ctx.timeout, cwd=run_dir)
    empty_and_delete_bucket(session.admin, dest)
    if measurement.exit_code != 0 or not raw.is_file():
        tail = log_path.read_text(errors="replace")[-400:] if log_path.is_file() else ""
        return f"## Profile\n\npy-spy failed (exit {measurement.exit_code}): `{tail.strip()}`"
    stacks = parse_collapsed(raw)
    rows, inclusive, samples = summarise(stacks, objects=spec.count, rate=RATE)
    return (
        f"## Profile: `migrate run` on dataset A (py-spy --gil, {RATE} Hz)\n\n"
        f"{samples:,} samples ≈ {samples / RATE:.1f} s with the GIL held, over {spec.count:,} objects "
        f"(py-spy and `migrate run` together used {measurement.cpu:.1f} s of CPU in {measurement.wall:.1f} s). "
        f"Raw collapsed stacks: `{raw.relative_to(repo) if raw.is_relative_to(repo) else raw}`. "
        "Caveat: py-spy credits each sample to the thread that last held the GIL, so code that runs just before a "
        "blocking call (the journal's SQLite writes, the scheduler) is over-counted; bench/ablate.py measures what a part "
        "costs by switching it off.\n\n"
        "By innermost recognisable frame (exclusive):\n\n"
        + table(["where", "share of samples", "≈ GIL-held ms / object"], rows)
        + "\n\nInclusive (a stack counts for every pattern it contains):\n\n"
        + table(["frames on the stack", "share of samples", "≈ GIL-held ms / object"], inclusive)
        + "\n\nHottest leaf functions:\n\n"
        + table(["function", "share"], top_functions(stacks))
    )
