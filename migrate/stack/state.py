"""The state file of a local stack (`<state-dir>/state.json`), and the recorded processes it names.

The file (mode 0600: it holds the stack's keys) records what `migrate stack
up` started, so that `down` stops exactly those PIDs and nothing else; a PID
counts as ours only while its command line still names the recorded data
dir (`process_running`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from migrate.redact import register_secret
from migrate.stack.process import ServerProcess, StackError, pid_alive

if TYPE_CHECKING:
    from migrate.stack.supabase_server.keys import ProjectKeys

STATE_FILE = "state.json"
STATE_VERSION = 1


@dataclass
class SupabaseState:
    """The bundled Supabase Storage server of a stack."""

    pid: int
    port: int
    url: str
    data_dir: str
    log_path: str


@dataclass
class S3State:
    """The SeaweedFS of a stack."""

    pid: int
    ports: dict[str, int]
    endpoint_url: str
    region: str
    data_dir: str
    log_path: str


@dataclass
class StackState:
    """Everything `down`, `status` and `env` need: what runs where, and its keys."""

    state_dir: str
    database: str
    database_url: str
    admin_url: str
    jwt_secret: str = field(repr=False)
    service_key: str = field(repr=False)
    anon_key: str = field(repr=False)
    access_key: str
    secret_key: str = field(repr=False)
    supabase: SupabaseState
    s3: S3State
    # Set once a seed run finished, so an interrupted seed is redone by the next `up`.
    seeded: bool = False
    version: int = STATE_VERSION

    @property
    def path(self) -> Path:
        return Path(self.state_dir) / STATE_FILE

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "StackState":
        raw = json.loads(text)
        raw["supabase"] = SupabaseState(**raw["supabase"])
        raw["s3"] = S3State(**raw["s3"])
        state = cls(**raw)
        for secret in (state.jwt_secret, state.service_key, state.anon_key, state.secret_key, *derived_secrets(state)):
            register_secret(secret)
        return state


def project_keys_of(state: StackState) -> "ProjectKeys":
    """The Supabase-style keys derived from the stack's JWT secret."""
    from migrate.stack.supabase_server.keys import project_keys  # the server package is loaded lazily

    return project_keys(state.jwt_secret)


def s3_region() -> str:
    """The region the bundled server's S3 endpoint signs with."""
    from migrate.stack.supabase_server.keys import DEFAULT_S3_REGION  # the server package is loaded lazily

    return DEFAULT_S3_REGION


def derived_secrets(state: StackState) -> tuple[str, ...]:
    """The secrets derived from the JWT secret (registered for redaction wherever a state is read)."""
    keys = project_keys_of(state)
    return (keys.secret_key, keys.publishable_key, keys.s3_secret_access_key)


def load_state(state_dir: Path) -> StackState | None:
    """The stack recorded in `state_dir`, or None if there is none."""
    path = Path(state_dir) / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return StackState.from_json(text)
    except (ValueError, TypeError, KeyError) as err:
        raise StackError(f"{path} is not a stack state file ({type(err).__name__}); move it away and rerun") from err


def save_state(state: StackState) -> None:
    """Write the state file atomically, readable by its owner only (it holds the keys)."""
    path = state.path
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(state.to_json())
        out.flush()
        os.fsync(out.fileno())
    # Readers see the old file or the new one, never half of one.
    os.replace(temporary, path)


# --- processes ---------------------------------------------------------------


def _reap(pid: int) -> None:
    # A server started by this very Python process (tests call `main()`
    # in-process) lingers as a zombie after it exits unless we collect it.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def process_running(pid: int, marker: str) -> bool:
    """True if `pid` is alive and is the server we recorded.

    PIDs get reused: on Linux the command line must also contain `marker`
    (the server's data dir), so a stale state file never makes us signal
    someone else's process.
    """
    if pid <= 0:
        return False
    _reap(pid)
    if not pid_alive(pid):
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return True  # No /proc (macOS): the PID is all we have.
    try:
        status = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return False
    return status != "Z" and marker in cmdline


def s3_marker(state: S3State) -> str:
    """What SeaweedFS's command line holds when the PID is still ours."""
    return f"-dir={state.data_dir}"


def supabase_marker(state: SupabaseState) -> str:
    """What the storage server's command line holds when the PID is still ours."""
    return state.data_dir


def stop_recorded(*, name: str, pid: int, marker: str, log_path: str, grace: float) -> bool:
    """Stop one recorded server by PID; False if it was not running (or is not ours)."""
    if not process_running(pid, marker):
        return False
    ServerProcess(name=name, pid=pid, log_path=Path(log_path)).stop(timeout=grace)
    deadline = time.monotonic() + 5
    while process_running(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True
