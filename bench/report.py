"""Figures per run, medians and ranges per contender, ratios to rclone, and the Markdown report.

Medians and ranges are over the *valid* runs only (a run whose copy was
wrong, or whose process failed, is listed but never counted). Ratios are
taken round by round: a contender's throughput divided by rclone's in the
same round, because the server, the page cache and the machine drift
between rounds more than between two neighbouring runs.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

from bench.measure import Measurement

MiB = 1024 * 1024


@dataclass
class RunRecord:
    """One timed run of one contender on one dataset."""

    dataset: str
    contender: str
    round: int
    objects: int
    bytes: int
    measurement: Measurement
    valid: bool
    check: str
    server_cpu: float | None = None
    engine: dict[str, Any] | None = None
    # The machine's 1-minute load average when the run started: other work shows here.
    load: float | None = None
    # Hash of migrate/ when the run started (see bench.environment.source_fingerprint).
    source: str | None = None

    @property
    def objects_per_s(self) -> float:
        return self.objects / self.measurement.wall if self.measurement.wall else 0.0

    @property
    def mib_per_s(self) -> float:
        return self.bytes / MiB / self.measurement.wall if self.measurement.wall else 0.0

    @property
    def cpu_ms_per_object(self) -> float:
        return 1000 * self.measurement.cpu / self.objects if self.objects else 0.0

    @property
    def engine_cpu_ms_per_object(self) -> float | None:
        if not self.engine or not self.objects:
            return None
        return 1000 * float(self.engine["engine_cpu"]) / self.objects

    @property
    def rss_mib(self) -> float:
        return self.measurement.max_rss_mib

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            objects_per_s=self.objects_per_s,
            mib_per_s=self.mib_per_s,
            cpu_ms_per_object=self.cpu_ms_per_object,
            rss_mib=self.rss_mib,
        )
        return data


@dataclass
class Spread:
    median: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 1) -> str:
        if self.n == 0:
            return "n/a"
        if self.n == 1 or self.low == self.high:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}–{self.high:.{digits}f})"


def spread(values: Iterable[float | None]) -> Spread:
    numbers = [v for v in values if v is not None]
    if not numbers:
        return Spread(0.0, 0.0, 0.0, 0)
    return Spread(statistics.median(numbers), min(numbers), max(numbers), len(numbers))


def valid_runs(runs: list[RunRecord], dataset: str, contender: str) -> list[RunRecord]:
    return [r for r in runs if r.dataset == dataset and r.contender == contender and r.valid]


def round_ratios(runs: list[RunRecord], dataset: str, contender: str, baseline: str, metric: Callable[[RunRecord], float]) -> Spread:
    """metric(contender) / metric(baseline), pairing the two runs of each round (both valid)."""
    mine = {r.round: r for r in valid_runs(runs, dataset, contender)}
    theirs = {r.round: r for r in valid_runs(runs, dataset, baseline)}
    return spread(metric(mine[n]) / metric(theirs[n]) for n in sorted(mine) if n in theirs and metric(theirs[n]) > 0)


def best_of_ratios(
    runs: list[RunRecord], dataset: str, contender: str, baselines: Iterable[str], metric: Callable[[RunRecord], float]
) -> Spread:
    """metric(contender) / the best metric among `baselines` in the same round (rounds where both sides have a valid run)."""
    mine = {r.round: r for r in valid_runs(runs, dataset, contender)}
    names = list(baselines)
    ratios = []
    for n in sorted(mine):
        theirs = [metric(r) for name in names for r in valid_runs(runs, dataset, name) if r.round == n]
        best = max(theirs, default=0.0)
        if best > 0:
            ratios.append(metric(mine[n]) / best)
    return spread(ratios)


@dataclass
class Target:
    """One target from the issue, what was measured against it, and the verdict."""

    name: str
    goal: str
    measured: str
    met: bool | None  # None: could not be measured
    # The figures behind the ratio, for the headline table: migrate's and the baseline's (median, min-max).
    migrate: str = ""
    baseline: str = ""
    # False: a figure shown beside a target (e.g. `run` alone on B), with no target of its own.
    judged: bool = True

    @property
    def verdict(self) -> str:
        if not self.judged:
            return "—"
        return {True: "met", False: "**missed**", None: "not measured"}[self.met]


@dataclass
class Report:
    title: str
    header: list[tuple[str, str]] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"# {self.title}", ""]
        lines += [f"- **{name}:** {value}" for name, value in self.header]
        lines.append("")
        for section in self.sections:
            lines.append(section.rstrip())
            lines.append("")
        return "\n".join(lines)


def table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def copy_table(runs: list[RunRecord], dataset: str, contenders: list[str], *, best_of: tuple[str, ...] | None = None) -> str:
    """Per contender: throughput, client CPU, peak RSS, server CPU, and the ratios to rclone in the same rounds.

    `best_of`: also a column against the best of these contenders in each round (dataset S).
    """
    headers = [
        "contender",
        "valid runs",
        "objects/s",
        "MiB/s",
        "client CPU ms/object",
        "peak RSS MiB",
        "server CPU s",
        "÷ rclone-default",
        "÷ rclone-tuned",
    ] + (["÷ best of " + "/".join(best_of)] if best_of else [])
    rows = []
    for name in contenders:
        mine = valid_runs(runs, dataset, name)
        total = len([r for r in runs if r.dataset == dataset and r.contender == name])
        throughput: Callable[[RunRecord], float] = lambda r: r.objects_per_s  # noqa: E731
        ratios = [
            "1" if name == baseline else round_ratios(runs, dataset, name, baseline, throughput).text(2) + "x"
            for baseline in ("rclone-default", "rclone-tuned")
        ]
        rows.append(
            [
                f"`{name}`",
                f"{len(mine)}/{total}",
                spread(r.objects_per_s for r in mine).text(0),
                spread(r.mib_per_s for r in mine).text(1),
                spread(r.cpu_ms_per_object for r in mine).text(3),
                spread(r.rss_mib for r in mine).text(0),
                spread(r.server_cpu for r in mine).text(1),
                *[ratio if ratio != "n/ax" else "n/a" for ratio in ratios],
                *([_ratio_text(best_of_ratios(runs, dataset, name, [b for b in best_of if b != name], throughput))] if best_of else []),
            ]
        )
    return table(headers, rows)


def _ratio_text(value: Spread) -> str:
    return "n/a" if value.n == 0 else value.text(2) + "x"


def runs_table(runs: list[RunRecord]) -> str:
    """Every run, in the order it ran, valid or not."""
    headers = ["dataset", "round", "contender", "wall s", "user s", "sys s", "peak RSS MiB", "server CPU s", "load", "exit", "check"]
    rows = [
        [
            r.dataset,
            str(r.round + 1),
            r.contender,
            f"{r.measurement.wall:.2f}",
            f"{r.measurement.user:.2f}",
            f"{r.measurement.sys:.2f}",
            f"{r.rss_mib:.0f}",
            f"{r.server_cpu:.1f}" if r.server_cpu is not None else "",
            f"{r.load:.1f}" if r.load is not None else "",
            str(r.measurement.exit_code) + (" (timeout)" if r.measurement.timed_out else ""),
            r.check,
        ]
        for r in runs
    ]
    return table(headers, rows)
