"""End to end through the `migrate` command: Supabase server -> SeaweedFS, as a user runs it."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any, Callable

import boto3
import httpx
import polars as pl
import pytest

from migrate.cli import main
from migrate.report import REPORT_SCHEMA
from migrate.stores.supabase import encode_key
from tests.test_bucket_config import moto_endpoint  # noqa: F401 - a fixture: moto keeps keys as AWS S3 does

MiB = 1024 * 1024
PART = 5 * MiB


def _body(index: int, size: int) -> bytes:
    return (hashlib.sha256(str(index).encode()).digest() * (size // 32 + 1))[:size]


SOURCE = {
    "plugins/alpha/1.0.0/package.tgz": 3000,
    "plugins/alpha/1.0.0/empty.txt": 0,
    "plugins/alpha/index.json": 120,
    "plugins/beta/2.1.0/package.tgz": PART + 1,
    "plugins/beta/2.1.0/bundle.bin": 2 * PART + 17,
    "plugins/beta/2.1.0/exact.bin": PART,
    "plugins/beta/2.1.0/just-under.bin": PART - 1,
}


class Env:
    """One test's world: a seeded Supabase bucket, an S3 bucket, a plan file, env vars, and paths."""

    def __init__(self, server: Any, seaweed: Any, bucket: str, tmp: Path, monkeypatch: pytest.MonkeyPatch):
        self.server, self.seaweed, self.bucket, self.tmp = server, seaweed, bucket, tmp
        self.dest = f"cli-{uuid.uuid4().hex[:8]}"
        self.s3 = seaweed.client()
        self.s3.create_bucket(Bucket=self.dest)
        self.http = httpx.Client(headers={"apikey": server.service_key, "Authorization": f"Bearer {server.service_key}"}, timeout=60)
        self.data: dict[str, bytes] = {}
        self.uploader: dict[str, str] = {}
        for env, value in {
            "SUPABASE_URL": server.url,
            "SUPABASE_SERVICE_ROLE_KEY": server.service_key,
            "AWS_ACCESS_KEY_ID": seaweed.access_key,
            "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
            "MIGRATE_DEST_ENDPOINT_URL": seaweed.endpoint_url,
            "MIGRATE_DEST_BUCKET": self.dest,
        }.items():
            monkeypatch.setenv(env, value)
        self.plan = tmp / "plugins.yaml"
        self.write_plan()

    def write_plan(self, *, rules: str | None = None, extra: str = "") -> None:
        rules = rules or """
  - name: index
    match: "plugins/{name}/index.json"
    to: "registry/{name}/index.json"
    cache_control: "public, max-age=60"
  - name: packages
    match: "plugins/{name}/{version}/{file**}"
    to: "registry/{name}/v{version}/{file}"
    cache_control: "public, max-age=31536000, immutable"
"""
        self.plan.write_text(
            f"""version: 1
name: cli-{self.dest}
source:
  type: supabase
  url: ${{SUPABASE_URL}}
  key: ${{SUPABASE_SERVICE_ROLE_KEY}}
  buckets: [{self.bucket}]
destination:
  bucket: ${{MIGRATE_DEST_BUCKET}}
  endpoint_url: ${{MIGRATE_DEST_ENDPOINT_URL}}
  region: us-east-1
  on_conflict: skip
rules:{rules}
transfer: {{concurrency: 4, part_size: 5MiB, multipart_threshold: 5MiB, max_attempts: 6}}
{extra}"""
        )

    def upload(self, objects: dict[str, int], *, offset: int = 0) -> None:
        for index, (key, size) in enumerate(objects.items()):
            body = _body(index + offset, size)
            headers = {
                "Content-Type": "application/octet-stream" if key.endswith(".bin") else "application/gzip",
                "cache-control": "max-age=300",
                "x-upsert": "true",
                "x-metadata": base64.b64encode(json.dumps({"uploader": f"u{index + offset}"}).encode()).decode(),
            }
            response = self.http.post(f"{self.server.url}/storage/v1/object/{self.bucket}/{encode_key(key)}", content=body, headers=headers)
            assert response.status_code == 200, response.text
            self.data[key] = body
            self.uploader[key] = f"u{index + offset}"

    def migrate(self, *args: str) -> int:
        return main([*args, str(self.plan), "--state-dir", str(self.tmp / "state"), "--reports-dir", str(self.tmp / "reports"), *(["--no-progress"] if args[0] in ("run", "verify") else [])])

    def dest_key(self, key: str) -> str:
        parts = key.split("/")
        if parts[-1] == "index.json":
            return f"registry/{parts[1]}/index.json"
        return f"registry/{parts[1]}/v{parts[2]}/{'/'.join(parts[3:])}"

    def assert_migrated(self) -> None:
        for key, body in self.data.items():
            got = self.s3.get_object(Bucket=self.dest, Key=self.dest_key(key))
            assert got["Body"].read() == body, key
            # Each object's own metadata, exactly: another object's would differ.
            assert got["Metadata"] == {"uploader": self.uploader[key]}, key
            expected_cache = "public, max-age=60" if key.endswith("index.json") else "public, max-age=31536000, immutable"
            assert got["CacheControl"] == expected_cache


