"""`migrate run` as production goes wrong: kills, outages, two runs at once, stray uploads and probes.

Real servers only: the bundled Supabase Storage server as the source,
SeaweedFS as the destination, and the fault proxy (migrate/stack/faultproxy.py)
in front of SeaweedFS where a test takes the destination down. Runs are
subprocesses so they can be SIGKILLed (by the pid this test started).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from migrate.journal import TransferJournal
from migrate.stack.faultproxy import FaultProxy
from tests.test_cli import PART, SOURCE, Env

BIG = {"plugins/gamma/3.0.0/big.bin": 4 * PART + 5, "plugins/gamma/3.0.0/big2.bin": 3 * PART + 1}


@pytest.fixture
def env(supabase_server: Any, seaweed: Any, make_supabase_bucket: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    world = Env(supabase_server, seaweed, make_supabase_bucket(), tmp_path, monkeypatch)
    world.upload(SOURCE)
    return world


def _command(env: Env, *args: str) -> list[str]:
    return [sys.executable, "-m", "migrate", *args, str(env.plan), "--state-dir", str(env.tmp / "state"), "--reports-dir", str(env.tmp / "reports")] + (
        ["--no-progress"] if args[0] in ("run", "verify") else []
    )


def _start(env: Env, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(_command(env, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(extra_env or {})})


def _run(env: Env, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 180) -> tuple[int, str, str]:
    child = _start(env, *args, extra_env=extra_env)
    out, err = child.communicate(timeout=timeout)
    return child.returncode, out, err


def _journal_path(env: Env) -> Path:
    return next((env.tmp / "state" / "runs").iterdir()) / "journal.sqlite"


def _runs_started(env: Env) -> int:
    """`migrate run`s the journal has seen start (a run journals its start just before moving bytes)."""
    runs = env.tmp / "state" / "runs"
    journal = next(iter(runs.glob("*/journal.sqlite")), None) if runs.exists() else None
    if journal is None:
        return 0
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
    except sqlite3.Error:
        return 0


def _wait_until_moving_bytes(env: Env, child: "subprocess.Popen[str]", *, runs_before: int, timeout: float = 60.0) -> None:
    """Wait until the `run` child has journaled its start (just before it moves bytes), then a moment more.

    A fixed sleep is not enough on a loaded machine: the run can still be in its
    start-up checks, and an endpoint taken down then gives the start-up error,
    not the outage this test is about.
    """
    deadline = time.monotonic() + timeout
    while child.poll() is None and time.monotonic() < deadline and _runs_started(env) == runs_before:
        time.sleep(0.05)
    time.sleep(0.5)
    assert child.poll() is None, child.communicate()


def _states(env: Env) -> dict[str, str]:
    with TransferJournal(_journal_path(env), readonly=True) as journal:
        return {row.source_key: row.state for row in journal.iter_rows()}


def _uploads_left(env: Env) -> list[Any]:
    return env.s3.list_multipart_uploads(Bucket=env.dest).get("Uploads", [])


def _stray_objects(env: Env) -> list[str]:
    planned = {env.dest_key(key) for key in env.data}
    listed = env.s3.list_objects_v2(Bucket=env.dest).get("Contents", [])
    return [item["Key"] for item in listed if item["Key"] not in planned]


def test_kill_loop_at_random_moments_and_protocol_steps_ends_complete(env: Env) -> None:
    """At least 10 SIGKILLs (seeded), some at exact steps (between CreateMultipartUpload and its journal write, ...), then resume."""
    env.upload(BIG, offset=100)
    # Slowed down so that random kills land mid-transfer (the limit is enforced, see test_transfer's rate-limit test).
    env.plan.write_text(env.plan.read_text().replace("max_attempts: 6}", "max_attempts: 6, max_bandwidth: 1MiB/s}"))
    assert _run(env, "plan")[0] == 0
    rng = random.Random(20261201)
    steps = ["after-create-multipart", "after-first-part", "after-complete", "after-put", "after-create-multipart", "after-probe-write"]
    kills = rounds = 0
    while kills < 12 and rounds < 40:
        rounds += 1
        if rounds % 2 == 1:
            # Each protocol step once, then only the probe write, which every run reaches at its start: a step
            # no longer reached lets that run finish all the work, and no later kill could land.
            step = steps[rounds // 2] if rounds // 2 < len(steps) else "after-probe-write"
            code, _, err = _run(env, "run", extra_env={"MIGRATE_TEST_KILL_AT": step})
            if code == -signal.SIGKILL:
                kills += 1
            else:
                assert code == 0, err  # the step was no longer reached: everything it guards is done
        else:
            started = _runs_started(env)
            child = _start(env, "run")
            # A random moment once this run is moving bytes, whatever the machine's speed.
            deadline = time.monotonic() + 60
            while child.poll() is None and time.monotonic() < deadline and _runs_started(env) == started:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.1, 1.5))
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                kills += 1
            child.communicate(timeout=60)
    assert kills >= 10
    code, out, err = _run(env, "run")
    assert code == 0, out + err
    env.assert_migrated()  # 0 lost, 0 corrupted
    assert _uploads_left(env) == []
    assert _stray_objects(env) == []
    assert set(_states(env).values()) <= {"done", "skipped"}
    code, out, err = _run(env, "verify")
    assert code == 0, out + err


def test_kill_between_create_multipart_and_journal_leaves_no_upload(env: Env) -> None:
    env.data = {}
    env.upload({"plugins/beta/2.1.0/bundle.bin": 2 * PART + 17})
    code, _, _ = _run(env, "run", extra_env={"MIGRATE_TEST_KILL_AT": "after-create-multipart"})
    assert code == -signal.SIGKILL
    assert len(_uploads_left(env)) >= 1  # the kill really left one behind, unknown to the journal
    code, out, err = _run(env, "uploads")
    assert code == 0 and "1 unfinished" in out or "unfinished" in out, out + err
    code, out, err = _run(env, "run")
    assert code == 0, out + err
    assert _uploads_left(env) == []
    env.assert_migrated()


def test_verify_reports_uploads_in_progress_and_uploads_abort_clears_them(env: Env) -> None:
    assert _run(env, "plan")[0] == 0
    key = env.dest_key("plugins/beta/2.1.0/bundle.bin")
    upload_id = env.s3.create_multipart_upload(Bucket=env.dest, Key=key)["UploadId"]
    other = env.s3.create_multipart_upload(Bucket=env.dest, Key="not/planned.bin")["UploadId"]
    assert _run(env, "run")[0] == 0
    code, out, _ = _run(env, "verify")
    assert code == 3 and "upload-in-progress 1" in out, out
    code, out, _ = _run(env, "uploads", "--abort")
    assert code == 0 and "Aborted 1" in out, out
    left = {(u["Key"], u["UploadId"]) for u in _uploads_left(env)}
    assert (key, upload_id) not in left and ("not/planned.bin", other) in left  # only planned keys are touched
    env.s3.abort_multipart_upload(Bucket=env.dest, Key="not/planned.bin", UploadId=other)
    assert _run(env, "verify")[0] == 0


def test_verify_with_an_upload_in_progress_reports_as_before_from_rows_on_disk(env: Env) -> None:
    """The upload row is appended to the spooled rows: the report stays a scan of files, as without uploads (it was collected whole)."""
    from migrate.pipeline import verify_plan
    from migrate.plan import load_plan
    from migrate.report import UPLOAD_IN_PROGRESS, load_report

    assert env.migrate("plan") == 0 and env.migrate("run") == 0
    plan, state, reports = load_plan(env.plan), env.tmp / "state", env.tmp / "reports"
    before = verify_plan(plan, state_dir=state, reports_dir=reports).frame
    key = env.dest_key("plugins/beta/2.1.0/bundle.bin")
    upload_id = env.s3.create_multipart_upload(Bucket=env.dest, Key=key)["UploadId"]
    try:
        report = verify_plan(plan, state_dir=state, reports_dir=reports)
    finally:
        env.s3.abort_multipart_upload(Bucket=env.dest, Key=key, UploadId=upload_id)
    rows = report.frame
    assert rows.height == before.height + 1 and rows.head(before.height).drop("checked_at").equals(before.drop("checked_at"))
    upload = rows.row(before.height, named=True)
    assert (upload["status"], upload["dest_key"]) == (UPLOAD_IN_PROGRESS, key) and upload_id in upload["detail"]
    assert report.path is not None and load_report(report.path).equals(rows)
    assert "Parquet SCAN" in report.rows.explain()  # read from verify's spool, not a frame held in memory


def test_the_plans_verify_mode_is_the_default_of_verify_quick_included(env: Env) -> None:
    """`verify: {mode: quick}` in the plan is what verify does without --mode (the CLI offered quick, the plan refused it)."""
    from migrate.pipeline import verify_plan
    from migrate.plan import load_plan

    assert env.migrate("plan") == 0 and env.migrate("run") == 0
    env.plan.write_text(env.plan.read_text() + "verify: {mode: quick}\n")
    plan = load_plan(env.plan)
    report = verify_plan(plan, state_dir=env.tmp / "state", reports_dir=env.tmp / "reports")
    assert report.mode == "quick" and set(report.frame["checked_mode"]) == {"quick"}
    assert verify_plan(plan, mode="deep", state_dir=env.tmp / "state", reports_dir=env.tmp / "reports").mode == "deep"  # --mode wins


def test_on_conflict_fail_resumes_after_a_kill_right_after_complete(env: Env) -> None:
    """The upload completed, the journal never heard: under `fail` the object is still ours (same bytes)."""
    env.write_plan()
    env.plan.write_text(env.plan.read_text().replace("on_conflict: skip", "on_conflict: fail"))
    code, _, _ = _run(env, "run", extra_env={"MIGRATE_TEST_KILL_AT": "after-complete"})
    assert code == -signal.SIGKILL
    code, out, err = _run(env, "run")
    assert code == 0, out + err
    assert "0 failed" in out
    env.assert_migrated()
    assert _run(env, "verify")[0] == 0


def test_a_killed_probe_leaves_no_object_outside_the_plan(env: Env) -> None:
    code, _, _ = _run(env, "run", extra_env={"MIGRATE_TEST_KILL_AT": "after-probe-write"})
    assert code == -signal.SIGKILL
    assert any(key.startswith(".migrate-probe-") for key in _stray_objects(env))  # the kill left it
    code, out, err = _run(env, "run")
    assert code == 0, out + err
    assert _stray_objects(env) == []
    assert _run(env, "verify")[0] == 0


def test_second_run_of_the_same_plan_exits_4_naming_the_holder(env: Env) -> None:
    env.write_plan(extra="")
    env.plan.write_text(env.plan.read_text().replace("max_attempts: 6}", "max_attempts: 6, max_bandwidth: 1MiB/s}"))
    first = _start(env, "run")
    lock = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and first.poll() is None:
        runs = env.tmp / "state" / "runs"
        found = list(runs.glob("*/lock")) if runs.exists() else []
        if found and found[0].read_text().strip():
            lock = found[0]
            break
        time.sleep(0.05)
    assert lock is not None, first.communicate()
    code, out, err = _run(env, "run", timeout=30)
    assert code == 4, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"pid {first.pid}" in lines[0], err
    assert _run(env, "status", timeout=30)[0] == 0  # readers are not locked out
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err
    env.assert_migrated()


def _through_proxy(env: Env, proxy: FaultProxy, variable: str = "MIGRATE_DEST_ENDPOINT_URL") -> None:
    os.environ[variable] = proxy.endpoint_url  # env's monkeypatch restores it


@pytest.mark.parametrize("side", ["destination", "source"])
def test_endpoint_killed_mid_run_exits_4_fails_nothing_and_the_rerun_finishes(env: Env, seaweed: Any, supabase_server: Any, side: str) -> None:
    variable, upstream = ("MIGRATE_DEST_ENDPOINT_URL", seaweed.endpoint_url) if side == "destination" else ("SUPABASE_URL", supabase_server.url)
    host, port = upstream.removeprefix("http://").split(":")
    with FaultProxy(host, int(port.rstrip("/"))) as proxy:
        _through_proxy(env, proxy, variable)
        env.plan.write_text(env.plan.read_text().replace("max_attempts: 6}", "max_attempts: 6, max_bandwidth: 2MiB/s}"))
        assert _run(env, "plan")[0] == 0
        runs_before = _runs_started(env)
        child = _start(env, "run")
        _wait_until_moving_bytes(env, child, runs_before=runs_before)
        proxy.go_down()
        down_at = time.monotonic()
        out, err = child.communicate(timeout=180)
        took = time.monotonic() - down_at
        assert child.returncode == 4, out + err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and proxy.endpoint_url in lines[0] and "rerun the same command to continue" in lines[0], err
        assert took < 120  # generous: the monitor's window is 30 s
        assert "failed" not in set(_states(env).values())
        with sqlite3.connect(_journal_path(env)) as db:
            assert db.execute("SELECT outcome FROM runs ORDER BY id DESC LIMIT 1").fetchone()[0] == "failed"
        proxy.come_back()
        code, out, err = _run(env, "run")
        assert code == 0, out + err
    os.environ[variable] = upstream
    env.assert_migrated()
    assert _run(env, "verify")[0] == 0


def test_a_ten_second_destination_outage_is_ridden_out(env: Env, seaweed: Any) -> None:
    host, port = seaweed.endpoint_url.removeprefix("http://").split(":")
    with FaultProxy(host, int(port)) as proxy:
        _through_proxy(env, proxy)
        env.plan.write_text(env.plan.read_text().replace("max_attempts: 6}", "max_attempts: 6, max_bandwidth: 2MiB/s}"))
        runs_before = _runs_started(env)
        child = _start(env, "run")
        _wait_until_moving_bytes(env, child, runs_before=runs_before)
        proxy.go_down()
        time.sleep(10)
        proxy.come_back()
        out, err = child.communicate(timeout=180)
        assert child.returncode == 0, out + err
        assert "0 failed" in out
    os.environ["MIGRATE_DEST_ENDPOINT_URL"] = seaweed.endpoint_url
    env.assert_migrated()


def test_status_counts_add_up_to_the_manifest_after_an_exclusion(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    child = _start(env, "run", extra_env={"MIGRATE_TEST_KILL_AT": "after-first-part"})
    child.communicate(timeout=60)
    assert "in-progress" in set(_states(env).values())
    # Exclude the objects left in progress: the plan no longer copies them.
    in_progress = [key for key, state in _states(env).items() if state == "in-progress"]
    excluded = "\n".join(f'    - "{key}"' for key in in_progress)
    env.plan.write_text(env.plan.read_text() + f"filters:\n  exclude:\n{excluded}\n")
    assert env.migrate("plan") == 0
    capsys.readouterr()
    assert env.migrate("status") == 0
    out = capsys.readouterr().out
    numbers = {line.split()[0]: int(line.split()[1]) for line in out.splitlines() if line.strip().split()[:1] and line.split()[0] in ("done", "skipped", "in-progress", "failed")}
    not_started = int(next(line for line in out.splitlines() if "not started" in line).split()[-1])
    assert numbers["in-progress"] == 0
    assert sum(numbers.values()) + not_started == len(SOURCE) - len(in_progress), out
    assert "no longer copies" in out
