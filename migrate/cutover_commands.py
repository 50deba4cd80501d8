"""The cutover commands: `migrate urls`, `serve`, `presign`, `bucket apply`. A thin shell over the library.

Each takes `--json` (one JSON document on stdout), `-q` (only errors) and
`-v` (log what happens; secrets masked). Nothing here prints a signed URL
except `presign`, whose output is the URL itself (on stdout only, never in a
log line).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from migrate.errors import ExitStatus


def _output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", help="the plan file, e.g. plans/plugin-registry.yaml")
    parser.add_argument("--state-dir", help="where run directories live (default .migrate, or $MIGRATE_STATE_DIR)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    # SUPPRESS: do not override the top-level `migrate -v` when not given here.
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log what happens (secrets are masked)")


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    elif not args.quiet:
        print(text)


def cmd_urls(args: argparse.Namespace) -> ExitStatus:
    """Write the URL map: every old Supabase URL form of every migrated object -> its new URL."""
    from migrate.plan import load_plan
    from migrate.urls import write_url_map

    plan = load_plan(args.plan)
    files = write_url_map(plan, state_dir=args.state_dir, reports_dir=args.reports_dir, out_dir=args.out)
    data = {
        "objects": files.objects,
        "public_objects": files.public_objects,
        "rows": files.rows,
        "files": {name: str(getattr(files, name)) for name in ("parquet", "csv", "nginx", "json")},
    }
    text = (
        f"URL map of {files.objects} objects ({files.public_objects} public), {files.rows} old URLs:\n"
        f"  {files.parquet}\n  {files.csv}\n  {files.nginx}  (nginx map include, public objects)\n  {files.json}"
    )
    _emit(args, data, text)
    return ExitStatus.OK


def cmd_presign(args: argparse.Namespace) -> ExitStatus:
    """Print a presigned GET URL for one migrated object, named by its OLD bucket/key."""
    from migrate.plan import load_plan
    from migrate.presign import presign_source_object, split_source_key

    plan = load_plan(args.plan)
    bucket, key = split_source_key(args.source_key, bucket=args.bucket)
    signed = presign_source_object(plan, bucket, key, expires=args.expires, state_dir=args.state_dir)
    data = {
        "url": signed.url,
        "expires_in": signed.expires_in,
        "source": f"{signed.source_bucket}/{signed.source_key}",
        "destination": f"s3://{signed.dest_bucket}/{signed.dest_key}",
    }
    if args.json:
        print(json.dumps(data, indent=2))
    elif not args.quiet:
        print(signed.url)
    return ExitStatus.OK


def cmd_serve(args: argparse.Namespace) -> ExitStatus:
    """Serve the redirect route for the old Supabase object URLs (127.0.0.1 unless --host says otherwise)."""
    from migrate.plan import load_plan
    from migrate.serve import serve_plan

    plan = load_plan(args.plan)
    host = args.host or plan.cutover.serve.host
    port = args.port if args.port is not None else plan.cutover.serve.port
    _emit(args, {"listening": f"http://{host}:{port}/storage/v1/"}, f"Redirecting old Supabase URLs at http://{host}:{port}/storage/v1/ (Ctrl-C stops)")
    sys.stdout.flush()
    serve_plan(plan, host=host, port=port, state_dir=args.state_dir)
    return ExitStatus.OK


def cmd_bucket_apply(args: argparse.Namespace) -> ExitStatus:
    """Show (and with --yes apply) the plan's lifecycle, versioning and encryption on the destination bucket."""
    from migrate.bucket_config import apply_bucket_changes, plan_bucket_changes
    from migrate.plan import load_plan

    plan = load_plan(args.plan)
    changes = plan_bucket_changes(plan)
    applied = bool(args.yes and not changes.empty)
    if applied:
        apply_bucket_changes(plan, changes)
    if changes.empty:
        tail = ""
    elif applied:
        tail = "\nApplied."
    else:
        tail = f"\nDry run: nothing was changed. Apply with: migrate bucket apply {args.plan} --yes"
    _emit(args, {**changes.to_dict(), "applied": applied}, changes.diff_text() + tail)
    return ExitStatus.OK


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    urls = subparsers.add_parser("urls", help="write the old-URL -> new-URL map (Parquet, CSV, nginx, JSON)", description=cmd_urls.__doc__)
    _output_flags(urls)
    urls.add_argument("--reports-dir", default="reports", help="where reports are written (default reports/)")
    urls.add_argument("--out", help="directory for the map files (default reports/<plan>/urls/)")
    urls.set_defaults(func=cmd_urls)

    serve = subparsers.add_parser("serve", help="redirect old Supabase object URLs to the new bucket", description=cmd_serve.__doc__)
    _output_flags(serve)
    serve.add_argument("--host", help="address to bind (default: the plan's cutover.serve.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: the plan's cutover.serve.port, 8787)")
    serve.set_defaults(func=cmd_serve)

    presign = subparsers.add_parser("presign", help="a presigned GET URL for one object, by its old bucket/key", description=cmd_presign.__doc__)
    _output_flags(presign)
    presign.add_argument("source_key", metavar="SOURCE_KEY", help="the object's old name, BUCKET/KEY (or KEY with --bucket)")
    presign.add_argument("--bucket", help="the source bucket, when SOURCE_KEY is the key alone")
    presign.add_argument("--expires", help="how long the URL works: seconds or 15m, 1h, 7d (default: cutover.presign_expires)")
    presign.set_defaults(func=cmd_presign)

    bucket = subparsers.add_parser("bucket", help="the destination bucket's lifecycle, versioning and encryption")
    actions = bucket.add_subparsers(dest="bucket_command", metavar="ACTION")
    actions.required = True
    apply = actions.add_parser("apply", help="diff the plan's bucket: section against the bucket; --yes applies", description=cmd_bucket_apply.__doc__)
    _output_flags(apply)
    apply.add_argument("--yes", action="store_true", help="apply the changes (default: dry run, show the diff)")
    apply.set_defaults(func=cmd_bucket_apply)
