"""Backups: content-addressed snapshots of a plan's source into local folders and S3 buckets.

- `snapshot`: `take_backup`, one snapshot into every target (`migrate backup PLAN`);
- `prune`: retention (`migrate.retention`) applied to every target, crash-safe;
- `restore`: `list_backups`, `verify_backups`, `restore_snapshot`;
- `layout`: the target layout and the snapshot manifest schema; `state`: journal and lock.
"""

from migrate.backup.prune import PruneOutcome, prune_plan
from migrate.backup.restore import list_backups, restore_snapshot, verify_backups
from migrate.backup.snapshot import BackupResult, take_backup

__all__ = ["BackupResult", "PruneOutcome", "list_backups", "prune_plan", "restore_snapshot", "take_backup", "verify_backups"]
