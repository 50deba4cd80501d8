"""Run one child process and measure it: wall time, CPU (user + sys) and peak RSS.

The figures come from the kernel's accounting of the child itself
(`os.wait4`), so the harness's own work (seeding, checking, listing) never
counts against a contender. Children are started by `bench/launcher.py`, a
small process started before the harness grows, because a child's
ru_maxrss starts from its parent's RSS (see the launcher's docstring).

A contender made of several commands (s5cmd downloads, then uploads) is the
sum of its steps: wall and CPU added up, peak RSS the largest of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Mapping, Sequence

LAUNCHER = Path(__file__).resolve().parent / "launcher.py"


@dataclass(frozen=True)
class Measurement:
    """What one child (or a sequence of children) cost."""

    wall: float
    user: float
    sys: float
    max_rss_kib: int
    exit_code: int
    timed_out: bool = False

    @property
    def cpu(self) -> float:
        return self.user + self.sys

    @property
    def max_rss_mib(self) -> float:
        return self.max_rss_kib / 1024

    def then(self, other: "Measurement") -> "Measurement":
        """This step followed by `other`: times add up, memory is the larger peak, the first failure wins."""
        return Measurement(
            wall=self.wall + other.wall,
            user=self.user + other.user,
            sys=self.sys + other.sys,
            max_rss_kib=max(self.max_rss_kib, other.max_rss_kib),
            exit_code=self.exit_code or other.exit_code,
            timed_out=self.timed_out or other.timed_out,
        )


class Launcher:
    """The long-lived launcher process and the pipe to it."""

    def __init__(self) -> None:
        # -S: no site-packages, so the launcher stays a bare interpreter (~10 MiB).
        self._process = subprocess.Popen(
            [sys.executable, "-S", str(LAUNCHER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def run(self, request: dict[str, object]) -> dict[str, object]:
        stdin: IO[str] = self._process.stdin  # type: ignore[assignment]
        stdout: IO[str] = self._process.stdout  # type: ignore[assignment]
        stdin.write(json.dumps(request) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError("the bench launcher exited; see the harness's stderr")
        answer: dict[str, object] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the bench launcher could not start {request['argv']}: {answer['error']}")
        return answer

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()
        self._process.wait(timeout=30)


_launcher: Launcher | None = None


def start_launcher() -> None:
    """Start the launcher; call first thing, before importing boto3 or polars."""
    global _launcher
    if _launcher is None:
        _launcher = Launcher()


def stop_launcher() -> None:
    global _launcher
    if _launcher is not None:
        _launcher.close()
        _launcher = None


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    timeout: float,
    cwd: Path | None = None,
) -> Measurement:
    """Run `argv` through the launcher and return what it cost.

    stdout and stderr go to `log_path`. A child still running after
    `timeout` seconds is killed (by the PID the launcher started) and
    reported as timed out; the caller decides what that means for the run.
    """
    if _launcher is None:
        start_launcher()
    assert _launcher is not None
    log_path.parent.mkdir(parents=True, exist_ok=True)
    answer = _launcher.run(
        {"argv": list(argv), "env": dict(env), "cwd": str(cwd) if cwd else None, "log": str(log_path), "timeout": timeout}
    )
    return Measurement(
        wall=float(answer["wall"]),  # type: ignore[arg-type]
        user=float(answer["user"]),  # type: ignore[arg-type]
        sys=float(answer["sys"]),  # type: ignore[arg-type]
        max_rss_kib=int(answer["max_rss_kib"]),  # type: ignore[call-overload]
        exit_code=int(answer["exit_code"]),  # type: ignore[call-overload]
        timed_out=bool(answer["timed_out"]),
    )


def log_tail(log_path: Path, *, lines: int = 5) -> str:
    """The last lines of a child's log, for a one-line failure note."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return ""
    tail = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(tail)[-600:]
