"""`migrate stack up|status|env|down` through `migrate.cli.main`, against real servers.

Every test uses its own state dir, free ports and a database name of its own;
databases are dropped afterwards only if they carry the stack's comment.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import psycopg
import pytest

from migrate.cli import main
from migrate.stack import stack
from migrate.stack.process import free_port
from migrate.stack.seaweed import s3_client
from migrate.stack.seed import seed, seed_plan
from tests.conftest import PG_ADMIN_URL

# Supabase Storage's isValidKey (src/storage/limits.ts); JavaScript's \w is ASCII-only.
SUPABASE_VALID_KEY = re.compile(r"^(\w|/|!|-|\.|\*|'|\(|\)| |&|\$|@|=|;|:|\+|,|\?)*$", re.ASCII)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def exports(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = shlex.split(line)[1].partition("=")
            found[name] = value
    return found


def database_comment(name: str) -> tuple[bool, str | None]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
    return (row is not None, row[0] if row else None)


@pytest.fixture
def stack_database() -> Iterator[str]:
    """A database name unique to the test; dropped afterwards only if the stack marked it as its own."""
    name = f"migrate_test_stack_{uuid.uuid4().hex[:10]}"
    yield name
    stack.drop_database(PG_ADMIN_URL, name)


@pytest.fixture
def stack_options(tmp_path: Path, stack_database: str) -> Iterator[list[str]]:
    """`migrate stack up` options for a private stack; whatever it started is stopped and purged after."""
    state_dir = tmp_path / "stack"
    options = [
        "--state-dir", str(state_dir),
        "--pg-url", PG_ADMIN_URL,
        "--database", stack_database,
        "--supabase-port", str(free_port()),
        "--s3-port", str(free_port()),
    ]  # fmt: skip
    yield options
    if (state_dir / stack.STATE_FILE).exists():
        stack.down(state_dir=state_dir, purge=True)


def test_up_status_env_down(capsys: pytest.CaptureFixture[str], stack_options: list[str], stack_database: str) -> None:
    state_dir = Path(stack_options[1])
    supabase_port, s3_port = int(stack_options[7]), int(stack_options[9])

    code, out, err = run(capsys, "stack", "up", *stack_options, "--large-objects", "1")
    assert (code, err) == (0, "")
    assert f"supabase storage  http://127.0.0.1:{supabase_port}/storage/v1" in out
    assert f"s3 (seaweedfs)    http://127.0.0.1:{s3_port}" in out
    assert f"postgresql        postgresql://postgres@127.0.0.1:5432/{stack_database}" in out
    assert "seeded 3 buckets, 202 objects, " in out
    env = exports(out)
    assert env["SUPABASE_URL"] == f"http://127.0.0.1:{supabase_port}"
    assert env["AWS_ENDPOINT_URL_S3"] == env["MIGRATE_DEST_ENDPOINT_URL"] == f"http://127.0.0.1:{s3_port}"
    assert env["SUPABASE_DB_URL"].endswith(f"/{stack_database}")
    assert env["AWS_REGION"] == "us-east-1"
    assert {"SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_ANON_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
    assert env["SUPABASE_SECRET_KEY"].startswith("sb_secret_")
    assert env["SUPABASE_PUBLISHABLE_KEY"].startswith("sb_publishable_")
    assert "export SUPABASE_SECRET_KEY=sb_secret_" in out
    assert env["SUPABASE_S3_ENDPOINT"] == f"http://127.0.0.1:{supabase_port}/storage/v1/s3"

    # The state file holds the keys: owner-only. The database is marked as ours.
    state_file = state_dir / stack.STATE_FILE
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    state = json.loads(state_file.read_text())
    assert database_comment(stack_database) == (True, stack.STACK_COMMENT)

    # What the exports point at answers: S3 through boto3, Storage through httpx.
    client = s3_client(
        endpoint_url=env["AWS_ENDPOINT_URL_S3"],
        access_key=env["AWS_ACCESS_KEY_ID"],
        secret_key=env["AWS_SECRET_ACCESS_KEY"],
        region=env["AWS_REGION"],
    )
    assert {b["Name"] for b in client.list_buckets()["Buckets"]} == set(stack.DESTINATION_BUCKETS)
    client.put_object(Bucket="app-assets", Key="hello.txt", Body=b"hi")
    key = env["SUPABASE_SERVICE_ROLE_KEY"]
    auth = {"Authorization": f"Bearer {key}", "apikey": key}
    buckets = httpx.get(f"{env['SUPABASE_URL']}/storage/v1/bucket", headers=auth, timeout=10).json()
    assert {(b["id"], b["public"]) for b in buckets} == {("plugins", False), ("avatars", True), ("documents", False)}
    # The new secret key, in the apikey header only, is the service role too.
    by_secret = httpx.get(f"{env['SUPABASE_URL']}/storage/v1/bucket", headers={"apikey": env["SUPABASE_SECRET_KEY"]}, timeout=10)
    assert {b["id"] for b in by_secret.json()} == {"plugins", "avatars", "documents"}
    # The S3 protocol endpoint with the exported S3 access keys (path-style, SigV4).
    supabase_s3 = s3_client(
        endpoint_url=env["SUPABASE_S3_ENDPOINT"],
        access_key=env["SUPABASE_S3_ACCESS_KEY_ID"],
        secret_key=env["SUPABASE_S3_SECRET_ACCESS_KEY"],
        region=env["SUPABASE_S3_REGION"],
    )
    assert {b["Name"] for b in supabase_s3.list_buckets()["Buckets"]} == {"plugins", "avatars", "documents"}

    # The seed, counted in the catalog, is exactly the plan.
    _, planned = seed_plan(large_objects=1)
    with psycopg.connect(env["SUPABASE_DB_URL"]) as conn:
        rows = conn.execute(
            "SELECT bucket_id, name, (metadata->>'size')::bigint, metadata->>'mimetype', metadata->>'cacheControl'"
            " FROM storage.objects"
        ).fetchall()
    assert sorted((r[0], r[1], r[2]) for r in rows) == sorted((o.bucket, o.key, o.size) for o in planned)
    by_key = {(r[0], r[1]): r for r in rows}
    avatar = next(o for o in planned if o.bucket == "avatars")
    assert by_key[("avatars", avatar.key)][3:] == ("image/png", "max-age=3600")
    public = httpx.get(f"{env['SUPABASE_URL']}/storage/v1/object/public/avatars/{avatar.key}", timeout=10)
    assert public.content[:8] == b"\x89PNG\r\n\x1a\n"
    video = next(o for o in planned if o.key.startswith("videos/"))
    assert video.size > 100 * 1024 * 1024
    assert by_key[("documents", video.key)][2] == video.size

    # Seeding again is an upsert; the 100 MiB object is not sent twice.
    again = seed(env["SUPABASE_URL"], key, large_objects=1)
    assert (again.objects, again.unchanged) == (202, 1)

    # `up` again: already up, same endpoints and keys, nothing restarted.
    code, out_again, err = run(capsys, "stack", "up", *stack_options)
    assert (code, err) == (0, "")
    assert out_again.startswith("migrate stack is already up")
    assert exports(out_again) == env

    code, out, err = run(capsys, "stack", "status", "--state-dir", str(state_dir))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"supabase storage  up    http://127.0.0.1:{supabase_port}/storage/v1  3 buckets, 202 objects")
    assert lines[1].startswith(f"s3 (seaweedfs)    up    http://127.0.0.1:{s3_port}  3 buckets, 1 objects, 2 bytes")
    assert lines[2].startswith("postgresql        up")

    code, out, err = run(capsys, "stack", "env", "--state-dir", str(state_dir))
    assert (code, err) == (0, "")
    assert exports(out) == env
    assert all(line.startswith("export ") for line in out.splitlines())
    # And it really is eval-able by a shell.
    env_command = f"{shlex.quote(str(Path(sys.executable).parent / 'migrate'))} stack env --state-dir {shlex.quote(str(state_dir))}"
    shell = subprocess.run(
        ["bash", "-c", f'eval "$({env_command})" && echo "$AWS_ENDPOINT_URL_S3"'],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SUPABASE_"))},
    )
    assert shell.stdout.strip() == env["AWS_ENDPOINT_URL_S3"], shell.stderr

    code, out, err = run(capsys, "stack", "down", "--state-dir", str(state_dir))
    assert (code, err) == (0, "")
    assert f"supabase storage: stopped (pid {state['supabase']['pid']})" in out
    assert f"s3 (seaweedfs): stopped (pid {state['s3']['pid']})" in out
    assert not stack.process_running(state["supabase"]["pid"], state["supabase"]["data_dir"])
    assert not stack.process_running(state["s3"]["pid"], f"-dir={state['s3']['data_dir']}")
    assert state_file.exists() and Path(state["s3"]["data_dir"]).is_dir()  # data kept

    code, out, err = run(capsys, "stack", "status", "--state-dir", str(state_dir))
    assert code == 3
    assert "supabase storage  down" in out and "s3 (seaweedfs)    down" in out
    code, out, err = run(capsys, "stack", "env", "--state-dir", str(state_dir))
    assert (code, out) == (4, "")
    assert err == f"migrate: the stack in {state_dir.resolve()} is not running; run `migrate stack up`\n"

    code, out, err = run(capsys, "stack", "down", "--state-dir", str(state_dir), "--purge")
    assert code == 0
    assert f"database {stack_database} dropped" in out
    assert database_comment(stack_database) == (False, None)
    assert not state_file.exists() and not Path(state["s3"]["data_dir"]).exists()


def test_port_in_use_is_one_line_and_exit_4(
    capsys: pytest.CaptureFixture[str], stack_options: list[str], stack_database: str
) -> None:
    for flag, index in (("--supabase-port", 7), ("--s3-port", 9)):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            options = list(stack_options)
            options[index] = str(port)
            code, out, err = run(capsys, "stack", "up", *options)
        assert (code, out) == (4, "")
        assert err == f"migrate: port {port} on 127.0.0.1 is in use; pass {flag} N or stop what is using it\n"
    # Checked before anything was created or started.
    assert database_comment(stack_database) == (False, None)
    assert not (Path(stack_options[1]) / stack.STATE_FILE).exists()


def test_postgres_unreachable_is_one_line_and_exit_4(
    capsys: pytest.CaptureFixture[str], stack_options: list[str]
) -> None:
    closed = free_port()
    options = list(stack_options)
    options[3] = f"postgresql://postgres@127.0.0.1:{closed}/postgres"
    code, out, err = run(capsys, "stack", "up", *options)
    assert (code, out) == (4, "")
    assert err == (
        f"migrate: cannot connect to PostgreSQL at 127.0.0.1:{closed} (connection refused); "
        "start PostgreSQL or pass --pg-url postgresql://USER@HOST:PORT/postgres\n"
    )
    assert not (Path(stack_options[1]) / stack.STATE_FILE).exists()


def test_refuses_a_database_it_did_not_create(
    capsys: pytest.CaptureFixture[str], stack_options: list[str], make_database: Callable[[str], str]
) -> None:
    foreign = make_database("foreign").rpartition("/")[2]
    options = list(stack_options)
    options[5] = foreign
    code, out, err = run(capsys, "stack", "up", *options)
    assert (code, out) == (4, "")
    assert err == (
        f"migrate: database {foreign} on 127.0.0.1:5432 already exists and was not created by migrate stack; "
        "pass --database NAME to use a new one (migrate never touches a database it did not create)\n"
    )
    assert not (Path(stack_options[1]) / stack.STATE_FILE).exists()
    # Neither marked nor dropped: untouched.
    assert stack.drop_database(PG_ADMIN_URL, foreign) is False
    assert database_comment(foreign) == (True, None)


def test_bad_database_name_is_a_usage_error(capsys: pytest.CaptureFixture[str], stack_options: list[str]) -> None:
    options = list(stack_options)
    options[5] = 'x"; DROP DATABASE postgres; --'
    code, out, err = run(capsys, "stack", "up", *options)
    assert code == 2
    assert err.startswith("migrate: --database ") and err.count("\n") == 1


def test_down_never_signals_a_process_it_did_not_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A stale state file whose PIDs now belong to someone else.
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        state = stack.StackState(
            state_dir=str(tmp_path),
            database="migrate_test_never_created",
            database_url="postgresql://postgres@127.0.0.1:5432/migrate_test_never_created",
            admin_url=PG_ADMIN_URL,
            jwt_secret="j" * 40,
            service_key="s" * 40,
            anon_key="a" * 40,
            access_key="AKSTALE",
            secret_key="k" * 40,
            supabase=stack.SupabaseState(stranger.pid, 1, "http://127.0.0.1:1", str(tmp_path / "supabase"), "x.log"),
            s3=stack.S3State(stranger.pid, {}, "http://127.0.0.1:2", "us-east-1", str(tmp_path / "s3"), "y.log"),
        )
        stack.save_state(state)
        code, out, err = run(capsys, "stack", "down", "--state-dir", str(tmp_path))
        assert (code, err) == (0, "")
        assert "supabase storage: was not running" in out and "s3 (seaweedfs): was not running" in out
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_seed_plan_is_deterministic_and_realistic() -> None:
    buckets, objects = seed_plan(large_objects=2)
    again = seed_plan(large_objects=2)[1]
    assert [(o.bucket, o.key, o.size, o.content) for o in objects] == [(o.bucket, o.key, o.size, o.content) for o in again]
    assert {b.id: b.public for b in buckets} == {"plugins": False, "avatars": True, "documents": False}
    keys = {(o.bucket, o.key) for o in objects}
    assert len(keys) == len(objects) == 203
    assert all(SUPABASE_VALID_KEY.match(key) for _, key in keys)

    plugins = [o for o in objects if o.bucket == "plugins"]
    packages = [o for o in plugins if o.key.endswith("/package.tgz")]
    assert len(packages) == 30 and all(o.content and o.content[:2] == b"\x1f\x8b" for o in packages)
    assert sum(o.key.endswith("/index.json") for o in plugins) == 10
    avatars = [o for o in objects if o.bucket == "avatars"]
    assert len(avatars) == 50
    assert all(o.content and o.content[:8] == b"\x89PNG\r\n\x1a\n" and o.cache_control == "max-age=3600" for o in avatars)
    documents = [o for o in objects if o.bucket == "documents"]
    assert max(o.key.count("/") for o in documents) > 5
    placeholders = [o for o in documents if o.key.endswith("/.emptyFolderPlaceholder")]
    assert placeholders and all(o.size == 0 for o in placeholders)
    assert any(" " in o.key and "(" in o.key for o in documents)
    assert any(o.user_metadata for o in documents)
    large = [o for o in documents if o.stream is not None]
    assert len(large) == 2 and all(o.size > 100 * 1024 * 1024 for o in large)
    # Streamed in bounded chunks, the same bytes every time.
    first_chunks = [next(iter(o.chunks())) for o in large]
    assert all(len(chunk) <= 1024 * 1024 for chunk in first_chunks)
    assert first_chunks == [next(iter(o.chunks())) for o in large]


def test_seed_streams_large_objects_of_any_size(tmp_path: Path, make_database: Callable[[str], str]) -> None:
    from migrate.stack.supabase_server import launch

    server = launch(database_url=make_database("seed"), data_dir=tmp_path / "storage", jwt_secret="s" * 40)
    try:
        summary = seed(server.url, server.service_key, large_objects=1, large_size=3 * 1024 * 1024 + 7)
        assert (summary.buckets, summary.objects, summary.uploaded) == (3, 202, 202)
        video = next(o for o in seed_plan(large_objects=1, large_size=3 * 1024 * 1024 + 7)[1] if o.stream)
        auth: dict[str, Any] = {"Authorization": f"Bearer {server.service_key}", "apikey": server.service_key}
        got = httpx.get(f"{server.url}/storage/v1/object/documents/{video.key}", headers=auth, timeout=30)
        assert got.content == b"".join(video.chunks())
        info = httpx.get(f"{server.url}/storage/v1/object/info/authenticated/documents/{video.key}", headers=auth, timeout=10)
        assert info.json()["metadata"] == video.user_metadata
    finally:
        server.stop()
