"""The `migrate` command: a thin shell over the library.

One boundary (`main`) turns exceptions into exit codes and one-line messages
on stderr. Each command lives with its stage and registers itself through a
`register(subparsers)` function that sets `func` on its parser; `func(args)`
returns an `ExitStatus`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import importlib
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, NoReturn, Sequence

from migrate import __version__
from migrate.errors import ExitStatus, MigrateError, UserInputError
from migrate.redact import redact

if TYPE_CHECKING:
    from migrate.plan import Plan
    from migrate.rundir import RunDirectory

# Modules that contribute subcommands, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "migrate.backup.command",
    "migrate.cutover_commands",
    "migrate.stack.command",
    "migrate.demo",
)


def _load(args: argparse.Namespace) -> "Plan":
    from migrate.plan import load_plan

    plan = load_plan(args.plan)
    plan.require_destination()
    return plan


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", help="the plan file, e.g. plans/plugin-registry.yaml")
    parser.add_argument("--state-dir", help="where run directories live (default .migrate, or $MIGRATE_STATE_DIR)")
    parser.add_argument("--reports-dir", default="reports", help="where reports are written (default reports/)")


def cmd_plan(args: argparse.Namespace) -> ExitStatus:
    """Dry run: inventory, rewrite, manifest, summary. Writes nothing to the destination."""
    from migrate.pipeline import plan_stage
    from migrate.progress import TqdmProgress

    plan = _load(args)
    from migrate.deletions import manifest_snapshot
    from migrate.rundir import RunDirectory

    with manifest_snapshot(RunDirectory.for_plan(plan.name, state_dir=args.state_dir)) as snapshot:
        result = plan_stage(
            plan,
            state_dir=args.state_dir,
            reports_dir=args.reports_dir,
            check_destination=args.check_destination,
            use_catalog=False if args.rest else None,
            audit_source=args.audit_source,
            audit_sample=args.sample,
            progress=TqdmProgress(enabled=None if not args.json else False),
        )
    if args.json:
        print(json.dumps({**result.summary, "manifest": str(result.run_dir.manifest), "report_dir": str(result.report_dir)}, indent=2, default=str))
    else:
        print(result.summary_text())
        print()
        print(f"Manifest: {result.run_dir.manifest}")
        print(f"Summary:  {result.report_dir / 'summary.md'}")
    if snapshot.added and not args.json:
        print(f"Some objects were deleted at the source since the last plan; `migrate run {args.plan} --replan` reports them.")
    if not result.runnable:
        if result.collisions:
            print(f"migrate: {result.collisions} objects collide on destination keys; fix the rules in {args.plan} and plan again", file=sys.stderr)
        else:
            print(
                f"migrate: {result.unwritable} objects cannot be migrated as they are (see Problems above); "
                f"exclude them in {args.plan} (filters.exclude) or fix them at the source, and plan again",
                file=sys.stderr,
            )
        return ExitStatus.INCOMPLETE
    if result.source_audit is not None and result.source_audit.missing:
        print(f"migrate: {len(result.source_audit.missing)} objects have a catalog row but no bytes at the source (see {result.report_dir / 'source-audit.csv'})", file=sys.stderr)
        return ExitStatus.INCOMPLETE
    if not args.json:
        print(f"Nothing was written to the destination. Next: migrate run {args.plan}")
    return ExitStatus.OK


def cmd_run(args: argparse.Namespace) -> ExitStatus:
    """Copy every planned object that is not yet at the destination."""
    from migrate.estimate import human_size
    from migrate.progress import TqdmProgress
    from migrate.pipeline import run_migration
    from migrate.transfer import SOURCE_CHANGED

    plan = _load(args)
    if args.delete_removed and not args.replan:
        raise UserInputError("--delete-removed needs --replan: deletions are found by planning again")
    from migrate.deletions import manifest_snapshot
    from migrate.rundir import RunDirectory

    run_dir = RunDirectory.for_plan(plan.name, state_dir=args.state_dir)
    with _executor(args, plan) as executor, manifest_snapshot(run_dir):
        outcome = run_migration(
            plan,
            state_dir=args.state_dir,
            reports_dir=args.reports_dir,
            workers=args.workers,
            replan=args.replan,
            progress=TqdmProgress(enabled=False if args.no_progress else None),
            executor=executor,
        )
    result = outcome.result
    args.json_payload = {
        "run_dir": str(outcome.run_dir),
        "replanned": outcome.replanned,
        "copied": result.copied,
        "bytes_copied": result.bytes_copied,
        "already_migrated": result.already_done,
        "skipped_existing": result.skipped_existing,
        "failed": len(result.failures),
        "failures": [{"source_bucket": f.source_bucket, "source_key": f.source_key, "error": redact(f.error)} for f in result.failures[:1000]],
        "interrupted": result.interrupted,
        "elapsed_seconds": round(result.elapsed, 3),
    }
    if outcome.replanned:
        _report_removed(args, run_dir, plan)
    if outcome.replanned:
        print(f"Planned first (no manifest yet, the plan changed, or --replan): {outcome.run_dir / 'manifest.parquet'}")
    rate = result.bytes_copied / result.elapsed / (1024 * 1024) if result.elapsed else 0.0
    print(
        f"Copied {result.copied} objects ({human_size(result.bytes_copied)}) in {result.elapsed:.1f}s ({rate:.1f} MiB/s); "
        f"{result.already_done} already migrated, {result.skipped_existing} skipped (already at the destination), "
        f"{len(result.failures)} failed."
    )
    if result.resumed_parts or result.aborted_uploads:
        print(f"Resumed {result.resumed_parts} multipart parts; aborted {result.aborted_uploads} abandoned uploads.")
    if executor is not None:
        for worker, stats in sorted(executor.workers.items()):
            print(f"  worker {worker}: {stats.shards} shards, {stats.objects} objects, {human_size(stats.bytes)} at {stats.mib_per_second:.1f} MiB/s")
    for failure in result.failures[:10]:
        print(redact(f"  failed: {failure.source_bucket}/{failure.source_key}: {failure.error}"), file=sys.stderr)
    if len(result.failures) > 10:
        print(f"  ... and {len(result.failures) - 10} more (migrate status {args.plan} --failed)", file=sys.stderr)
    if result.interrupted:
        print(f"migrate: interrupted; finished objects and parts are journaled. Rerun `migrate run {args.plan}` to continue.", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    changed = sum(1 for failure in result.failures if SOURCE_CHANGED in failure.error)
    if changed:
        print(f"migrate: {changed} objects changed at the source since the plan; run `migrate run --replan {args.plan}` to plan them again and copy them", file=sys.stderr)
    if result.failures:
        print(f"migrate: {len(result.failures)} objects were not migrated; rerun `migrate run {args.plan}` to retry them", file=sys.stderr)
        return ExitStatus.INCOMPLETE
    print(f"Everything planned is at the destination. Next: migrate verify {args.plan}")
    return ExitStatus.OK


def _report_removed(args: argparse.Namespace, run_dir: "RunDirectory", plan: "Plan") -> None:
    """The final delta's deletions: count objects deleted at the source; delete their copies only when asked."""
    from migrate.deletions import delete_removed, pending_removals, removal_counts
    from migrate.estimate import human_size

    counts = removal_counts(run_dir)
    if not counts["pending"]:
        return
    print(f"{counts['pending']} objects ({human_size(counts['pending_bytes'])}) were deleted at the source since an earlier plan; their copies are still at the destination.")
    if not args.delete_removed:
        print(f"  To remove them there: migrate run {args.plan} --replan --delete-removed")
        return
    if not args.yes:
        for index, removal in enumerate(pending_removals(run_dir)):
            if index == 20:
                print(f"  ... and {counts['pending'] - 20} more")
                break
            print(f"  would delete s3://{removal.dest_bucket}/{removal.dest_key}")
        print(f"Dry run: nothing was deleted. Delete them with: migrate run {args.plan} --replan --delete-removed --yes")
        return
    deleted = delete_removed(plan, state_dir=args.state_dir)
    print(f"Deleted {deleted.deleted} objects ({human_size(deleted.bytes_deleted)}) at the destination; journaled in {run_dir.path / 'removals.sqlite'}.")
    for key, code in list(deleted.failed.items())[:10]:
        print(f"  not deleted: {key}: {code}", file=sys.stderr)


