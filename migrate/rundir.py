"""Where a plan's state lives: the run directory.

`migrate plan plans/x.yaml` writes `.migrate/runs/<plan name>/` (under the
current directory, or `--state-dir`/`MIGRATE_STATE_DIR`):

- `manifest.parquet`: every source object and what happens to it.
- `manifest.json`: the plan fingerprint the manifest was made from, when,
  and its totals (so `run` can tell whether the plan changed since).
- `journal.sqlite`: transfer state (see `migrate.journal`).
- `lock`: held (fcntl.flock) by the one process writing this directory;
  the OS releases it when that process dies, kill -9 included.

`run` and `verify` find it again from the same plan. Writes are atomic
(write to a temporary file, then `os.replace`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from migrate.errors import RunLocked, StateDirectoryError, UserInputError

DEFAULT_STATE_DIR = Path(".migrate")


def state_root(override: str | Path | None = None) -> Path:
    if override:
        return Path(override)
    env = os.environ.get("MIGRATE_STATE_DIR")
    return Path(env) if env else DEFAULT_STATE_DIR


@dataclass(frozen=True)
class RunDirectory:
    path: Path

    @classmethod
    def for_plan(cls, plan_name: str, *, state_dir: str | Path | None = None) -> "RunDirectory":
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in plan_name) or "plan"
        return cls(state_root(state_dir) / "runs" / safe)

    @property
    def manifest(self) -> Path:
        return self.path / "manifest.parquet"

    @property
    def manifest_info(self) -> Path:
        return self.path / "manifest.json"

    @property
    def journal(self) -> Path:
        return self.path / "journal.sqlite"

    @property
    def lock_file(self) -> Path:
        return self.path / "lock"

    def check_not_a_file(self) -> None:
        """A state directory path that names a file is bad input (exit 2), said in one line."""
        for parent in (self.path, *self.path.parents):
            if parent.exists() and not parent.is_dir():
                raise UserInputError(f"{parent}: the state directory path names a file, not a directory; pass --state-dir a directory")

    def ensure(self) -> None:
        """Create the run directory; a state directory that cannot hold it is one clear error."""
        self.check_not_a_file()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise state_error(err, self.path) from err

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold this run directory alone: one writer (`run`, backups) at a time.

        An OS lock (flock) on `lock`: released by the OS when the holder
        dies, so a killed run never leaves a stale lock. A second holder gets
        `RunLocked` at once, naming the first one's pid. Readers (`status`,
        `verify`) do not take it. A run directory this call created is
        removed again if it holds nothing else when the lock is released
        (a command that failed early leaves nothing behind).
        """
        created = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self.ensure()
        try:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise state_error(err, self.lock_file) from err
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise RunLocked(
                    f"{self.path}: another migrate process (pid {holder}) is running this plan; "
                    "wait for it to finish (or stop it), then rerun the same command"
                ) from None
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError as err:
                raise state_error(err, self.lock_file) from err
            try:
                yield
            finally:
                if created and {p.name for p in self.path.iterdir()} <= {"lock"}:
                    self.lock_file.unlink(missing_ok=True)
                    try:
                        for directory in created:  # innermost first; only what this call created, and only if empty
                            directory.rmdir()
                    except OSError:
                        pass
        finally:
            os.close(fd)  # releases the flock

    def read_info(self) -> dict[str, Any] | None:
        self.check_not_a_file()
        try:
            return dict(json.loads(self.manifest_info.read_text()))
        except (FileNotFoundError, ValueError):
            return None

    def write_info(self, info: dict[str, Any]) -> None:
        atomic_write_text(self.manifest_info, json.dumps(info, indent=2, sort_keys=True, default=str))


def state_error(err: OSError, path: Path) -> StateDirectoryError:
    """One line for a state directory that cannot be written: read-only, full, or not a directory."""
    if err.errno == errno.ENOSPC:
        advice = "the disk is full; free space (or pass --state-dir on another disk) and rerun"
    elif err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        advice = "the state directory is not writable; fix its permissions (or pass --state-dir a writable directory) and rerun"
    else:
        advice = f"{err.strerror or type(err).__name__}; fix the state directory (or pass --state-dir another one) and rerun"
    return StateDirectoryError(f"{path}: {advice}")


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_path(path: Path) -> Path:
    """A temporary sibling of `path` to write into before `os.replace(tmp, path)`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    return Path(tmp)
