"""`migrate stack up|down|status|env`: a local Supabase Storage + S3 for demos and tests.

The stack is three things on 127.0.0.1: a dedicated PostgreSQL database (on
a server that is already running), the bundled Supabase Storage server and
SeaweedFS. What was started is recorded in a state file
(`<state-dir>/state.json`, mode 0600: it holds the stack's keys), and `down`
stops exactly those PIDs and nothing else.

The keys (JWT secret, S3 access key) are throwaway values generated for this
stack alone and kept across `down`/`up`, so exported variables stay valid.
Printing them is the point of `up` and `env`.

Never touching what we did not create: the stack's database carries the
comment `created by migrate stack`; an existing database without it is
refused, and `down --purge` drops the database only if it carries it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrate.errors import UserInputError
from migrate.redact import register_secret
from migrate.stack.process import LOOPBACK, ServerProcess, StackError, pid_alive, port_in_use

if TYPE_CHECKING:
    from migrate.stack.supabase_server.keys import ProjectKeys

STACK_COMMENT = "created by migrate stack"
STATE_FILE = "state.json"
STATE_VERSION = 1
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_DATABASE = "migrate_stack"


def default_database(state_dir: Path) -> str:
    """The stack's database for a state dir: `migrate_stack_<8 hex of the dir's path>`.

    One database per checkout: a stack whose blobs live in one folder must
    never see the catalog of a stack whose blobs live in another.
    """
    import hashlib

    digest = hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:8]
    return f"{DEFAULT_DATABASE}_{digest}"
DEFAULT_STATE_DIR = Path(".migrate/stack")
DEFAULT_SUPABASE_PORT = 54321
DEFAULT_S3_PORT = 8333
#: Destination buckets the bundled plans (plans/*.yaml) write to by default,
#: created empty so `migrate run plans/...` works against the stack as is.
DESTINATION_BUCKETS = ("plugin-registry", "app-assets", "s3-copy")

_DATABASE_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


# --- the state file ----------------------------------------------------------


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
        for secret in (state.jwt_secret, state.service_key, state.anon_key, state.secret_key, *_derived_secrets(state)):
            register_secret(secret)
        return state


def _project_keys(state: StackState) -> "ProjectKeys":
    from migrate.stack.supabase_server.keys import project_keys  # the server package is loaded lazily

    return project_keys(state.jwt_secret)


def _s3_region() -> str:
    from migrate.stack.supabase_server.keys import DEFAULT_S3_REGION  # the server package is loaded lazily

    return DEFAULT_S3_REGION


def _derived_secrets(state: StackState) -> tuple[str, ...]:
    keys = _project_keys(state)
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


def _s3_marker(state: S3State) -> str:
    return f"-dir={state.data_dir}"


def _supabase_marker(state: SupabaseState) -> str:
    return state.data_dir


def _stop_recorded(*, name: str, pid: int, marker: str, log_path: str, grace: float) -> bool:
    """Stop one recorded server by PID; False if it was not running (or is not ours)."""
    if not process_running(pid, marker):
        return False
    ServerProcess(name=name, pid=pid, log_path=Path(log_path)).stop(timeout=grace)
    deadline = time.monotonic() + 5
    while process_running(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


# --- PostgreSQL --------------------------------------------------------------


def _pg_address(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - an unparsable URL still deserves a message
        return "the --pg-url server"
    return f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"


# libpq/PostgreSQL wording -> the short reason our one-line messages give.
_PG_REASONS = (
    (re.compile(r"connection refused", re.IGNORECASE), "connection refused"),
    (re.compile(r"timeout|timed out", re.IGNORECASE), "timed out"),
    (re.compile(r"password authentication failed", re.IGNORECASE), "authentication failed"),
    (re.compile(r"no password supplied", re.IGNORECASE), "a password is required"),
    (re.compile(r'database ".*" does not exist', re.IGNORECASE), "the database in --pg-url does not exist"),
    (re.compile(r'role ".*" does not exist', re.IGNORECASE), "the user in --pg-url does not exist"),
    (re.compile(r"permission denied to create database", re.IGNORECASE), "not allowed to create databases"),
    (re.compile(r"could not translate host name", re.IGNORECASE), "unknown host"),
)


def _pg_reason(err: Exception) -> str:
    text = str(err).strip()
    for pattern, reason in _PG_REASONS:
        if pattern.search(text):
            return reason
    return text.splitlines()[0][:160] if text else type(err).__name__


def database_url_for(admin_url: str, database: str) -> str:
    """`admin_url` (a postgresql:// URL) with its database replaced by `database`."""
    parts = urllib.parse.urlsplit(admin_url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise UserInputError("--pg-url must be a postgresql:// URL, e.g. postgresql://postgres@127.0.0.1:5432/postgres")
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))


def _check_database_name(name: str) -> None:
    if not name or len(name) > 63 or not set(name) <= _DATABASE_NAME_CHARS or name[0].isdigit():
        raise UserInputError(
            f"--database {name!r}: use lowercase letters, digits and underscores (at most 63, not starting with a digit)"
        )


def _connect_admin(admin_url: str) -> Any:
    import psycopg

    try:
        return psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        raise StackError(
            f"cannot connect to PostgreSQL at {_pg_address(admin_url)} ({_pg_reason(err)}); "
            "start PostgreSQL or pass --pg-url postgresql://USER@HOST:PORT/postgres"
        ) from err


def _database_comment(conn: Any, name: str) -> tuple[bool, str | None]:
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,)
    ).fetchone()
    return (row is not None, row[0] if row else None)


def ensure_database(admin_url: str, name: str) -> str:
    """Create the stack's database (marked with our comment) unless it exists; return its URL.

    Raises StackError if a database of that name exists without our comment:
    it is someone else's, and we never touch it.
    """
    import psycopg

    _check_database_name(name)
    database_url = database_url_for(admin_url, name)
    try:
        _ensure_database(admin_url, name)
    except psycopg.Error as err:
        raise StackError(
            f"cannot create database {name} on {_pg_address(admin_url)} ({_pg_reason(err)}); "
            "pass --pg-url with a user allowed to create databases"
        ) from err
    return database_url


def _ensure_database(admin_url: str, name: str) -> None:
    from psycopg import errors, sql

    with _connect_admin(admin_url) as conn:
        exists, comment = _database_comment(conn, name)
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except errors.DuplicateDatabase:
                exists, comment = _database_comment(conn, name)  # created by someone else meanwhile
            else:
                try:
                    conn.execute(
                        sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(STACK_COMMENT))
                    )
                except Exception:
                    # An unmarked database would be refused next time: do not leave one behind.
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                    raise
                return
        if comment != STACK_COMMENT:
            raise StackError(
                f"database {name} on {_pg_address(admin_url)} already exists and was not created by migrate stack; "
                "pass --database NAME to use a new one (migrate never touches a database it did not create)"
            )


def drop_database(admin_url: str, name: str) -> bool:
    """Drop the stack's database if it exists and carries our comment. Returns whether it did."""
    from psycopg import sql

    with _connect_admin(admin_url) as conn:
        exists, comment = _database_comment(conn, name)
        if not exists or comment != STACK_COMMENT:
            return False
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    return True


# --- up ----------------------------------------------------------------------


@dataclass
class UpResult:
    """What `up` did: the stack, whether it was already up, and the seed summary."""

    state: StackState
    already_up: bool
    started: list[str]
    seed_line: str | None = None


def _port_free_or_fail(port: int, flag: str) -> None:
    if port_in_use(port):
        raise StackError(f"port {port} on {LOOPBACK} is in use; pass {flag} N or stop what is using it")


def up(
    *,
    pg_url: str = DEFAULT_PG_URL,
    database: str | None = None,
    state_dir: Path = DEFAULT_STATE_DIR,
    supabase_port: int = DEFAULT_SUPABASE_PORT,
    s3_port: int = DEFAULT_S3_PORT,
    seed_data: bool = True,
    large_objects: int = 2,
) -> UpResult:
    """Start the stack (or report the one already running); seed it when it starts.

    Idempotent: components already running (by the state file) are left as
    they are; only missing ones are started. Raises StackError (exit 4, one
    line) for a port in use, PostgreSQL unreachable, or a database that is
    not ours; components started by this call are stopped again on failure.
    """
    from migrate.stack import seaweed
    from migrate.stack import supabase_server

    database = database or default_database(state_dir)

    if supabase_port == s3_port:
        raise UserInputError(f"--supabase-port and --s3-port are both {s3_port}; pick two different ports")
    if large_objects < 0:
        raise UserInputError("--large-objects must be 0 or more")
    state_dir = Path(state_dir).resolve()
    previous = load_state(state_dir)
    supabase_up = previous is not None and process_running(previous.supabase.pid, _supabase_marker(previous.supabase))
    s3_up = previous is not None and process_running(previous.s3.pid, _s3_marker(previous.s3))
    if previous is not None and supabase_up and s3_up:
        seed_line = None
        if seed_data and not previous.seeded:
            seed_line = _seed_and_record(previous, large_objects=large_objects)
        return UpResult(state=previous, already_up=True, started=[], seed_line=seed_line)

    # Check everything we can before starting anything.
    if not supabase_up:
        _port_free_or_fail(supabase_port, "--supabase-port")
    if not s3_up:
        _port_free_or_fail(s3_port, "--s3-port")
    if previous is not None and supabase_up:
        database, pg_url = previous.database, previous.admin_url  # the running server's, not the flags'
    database_url = ensure_database(pg_url, database)

    # Keys are kept across down/up so exported variables stay valid.
    if previous is not None:
        jwt_secret, access_key, secret_key = previous.jwt_secret, previous.access_key, previous.secret_key
    else:
        jwt_secret = secrets.token_urlsafe(48)
        access_key = "AK" + secrets.token_hex(9).upper()  # 20 characters, like an AWS key id
        secret_key = secrets.token_urlsafe(30)  # 40 characters
    for secret in (jwt_secret, secret_key):
        register_secret(secret)

    logs = state_dir / "logs"
    started: list[str] = []
    launched: list[Any] = []
    try:
        if s3_up and previous is not None:
            s3_state = previous.s3
        else:
            s3_dir = state_dir / "s3"
            server = seaweed.launch(
                data_dir=s3_dir,
                access_key=access_key,
                secret_key=secret_key,
                s3_port=s3_port,
                log_path=logs / "seaweedfs.log",
            )
            launched.append(server)
            started.append("s3")
            assert server.ports is not None
            s3_state = S3State(
                pid=server.process.pid,
                ports=server.ports.to_dict(),
                endpoint_url=server.endpoint_url,
                region=server.region,
                data_dir=str(server.data_dir),
                log_path=str(server.process.log_path),
            )
        if supabase_up and previous is not None:
            supabase_state = previous.supabase
        else:
            supabase_dir = (state_dir / "supabase").resolve()
            storage = supabase_server.launch(
                database_url=database_url,
                data_dir=supabase_dir,
                jwt_secret=jwt_secret,
                port=supabase_port,
                log_path=logs / "supabase-storage.log",
            )
            launched.append(storage)
            started.append("supabase")
            supabase_state = SupabaseState(
                pid=storage.process.pid,
                port=supabase_port,
                url=storage.url,
                data_dir=str(supabase_dir),
                log_path=str(storage.process.log_path),
            )
    except BaseException:
        for server in reversed(launched):
            server.stop()
        raise

    if previous is not None:
        service_key, anon_key = previous.service_key, previous.anon_key
    else:
        service_key = supabase_server.make_jwt(jwt_secret, "service_role")
        anon_key = supabase_server.make_jwt(jwt_secret, "anon")
    state = StackState(
        state_dir=str(state_dir),
        database=database,
        database_url=database_url,
        admin_url=pg_url,
        jwt_secret=jwt_secret,
        service_key=service_key,
        anon_key=anon_key,
        access_key=access_key,
        secret_key=secret_key,
        supabase=supabase_state,
        s3=s3_state,
    )
    for secret in (state.service_key, state.anon_key, *_derived_secrets(state)):
        register_secret(secret)
    # Recorded before seeding: if seeding fails, `down` still finds what runs.
    save_state(state)

    seed_line = None
    if seed_data:
        seed_line = _seed_and_record(state, large_objects=large_objects)
    return UpResult(state=state, already_up=False, started=started, seed_line=seed_line)


def _seed_and_record(state: StackState, *, large_objects: int) -> str:
    try:
        line = seed_stack(state, large_objects=large_objects)
    except StackError as err:
        raise StackError(f"{err}; the servers are running: `migrate stack down` stops them") from err
    state.seeded = True
    save_state(state)
    return line


def seed_stack(state: StackState, *, large_objects: int) -> str:
    """Seed the stack's Supabase Storage and create the plans' empty S3 destination buckets."""
    from migrate.stack.seed import seed

    summary = seed(state.supabase.url, state.service_key, large_objects=large_objects)
    client = s3_client(state)
    existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
    for bucket in DESTINATION_BUCKETS:
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)
    return f"{summary.line()}; empty S3 buckets for the plans: {', '.join(DESTINATION_BUCKETS)}"


def s3_client(state: StackState) -> Any:
    """A boto3 S3 client for the stack's SeaweedFS, with its keys."""
    from migrate.stack import seaweed

    return seaweed.s3_client(
        endpoint_url=state.s3.endpoint_url,
        access_key=state.access_key,
        secret_key=state.secret_key,
        region=state.s3.region,
        max_attempts=3,
        timeout=30,
    )


# --- down --------------------------------------------------------------------


def down(*, state_dir: Path = DEFAULT_STATE_DIR, purge: bool = False) -> list[str]:
    """Stop the processes recorded in the state file (by PID, only those); report what happened.

    Data is kept unless `purge`: then the stack's data dirs and logs are
    deleted, the state file removed, and the database dropped if (and only
    if) it carries our comment.
    """
    from migrate.stack.seaweed import STOP_GRACE_SECONDS, SeaweedPorts, remove_stale_sockets

    state_dir = Path(state_dir).resolve()
    state = load_state(state_dir)
    if state is None:
        return [f"no stack recorded in {state_dir}; nothing to stop"]
    lines = []
    stopped = _stop_recorded(
        name="supabase storage",
        pid=state.supabase.pid,
        marker=_supabase_marker(state.supabase),
        log_path=state.supabase.log_path,
        grace=10.0,
    )
    lines.append(f"supabase storage: {'stopped (pid %d)' % state.supabase.pid if stopped else 'was not running'}")
    stopped = _stop_recorded(
        name="SeaweedFS",
        pid=state.s3.pid,
        marker=_s3_marker(state.s3),
        log_path=state.s3.log_path,
        grace=STOP_GRACE_SECONDS,
    )
    if stopped:
        # Only after a stop of ours: the sockets are named after the ports we recorded.
        remove_stale_sockets(SeaweedPorts.from_dict(state.s3.ports))
    lines.append(f"s3 (seaweedfs): {'stopped (pid %d)' % state.s3.pid if stopped else 'was not running'}")
    if not purge:
        lines.append(f"data kept in {state_dir}; `migrate stack up` starts it again, `migrate stack down --purge` deletes it")
        return lines

    for directory in (state.supabase.data_dir, state.s3.data_dir, str(state_dir / "logs")):
        shutil.rmtree(directory, ignore_errors=True)
    dropped = drop_database(state.admin_url, state.database)
    state.path.unlink(missing_ok=True)
    try:
        state_dir.rmdir()  # only if nothing else lives there
    except OSError:
        pass
    lines.append(
        f"purged data in {state_dir}; database {state.database} "
        + ("dropped" if dropped else "left alone (missing, or not created by migrate stack)")
    )
    return lines


# --- status and env ----------------------------------------------------------


@dataclass
class ComponentStatus:
    """One line of `migrate stack status`."""

    name: str
    up: bool
    endpoint: str
    detail: str


def _supabase_status(state: StackState) -> ComponentStatus:
    import httpx

    from migrate.estimate import human_size

    endpoint = f"{state.supabase.url}/storage/v1"
    if not process_running(state.supabase.pid, _supabase_marker(state.supabase)):
        return ComponentStatus("supabase storage", False, endpoint, "not running")
    try:
        response = httpx.get(
            f"{endpoint}/bucket",
            headers={"Authorization": f"Bearer {state.service_key}", "apikey": state.service_key},
            timeout=5,
        )
        response.raise_for_status()
        buckets = len(response.json())
    except (httpx.HTTPError, ValueError) as err:
        return ComponentStatus("supabase storage", False, endpoint, f"not answering ({type(err).__name__})")
    detail = f"{buckets} buckets"
    try:
        import psycopg

        with psycopg.connect(state.database_url, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*), coalesce(sum((metadata->>'size')::bigint), 0) FROM storage.objects"
            ).fetchone()
        if row is not None:
            detail += f", {row[0]} objects, {human_size(int(row[1]))}"
    except Exception:  # noqa: BLE001 - counts are a nicety; the REST answer already says "up"
        detail += ", object count unavailable"
    return ComponentStatus("supabase storage", True, endpoint, f"{detail} (pid {state.supabase.pid})")


def _s3_status(state: StackState) -> ComponentStatus:
    from migrate.estimate import human_size

    endpoint = state.s3.endpoint_url
    if not process_running(state.s3.pid, _s3_marker(state.s3)):
        return ComponentStatus("s3 (seaweedfs)", False, endpoint, "not running")
    try:
        client = s3_client(state)
        buckets = [bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])]
        objects = size = 0
        for bucket in buckets:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for item in page.get("Contents", []):
                    objects += 1
                    size += int(item["Size"])
    except Exception as err:  # noqa: BLE001 - any failure means "not usable", reported, not raised
        return ComponentStatus("s3 (seaweedfs)", False, endpoint, f"not answering ({type(err).__name__})")
    detail = f"{len(buckets)} buckets, {objects} objects, {human_size(size)} (pid {state.s3.pid})"
    return ComponentStatus("s3 (seaweedfs)", True, endpoint, detail)


def _database_status(state: StackState) -> ComponentStatus:
    import psycopg

    try:
        with psycopg.connect(state.database_url, connect_timeout=5):
            pass
    except psycopg.Error as err:
        return ComponentStatus("postgresql", False, state.database_url, _pg_reason(err))
    return ComponentStatus("postgresql", True, state.database_url, f"database {state.database}")


def status(*, state_dir: Path = DEFAULT_STATE_DIR) -> list[ComponentStatus] | None:
    """Each component up or down, with its endpoint and bucket/object counts; None if no stack is recorded."""
    state = load_state(Path(state_dir).resolve())
    if state is None:
        return None
    return [_supabase_status(state), _s3_status(state), _database_status(state)]


def require_running(state_dir: Path) -> StackState:
    """The recorded stack, if both servers run; StackError telling what to do otherwise."""
    state_dir = Path(state_dir).resolve()
    state = load_state(state_dir)
    if state is None:
        raise StackError(f"no stack recorded in {state_dir}; run `migrate stack up` first")
    if not (
        process_running(state.supabase.pid, _supabase_marker(state.supabase))
        and process_running(state.s3.pid, _s3_marker(state.s3))
    ):
        raise StackError(f"the stack in {state_dir} is not running; run `migrate stack up`")
    return state


def environment(state: StackState) -> dict[str, str]:
    """The environment variables that point migrate, boto3 and supabase-py at the stack."""
    keys = _project_keys(state)
    return {
        "SUPABASE_URL": state.supabase.url,
        # The new keys first (apikey header only); the legacy JWTs still work.
        "SUPABASE_SECRET_KEY": keys.secret_key,
        "SUPABASE_PUBLISHABLE_KEY": keys.publishable_key,
        "SUPABASE_SERVICE_ROLE_KEY": state.service_key,
        "SUPABASE_ANON_KEY": state.anon_key,
        "SUPABASE_DB_URL": state.database_url,
        # The S3 protocol endpoint of the bundled server (plans/s3-to-s3.yaml reads these).
        "SUPABASE_S3_ENDPOINT": f"{state.supabase.url}/storage/v1/s3",
        "SUPABASE_S3_REGION": _s3_region(),
        "SUPABASE_S3_ACCESS_KEY_ID": keys.s3_access_key_id,
        "SUPABASE_S3_SECRET_ACCESS_KEY": keys.s3_secret_access_key,
        # boto3/botocore and the AWS CLI pick the endpoint up from this one;
        # the bundled plans read MIGRATE_DEST_ENDPOINT_URL / MIGRATE_DEST_REGION.
        "AWS_ENDPOINT_URL_S3": state.s3.endpoint_url,
        "MIGRATE_DEST_ENDPOINT_URL": state.s3.endpoint_url,
        "MIGRATE_DEST_REGION": state.s3.region,
        "AWS_ACCESS_KEY_ID": state.access_key,
        "AWS_SECRET_ACCESS_KEY": state.secret_key,
        "AWS_REGION": state.s3.region,
        "AWS_DEFAULT_REGION": state.s3.region,
    }


def export_lines(state: StackState) -> list[str]:
    """`export NAME=value` lines for a shell: `eval "$(migrate stack env)"`."""
    return [f"export {name}={shlex.quote(value)}" for name, value in environment(state).items()]
