"""`migrate backup prune PLAN`: forget snapshots past the retention policy, then delete bodies nobody needs.

The order makes a kill at any moment harmless (a kept snapshot never loses a body):

1. decide what to forget from the manifests present (`migrate.retention.decide`);
2. delete the forgotten snapshots' manifests, one by one;
3. list the manifests that remain and read every one of them: their SHA-256s
   are the referenced set (a manifest that cannot be read stops the prune
   before any body is deleted: never delete what we are unsure about);
4. list the bodies and delete those outside the referenced set.

A kill after 2 leaves unreferenced bodies, which the next prune deletes; a
kill during 4 leaves some of them. Bodies of a backup still being written
are not referenced by any manifest yet: the plan's backup lock (held by
both `backup` and `prune`) keeps the two apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrate.backup.layout import Target, backup_settings, open_target
from migrate.backup.state import BackupState
from migrate.errors import MigrateError
from migrate.redact import redact
from migrate.retention import RetentionPolicy, decide, unreferenced_bodies

if TYPE_CHECKING:
    from migrate.plan import Plan


@dataclass
class PruneOutcome:
    target: str
    kept: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    bodies_deleted: int = 0
    bytes_freed: int = 0
    error: str | None = None
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prune_target(target: Target, policy: RetentionPolicy, *, dry_run: bool = False) -> PruneOutcome:
    """Prune one target (see the module docstring for the order). The caller holds the backup lock."""
    outcome = PruneOutcome(target=target.name, dry_run=dry_run)
    decision = decide(target.list_snapshots(), policy)
    outcome.kept = [s.snapshot_id for s in decision.keep]
    outcome.forgotten = [s.snapshot_id for s in decision.forget]
    if dry_run:
        referenced = {sha for s in decision.keep for sha in target.read_manifest(s.snapshot_id)["sha256"]}
        stored = target.list_bodies()
        doomed = unreferenced_bodies(stored, referenced)
        outcome.bodies_deleted, outcome.bytes_freed = len(doomed), sum(stored[sha] for sha in doomed)
        return outcome
    for snapshot in decision.forget:
        target.delete_manifest(snapshot.snapshot_id)
    referenced: set[str] = set()
    for snapshot in target.list_snapshots():  # whatever is there now, not what we think is there
        referenced.update(target.read_manifest(snapshot.snapshot_id)["sha256"].to_list())
    stored = target.list_bodies()
    for sha in sorted(unreferenced_bodies(stored, referenced)):
        target.delete_body(sha)
        outcome.bodies_deleted += 1
        outcome.bytes_freed += stored[sha]
    return outcome


def prune_plan(plan: "Plan", *, state_dir: str | Path | None = None, dry_run: bool = False) -> list[PruneOutcome]:
    """Prune every target of the plan under the backup lock; a failing target is reported, the others go on."""
    settings = backup_settings(plan)
    policy = RetentionPolicy(keep=settings.keep, keep_daily=settings.keep_daily, keep_weekly=settings.keep_weekly)
    outcomes: list[PruneOutcome] = []
    with BackupState.for_plan(plan.name, state_dir=state_dir).lock():
        for target_settings in settings.targets:
            target = open_target(target_settings, max_attempts=plan.transfer.max_attempts)
            try:
                target.check()
                outcomes.append(prune_target(target, policy, dry_run=dry_run))
            except (MigrateError, OSError) as err:
                outcomes.append(PruneOutcome(target=target.name, error=redact(str(err)), dry_run=dry_run))
            finally:
                target.close()
    return outcomes