@contextlib.contextmanager
def _executor(args: argparse.Namespace, plan: "Plan") -> Iterator[Any]:
    """The cluster executor `--executor dask` asks for (closed on the way out), or None for local threads."""
    if getattr(args, "executor", "local") != "dask":
        if getattr(args, "scheduler", None) or getattr(args, "shard_objects", None):
            raise UserInputError("--scheduler and --shard-objects go with --executor dask")
        yield None
        return
    scheduler = args.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if not scheduler:
        raise UserInputError("--executor dask needs --scheduler tcp://HOST:8786 (or DASK_SCHEDULER_ADDRESS)")
    if args.shard_objects is not None and args.shard_objects < 1:
        raise UserInputError(f"--shard-objects must be at least 1, got {args.shard_objects}")
    if getattr(args, "sample", None) is not None:
        raise UserInputError("--sample is not available with --executor dask yet; sample locally or verify everything on the cluster")
    from migrate.cluster import SHARD_MAX_OBJECTS, DaskExecutor

    executor = DaskExecutor(plan, scheduler=scheduler, max_objects=args.shard_objects or SHARD_MAX_OBJECTS)
    try:
        yield executor
    finally:
        executor.close()


def _add_executor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--executor", choices=("local", "dask"), default="local", help="local threads (default) or a Dask cluster")
    parser.add_argument("--scheduler", help="the Dask scheduler address with --executor dask (default: DASK_SCHEDULER_ADDRESS)")
    parser.add_argument("--shard-objects", type=int, help="objects per cluster task at most (default 2000; a shard also stops at 512 MiB)")