@pytest.fixture
def env(supabase_server: Any, seaweed: Any, make_supabase_bucket: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    world = Env(supabase_server, seaweed, make_supabase_bucket(), tmp_path, monkeypatch)
    world.upload(SOURCE)
    return world


def test_plan_run_verify_status_end_to_end(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert env.migrate("plan") == 0
    out = capsys.readouterr().out
    assert "Nothing was written to the destination" in out and "| copy | 7 |" in out
    assert env.s3.list_objects_v2(Bucket=env.dest)["KeyCount"] == 0

    assert env.migrate("run") == 0
    out = capsys.readouterr().out
    assert "Copied 7 objects" in out and "0 failed" in out
    env.assert_migrated()

    assert env.migrate("status") == 0
    assert "done                 7" in capsys.readouterr().out

    assert env.migrate("run") == 0  # a finished plan moves nothing
    assert "Copied 0 objects" in capsys.readouterr().out and env.migrate("verify") == 0
    out = capsys.readouterr().out
    report_dirs = list((env.tmp / "reports").glob("cli-*-2*"))
    verify_dir = [d for d in report_dirs if (d / "report.parquet").exists()][0]
    frame = pl.read_parquet(verify_dir / "report.parquet")
    assert dict(frame.schema) == REPORT_SCHEMA
    assert frame["status"].to_list() == ["match"] * 7
    for name in ("report.csv", "summary.md", "summary.html"):
        assert (verify_dir / name).stat().st_size > 0

    env.s3.delete_object(Bucket=env.dest, Key=env.dest_key("plugins/alpha/1.0.0/package.tgz"))
    assert env.migrate("verify", "--mode", "deep") == 3
    assert "missing" in capsys.readouterr().out


def test_new_source_object_after_a_finished_run_is_the_only_one_moved(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert env.migrate("run") == 0
    capsys.readouterr()
    env.upload({"plugins/gamma/0.1.0/package.tgz": 777}, offset=100)
    assert env.migrate("run", "--replan") == 0
    out = capsys.readouterr().out
    assert "Copied 1 objects (777 bytes)" in out and "7 already migrated" in out
    env.assert_migrated()


def test_supabase_faults_are_retried_and_the_copy_is_byte_exact(env: Env, supabase_faults: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert env.migrate("plan") == 0
    supabase_faults(
        {"method": "GET", "path": "/object/authenticated/.*/package.tgz", "action": "status", "status": 429, "count": 2},
        {"method": "GET", "path": "/object/authenticated/.*/bundle.bin", "action": "truncate", "after_bytes": 1000, "count": 1},
        {"method": "GET", "path": "/object/authenticated/.*/index.json", "action": "drop", "count": 1},
        {"method": "GET", "path": "/object/authenticated/.*/exact.bin", "action": "status", "status": 503, "count": 1},
    )
    assert env.migrate("run") == 0, capsys.readouterr().err
    env.assert_migrated()
    remaining = httpx.get(f"{env.server.url}/storage/v1/_faults", headers={"apikey": env.server.service_key, "Authorization": f"Bearer {env.server.service_key}"}).json()
    assert all(rule.get("count") == 0 for rule in remaining.get("rules", [])), remaining


def test_missing_destination_bucket_is_one_clear_line(env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MIGRATE_DEST_BUCKET", "no-such-bucket-anywhere")
    assert env.migrate("run") == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["migrate: s3://no-such-bucket-anywhere at " + env.seaweed.endpoint_url + ": the bucket does not exist; create it or fix the bucket name in the plan"]


def test_wrong_credentials_are_one_clear_line_without_the_secret(env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-123")
    assert env.migrate("run") == 4
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("migrate: ") and "access denied" in lines[0]
    assert "wrong-secret-value-123" not in captured.err + captured.out
    assert "Traceback" not in captured.err


def test_bad_supabase_key_is_one_clear_line(env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJlLWlzLXdyb25n")
    assert env.migrate("plan") == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SUPABASE_SERVICE_ROLE_KEY" in err[0]
    assert "eyJ" not in err[0]


def test_invalid_plan_is_one_line_naming_file_line_and_key(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.write_plan(extra="transfer_typo: {concurrency: 4}\n")
    assert env.migrate("plan") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"migrate: {env.plan}:") and "transfer_typo" in err[0]


def test_collisions_block_the_run(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.write_plan(rules='\n  - {name: flat, match: "plugins/{name}/{version}/{file}", to: "all/{file}"}\n')
    assert env.migrate("plan") == 3
    assert "collide" in capsys.readouterr().err
    assert env.migrate("run") == 2
    assert "collide on destination keys" in capsys.readouterr().err
    assert env.s3.list_objects_v2(Bucket=env.dest)["KeyCount"] == 0


def test_the_source_is_never_modified(env: Env, supabase_server: Any) -> None:
    before = env.http.post(f"{supabase_server.url}/storage/v1/object/list-v2/{env.bucket}", json={"limit": 1000}).json()["objects"]
    assert env.migrate("run") == 0 and env.migrate("verify") == 0
    after = env.http.post(f"{supabase_server.url}/storage/v1/object/list-v2/{env.bucket}", json={"limit": 1000}).json()["objects"]
    assert [(o["name"], o["metadata"]["eTag"], o["updated_at"]) for o in before] == [(o["name"], o["metadata"]["eTag"], o["updated_at"]) for o in after]


def _journal_counts(path: Path) -> dict[str, tuple[int, int]]:
    from migrate.journal import TransferJournal

    with TransferJournal(path, readonly=True) as journal:
        return {state: (int(n), int(size or 0)) for state, (n, size) in journal.counts().items()}


def test_ctrl_c_stops_cleanly_and_the_next_run_moves_only_the_rest(env: Env, supabase_faults: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import re
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    # Slow every read down so the run is still going when Ctrl-C arrives.
    supabase_faults({"method": "GET", "path": "/object/authenticated/", "action": "latency", "delay_ms": 700, "count": None})
    command = [sys.executable, "-m", "migrate", "run", str(env.plan), "--state-dir", str(env.tmp / "state"), "--reports-dir", str(env.tmp / "reports"), "--no-progress", "--workers", "1"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    journal = env.tmp / "state" / "runs" / f"cli-{env.dest}" / "journal.sqlite"
    # Interrupt once at least one object is journaled as done (an event, not a guess at timing).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        try:
            if journal.exists() and _journal_counts(journal).get("done", (0, 0))[0] >= 1:
                break
        except sqlite3.OperationalError:  # the child has created the file but not its tables yet
            pass
        time.sleep(0.1)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, (out, err)
    assert "Rerun `migrate run" in err and "Traceback" not in err
    first_done, first_bytes = _journal_counts(journal)["done"]
    assert 1 <= first_done < len(SOURCE), "the interrupt must land mid-run for this test to mean anything"
    httpx.delete(f"{env.server.url}/storage/v1/_faults", headers={"apikey": env.server.service_key, "Authorization": f"Bearer {env.server.service_key}"})
    capsys.readouterr()
    assert env.migrate("run") == 0
    summary = capsys.readouterr().out
    moved = re.search(r"Copied (\d+) objects .*; (\d+) already migrated", summary)
    assert moved is not None, summary
    # The rerun moved the rest and only the rest: objects and bytes both add up.
    assert (int(moved[1]), int(moved[2])) == (len(SOURCE) - first_done, first_done)
    from migrate.journal import TransferJournal

    with TransferJournal(journal, readonly=True) as j:
        last = j.last_run()
    assert last is not None and last["outcome"] == "ok"
    assert (last["copied"], last["bytes"]) == (len(SOURCE) - first_done, sum(SOURCE.values()) - first_bytes)
    env.assert_migrated()


def test_a_bug_exits_1_with_a_masked_traceback(env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from migrate.journal import TransferJournal

    key = env.server.service_key

    def broken(self: Any, plan_fingerprint: str) -> int:
        raise ZeroDivisionError(f"a bug that leaked {key} into its message")

    monkeypatch.setattr(TransferJournal, "start_run", broken)
    assert env.migrate("run") == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in start_run" not in err and "in broken" in err
    lines = err.strip().splitlines()
    assert lines[-1] == "migrate: a bug that leaked *** into its message (internal error; please report it with the trace above)"
    assert key not in err


def test_no_secret_reaches_manifests_journals_or_reports(env: Env, supabase_faults: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:
    # A failing object too, so error texts land in the journal and the output.
    supabase_faults({"method": "GET", "path": "/object/authenticated/.*/exact.bin", "action": "status", "status": 500, "count": None})
    assert env.migrate("run") == 3
    run_output = capsys.readouterr()
    assert env.migrate("status", "--failed") == 0
    listing = capsys.readouterr()
    failed = [line for line in listing.out.splitlines() if line.startswith("  failed: ")]
    assert failed == [f"  failed: {env.bucket}/plugins/beta/2.1.0/exact.bin: supabase://{env.bucket}/plugins/beta/2.1.0/exact.bin: Supabase Storage error 500 (Internal server error)"], listing.out
    assert "  failed               1  5.0 MiB" in listing.out
    assert env.migrate("verify", "--mode", "deep") == 3
    verify_output = capsys.readouterr()
    captured = type(run_output)(run_output.out + listing.out + verify_output.out, run_output.err + listing.err + verify_output.err)
    secrets = [env.server.service_key, env.seaweed.secret_key, env.server.jwt_secret]
    written = [path for path in env.tmp.rglob("*") if path.is_file()]
    assert any(path.suffix == ".sqlite" for path in written) and any(path.name == "report.parquet" for path in written)
    for path in written:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"a secret is in {path}"
    for secret in secrets:
        assert secret not in captured.out + captured.err


def test_every_stage_speaks_json_and_quiet(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """`--json`: one JSON object on stdout per command; `-q`: nothing on stdout."""
    assert env.migrate("plan", "--json") == 0
    assert isinstance(json.loads(capsys.readouterr().out), dict)
    assert env.migrate("run", "--json") == 0
    ran = json.loads(capsys.readouterr().out)
    assert (ran["command"], ran["exit_code"], ran["copied"], ran["failed"]) == ("run", 0, 7, 0)
    assert ran["bytes_copied"] == sum(SOURCE.values())
    assert env.migrate("status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"]["done"]["objects"] == 7 and status["not_started"] == 0
    assert env.migrate("verify", "--json") == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified["counts"]["match"] == 7 and verified["ok"] is True
    assert env.migrate("run", "-q") == 0
    assert capsys.readouterr().out == ""
    # A failure is still one JSON object, with the one-line error in it (and on stderr).
    env.plan.write_text(env.plan.read_text().replace("version: 1", "version: 7"))
    assert env.migrate("status", "--json") == 2
    captured = capsys.readouterr()
    failed = json.loads(captured.out)
    assert failed["exit_code"] == 2 and failed["error"].startswith("migrate: ") and len(captured.err.strip().splitlines()) == 1


# -- start-up: what a command imports before it does any work -----------------------------------
_HEAVY = ("polars", "pyarrow", "boto3", "botocore", "awscrt", "httpx", "storage3", "pydantic", "psycopg", "dask", "matplotlib", "jsonschema", "tqdm", "tenacity", "yaml")


def _in_fresh_interpreter(code: str) -> str:
    """Run `code` in a new Python (a new `migrate` process, as a user starts one) and return its stdout."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["plan", "--help"], ["stack", "up", "--help"], ["backup", "--help"]])
def test_help_and_version_import_no_heavy_package(argv: list[str]) -> None:
    out = _in_fresh_interpreter(
        "import contextlib, io, sys\n"
        "from migrate.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        main({argv!r})\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, exit.code\n"
        f"print(sorted(name for name in {_HEAVY!r} if name in sys.modules))\n"
    )
    assert out.strip() == "[]", f"`migrate {' '.join(argv)}` imported {out.strip()}"


def test_the_stages_of_an_s3_plan_load_no_supabase_client_and_no_progress_bars() -> None:
    # What `plan`, `run` and `verify` import before they open a store: httpx and storage3 are the
    # Supabase source's, tqdm is drawn only on a terminal.
    out = _in_fresh_interpreter(
        "import sys\n"
        "import migrate.pipeline, migrate.verify, migrate.transfer, migrate.progress, migrate.cli\n"
        "migrate.cli.build_parser()\n"
        "migrate.progress.TqdmProgress(enabled=False).start(objects=1, total_bytes=1)\n"
        "print(sorted(name for name in ('httpx', 'storage3', 'tqdm') if name in sys.modules))\n"
    )
    assert out.strip() == "[]"


def test_a_command_does_not_scan_entry_points_for_pydantic_plugins() -> None:
    out = _in_fresh_interpreter(
        "import contextlib, io, importlib.metadata, os\n"
        "os.environ.pop('PYDANTIC_DISABLE_PLUGINS', None)\n"
        "groups = []\n"
        "scan = importlib.metadata.entry_points\n"
        "importlib.metadata.entry_points = lambda **kw: (groups.append(kw.get('group')), scan(**kw))[1]\n"
        "from migrate.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['schema']) == 0\n"
        "print('pydantic' in groups)\n"
    )
    assert out.strip() == "False"


def test_the_backup_package_still_offers_its_api() -> None:
    import migrate.backup
    from migrate.backup.snapshot import take_backup

    assert migrate.backup.take_backup is take_backup
    with pytest.raises(AttributeError):
        migrate.backup.no_such_name  # noqa: B018


def test_a_key_the_destination_stores_under_another_key_is_neither_copied_nor_verified(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """SeaweedFS stores `a//b.txt` as `a/b.txt` and answers HEAD and GET of `a//b.txt` with it (tests/stack/test_seaweed.py); AWS S3 keeps the key."""
    env.upload({"plugins/alpha/1.0.0/a//b.txt": 10}, offset=50)
    planned = "plugins/alpha/1.0.0/a//b.txt"  # no rule matches an empty segment: the key is kept as it is
    assert env.migrate("plan") == 0
    capsys.readouterr()
    assert env.migrate("run") == 3
    out = capsys.readouterr()
    assert "Copied 7 objects" in out.out and "1 failed" in out.out and "lists no object under this key" in out.out + out.err, out
    assert env.migrate("verify") == 3
    capsys.readouterr()
    verify_dir = [d for d in (env.tmp / "reports").glob("cli-*-2*") if (d / "report.parquet").exists()][0]
    rows = {row["dest_key"]: row["status"] for row in pl.read_parquet(verify_dir / "report.parquet").iter_rows(named=True)}
    assert rows[planned] == "missing" and list(rows.values()).count("match") == 7
    assert rows["plugins/alpha/1.0.0/a/b.txt"] == "unexpected"  # the object it was stored as, left in place (see KeyNotKept)


def test_s3_source_keys_the_destination_stores_under_other_keys_are_failed_and_missing(
    moto_endpoint: str, seaweed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An S3 source that keeps `a//b.txt` and `/lead` (moto, like AWS) into SeaweedFS, which stores them as `a/b.txt` and `lead`."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)  # moto takes any key pair
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    source = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    source.create_bucket(Bucket="src-keys")
    for key in ("a//b.txt", "/lead", "plain.txt"):
        source.put_object(Bucket="src-keys", Key=key, Body=key.encode() * 3)
    assert sorted(o["Key"] for o in source.list_objects_v2(Bucket="src-keys")["Contents"]) == ["/lead", "a//b.txt", "plain.txt"]
    dest = f"keys-{uuid.uuid4().hex[:8]}"
    seaweed.client().create_bucket(Bucket=dest)
    plan = tmp_path / "keys.yaml"
    plan.write_text(
        f"""version: 1
name: {dest}
source: {{type: s3, endpoint_url: "{moto_endpoint}", region: us-east-1, buckets: [src-keys]}}
destination: {{bucket: {dest}, endpoint_url: "{seaweed.endpoint_url}", region: us-east-1}}
"""
    )
    common = [str(plan), "--state-dir", str(tmp_path / "state"), "--reports-dir", str(tmp_path / "reports")]
    assert main(["plan", *common]) == 0
    assert main(["run", *common, "--no-progress"]) == 3
    assert "Copied 1 objects" in capsys.readouterr().out
    assert main(["verify", *common, "--no-progress"]) == 3
    (report,) = (tmp_path / "reports").glob(f"{dest}-*/report.parquet")
    rows = {row["dest_key"]: row["status"] for row in pl.read_parquet(report).iter_rows(named=True)}
    assert rows == {"a//b.txt": "missing", "/lead": "missing", "plain.txt": "match", "a/b.txt": "unexpected", "lead": "unexpected"}
