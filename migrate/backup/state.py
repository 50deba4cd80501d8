"""Where a plan's backup state lives, and the OS lock that keeps two backups apart.

`.migrate/backups/<plan name>/` (under `--state-dir`/`MIGRATE_STATE_DIR` like run directories):

- `journal.sqlite`: the same `TransferJournal` `run` uses. One row per source
  object (fingerprint = size, eTag and last-modified; `sha256` = its body),
  so a resumed or next backup knows an unchanged object's body without
  reading it; and one row per multipart body upload per target
  (`@<target>` / sha256) with its UploadId and parts, so an interrupted large
  upload continues from its last part.
- `lock`: `fcntl.flock`ed (through `RunDirectory.lock`, the lock `run` uses)
  for the whole of `backup` and `prune`; holds the holder's pid. The kernel drops the lock when the process dies (kill -9
  included), so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from migrate.rundir import RunDirectory, plan_folder_name, state_root


@dataclass(frozen=True)
class BackupState:
    path: Path

    @classmethod
    def for_plan(cls, plan_name: str, *, state_dir: str | Path | None = None) -> "BackupState":
        return cls(state_root(state_dir) / "backups" / plan_folder_name(plan_name))

    @property
    def journal(self) -> Path:
        return self.path / "journal.sqlite"

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the plan's backup lock (`RunDirectory.lock`: flock, pid), or raise `RunLocked` (exit 4) naming the holder."""
        with RunDirectory(self.path).lock():
            yield