def cmd_status(args: argparse.Namespace) -> ExitStatus:
    """Counts by state from the journal; safe while a run is going."""
    from migrate.estimate import human_size
    from migrate.journal import STATE_FAILED, TransferJournal
    from migrate.manifest import action_batches, count_rows, scan_manifest
    from migrate.rundir import RunDirectory

    plan = _load(args)
    run_dir = RunDirectory.for_plan(plan.name, state_dir=args.state_dir)
    info = run_dir.read_info()
    if info is None:
        raise UserInputError(f"{args.plan}: not planned yet; run `migrate plan {args.plan}` first")
    manifest = scan_manifest(run_dir.manifest)
    print(f"Plan {plan.name}: {info.get('copy_objects', 0)} objects ({human_size(int(info.get('copy_bytes', 0)))}) to copy, planned {info.get('created_at')}")
    if info.get("plan_fingerprint") != plan.fingerprint():
        print("  the plan file changed since; the next `migrate run` plans again first")
    if not run_dir.journal.exists():
        print("  nothing transferred yet")
        return ExitStatus.OK
    copy_objects, _ = count_rows(manifest, "copy")
    planned = (key for batch in action_batches(manifest, "copy", columns=["source_bucket", "source_key"]) for key in batch.iter_rows())
    with TransferJournal(run_dir.journal, readonly=True) as journal:
        # Counted over the current manifest's copy objects only, so the lines add up to it (SQL aggregates; keys streamed in).
        counts, outside = journal.counts_for(planned)
        settled = sum(n for n, _ in counts.values())
        args.json_payload = {
            "plan": plan.name,
            "copy_objects": copy_objects,
            "counts": {state: {"objects": n, "bytes": b} for state, (n, b) in counts.items()},
            "not_started": copy_objects - settled,
        }
        for state in ("done", "skipped", "in-progress", "failed"):
            objects, size = counts.get(state, (0, 0))
            print(f"  {state:<12} {objects:>9}  {human_size(size)}")
        print(f"  {'not started':<12} {copy_objects - settled:>9}")
        if outside:
            print(f"  ({outside} journal rows are for objects the current plan no longer copies; not counted)")
        last = journal.last_run()
        if last:
            state = last["outcome"] or "running (or killed)"
            print(f"  last run #{last['id']}: {state}, {last['copied'] or 0} copied, {last['failed'] or 0} failed")
        if args.failed:
            for row in journal.iter_rows(STATE_FAILED):
                print(redact(f"  failed: {row.source_bucket}/{row.source_key}: {row.error}"))
    return ExitStatus.OK


def cmd_verify(args: argparse.Namespace) -> ExitStatus:
    """Audit the destination against the plan: every object, key by key (exit 3 on any mismatch)."""
    from migrate.progress import TqdmProgress
    from migrate.pipeline import verify_plan

    plan = _load(args)
    with _executor(args, plan) as executor:  # refuses --sample with dask before a cluster client starts
        report = verify_plan(
            plan,
            mode=args.mode,
            sample=args.sample,
            seed=args.seed,
            fresh=args.fresh,
            state_dir=args.state_dir,
            reports_dir=args.reports_dir,
            progress=TqdmProgress(enabled=False if args.no_progress else None),
            executor=executor,
        )
    args.json_payload = {"counts": report.counts(), "report_dir": str(report.path) if report.path else None, "mode": report.mode}
    print(report.summary_text())
    return report.exit_status


