"""Child: `migrate`'s verify stage over a finished run, through `migrate.verify.verify_records`.

    python -m bench.workers.migrate_verify --plan P.yaml --state-dir S --mode fast|deep --result R.json

Reads the run directory `migrate plan`/`migrate run` left (manifest and
journal) exactly as a `migrate verify` command would, and audits every
`copy` record with the plan's verify concurrency. The plan's environment
(BENCH_*) is set by the harness. Used until the CLI has a `verify` command.

Writes a JSON result: rows by status, and the audit's own wall and CPU time.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections import Counter
from pathlib import Path


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--mode", choices=("fast", "deep"), required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)

    from migrate.inventory import copy_records, load_manifest
    from migrate.journal import TransferJournal
    from migrate.plan import load_plan
    from migrate.rundir import RunDirectory
    from migrate.stores.factory import open_destination, open_source
    from migrate.verify import VerifyOptions, verify_records

    plan = load_plan(args.plan)
    run_dir = RunDirectory.for_plan(plan.name, state_dir=args.state_dir)
    records = list(copy_records(load_manifest(run_dir)))
    options = VerifyOptions(mode=args.mode, concurrency=plan.verify.concurrency)
    source = open_source(plan, concurrency=options.concurrency)
    destination = open_destination(plan, concurrency=options.concurrency)
    started, cpu_started = time.perf_counter(), _cpu()
    with TransferJournal(run_dir.journal, readonly=True) as journal:
        frame = verify_records(records, source=source, destination=destination, journal=journal, options=options)
    done, cpu_done = time.perf_counter(), _cpu()
    source.close()
    destination.close()
    statuses = Counter(frame["status"].to_list()) if "status" in frame.columns else Counter()
    bases = Counter(frame["checksum_basis"].to_list()) if "checksum_basis" in frame.columns else Counter()
    args.result.write_text(
        json.dumps(
            {
                "records": len(records),
                "rows": frame.height,
                "statuses": dict(statuses),
                "checksum_basis": {str(k): v for k, v in bases.items()},
                "verify_seconds": done - started,
                "verify_cpu": cpu_done - cpu_started,
            }
        )
    )
    return 0 if set(statuses) == {"match"} and frame.height == len(records) else 1


if __name__ == "__main__":
    sys.exit(main())
