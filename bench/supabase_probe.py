"""Where a Supabase-source migration spends its requests and CPU (issue 12, dataset S).

    python -m bench.supabase_probe --count 8000 --rounds 3 [--rclone] [--catalog] [--py-spy DIR]

Seeds dataset S (bench/supabase_seed.py) into a database of its own
(wt_supa_probe_*), starts SeaweedFS and the bundled Supabase server with its
access log on, then per round runs `migrate plan` + `migrate run` (REST
inventory; with --catalog also with the plan's `database_url`) and, with
--rclone, `rclone copy` tuned through the server's S3 endpoint, each into a
fresh destination bucket. For every step it prints wall time, the child's CPU
(user+sys), the server's CPU and the requests the server answered, per route,
divided by the object count. Everything it started is stopped by PID, the
database dropped and the directories removed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.contenders import RCLONE_TUNED_FLAGS, SUPABASE_PLAN
from bench.datasets import KiB, DatasetSpec
from bench.supabase_seed import seed_supabase

PG_ADMIN_URL = os.environ.get("MIGRATE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# "127.0.0.1 - [date] "GET /storage/v1/object/... HTTP/1.1" 200 123"
_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/1\.[01]" (?P<status>\d{3})')


def route_of(method: str, path: str) -> str:
    """A request's route, without bucket and key."""
    path = path.split("?", 1)[0]
    rest = path[len("/storage/v1") :]
    if rest.startswith("/s3"):
        parts = rest[len("/s3/") :].split("/", 1)
        return f"S3 {method} {'object' if len(parts) > 1 and parts[1] else 'bucket'}"
    for prefix in ("/object/info/", "/object/authenticated/", "/object/list-v2/", "/object/list/", "/bucket/", "/object/"):
        if rest.startswith(prefix):
            return f"REST {method} {prefix}"
    return f"REST {method} {rest}"


def count_requests(log_path: Path, start: int) -> tuple[collections.Counter[str], int]:
    """Routes of the access log lines after byte `start`, and the new end."""
    counts: collections.Counter[str] = collections.Counter()
    with open(log_path, "rb") as log:
        log.seek(start)
        data = log.read()
    for line in data.decode("utf-8", "replace").splitlines():
        match = _ACCESS.search(line)
        if match:
            counts[route_of(match["method"], match["path"])] += 1
    return counts, start + len(data)


