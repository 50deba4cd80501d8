"""Progress reporting, injected into the stages.

The library reports through the small `Progress` interface; the CLI plugs in
`TqdmProgress` (bars for objects and bytes with rate and ETA, silent when
stderr is not a terminal), tests plug in `RecordingProgress`.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tqdm import tqdm


class Progress(Protocol):
    def start(self, *, objects: int, total_bytes: int, description: str = "") -> None: ...

    def advance(self, *, objects: int = 0, bytes_done: int = 0) -> None: ...

    def close(self) -> None: ...


class NullProgress:
    """Reports nothing."""

    def start(self, *, objects: int, total_bytes: int, description: str = "") -> None:
        pass

    def advance(self, *, objects: int = 0, bytes_done: int = 0) -> None:
        pass

    def close(self) -> None:
        pass


class RecordingProgress:
    """Remembers totals; for tests."""

    def __init__(self) -> None:
        self.total_objects = 0
        self.total_bytes = 0
        self.objects = 0
        self.bytes_done = 0
        self.closed = False
        self._lock = threading.Lock()

    def start(self, *, objects: int, total_bytes: int, description: str = "") -> None:
        self.total_objects, self.total_bytes = objects, total_bytes

    def advance(self, *, objects: int = 0, bytes_done: int = 0) -> None:
        with self._lock:
            self.objects += objects
            self.bytes_done += bytes_done

    def close(self) -> None:
        self.closed = True


class TqdmProgress:
    """Two tqdm bars on stderr: objects and bytes. Quiet when not on a terminal."""

    def __init__(self, *, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._objects: tqdm | None = None
        self._bytes: tqdm | None = None
        self._lock = threading.Lock()

    def start(self, *, objects: int, total_bytes: int, description: str = "") -> None:
        if not self.enabled:
            return
        from tqdm import tqdm  # only when bars are drawn: tqdm costs every command's start-up otherwise

        self._objects = tqdm(total=objects, desc=description or "objects", unit="obj", position=0, leave=True, dynamic_ncols=True)
        self._bytes = tqdm(total=total_bytes, desc="bytes", unit="B", unit_scale=True, unit_divisor=1024, position=1, leave=True, dynamic_ncols=True)

    def advance(self, *, objects: int = 0, bytes_done: int = 0) -> None:
        if self._objects is None or self._bytes is None:
            return
        with self._lock:
            if objects:
                self._objects.update(objects)
            if bytes_done:
                self._bytes.update(bytes_done)

    def close(self) -> None:
        for bar in (self._objects, self._bytes):
            if bar is not None:
                bar.close()
