"""Run the bundled Supabase Storage server in the foreground.

    MIGRATE_SUPABASE_JWT_SECRET=... python -m migrate.stack.supabase_server \\
        --database-url postgresql://postgres@127.0.0.1:5432/db --data-dir ./data --port 54321

The JWT secret (and, if it holds a password, the database URL) come from the
environment so they do not show in `ps`. Fault rules: `--faults '<json>'`,
`--faults @rules.json` or MIGRATE_SUPABASE_FAULTS.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from migrate.stack.process import LOOPBACK
from migrate.stack.supabase_server import DATABASE_URL_ENV, FAULTS_ENV, JWT_SECRET_ENV
from migrate.stack.supabase_server.app import DEFAULT_FILE_SIZE_LIMIT, build_server
from migrate.stack.supabase_server.catalog import ensure_schema
from migrate.stack.supabase_server.faults import InvalidFaultRule, parse_rules
from migrate.stack.supabase_server.keys import DEFAULT_S3_REGION


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m migrate.stack.supabase_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get(DATABASE_URL_ENV),
                        help=f"PostgreSQL URL (default: ${DATABASE_URL_ENV})")
    parser.add_argument("--data-dir", type=Path, required=True, help="where object bytes are kept")
    parser.add_argument("--port", type=int, default=54321)
    parser.add_argument("--faults", default=os.environ.get(FAULTS_ENV),
                        help=f"fault rules as JSON or @file (default: ${FAULTS_ENV})")
    parser.add_argument("--file-size-limit", type=int, default=DEFAULT_FILE_SIZE_LIMIT,
                        help="global upload limit in bytes (buckets may set a lower one)")
    parser.add_argument("--pool-size", type=int, default=16, help="PostgreSQL connections")
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    parser.add_argument("--s3-region", default=DEFAULT_S3_REGION,
                        help=f"the region the S3 endpoint (/storage/v1/s3) signs with (default: {DEFAULT_S3_REGION})")
    return parser.parse_args(argv)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code."""
    args = _arguments(argv)
    secret = os.environ.get(JWT_SECRET_ENV)
    if not secret:
        print(f"error: set {JWT_SECRET_ENV} to the JWT secret", file=sys.stderr)
        return 2
    if not args.database_url:
        print(f"error: pass --database-url or set {DATABASE_URL_ENV}", file=sys.stderr)
        return 2
    try:
        rules = parse_rules(args.faults)
    except (InvalidFaultRule, OSError) as err:
        print(f"error: --faults: {err}", file=sys.stderr)
        return 2
    ensure_schema(args.database_url)
    server = build_server(
        database_url=args.database_url,
        data_dir=args.data_dir,
        jwt_secret=secret,
        port=args.port,
        fault_rules=rules,
        file_size_limit=args.file_size_limit,
        pool_size=args.pool_size,
        access_log=args.access_log,
        s3_region=args.s3_region,
    )
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"supabase storage listening on {server.url}/storage/v1 ({LOOPBACK} only)", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        server.api.catalog.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
