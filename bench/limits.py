"""How close does `migrate run` get to its rate limits? `python -m bench.limits`

Starts its own SeaweedFS on 127.0.0.1 (stopped by PID afterwards), copies a
dataset S3 -> S3 with `transfer.max_bandwidth` and then with
`transfer.max_requests_per_second`, and prints the achieved rate as a share
of the limit (1.00 = exactly at the limit; the limit is a ceiling, so the
share should be just under 1).
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
import uuid
from pathlib import Path

from migrate.journal import TransferJournal
from migrate.records import ObjectRecord
from migrate.stack.seaweed import launch
from migrate.stores.s3 import S3Location, S3Store
from migrate.checksums import MiB
from migrate.transfer import TransferOptions, transfer_objects


def _copy(store: S3Store, client: object, records: list[ObjectRecord], work: Path, **limits: float) -> float:
    options = TransferOptions(concurrency=8, part_size=5 * MiB, multipart_threshold=8 * MiB, on_conflict="overwrite", **limits)  # type: ignore[arg-type]
    with TransferJournal(work / f"journal-{uuid.uuid4().hex[:6]}.sqlite") as journal:
        started = time.monotonic()
        result = transfer_objects(records, source=store, destination=store, journal=journal, options=options)
        elapsed = time.monotonic() - started
    assert result.ok, result.failures
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.limits", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bandwidth-mib", type=float, default=4.0, help="max_bandwidth in MiB/s (default 4)")
    parser.add_argument("--megabytes", type=int, default=24, help="bytes to copy for the bandwidth run, in MiB (default 24)")
    parser.add_argument("--rps", type=float, default=50.0, help="max_requests_per_second (default 50)")
    parser.add_argument("--objects", type=int, default=200, help="small objects for the request-rate run (default 200)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="migrate-bench-limits-") as tmp:
        work = Path(tmp)
        server = launch(data_dir=work / "seaweed", access_key=f"AKBENCH{secrets.token_hex(6).upper()}", secret_key=secrets.token_urlsafe(30))
        try:
            client = server.client()
            store = S3Store(S3Location(endpoint_url=server.endpoint_url, region=server.region, access_key_id=server.access_key, secret_access_key=server.secret_key))
            source, dest = f"lim-src-{uuid.uuid4().hex[:6]}", f"lim-dst-{uuid.uuid4().hex[:6]}"
            client.create_bucket(Bucket=source)
            client.create_bucket(Bucket=dest)
            big = []
            for n in range(max(1, args.megabytes // 4)):
                client.put_object(Bucket=source, Key=f"big/{n}", Body=secrets.token_bytes(4 * MiB))
                big.append(ObjectRecord(source_bucket=source, source_key=f"big/{n}", size=4 * MiB, dest_bucket=dest, dest_key=f"big/{n}"))
            small = []
            for n in range(args.objects):
                client.put_object(Bucket=source, Key=f"small/{n}", Body=b"x" * 100)
                small.append(ObjectRecord(source_bucket=source, source_key=f"small/{n}", size=100, dest_bucket=dest, dest_key=f"small/{n}"))
            limit = args.bandwidth_mib * MiB
            elapsed = _copy(store, client, big, work, max_bandwidth=int(limit))
            moved = sum(r.size for r in big)
            print(f"max_bandwidth {args.bandwidth_mib:g} MiB/s: {moved / MiB:.0f} MiB in {elapsed:.2f}s = {moved / elapsed / MiB:.2f} MiB/s, {moved / elapsed / limit:.2f} of the limit")
            elapsed = _copy(store, client, small, work, max_requests_per_second=args.rps)
            requests = 2 * len(small)  # one GET and one PUT per small object
            print(f"max_requests_per_second {args.rps:g}: {requests} requests in {elapsed:.2f}s = {requests / elapsed:.1f}/s, {requests / elapsed / args.rps:.2f} of the limit")
            store.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
