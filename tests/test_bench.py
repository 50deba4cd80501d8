"""bench/: the pure parts of the report (no servers, no timing): ratios, the derived `run alone` row, the memory curve."""

from __future__ import annotations

import json
from argparse import Namespace
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.measure import Measurement
from bench.render import headline, memory_curve, targets
from bench.report import RunRecord, best_of_ratios
from bench.session import RUN_ALONE, run_alone_record

STARTED = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def record(dataset: str, contender: str, round_no: int, wall: float, *, cpu: float = 1.0, engine: dict[str, Any] | None = None) -> RunRecord:
    measurement = Measurement(wall=wall, user=cpu, sys=0.0, max_rss_kib=100 * 1024, exit_code=0)
    return RunRecord(dataset, contender, round_no, objects=1000, bytes=1000 * 1024, measurement=measurement, valid=True, check="ok", engine=engine)


def test_best_of_ratios_pairs_each_round_with_its_fastest_rival() -> None:
    runs = [
        record("S", "migrate", 0, 10.0), record("S", "rclone-tuned", 0, 20.0), record("S", "s5cmd", 0, 12.5),
        record("S", "migrate", 1, 10.0), record("S", "rclone-tuned", 1, 15.0), record("S", "s5cmd", 1, 30.0),
    ]
    ratio = best_of_ratios(runs, "S", "migrate", ["rclone-tuned", "s5cmd"], lambda r: r.objects_per_s)
    assert (ratio.n, ratio.low, ratio.high) == (2, 1.25, 1.5)


def test_run_alone_is_derived_from_the_plan_plus_run_record() -> None:
    run = Measurement(wall=4.0, user=2.0, sys=0.5, max_rss_kib=90 * 1024, exit_code=0)
    combined = record("A", "migrate", 0, 6.0, engine={"plan": asdict(run), "run": asdict(run)})
    alone = run_alone_record(combined)
    assert alone is not None and alone.contender == RUN_ALONE and alone.measurement == run and alone.round == 0
    assert run_alone_record(record("A", "rclone-tuned", 0, 6.0)) is None


def session_of(runs: list[RunRecord], results: Path) -> Any:
    args = Namespace(stages={"verify"}, results_dir=results, argv=[], quick=False)
    return SimpleNamespace(runs=runs, verify_runs=[], inventory_runs=[], args=args, rounds=1)


def test_targets_judge_plan_plus_run_and_run_alone_against_rclone_tuned(tmp_path: Path) -> None:
    run = asdict(Measurement(wall=5.0, user=1.0, sys=0.0, max_rss_kib=1024, exit_code=0))
    combined = record("A", "migrate", 0, 8.0, cpu=1.0, engine={"plan": run, "run": run})
    runs = [combined, run_alone_record(combined), record("A", "rclone-tuned", 0, 10.0, cpu=2.0)]
    found = {t.name: t for t in targets(session_of([r for r in runs if r], tmp_path))}
    assert found["A: `migrate plan` + `migrate run`"].met is False  # 1.25x < 1.3x
    assert found["A: client CPU per object (plan + run)"].met is True
    assert found["A: `migrate run` alone"].met is True  # 2.0x >= 1.6x


def test_memory_curve_is_read_defensively(tmp_path: Path) -> None:
    assert memory_curve(tmp_path, STARTED) is None
    (tmp_path / "2026-12-01-memory.json").write_text("not json")
    assert memory_curve(tmp_path, STARTED) is None
    rows = [{"stage": "plan", "objects": 100000, "peak_rss_mib": 150.4, "wall_s": 3.2}, "junk", {"stage": "run"}]
    (tmp_path / "2026-12-01-memory.json").write_text(json.dumps({"rows": rows}))
    found = memory_curve(tmp_path, STARTED)
    assert found is not None and [row.get("stage") for row in found[1]] == ["plan", "run"]
    (tmp_path / "2026-12-01-memory.png").write_bytes(b"png")
    text = headline(session_of([], tmp_path), STARTED, report_name="r.md")
    assert "| plan | 100,000 | 150 | 3.2 |" in text and "| run |  |  |  |" in text
    assert "[2026-12-01-memory.png](2026-12-01-memory.png)" in text


def test_memory_curve_takes_bench_memory_points_too(tmp_path: Path) -> None:
    """The shape bench/memory.py writes today: {"points": [{stage, objects, rss_mib, wall, ...}]}."""
    points = [{"stage": "plan", "objects": 1000000, "rss_mib": 932.6, "wall": 220.2, "cpu": 47.7, "exit_code": 0}]
    (tmp_path / "2026-11-30-memory.json").write_text(json.dumps({"measured_at": "x", "points": points}))
    found = memory_curve(tmp_path, STARTED)  # no file of this date: the newest one
    assert found is not None and found[0].name == "2026-11-30-memory.json"
    assert "| plan | 1,000,000 | 933 | 220.2 |" in headline(session_of([], tmp_path), STARTED, report_name="r.md")
