"""Stages on the bundled Supabase Storage server: dataset S (copies from a Supabase source) and C (inventory).

Both seed the server's on-disk layout straight (bench/supabase_seed.py) into
a database of their own (migrate_bench_*), start the server on it
(`migrate.stack.supabase_server.launch`), measure, then stop it and drop the
database.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from bench.contenders import CONTENDERS, Endpoint, SupabaseSource
from bench.datasets import DatasetSpec, MiB
from bench.environment import process_cpu_seconds
from bench.measure import log_tail, run_measured
from bench.report import RunRecord
from bench.session import Session, log, run_alone_record, timed_copy

PG_ADMIN_URL = os.environ.get("MIGRATE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


#: What reads dataset S: `migrate` over REST, rclone and s5cmd through the server's S3 endpoint.
SUPABASE_CONTENDERS = ("migrate", "rclone-default", "rclone-tuned", "s5cmd")


@dataclass
class SeededServer:
    """A running Supabase server on a seeded database: what a stage measures against."""

    server: Any
    database_url: str
    bucket: str
    total_bytes: int


def supabase_available() -> bool:
    try:
        from migrate.stack.supabase_server import launch  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def seeded_supabase(session: Session, spec: DatasetSpec) -> Iterator[SeededServer]:
    """Create a migrate_bench_* database, seed `spec` into it and a data directory, start the server; undo it all after."""
    from migrate.stack.supabase_server import ensure_schema, launch

    from bench.supabase_seed import create_database, drop_database, seed_supabase

    name = spec.name.lower()
    bucket = f"bench-{name}"
    db_name = f"migrate_bench_{name}_{secrets.token_hex(4)}"
    data_dir = session.ctx.work_dir / f"supabase-{name}"
    database_url = create_database(PG_ADMIN_URL, db_name)
    server = None
    try:
        ensure_schema(database_url)
        log(f"seeding dataset {spec.name}: {spec.count:,} objects straight into {db_name} storage.objects + {data_dir}")
        seeded = seed_supabase(database_url, data_dir, bucket, spec, seed=session.args.seed)
        session.expected[spec.name] = seeded.expected
        session.expected_metadata[spec.name] = seeded.user_metadata
        total = sum(item.size for item in seeded.expected.values())
        session.seeding.append(
            [
                spec.name,
                f"Supabase server layout (files {seeded.files_seconds:.1f}s + COPY rows {seeded.rows_seconds:.1f}s)",
                f"{len(seeded.expected):,}",
                f"{total / MiB:,.1f}",
                f"{seeded.seconds:.1f}",
            ]
        )
        log(f"seeded {spec.name} in {seeded.seconds:.1f}s")
        server = launch(
            database_url=database_url, data_dir=data_dir, jwt_secret=secrets.token_hex(32), log_path=session.ctx.work_dir / f"supabase-{name}.log"
        )
        yield SeededServer(server=server, database_url=database_url, bucket=bucket, total_bytes=total)
    finally:
        if server is not None:
            server.stop()
        drop_database(PG_ADMIN_URL, db_name)
        shutil.rmtree(data_dir, ignore_errors=True)


# -- S: copies from a Supabase source ------------------------------------------
def bench_supabase_copies(session: Session) -> None:
    """Dataset S: `migrate plan` + `migrate run` over REST vs rclone and s5cmd over the server's S3 endpoint, alternating."""
    if not supabase_available():
        session.notes.append("Dataset S skipped: `migrate.stack.supabase_server.launch` is not importable.")
        return
    spec = session.specs["S"]
    contenders = [name for name in session.args.contenders if name in SUPABASE_CONTENDERS]
    with seeded_supabase(session, spec) as seeded:
        server = seeded.server
        source = SupabaseSource(
            url=server.url,
            secret_key=server.secret_key,
            s3=Endpoint(
                url=server.s3_endpoint,
                access_key=server.s3_access_key_id,
                secret_key=server.s3_secret_access_key,
                region=server.s3_region,
                provider="Other",
            ),
        )
        session.server_pids.append(server.process.pid)
        try:
            for round_no in range(session.rounds):
                for name in contenders:
                    record = timed_copy(
                        session, spec, contender=name, run=CONTENDERS[name].run, source=seeded.bucket, round_no=round_no, supabase=source
                    )
                    session.runs.append(record)
                    derived = run_alone_record(record)
                    if derived is not None:
                        session.runs.append(derived)
        finally:
            session.server_pids.remove(server.process.pid)


# -- C: inventory ----------------------------------------------------------------
def bench_inventory(session: Session) -> None:
    """Dataset C: catalog vs REST listing (with and without user metadata), in a child each, alternating."""
    if not supabase_available():
        session.notes.append("Inventory of C skipped: `migrate.stack.supabase_server.launch` is not importable yet.")
        return
    spec = session.specs["C"]
    with seeded_supabase(session, spec) as seeded:
        server, total = seeded.server, seeded.total_bytes
        env = {
            **session.ctx.base_env(),
            "BENCH_SUPABASE_URL": server.url,
            "BENCH_SUPABASE_KEY": server.service_key,
            "BENCH_DATABASE_URL": seeded.database_url,
        }
        methods = ["catalog", "rest"] + ([] if session.args.skip_rest_metadata else ["rest-metadata"])
        for round_no in range(session.rounds):
            for method in methods:
                run_dir = session.ctx.work_dir / "runs" / f"inventory-{method}-{round_no}"
                run_dir.mkdir(parents=True, exist_ok=True)
                result_path = run_dir / "inventory.json"
                argv = [
                    str(session.ctx.tools.python), "-m", "bench.workers.inventory",
                    "--method", method, "--bucket", seeded.bucket, "--result", str(result_path),
                ]
                stamp = session.stamp()
                server_before = process_cpu_seconds(server.process.pid)
                measurement = run_measured(argv, env=env, log_path=run_dir / "child.log", timeout=session.ctx.timeout, cwd=run_dir)
                server_after = process_cpu_seconds(server.process.pid)
                figures = json.loads(result_path.read_text()) if result_path.is_file() else {}
                valid = (
                    measurement.exit_code == 0
                    and figures.get("objects") == spec.count
                    and figures.get("bytes") == total
                    and (method == "rest" or figures.get("with_user_metadata") == spec.count)
                )
                note = (
                    f"{figures.get('objects')} objects, {figures.get('bytes')} bytes, {figures.get('with_user_metadata')} with user metadata"
                    if figures
                    else f"exit {measurement.exit_code}: {log_tail(run_dir / 'child.log', lines=2)}"
                )
                record = RunRecord(
                    dataset="C",
                    contender=method,
                    round=round_no,
                    objects=spec.count,
                    bytes=total,
                    measurement=measurement,
                    valid=valid,
                    check=("ok: " if valid else "WRONG: ") + note,
                    server_cpu=(server_after - server_before) if server_before is not None and server_after is not None else None,
                    engine=figures or None,
                    **stamp,
                )
                session.inventory_runs.append(record)
                log(f"inventory C round {round_no + 1} {method}: {measurement.wall:.2f}s, RSS {record.rss_mib:.0f} MiB -- {record.check}")
                if valid and not session.args.keep_work:
                    shutil.rmtree(run_dir, ignore_errors=True)