def process_cpu(pid: int) -> float:
    """user+sys seconds of a running process (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_child(argv: list[str], *, env: dict[str, str], log: Path, cwd: Path) -> dict[str, float]:
    """Run a child to completion: wall, its user+sys CPU, exit code."""
    started = time.perf_counter()
    with open(log, "ab") as out:
        child = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "exit": os.waitstatus_to_exitcode(status)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rclone", action="store_true", help="also rclone copy (tuned) through the S3 endpoint")
    parser.add_argument("--catalog", action="store_true", help="also plan with the catalog (database_url)")
    parser.add_argument("--no-rest", action="store_true", help="skip the REST-inventory migrate run")
    parser.add_argument("--py-spy", type=Path, help="record the migrate children with py-spy into this directory")
    parser.add_argument("--server-py-spy", type=Path, help="record the server during the first migrate run (SVG)")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--code", action="append", default=[], metavar="LABEL=DIR",
                        help="run the migrate steps with the package from DIR (repeatable: A/B side by side; default: this checkout)")
    args = parser.parse_args()

    from migrate.stack.seaweed import launch as launch_seaweed
    from migrate.stack.supabase_server import ensure_schema, launch

    python = Path(sys.executable)
    repo = Path(__file__).resolve().parents[1]
    work = Path(tempfile.mkdtemp(prefix="wt-supa-probe-", dir=os.environ.get("TMPDIR", "/tmp")))
    db_name = f"wt_supa_probe_{secrets.token_hex(4)}"
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    database_url = f"{base}/{db_name}"
    spec = DatasetSpec("S", "probe", args.count, 1 * KiB, 64 * KiB, "image/png")
    bucket = "bench-s"
    seaweed = server = None
    results: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    try:
        ensure_schema(database_url)
        seeded = seed_supabase(database_url, work / "supabase", bucket, spec, seed=args.seed)
        print(f"seeded {len(seeded.expected)} objects in {seeded.seconds:.1f}s", flush=True)
        access, secret = "probe", secrets.token_hex(16)
        seaweed = launch_seaweed(data_dir=work / "seaweed", access_key=access, secret_key=secret, log_path=work / "seaweed.log")
        server_log = work / "supabase.log"
        server = launch(database_url=database_url, data_dir=work / "supabase", jwt_secret=secrets.token_hex(32), log_path=server_log, access_log=True)
        admin = seaweed.client()
        home = work / "home"
        home.mkdir()
        env_base = {
            "PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(repo),
            "AWS_CONFIG_FILE": str(home / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
            "RCLONE_CONFIG": str(home / "none.conf"),
        }
        catalog_plan = work / "supabase-catalog.yaml"
        catalog_plan.write_text(
            SUPABASE_PLAN.read_text().replace("  key: ${SUPABASE_SECRET_KEY}\n", "  key: ${SUPABASE_SECRET_KEY}\n  database_url: ${SUPABASE_DB_URL}\n")
        )
        codes = [tuple(item.split("=", 1)) for item in args.code] or [("", str(repo))]
        variants = []
        for label, code in codes:
            tag = f"{label}:" if label else ""
            variants += ([] if args.no_rest else [(f"{tag}migrate-rest", SUPABASE_PLAN, code)])
            variants += ([(f"{tag}migrate-catalog", catalog_plan, code)] if args.catalog else [])
        log_pos = server_log.stat().st_size
        for round_no in range(args.rounds):
            for name, plan, code in variants + ([("rclone-tuned", None, str(repo))] if args.rclone else []):
                dest = f"dst-{name.replace(':', '-')}-{round_no}-{secrets.token_hex(2)}"
                admin.create_bucket(Bucket=dest)
                run_dir = work / "runs" / dest
                run_dir.mkdir(parents=True)
                log = run_dir / "child.log"
                steps: list[tuple[str, list[str], dict[str, str]]]
                if plan is None:
                    env = dict(env_base)
                    for remote, (url, key_id, key, provider, region) in {
                        "SRC": (server.s3_endpoint, server.s3_access_key_id, server.s3_secret_access_key, "Other", server.s3_region),
                        "DST": (seaweed.endpoint_url, access, secret, "SeaweedFS", "us-east-1"),
                    }.items():
                        env.update({
                            f"RCLONE_CONFIG_{remote}_TYPE": "s3", f"RCLONE_CONFIG_{remote}_PROVIDER": provider,
                            f"RCLONE_CONFIG_{remote}_ENDPOINT": url, f"RCLONE_CONFIG_{remote}_REGION": region,
                            f"RCLONE_CONFIG_{remote}_ACCESS_KEY_ID": key_id, f"RCLONE_CONFIG_{remote}_SECRET_ACCESS_KEY": key,
                            f"RCLONE_CONFIG_{remote}_FORCE_PATH_STYLE": "true",
                        })
                    argv = [str(python.parent / "rclone"), "copy", "--disable", "Copy", *RCLONE_TUNED_FLAGS, "--metadata", f"src:{bucket}", f"dst:{dest}"]
                    steps = [("copy", argv, env)]
                else:
                    env = {
                        **env_base,
                        "BENCH_S3_ENDPOINT": seaweed.endpoint_url, "BENCH_S3_ACCESS_KEY": access, "BENCH_S3_SECRET_KEY": secret,
                        "BENCH_SOURCE_BUCKET": bucket, "BENCH_DEST_BUCKET": dest, "BENCH_ON_CONFLICT": "skip",
                        "SUPABASE_URL": server.url, "SUPABASE_SECRET_KEY": server.secret_key, "SUPABASE_DB_URL": database_url,
                        "PYTHONPATH": code,
                    }
                    common = [str(plan), "--state-dir", str(run_dir / "state"), "--reports-dir", str(run_dir / "reports")]
                    workers = ["--workers", str(args.workers)] if args.workers else []
                    steps = [
                        ("plan", [str(python.parent / "migrate"), "plan", *common], env),
                        ("run", [str(python.parent / "migrate"), "run", *common, "--no-progress", *workers], env),
                    ]
                for step, argv, env in steps:
                    if args.py_spy and plan is not None:
                        args.py_spy.mkdir(parents=True, exist_ok=True)
                        argv = [str(python.parent / "py-spy"), "record", "--nonblocking", "-r", "50", "-f", "raw",
                                "-o", str(args.py_spy / f"{name}-{step}-{round_no}.txt"), "--", *argv]
                    spy = None
                    if args.server_py_spy and round_no == 0 and step == "run" and name.endswith("migrate-rest"):
                        args.server_py_spy.mkdir(parents=True, exist_ok=True)
                        spy = subprocess.Popen([str(python.parent / "py-spy"), "record", "--nonblocking", "-r", "50", "-p", str(server.process.pid),
                                                "-o", str(args.server_py_spy / "server-run.svg")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    server_before = process_cpu(server.process.pid)
                    measured = run_child(argv, env=env, log=log, cwd=run_dir)
                    if spy is not None:
                        spy.send_signal(2)
                        spy.wait(timeout=60)
                    server_cpu = process_cpu(server.process.pid) - server_before
                    time.sleep(0.3)  # the access log's last lines
                    counts, log_pos = count_requests(server_log, log_pos)
                    total = sum(counts.values())
                    entry = {"step": step, **measured, "server_cpu": server_cpu, "requests": total, "routes": dict(counts)}
                    results[f"{name} {step}"].append(entry)
                    per_obj = {route: round(n / args.count, 3) for route, n in sorted(counts.items())}
                    print(
                        f"round {round_no} {name:15s} {step:5s} exit {measured['exit']} wall {measured['wall']:6.1f}s "
                        f"cpu {measured['cpu']:6.2f}s ({1000 * measured['cpu'] / args.count:.2f} ms/obj) "
                        f"server cpu {server_cpu:6.2f}s ({1000 * server_cpu / args.count:.2f} ms/obj) "
                        f"requests {total} ({total / args.count:.2f}/obj) {json.dumps(per_obj)}",
                        flush=True,
                    )
                    if measured["exit"] != 0:
                        print(log.read_text()[-3000:])
        print("medians:")
        for label, entries in results.items():
            med = {k: statistics.median(e[k] for e in entries) for k in ("wall", "cpu", "server_cpu", "requests")}
            print(f"  {label:22s} wall {med['wall']:6.1f}s cpu {med['cpu']:6.2f}s server {med['server_cpu']:6.2f}s requests/obj {med['requests'] / args.count:.2f}  (n={len(entries)})")
    finally:
        if server is not None:
            server.stop()
        if seaweed is not None:
            seaweed.stop()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
