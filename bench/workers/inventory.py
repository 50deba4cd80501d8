"""Child: list one Supabase bucket the way a plan would, and count what came back.

    python -m bench.workers.inventory --method catalog|rest|rest-metadata --bucket B --result R.json

- `catalog`: `CatalogStore.iter_objects` (PostgreSQL `storage.objects`).
- `rest`: `SupabaseStore.iter_objects` with `fetch_user_metadata=False` (list-v2 pages only).
- `rest-metadata`: the same with `fetch_user_metadata=True` (one `/object/info` per object).

Pages are consumed as they come (counted, never kept), as a plan streams
them into its manifest. The server URL, key and database URL come from the
environment (BENCH_SUPABASE_URL, BENCH_SUPABASE_KEY, BENCH_DATABASE_URL).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=("catalog", "rest", "rest-metadata"), required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)

    from migrate.stores.catalog import CatalogStore
    from migrate.stores.supabase import SupabaseStore

    rest = SupabaseStore(
        os.environ["BENCH_SUPABASE_URL"], os.environ["BENCH_SUPABASE_KEY"], fetch_user_metadata=args.method == "rest-metadata"
    )
    store = CatalogStore(os.environ["BENCH_DATABASE_URL"], rest) if args.method == "catalog" else rest
    started, cpu_started = time.perf_counter(), _cpu()
    objects = total = with_metadata = 0
    for page in store.iter_objects(args.bucket):
        objects += len(page)
        total += sum(info.size for info in page)
        with_metadata += sum(1 for info in page if info.user_metadata)
    listed, cpu_listed = time.perf_counter(), _cpu()
    store.close()
    args.result.write_text(
        json.dumps(
            {
                "objects": objects,
                "bytes": total,
                "with_user_metadata": with_metadata,
                "list_seconds": listed - started,
                "list_cpu": cpu_listed - cpu_started,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