def cmd_schema(args: argparse.Namespace) -> ExitStatus:
    """Print the JSON Schema of plan files (what editors use to complete and check them)."""
    from migrate.plan import plan_json_schema

    print(json.dumps(plan_json_schema(), indent=2, ensure_ascii=False))
    return ExitStatus.OK


def cmd_uploads(args: argparse.Namespace) -> ExitStatus:
    """Unfinished multipart uploads under the plan's planned keys; --abort aborts them (never while a run holds the plan)."""
    from migrate.pipeline import uploads_stage

    plan = _load(args)
    uploads, aborted = uploads_stage(plan, state_dir=args.state_dir, abort=args.abort)
    if args.json:
        print(json.dumps({"uploads": [vars(u) for u in uploads], "aborted": aborted}, indent=2))
        return ExitStatus.OK
    for upload in uploads:
        print(f"  s3://{upload.dest_bucket}/{upload.dest_key}  {upload.upload_id}")
    if args.abort:
        print(f"Aborted {aborted} unfinished multipart uploads under the planned keys.")
    else:
        print(f"{len(uploads)} unfinished multipart uploads under the planned keys." + (f" Abort them: migrate uploads {args.plan} --abort" if uploads else ""))
    return ExitStatus.OK


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _register_stage_commands(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    plan = subparsers.add_parser("plan", help="dry run: inventory the source and write the manifest", description=cmd_plan.__doc__)
    _add_common(plan)
    plan.add_argument("--check-destination", action="store_true", help="HEAD the destination to mark objects already there (reads only)")
    plan.add_argument("--rest", action="store_true", help="inventory through the REST API even when the plan has a database_url")
    plan.add_argument("--audit-source", action="store_true", help="read the first byte of every listed object: find catalog rows whose bytes are gone (exit 3)")
    plan.add_argument("--sample", type=int, help="with --audit-source: read a random sample of N objects instead of all")
    plan.add_argument("--json", action="store_true", help="print the summary as JSON")
    plan.set_defaults(func=cmd_plan)

    run = subparsers.add_parser("run", help="copy every planned object to S3 (resumable)", description=cmd_run.__doc__)
    _add_common(run)
    run.add_argument("--workers", type=_positive_int, help="concurrent transfers (default: the plan's transfer.concurrency); 1 runs serially")
    run.add_argument("--replan", action="store_true", help="inventory the source again first, to pick up new or changed objects")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--delete-removed", action="store_true", help="with --replan: delete at the destination what was deleted at the source (lists first; --yes deletes)")
    run.add_argument("--yes", action="store_true", help="with --delete-removed: really delete")
    _add_executor(run)
    run.set_defaults(func=cmd_run)

    verify = subparsers.add_parser("verify", help="integrity audit of the destination into a report", description=cmd_verify.__doc__)
    _add_common(verify)
    verify.add_argument(
        "--mode",
        choices=("quick", "fast", "deep"),
        help="quick: listing ETag/size vs the journal, HEAD only what it cannot prove; fast: HEAD every object (stored checksums, headers); "
        "deep: re-read and hash both sides (default: the plan's verify.mode)",
    )
    verify.add_argument("--sample", type=_positive_int, help="check a random sample of N objects and state the confidence it gives")
    verify.add_argument("--seed", type=int, default=0, help="seed for --sample (same seed, same sample)")
    verify.add_argument("--fresh", action="store_true", help="inventory the source again first instead of trusting the manifest")
    verify.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_executor(verify)
    verify.set_defaults(func=cmd_verify)

    status = subparsers.add_parser("status", help="what the journal says: counts by state", description=cmd_status.__doc__)
    _add_common(status)
    status.add_argument("--failed", action="store_true", help="list the objects that failed and why")
    status.set_defaults(func=cmd_status)

    schema = subparsers.add_parser("schema", help="print the JSON Schema of plan files, for editors", description=cmd_schema.__doc__)
    schema.set_defaults(func=cmd_schema)

    uploads = subparsers.add_parser("uploads", help="list (or --abort) unfinished multipart uploads under the planned keys", description=cmd_uploads.__doc__)
    _add_common(uploads)
    uploads.add_argument("--abort", action="store_true", help="abort them (takes the run lock: refused while a run is going)")
    uploads.add_argument("--json", action="store_true", help="print the uploads as JSON")
    uploads.set_defaults(func=cmd_uploads)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), like every other bad input."""

    def error(self, message: str) -> "NoReturn":
        self.exit(int(ExitStatus.USAGE), f"migrate: {self.prog.removeprefix('migrate').strip() or 'migrate'}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="migrate",
        description="Move Supabase Storage objects to S3 without losing a byte, and prove it.",
    )
    parser.add_argument("--version", action="version", version=f"migrate {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (secrets are masked)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    _register_stage_commands(subparsers)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    for command in subparsers.choices.values():
        _add_output_options(command)
    return parser


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    """`--json`, `-q/--quiet` and `-v/--verbose` on every command (and on the subcommands below it)."""
    taken = parser._option_string_actions  # noqa: SLF001 - a command may define its own (plan, uploads, backup)
    if "--json" not in taken:
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout (for scripts and CI)")
    if "--quiet" not in taken:
        parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    if "--verbose" not in taken:
        parser.add_argument("-v", "--verbose", dest="sub_verbose", action="store_true", help="log what happens (secrets are masked)")
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for child in action.choices.values():
                _add_output_options(child)


class _Output:
    """What `--json` and `-q` do to a command's printed lines: one JSON object, or nothing but errors.

    Commands print for people; a command may also leave a structured result
    in `args.json_payload`. A command that prints its own JSON object
    (`plan --json`) keeps it as it is.
    """

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.json = bool(getattr(args, "json", False))
        self.quiet = bool(getattr(args, "quiet", False))
        self.buffer = io.StringIO()

    def __enter__(self) -> "_Output":
        if self.json or self.quiet:
            self._redirect = contextlib.redirect_stdout(self.buffer)
            self._redirect.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.json or self.quiet:
            self._redirect.__exit__(None, None, None)

    def finish(self, status: int, error: str | None = None) -> None:
        if not self.json:
            return
        printed = self.buffer.getvalue()
        try:
            own = json.loads(printed) if printed.strip() else None
        except ValueError:
            own = None
        if isinstance(own, dict) and error is None:
            print(json.dumps(own))
            return
        payload: dict[str, object] = {"command": getattr(self.args, "command", None), "exit_code": int(status), "ok": int(status) == 0}
        payload.update(getattr(self.args, "json_payload", None) or {})
        if isinstance(own, dict):
            payload["result"] = own
        elif printed.strip():
            payload["messages"] = [redact(line) for line in printed.splitlines() if line.strip()]
        if error is not None:
            payload["error"] = error
        print(json.dumps(payload, default=str))


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    # botocore and urllib3 are chatty and can log request headers at DEBUG.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def error_line(err: BaseException) -> str:
    """The one line a user sees for an error: `migrate: <message>`, secrets masked."""
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return redact(f"migrate: {message}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `migrate` console script. Returns the exit code."""
    # pydantic scans every installed distribution's entry points for plugins when it builds the
    # first model (~25 ms of each command's start-up); the plan models use none. A user's own
    # setting wins. (The library API leaves pydantic as it is.)
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose or bool(getattr(args, "sub_verbose", False)))
    output = _Output(args)
    error: str | None = None
    status: int = ExitStatus.INTERNAL_ERROR
    try:
        with output:
            status = _run_command(args)
    finally:
        if status != ExitStatus.OK and output.json:
            error = getattr(args, "_error_line", None)
        output.finish(status, error)
    return int(status)


def _run_command(args: argparse.Namespace) -> int:
    """Run the command; every exception becomes its exit code and one line on stderr (a bug: with its traceback)."""
    try:
        status = args.func(args)
    except BrokenPipeError:
        # Output piped into `head` and the like: the reader left; not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return int(ExitStatus.OK)
    except KeyboardInterrupt:
        print("migrate: interrupted; rerun the same command to continue where it stopped", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    except MigrateError as err:
        args._error_line = error_line(err)
        print(args._error_line, file=sys.stderr)
        return int(err.exit_status)
    except OSError as err:
        # The environment, not a bug: a read-only or full disk, a path that cannot be used.
        from migrate.rundir import state_error

        args._error_line = error_line(state_error(err, Path(err.filename or ".")))
        print(args._error_line, file=sys.stderr)
        return int(ExitStatus.FATAL)
    except Exception as err:  # noqa: BLE001 - the one place that catches everything
        # A bug: the only case that shows a traceback, and still masked.
        print(redact("".join(traceback.format_exception(err))), file=sys.stderr)
        print(error_line(err) + " (internal error; please report it with the trace above)", file=sys.stderr)
        return int(ExitStatus.INTERNAL_ERROR)
    return int(status if status is not None else ExitStatus.OK)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
