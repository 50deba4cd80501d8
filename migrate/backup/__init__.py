"""Backups: content-addressed snapshots of a plan's source into local folders and S3 buckets.

- `snapshot`: `take_backup`, one snapshot into every target (`migrate backup PLAN`);
- `prune`: retention (`migrate.retention`) applied to every target, crash-safe;
- `restore`: `list_backups`, `verify_backups`, `restore_snapshot`;
- `layout`: the target layout and the snapshot manifest schema; `state`: journal and lock.
"""

from __future__ import annotations

from typing import Any

# Imported on first use: registering `migrate backup` on the CLI (every command's start-up)
# imports this package, and must not pay for polars and boto3.
_API = {
    "PruneOutcome": "migrate.backup.prune",
    "prune_plan": "migrate.backup.prune",
    "list_backups": "migrate.backup.restore",
    "restore_snapshot": "migrate.backup.restore",
    "verify_backups": "migrate.backup.restore",
    "BackupResult": "migrate.backup.snapshot",
    "take_backup": "migrate.backup.snapshot",
}

__all__ = ["BackupResult", "PruneOutcome", "list_backups", "prune_plan", "restore_snapshot", "take_backup", "verify_backups"]


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'migrate.backup' has no attribute {name!r}")
