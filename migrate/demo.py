"""`migrate demo`: a whole migration on the local stack, as the README's main command.

Brings the stack up (bundled Supabase Storage server + SeaweedFS + a database
on the local PostgreSQL), seeds a store that looks like a real app's, then
runs `plan` -> `run` -> `verify` for the example plans in `plans/`, with the
stack's throwaway keys in the environment exactly as `eval "$(migrate stack
env)"` would set them. Leaves the stack running unless asked to stop it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from migrate.errors import ExitStatus, UserInputError

# Example plans the demo runs, and the destination bucket each gets.
DEMO_PLANS: tuple[tuple[str, str], ...] = (
    ("plans/plugin-registry.yaml", "demo-plugin-registry"),
    ("plans/app-assets.yaml", "demo-app-assets"),
)


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(
    *,
    plans: Sequence[tuple[str, str]] = DEMO_PLANS,
    large_objects: int = 2,
    stop_after: bool = False,
    state_dir: Path = Path(".migrate"),
    reports_dir: Path = Path("reports"),
    verify_mode: str | None = None,
) -> ExitStatus:
    """Run the demo; returns the worst exit status of its stages."""
    from migrate.estimate import human_size
    from migrate.inventory import plan_migration
    from migrate.plan import load_plan
    from migrate.stack import stack
    from migrate.pipeline import run_migration
    from migrate.pipeline import verify_plan
    from migrate.progress import TqdmProgress

    started = time.monotonic()
    _say("== 1. Local stack: Supabase Storage server + SeaweedFS + PostgreSQL")
    up = stack.up(state_dir=state_dir / "stack", seed_data=True, large_objects=large_objects)
    state = up.state
    _say(f"   Supabase Storage: {state.supabase.url}/storage/v1   S3 (SeaweedFS): {state.s3.endpoint_url}")
    if up.seed_line:
        _say(f"   {up.seed_line}")
    environment = stack.environment(state)
    os.environ.update(environment)
    s3 = stack.s3_client(state)
    worst = ExitStatus.OK
    try:
        for plan_path, dest_bucket in plans:
            if not Path(plan_path).exists():
                raise UserInputError(f"{plan_path}: example plan not found; run the demo from the project's top folder")
            os.environ["MIGRATE_DEST_BUCKET"] = dest_bucket
            plan = load_plan(plan_path)
            existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            if dest_bucket not in existing:
                s3.create_bucket(Bucket=dest_bucket)
            _say(f"\n== 2. migrate plan {plan_path}  (dry run; destination s3://{dest_bucket})")
            planned = plan_migration(plan, state_dir=state_dir, reports_dir=reports_dir)
            actions = planned.summary["actions"]
            _say(
                "   "
                + ", ".join(f"{a}: {c['objects']} ({human_size(c['bytes'])})" for a, c in actions.items())
                + f"; estimated {planned.estimate.put_requests} PUT requests"
            )
            _say(f"   manifest: {planned.run_dir.manifest}")
            _say(f"   summary:  {planned.report_dir / 'summary.md'}")
            if not planned.runnable:
                _say(f"   {planned.collisions} collisions: fix the plan first")
                worst = max(worst, ExitStatus.INCOMPLETE)
                continue

            _say(f"\n== 3. migrate run {plan_path}")
            outcome = run_migration(plan, state_dir=state_dir, reports_dir=reports_dir, progress=TqdmProgress())
            result = outcome.result
            rate = result.bytes_copied / result.elapsed / (1024 * 1024) if result.elapsed else 0.0
            _say(
                f"   copied {result.copied} objects ({human_size(result.bytes_copied)}) in {result.elapsed:.1f}s "
                f"({rate:.1f} MiB/s); {result.already_done} already migrated; {len(result.failures)} failed"
            )
            if not result.ok:
                worst = max(worst, ExitStatus.INCOMPLETE)

            _say(f"\n== 4. migrate verify {plan_path}")
            report = verify_plan(plan, mode=verify_mode, state_dir=state_dir, reports_dir=reports_dir, progress=TqdmProgress())
            for line in report.summary_text().splitlines():
                _say(f"   {line}")
            worst = max(worst, report.exit_status)
    finally:
        if stop_after:
            stopped = stack.down(state_dir=state_dir / "stack")
            _say(f"\nStack stopped ({', '.join(stopped) or 'nothing was running'}).")
    _say(f"\nDemo finished in {time.monotonic() - started:.0f}s.")
    if not stop_after:
        _say(
            'The stack is still running: `eval "$(migrate stack env --state-dir .migrate/stack)"` to use it, '
            "`migrate stack down --state-dir .migrate/stack` to stop it."
        )
    return worst


def cmd_demo(args: argparse.Namespace) -> ExitStatus:
    """A demo migration on the local stack: stack up + seed, then plan -> run -> verify."""
    return run_demo(
        large_objects=args.large_objects,
        stop_after=args.stop,
        state_dir=Path(args.state_dir),
        reports_dir=Path(args.reports_dir),
        verify_mode=args.mode,
    )


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser("demo", help="a demo migration on the local stack (plan -> run -> verify)", description=cmd_demo.__doc__)
    parser.add_argument("--large-objects", type=int, default=2, help="seed this many objects over 100 MiB (default 2; 0 for a quick demo)")
    parser.add_argument("--stop", action="store_true", help="stop the local stack when the demo ends (default: leave it running)")
    parser.add_argument("--mode", choices=("quick", "fast", "deep"), help="verify mode (default: each plan's verify.mode)")
    parser.add_argument("--state-dir", default=".migrate", help="where run directories and the stack's state live (default .migrate)")
    parser.add_argument("--reports-dir", default="reports", help="where reports are written (default reports/)")
    parser.set_defaults(func=cmd_demo)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(int(run_demo()))
