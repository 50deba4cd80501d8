"""The `migrate backup` command: `backup PLAN`, `backup list|verify|restore|prune PLAN`. Logic lives in the modules beside it.

One-shot and scheduler friendly (cron, systemd timers): each call does its
work and exits with the README's exit codes; `--json` prints one JSON
document on stdout; a second `backup`/`prune` of the same plan while one
runs exits 4 naming the holder's pid.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from migrate.errors import ExitStatus, UserInputError

ACTIONS = ("list", "verify", "restore", "prune")
# Which options each action reads; any other given is refused (a setting accepted and ignored is a defect).
_OPTIONS: dict[str, tuple[str, ...]] = {
    "backup": ("workers", "no_prune"),
    "list": (),
    "verify": ("target", "snapshot", "deep", "workers"),
    "restore": ("target", "snapshot", "to", "prefix", "bucket", "yes", "workers"),
    "prune": ("dry_run",),
}
_DEFAULTS: dict[str, Any] = {"workers": None, "no_prune": False, "target": None, "snapshot": None, "deep": False,
                             "to": None, "prefix": "", "bucket": None, "yes": False, "dry_run": False}


def _emit(args: argparse.Namespace, document: dict[str, Any], lines: list[str]) -> None:
    if args.json:
        print(json.dumps(document, indent=2, default=str))
    elif not args.quiet:
        for line in lines:
            print(line)


def cmd_backup(args: argparse.Namespace) -> ExitStatus:
    """Snapshot the plan's source into every backup target; prune after (unless --no-prune)."""
    from migrate.plan import load_plan

    if args.sub_verbose:
        logging.getLogger().setLevel(logging.INFO)
    words = list(args.words)
    action = words.pop(0) if words and words[0] in ACTIONS and len(words) >= 1 else "backup"
    if len(words) != 1:
        raise UserInputError("usage: migrate backup PLAN | migrate backup {list,verify,restore,prune} PLAN")
    for name, default in _DEFAULTS.items():
        if getattr(args, name) != default and name not in _OPTIONS[action]:
            raise UserInputError(f"--{name.replace('_', '-')} does not apply to `migrate backup{'' if action == 'backup' else ' ' + action}`")
    plan = load_plan(words[0])
    return {"backup": _backup, "list": _list, "verify": _verify, "restore": _restore, "prune": _prune}[action](args, plan)


def _backup(args: argparse.Namespace, plan: Any) -> ExitStatus:
    from migrate.backup.snapshot import take_backup
    from migrate.estimate import human_size
    from migrate.progress import TqdmProgress

    progress = TqdmProgress(enabled=False if (args.json or args.quiet) else None)
    result = take_backup(plan, state_dir=args.state_dir, workers=args.workers, prune=not args.no_prune, progress=progress)
    progress.close()
    lines = [f"Snapshot {result.snapshot_id}: {result.objects} objects ({human_size(result.bytes)}), {result.objects_read} read from the source."]
    for target in result.targets:
        state = "snapshot written" if target.snapshot_written else f"NO SNAPSHOT ({target.error or 'objects failed'})"
        line = f"  {target.name}: {state}; {target.bodies_written} new bodies ({human_size(target.bytes_written)})"
        if target.pruned:
            line += f"; pruned {len(target.pruned.forgotten)} snapshots, {target.pruned.bodies_deleted} bodies"
        lines.append(line)
    for bucket, key, error in result.failures[:10]:
        lines.append(f"  failed: {bucket}/{key}: {error}")
    _emit(args, result.to_dict(), lines)
    if result.ok:
        return ExitStatus.OK
    if all(t.lost for t in result.targets):
        return ExitStatus.FATAL
    return ExitStatus.INCOMPLETE


def _list(args: argparse.Namespace, plan: Any) -> ExitStatus:
    from dataclasses import asdict

    from migrate.backup.restore import list_backups
    from migrate.estimate import human_size

    listings = list_backups(plan)
    lines: list[str] = []
    for listing in listings:
        if listing.error:
            lines.append(f"{listing.target}: unavailable: {listing.error}")
            continue
        lines.append(f"{listing.target}: {len(listing.snapshots)} snapshots, {listing.bodies} bodies ({human_size(listing.body_bytes)})")
        for snap in listing.snapshots:
            lines.append(f"  {snap.snapshot_id}  {snap.taken_at}  {snap.objects:>8} objects  {human_size(snap.bytes)}")
    _emit(args, {"targets": [asdict(listing) for listing in listings]}, lines)
    return ExitStatus.INCOMPLETE if any(listing.error for listing in listings) else ExitStatus.OK


