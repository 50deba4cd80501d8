"""Where a plan's state lives: the run directory.

`migrate plan plans/x.yaml` writes `.migrate/runs/<plan name>/` (under the
current directory, or `--state-dir`/`MIGRATE_STATE_DIR`):

- `manifest.parquet`: every source object and what happens to it.
- `manifest.json`: the plan fingerprint the manifest was made from, when,
  and its totals (so `run` can tell whether the plan changed since).
- `journal.sqlite`: transfer state (see `migrate.journal`).

`run` and `verify` find it again from the same plan. Writes are atomic
(write to a temporary file, then `os.replace`).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = Path(".migrate")


def state_root(override: str | Path | None = None) -> Path:
    if override:
        return Path(override)
    env = os.environ.get("MIGRATE_STATE_DIR")
    return Path(env) if env else DEFAULT_STATE_DIR


def plan_folder_name(plan_name: str) -> str:
    """A plan's name as a folder name (state of `run` and `backup` lives in folders named so)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in plan_name) or "plan"


@dataclass(frozen=True)
class RunDirectory:
    path: Path

    @classmethod
    def for_plan(cls, plan_name: str, *, state_dir: str | Path | None = None) -> "RunDirectory":
        return cls(state_root(state_dir) / "runs" / plan_folder_name(plan_name))

    @property
    def manifest(self) -> Path:
        return self.path / "manifest.parquet"

    @property
    def manifest_info(self) -> Path:
        return self.path / "manifest.json"

    @property
    def journal(self) -> Path:
        return self.path / "journal.sqlite"

    def ensure(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def read_info(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.manifest_info.read_text()))
        except (FileNotFoundError, ValueError):
            return None

    def write_info(self, info: dict[str, Any]) -> None:
        atomic_write_text(self.manifest_info, json.dumps(info, indent=2, sort_keys=True, default=str))


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
