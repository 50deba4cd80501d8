"""How long loading a plan takes: every example plan in plans/, cold and warm.

    python -m bench.plan_load              # 20 warm loads per plan
    python -m bench.plan_load --loads 100

Issue 13's goal is under 50 ms per example plan. Two figures per plan:
- cold: a fresh interpreter importing `migrate.plan` and loading the file
  once, measured inside that child (interpreter start-up left out), which is
  what one `migrate plan` pays;
- warm: the median of `--loads` further loads in one process (the library
  API loading plans again and again).
The `${VAR}`s the example plans reference are given placeholder values here;
nothing connects anywhere (loading never does).

Writes bench/results/<UTC date>-plan-load.md. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
GOAL_MS = 50.0
# What the example plans reference; placeholders only (a key shaped like a real one would be refused as literal).
ENVIRONMENT = {
    "SUPABASE_URL": "https://abcdefghijklmnop.supabase.co",
    "SUPABASE_SECRET_KEY": "placeholder-secret",
    "SUPABASE_S3_ENDPOINT": "https://abcdefghijklmnop.supabase.co/storage/v1/s3",
    "SUPABASE_S3_ACCESS_KEY_ID": "placeholder-id",
    "SUPABASE_S3_SECRET_ACCESS_KEY": "placeholder-secret",
    "MIGRATE_DEST_BUCKET": "bench-plan-load",
}
_CHILD = """
import json, sys, time
started = time.perf_counter()
from migrate.plan import load_plan
imported = time.perf_counter()
load_plan(sys.argv[1])
loaded = time.perf_counter()
print(json.dumps({"import_ms": (imported - started) * 1000, "load_ms": (loaded - imported) * 1000}))
"""


def measure(path: Path, loads: int) -> dict[str, float]:
    """Cold (fresh interpreter: import, first load) and warm (median of `loads`) milliseconds for one plan."""
    env = {**os.environ, **ENVIRONMENT, "PYDANTIC_DISABLE_PLUGINS": "__all__"}  # as the CLI runs
    child = subprocess.run([sys.executable, "-c", _CHILD, str(path)], env=env, capture_output=True, text=True, check=True, cwd=REPO)
    cold = json.loads(child.stdout)
    os.environ.update(ENVIRONMENT)
    from migrate.plan import load_plan

    load_plan(path)
    times = []
    for _ in range(loads):
        started = time.perf_counter()
        load_plan(path)
        times.append((time.perf_counter() - started) * 1000)
    return {"import_ms": cold["import_ms"], "cold_ms": cold["load_ms"], "warm_ms": statistics.median(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plan_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, default=20, help="warm loads per plan (default 20)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the .md goes (default bench/results)")
    args = parser.parse_args(argv)
    rows = [(path.name, measure(path, args.loads)) for path in sorted((REPO / "plans").glob("*.yaml"))]
    lines = [
        f"# Plan loading ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, python -m bench.plan_load --loads {args.loads})",
        "",
        f"Goal: under {GOAL_MS:.0f} ms per example plan (cold: first load in a fresh interpreter, import of migrate.plan not counted).",
        "",
        "| plan | import migrate.plan | cold load | warm load (median) | goal |",
        "|---|---|---|---|---|",
    ]
    for name, figures in rows:
        verdict = "met" if figures["cold_ms"] < GOAL_MS else "missed"
        lines.append(f"| {name} | {figures['import_ms']:.0f} ms | {figures['cold_ms']:.1f} ms | {figures['warm_ms']:.1f} ms | {verdict} |")
    report = "\n".join(lines) + "\n"
    print(report, end="")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{datetime.now(timezone.utc):%Y-%m-%d}-plan-load.md").write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
