"""Where a plan's backup state lives, and the OS lock that keeps two backups apart.

`.migrate/backups/<plan name>/` (under `--state-dir`/`MIGRATE_STATE_DIR` like run directories):

- `journal.sqlite`: the same `TransferJournal` `run` uses. One row per source
  object (fingerprint = size, eTag and last-modified; `sha256` = its body),
  so a resumed or next backup knows an unchanged object's body without
  reading it; and one row per multipart body upload per target
  (`@<target>` / sha256) with its UploadId and parts, so an interrupted large
  upload continues from its last part.
- `lock`: `fcntl.flock`ed for the whole of `backup` and `prune`; holds the
  holder's pid. The kernel drops the lock when the process dies (kill -9
  included), so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from migrate.errors import FatalError
from migrate.rundir import plan_folder_name, state_root


class LockHeld(FatalError):
    """Another backup or prune of the same plan is running."""


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
        """Hold the plan's backup lock, or raise `LockHeld` (exit 4) naming the holder's pid."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise LockHeld(
                    f"another backup or prune of this plan is running (pid {holder}); let it finish, or schedule runs further apart"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock
