"""Bad inputs, table-driven: the README's exit code, exactly one line on stderr, no traceback, nothing written.

Each case changes one thing of a working setup (plan file, CLI arguments,
environment, state directory, credentials, endpoints) and runs one command
through `migrate.cli.main`, as a user would.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from migrate.cli import main

GOOD_PLAN = """version: 1
name: bad-{tag}
source:
  type: supabase
  url: ${{SUPABASE_URL}}
  key: ${{SUPABASE_SERVICE_ROLE_KEY}}
  buckets: [{bucket}]
destination:
  bucket: ${{MIGRATE_DEST_BUCKET}}
  endpoint_url: ${{MIGRATE_DEST_ENDPOINT_URL}}
  region: us-east-1
  on_conflict: skip
rules:
  - name: all
    match: "{{path**}}"
    to: "x/{{path}}"
transfer: {{concurrency: 2, part_size: 5MiB, max_attempts: 2}}
"""


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]  # command first; the plan path and --state-dir/--reports-dir are added unless `raw`
    code: int
    replace: tuple[tuple[str, str], ...] = ()  # (old, new) text edits of the good plan
    env: dict[str, str] = field(default_factory=dict)
    state: str = "fresh"  # fresh | file | unwritable | corrupt-manifest | corrupt-journal | planned
    raw: bool = False


def _plan_edit(old: str, new: str) -> tuple[tuple[str, str], ...]:
    return ((old, new),)


CASES = [
    # -- CLI arguments (2)
    Case("no-command", (), 2, raw=True),
    Case("unknown-command", ("frobnicate",), 2, raw=True),
    Case("run-without-plan", ("run",), 2, raw=True),
    Case("workers-zero", ("run", "--workers", "0"), 2),
    Case("workers-negative", ("run", "--workers", "-3"), 2),
    Case("workers-not-a-number", ("run", "--workers", "many"), 2),
    Case("sample-zero", ("verify", "--sample", "0"), 2),
    Case("mode-unknown", ("verify", "--mode", "slow"), 2),
    Case("unknown-flag", ("run", "--turbo"), 2),
    Case("plan-file-missing", ("plan", "/nonexistent/plan.yaml"), 2, raw=True),
    Case("plan-file-is-a-directory", ("plan", "/tmp"), 2, raw=True),
    # -- the plan file (2)
    Case("plan-empty", ("plan",), 2, replace=(("", ""),)),
    Case("plan-invalid-yaml", ("plan",), 2, replace=_plan_edit("rules:", "rules: [unclosed")),
    Case("plan-version-2", ("plan",), 2, replace=_plan_edit("version: 1", "version: 2")),
    Case("plan-unknown-key", ("plan",), 2, replace=_plan_edit("rules:", "rulez: []\nrules:")),
    Case("plan-concurrency-zero", ("run",), 2, replace=_plan_edit("concurrency: 2", "concurrency: 0")),
    Case("plan-part-size-too-small", ("plan",), 2, replace=_plan_edit("part_size: 5MiB", "part_size: 1MiB")),
    Case("plan-rps-zero", ("run",), 2, replace=_plan_edit("max_attempts: 2", "max_attempts: 2, max_requests_per_second: 0")),
    Case("plan-rps-word", ("run",), 2, replace=_plan_edit("max_attempts: 2", "max_attempts: 2, max_requests_per_second: fast")),
    Case("plan-rps-negative", ("run",), 2, replace=_plan_edit("max_attempts: 2", "max_attempts: 2, max_requests_per_second: -5")),
    Case("plan-bandwidth-too-low", ("run",), 2, replace=_plan_edit("max_attempts: 2", "max_attempts: 2, max_bandwidth: 1KiB/s")),
    Case("plan-bandwidth-not-a-size", ("run",), 2, replace=_plan_edit("max_attempts: 2", "max_attempts: 2, max_bandwidth: quick")),
    Case("plan-on-conflict-unknown", ("plan",), 2, replace=_plan_edit("on_conflict: skip", "on_conflict: maybe")),
    Case("plan-checksum-unknown", ("plan",), 2, replace=_plan_edit("max_attempts: 2", "max_attempts: 2, checksum_algorithm: MD4")),
    Case("plan-no-destination", ("plan",), 2, replace=_plan_edit("destination:", "destinationx:")),
    Case("plan-bad-template", ("plan",), 2, replace=_plan_edit('to: "x/{path}"', 'to: "x/{nosuch}"')),
    Case("plan-unset-variable", ("plan",), 2, replace=_plan_edit("${SUPABASE_URL}", "${MIGRATE_NO_SUCH_VARIABLE}")),
    Case("plan-source-type-unknown", ("plan",), 2, replace=_plan_edit("type: supabase", "type: ftp")),
    Case("plan-max-attempts-zero", ("plan",), 2, replace=_plan_edit("max_attempts: 2", "max_attempts: 0")),
    # -- environment, credentials, endpoints (4)
    Case("supabase-key-wrong", ("plan",), 4, env={"SUPABASE_SERVICE_ROLE_KEY": "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.d3Jvbmc"}),
    Case("supabase-unreachable", ("plan",), 4, env={"SUPABASE_URL": "http://127.0.0.1:9"}),
    Case("aws-secret-wrong", ("run",), 4, env={"AWS_SECRET_ACCESS_KEY": "wrong-secret-value-123"}),
    Case("dest-bucket-missing", ("run",), 4, env={"MIGRATE_DEST_BUCKET": "no-such-bucket-anywhere"}),
    Case("dest-endpoint-unreachable", ("run",), 4, env={"MIGRATE_DEST_ENDPOINT_URL": "http://127.0.0.1:9"}),
    Case("source-bucket-missing", ("plan",), 4, replace=_plan_edit("buckets: [", "buckets: [no-such-source-bucket, ")),
    Case("verify-dest-unreachable", ("verify",), 4, env={"MIGRATE_DEST_ENDPOINT_URL": "http://127.0.0.1:9"}, state="planned"),
    # -- the state directory
    Case("state-dir-is-a-file-plan", ("plan",), 2, state="file"),
    Case("state-dir-is-a-file-run", ("run",), 2, state="file"),
    Case("state-dir-is-a-file-status", ("status",), 2, state="file"),
    Case("state-dir-not-writable", ("plan",), 4, state="unwritable"),
    Case("status-before-plan", ("status",), 2),
    Case("verify-before-plan", ("verify",), 2),
    Case("uploads-before-plan", ("uploads",), 2),
    Case("corrupt-manifest-run", ("run",), 4, state="corrupt-manifest"),
    Case("corrupt-manifest-status", ("status",), 4, state="corrupt-manifest"),
    Case("corrupt-manifest-verify", ("verify",), 4, state="corrupt-manifest"),
    Case("corrupt-journal-status", ("status",), 4, state="corrupt-journal"),
    Case("corrupt-journal-run", ("run",), 4, state="corrupt-journal"),
]


@pytest.fixture(scope="module")
def world(supabase_server: Any, seaweed: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One source bucket with one object and one destination bucket, shared by every case (nothing is written to them)."""
    bucket = f"bad-{uuid.uuid4().hex[:8]}"
    headers = {"apikey": supabase_server.service_key, "Authorization": f"Bearer {supabase_server.service_key}"}
    with httpx.Client(base_url=supabase_server.storage_url, headers=headers, timeout=30) as http:
        assert http.post("/bucket", json={"id": bucket, "name": bucket, "public": False}).status_code == 200
        assert http.post(f"/object/{bucket}/a.txt", content=b"hello", headers={"Content-Type": "text/plain"}).status_code == 200
        dest = f"bad-{uuid.uuid4().hex[:8]}"
        seaweed.client().create_bucket(Bucket=dest)
        yield {"bucket": bucket, "dest": dest, "server": supabase_server, "seaweed": seaweed}
        http.request("DELETE", f"/object/{bucket}", json={"prefixes": ["a.txt"]})
        http.delete(f"/bucket/{bucket}")


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    server, seaweed = world["server"], world["seaweed"]
    for name, value in {
        "SUPABASE_URL": server.url,
        "SUPABASE_SERVICE_ROLE_KEY": server.service_key,
        "AWS_ACCESS_KEY_ID": seaweed.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
        "MIGRATE_DEST_ENDPOINT_URL": seaweed.endpoint_url,
        "MIGRATE_DEST_BUCKET": world["dest"],
        "MIGRATE_STATE_DIR": str(tmp_path / "env-state"),
    }.items():
        monkeypatch.setenv(name, value)
    plan_text = GOOD_PLAN.format(tag=case.name, bucket=world["bucket"])
    for old, new in case.replace:
        plan_text = new if old == "" else plan_text.replace(old, new)
    plan = tmp_path / "plan.yaml"
    plan.write_text(plan_text)
    state, reports = tmp_path / "state", tmp_path / "reports"
    if case.state in ("planned", "corrupt-manifest", "corrupt-journal"):
        assert main(["plan", str(plan), "--state-dir", str(state), "--reports-dir", str(reports)]) == 0
        run_dir = next((state / "runs").iterdir())
        if case.state == "corrupt-manifest":
            (run_dir / "manifest.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
        if case.state == "corrupt-journal":
            (run_dir / "journal.sqlite").write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    elif case.state == "file":
        state.write_text("not a directory\n")
    elif case.state == "unwritable":
        state = Path("/sys/migrate-cannot-write-here")  # a read-only place even for root
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    before = _files(tmp_path)
    argv = list(case.argv) if case.raw else [*case.argv, str(plan), "--state-dir", str(state), "--reports-dir", str(reports)]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse exits; the console script turns this into the exit code too
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == case.code, captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("migrate: ") and "Traceback" not in captured.err
    assert _files(tmp_path) == before, "a failing command wrote something"
    assert not (tmp_path / "env-state").exists()
    assert os.environ.get("MIGRATE_STATE_DIR")  # the env state dir was in play and stayed untouched
