"""Start, watch and stop the local stack's server processes.

Shared by the SeaweedFS launcher, the bundled Supabase Storage server and the
test fixtures. Servers bind to 127.0.0.1 only; a process is only ever stopped
by the PID we recorded when we started it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from migrate.errors import FatalError

LOOPBACK = "127.0.0.1"


class StackError(FatalError):
    """The local stack could not be started or reached."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class ServerProcess:
    """A server we started: its PID, where it logs, and how to stop it."""

    name: str
    pid: int
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        ready: Callable[[], bool],
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
        cwd: Path | None = None,
    ) -> "ServerProcess":
        """Start `argv` detached, logging to `log_path`, and wait until `ready()`.

        Raises StackError naming the log file when the process dies or does
        not become ready in time (and stops it in the latter case).
        """
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")
        popen = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            # Own session: Ctrl-C in the user's terminal must not kill the stack
            # mid-write; `stop()` does that deliberately.
            start_new_session=True,
        )
        log.close()
        server = cls(name=name, pid=popen.pid, log_path=log_path, popen=popen)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                raise StackError(
                    f"{name} exited with code {popen.returncode} while starting; see {log_path} for why"
                )
            try:
                if ready():
                    return server
            except Exception:  # noqa: BLE001 - "not ready yet" comes in many shapes
                pass
            time.sleep(0.1)
        server.stop()
        raise StackError(f"{name} did not answer within {timeout:.0f}s; see {log_path} for why")

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_alive(self.pid)

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the process we started (SIGTERM, then SIGKILL after `timeout`)."""
        if not self.alive():
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is not None:
                if self.popen.poll() is not None:
                    return
            elif not pid_alive(self.pid):
                return
            time.sleep(0.05)
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        if self.popen is not None:
            self.popen.wait(timeout=5)
