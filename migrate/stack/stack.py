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

import secrets
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrate.errors import UserInputError
from migrate.redact import register_secret
from migrate.stack.defaults import DEFAULT_DATABASE, DEFAULT_PG_URL, DEFAULT_S3_PORT, DEFAULT_STATE_DIR, DEFAULT_SUPABASE_PORT
from migrate.stack.postgres import STACK_COMMENT, database_url_for, drop_database, ensure_database, pg_reason
from migrate.stack.process import LOOPBACK, StackError, port_in_use
from migrate.stack.state import (
    STATE_FILE, S3State, StackState, SupabaseState, derived_secrets, load_state, process_running, project_keys_of, s3_marker,
    s3_region, save_state, stop_recorded, supabase_marker,
)

__all__ = [  # the state file's and the database's names stay importable from here (migrate.stack.command, demo, tests)
    "STACK_COMMENT", "STATE_FILE", "ComponentStatus", "S3State", "StackState", "SupabaseState", "UpResult", "database_url_for", "down",
    "drop_database", "ensure_database", "environment", "export_lines", "load_state", "process_running", "require_running", "s3_client",
    "save_state", "seed_stack", "status", "up",
]



def default_database(state_dir: Path) -> str:
    """The stack's database for a state dir: `migrate_stack_<8 hex of the dir's path>`.

    One database per checkout: a stack whose blobs live in one folder must
    never see the catalog of a stack whose blobs live in another.
    """
    import hashlib

    digest = hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:8]
    return f"{DEFAULT_DATABASE}_{digest}"


#: Destination buckets the bundled plans (plans/*.yaml) write to by default,
#: created empty so `migrate run plans/...` works against the stack as is.
DESTINATION_BUCKETS = ("plugin-registry", "app-assets", "s3-copy")


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
    supabase_up = previous is not None and process_running(previous.supabase.pid, supabase_marker(previous.supabase))
    s3_up = previous is not None and process_running(previous.s3.pid, s3_marker(previous.s3))
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
    for secret in (state.service_key, state.anon_key, *derived_secrets(state)):
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
    stopped = stop_recorded(
        name="supabase storage",
        pid=state.supabase.pid,
        marker=supabase_marker(state.supabase),
        log_path=state.supabase.log_path,
        grace=10.0,
    )
    lines.append(f"supabase storage: {'stopped (pid %d)' % state.supabase.pid if stopped else 'was not running'}")
    stopped = stop_recorded(
        name="SeaweedFS",
        pid=state.s3.pid,
        marker=s3_marker(state.s3),
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
    if not process_running(state.supabase.pid, supabase_marker(state.supabase)):
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
    if not process_running(state.s3.pid, s3_marker(state.s3)):
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
        return ComponentStatus("postgresql", False, state.database_url, pg_reason(err))
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
        process_running(state.supabase.pid, supabase_marker(state.supabase))
        and process_running(state.s3.pid, s3_marker(state.s3))
    ):
        raise StackError(f"the stack in {state_dir} is not running; run `migrate stack up`")
    return state


def environment(state: StackState) -> dict[str, str]:
    """The environment variables that point migrate, boto3 and supabase-py at the stack."""
    keys = project_keys_of(state)
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
        "SUPABASE_S3_REGION": s3_region(),
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