def _verify(args: argparse.Namespace, plan: Any) -> ExitStatus:
    from migrate.backup.restore import verify_backups

    outcomes = verify_backups(plan, target_name=args.target, snapshot_id=args.snapshot, deep=args.deep, workers=args.workers or 8)
    lines = [
        f"{o.target} {o.snapshot_id} ({'deep' if o.deep else 'fast'}): {o.objects} objects, {o.bodies} bodies; "
        f"{len(o.missing)} missing, {len(o.wrong_size)} wrong size, {len(o.wrong_checksum)} wrong checksum"
        for o in outcomes
    ]
    _emit(args, {"verified": [o.to_dict() for o in outcomes], "ok": all(o.ok for o in outcomes)}, lines)
    return ExitStatus.OK if all(o.ok for o in outcomes) else ExitStatus.INCOMPLETE


def _restore(args: argparse.Namespace, plan: Any) -> ExitStatus:
    from migrate.backup.restore import restore_snapshot
    from migrate.estimate import human_size

    if not args.to:
        raise UserInputError("migrate backup restore needs --to supabase:BUCKET, s3://BUCKET[/PREFIX] or local:/PATH")
    result = restore_snapshot(plan, to=args.to, target_name=args.target, snapshot_id=args.snapshot, prefix=args.prefix,
                              bucket=args.bucket, yes=args.yes, workers=args.workers or 4)
    head = f"Snapshot {result.snapshot_id} from {result.target}: {result.objects} objects ({human_size(result.bytes)}) -> {result.destination}"
    if result.dry_run:
        lines = [head] + [f"  {key}" for key in result.sample] + ["Dry run: nothing was written. Add --yes to restore."]
    else:
        lines = [head, f"Restored {result.restored}, failed {len(result.failures)}."]
        lines += [f"  failed: {f['bucket']}/{f['key']}: {f['error']}" for f in result.failures[:10]]
    _emit(args, result.to_dict(), lines)
    return ExitStatus.OK if result.ok else ExitStatus.INCOMPLETE


def _prune(args: argparse.Namespace, plan: Any) -> ExitStatus:
    from migrate.backup.prune import prune_plan
    from migrate.estimate import human_size

    outcomes = prune_plan(plan, state_dir=args.state_dir, dry_run=args.dry_run)
    verb = "would forget" if args.dry_run else "forgot"
    lines = [
        f"{o.target}: unavailable: {o.error}" if o.error else
        f"{o.target}: kept {len(o.kept)}, {verb} {len(o.forgotten)} snapshots; {o.bodies_deleted} bodies ({human_size(o.bytes_freed)})"
        for o in outcomes
    ]
    _emit(args, {"targets": [o.to_dict() for o in outcomes]}, lines)
    return ExitStatus.INCOMPLETE if any(o.error for o in outcomes) else ExitStatus.OK


class _IntermixedParser(argparse.ArgumentParser):
    """Options anywhere between the words: `migrate backup restore --to X PLAN` as well as `... PLAN --to X`.

    argparse's own `parse_known_intermixed_args` does this; a subcommand's
    parser is reached through `parse_known_args`, so route that through it once.
    """

    _inside = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        if self._inside:
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `migrate backup ...` to the CLI."""
    default_class = subparsers._parser_class  # noqa: SLF001 - one parser of ours needs intermixed words and options
    subparsers._parser_class = _IntermixedParser  # noqa: SLF001
    try:
        parser = subparsers.add_parser(
            "backup",
            help="snapshot the plan's source to every backup target; list, verify, restore, prune",
            description="migrate backup PLAN takes a snapshot (then prunes); migrate backup list|verify|restore|prune PLAN. "
            "See README.md, 'Backups'.",
        )
    finally:
        subparsers._parser_class = default_class  # noqa: SLF001
    parser.add_argument("words", nargs="+", metavar="[ACTION] PLAN", help="an action (list, verify, restore, prune) or none, then the plan file")
    parser.add_argument("--state-dir", help="where backup state lives (default .migrate, or $MIGRATE_STATE_DIR)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("-v", "--verbose", dest="sub_verbose", action="store_true", help="log what happens (secrets are masked)")
    parser.add_argument("--workers", type=int, help="concurrent objects (backup default: min(transfer.concurrency, 4))")
    parser.add_argument("--no-prune", action="store_true", help="backup: do not prune after a successful snapshot")
    parser.add_argument("--target", help="verify/restore: the target's name or position (1, 2, ...); default: every target (verify), the first (restore)")
    parser.add_argument("--snapshot", help="verify/restore: the snapshot id (default: the newest)")
    parser.add_argument("--deep", action="store_true", help="verify: read every body back and hash it")
    parser.add_argument("--to", help="restore: supabase:BUCKET, s3://BUCKET[/PREFIX] or local:/PATH")
    parser.add_argument("--prefix", default="", help="restore: only keys starting with this")
    parser.add_argument("--bucket", help="restore: only this source bucket of the snapshot")
    parser.add_argument("--yes", action="store_true", help="restore: write (without it, a dry run)")
    parser.add_argument("--dry-run", action="store_true", help="prune: say what would be deleted, delete nothing")
    parser.set_defaults(func=cmd_backup)
