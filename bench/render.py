"""The Markdown report of one benchmark session: targets first, then a table per stage, then every run."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from bench.contenders import CONTENDERS, PLAN, SUPABASE_PLAN
from bench.datasets import MiB
from bench.report import Report, RunRecord, Spread, Target, best_of_ratios, copy_table, round_ratios, runs_table, spread, table, valid_runs
from bench.session import RUN_ALONE

if TYPE_CHECKING:
    from bench.session import Session

SPEED: Callable[[RunRecord], float] = lambda r: r.objects_per_s  # noqa: E731
MIB_PER_S: Callable[[RunRecord], float] = lambda r: r.mib_per_s  # noqa: E731
CPU_PER_OBJECT: Callable[[RunRecord], float] = lambda r: r.cpu_ms_per_object  # noqa: E731
# Speed of a listing: 1 / its seconds (0 when it did not report them: never paired).
LISTING_SPEED: Callable[[RunRecord], float] = lambda r: 1 / (_listing(r) or float("inf"))  # noqa: E731
#: What the Supabase-source target compares `migrate` with: the best of these in each round.
S_BASELINES = ("rclone-default", "rclone-tuned", "s5cmd")
#: (migrate's check, rclone's check it is paired with, the speed goal). `quick` proves what `rclone check` proves (size and
#: ETag/MD5 from the listings) plus the journal's record of the headers sent; `fast` adds a HEAD per object (headers
#: read back), so it is shown beside the same rclone pair with no goal.
VERIFY_PAIRS = (
    ("migrate verify quick", "rclone check", 2.0),
    ("migrate verify fast", "rclone check", None),
    ("migrate verify deep", "rclone check --download", 1.2),
)
INVENTORY_LABELS = {
    "catalog": "`CatalogStore.iter_objects` (PostgreSQL storage.objects)",
    "rest": "`SupabaseStore.iter_objects`, fetch_user_metadata=False",
    "rest-metadata": "`SupabaseStore.iter_objects`, fetch_user_metadata=True",
}


def _ratio(value: Spread) -> str:
    return "n/a" if value.n == 0 else value.text(2) + "x"


def _listing(run: RunRecord) -> float | None:
    return float(run.engine["list_seconds"]) if run.engine and "list_seconds" in run.engine else None


def _objects_figure(runs: list[RunRecord]) -> str:
    if not runs:
        return "n/a"
    return (
        f"{spread(r.objects_per_s for r in runs).text(0)} objects/s, {spread(r.measurement.wall for r in runs).text(1)} s, "
        f"{spread(r.cpu_ms_per_object for r in runs).text(2)} ms CPU/object"
    )


def _bytes_figure(runs: list[RunRecord]) -> str:
    if not runs:
        return "n/a"
    return f"{spread(r.mib_per_s for r in runs).text(1)} MiB/s, {spread(r.measurement.wall for r in runs).text(1)} s, {spread(r.rss_mib for r in runs).text(0)} MiB peak RSS"


def _seconds_figure(runs: list[RunRecord]) -> str:
    return f"{spread(r.measurement.wall for r in runs).text(2)} s, {spread(r.measurement.cpu for r in runs).text(2)} s CPU" if runs else "n/a"


def _verdict(ratio: Spread, goal: float, *, at_most: bool = False) -> bool | None:
    if not ratio.n:
        return None
    return ratio.median <= goal if at_most else ratio.median >= goal


def _has(runs: list[RunRecord], dataset: str) -> bool:
    return any(r.dataset == dataset for r in runs)


def targets(session: "Session") -> list[Target]:
    """The issue's targets, each with what this session measured against it (ratios per round, then median (min-max))."""
    runs, found = session.runs, []
    if _has(runs, "A"):
        tuned = valid_runs(runs, "A", "rclone-tuned")
        ratio = round_ratios(runs, "A", "migrate", "rclone-tuned", SPEED)
        found.append(Target("A: `migrate plan` + `migrate run`", ">= 1.3x rclone-tuned objects/s", _ratio(ratio), _verdict(ratio, 1.3),
                            _objects_figure(valid_runs(runs, "A", "migrate")), "rclone-tuned: " + _objects_figure(tuned)))
        cpu = round_ratios(runs, "A", "migrate", "rclone-tuned", CPU_PER_OBJECT)
        found.append(Target("A: client CPU per object (plan + run)", "<= 1.0x rclone-tuned's", _ratio(cpu), _verdict(cpu, 1.0, at_most=True),
                            f"{spread(r.cpu_ms_per_object for r in valid_runs(runs, 'A', 'migrate')).text(2)} ms",
                            f"rclone-tuned: {spread(r.cpu_ms_per_object for r in tuned).text(2)} ms"))
        alone = round_ratios(runs, "A", RUN_ALONE, "rclone-tuned", SPEED)
        found.append(Target("A: `migrate run` alone", ">= 1.6x rclone-tuned objects/s", _ratio(alone), _verdict(alone, 1.6),
                            _objects_figure(valid_runs(runs, "A", RUN_ALONE)), "rclone-tuned (same rounds)"))
    if _has(runs, "B"):
        default = valid_runs(runs, "B", "rclone-default")
        ratio = round_ratios(runs, "B", "migrate", "rclone-default", MIB_PER_S)
        found.append(Target("B: `migrate plan` + `migrate run`", ">= 1.05x rclone-default MiB/s", _ratio(ratio), _verdict(ratio, 1.05),
                            _bytes_figure(valid_runs(runs, "B", "migrate")), "rclone-default: " + _bytes_figure(default)))
        alone = round_ratios(runs, "B", RUN_ALONE, "rclone-default", MIB_PER_S)
        found.append(Target("B: `migrate run` alone", "none (beside the headline)", _ratio(alone), None,
                            _bytes_figure(valid_runs(runs, "B", RUN_ALONE)), "rclone-default (same rounds)", judged=False))
        rss = spread(r.rss_mib for r in valid_runs(runs, "B", "migrate"))
        found.append(Target("B: peak RSS (the larger of plan and run)", "<= 250 MiB", f"{rss.text(0)} MiB" if rss.n else "n/a",
                            rss.median <= 250 if rss.n else None, f"{rss.text(0)} MiB",
                            f"rclone-default: {spread(r.rss_mib for r in default).text(0)} MiB"))
    if _has(runs, "S"):
        rivals = [name for name in S_BASELINES if valid_runs(runs, "S", name)]
        ratio = best_of_ratios(runs, "S", "migrate", rivals, SPEED)
        best = spread(max((SPEED(r) for name in rivals for r in valid_runs(runs, "S", name) if r.round == n), default=None)
                      for n in sorted({r.round for r in runs if r.dataset == "S"}))
        found.append(Target("S: Supabase source, `migrate plan` + `migrate run` (REST)", ">= 1.3x the best of rclone/s5cmd (S3 endpoint), objects/s",
                            _ratio(ratio), _verdict(ratio, 1.3), _objects_figure(valid_runs(runs, "S", "migrate")),
                            f"best of {', '.join(rivals) or 'none'} per round: {best.text(0)} objects/s"))
        alone = best_of_ratios(runs, "S", RUN_ALONE, rivals, SPEED)
        found.append(Target("S: `migrate run` alone", "none (beside the headline)", _ratio(alone), None,
                            _objects_figure(valid_runs(runs, "S", RUN_ALONE)), "the same best, same rounds", judged=False))
    if "verify" in session.args.stages:
        for mine, theirs, goal in VERIFY_PAIRS:
            if goal is None:
                continue
            for dataset in [d for d in ("A", "B") if _has(session.verify_runs, d)]:
                ratio = round_ratios(session.verify_runs, dataset, mine, theirs, SPEED)
                found.append(
                    Target(f"{dataset}: `{mine}`", f">= {goal:g}x `{theirs}` (speed)", _ratio(ratio) if ratio.n else "not measured (see notes)",
                           _verdict(ratio, goal), _seconds_figure(valid_runs(session.verify_runs, dataset, mine)),
                           f"`{theirs}`: " + _seconds_figure(valid_runs(session.verify_runs, dataset, theirs)))
                )
    if session.inventory_runs:
        ratio = round_ratios(session.inventory_runs, "C", "catalog", "rest-metadata", LISTING_SPEED)
        catalog = spread(_listing(r) for r in valid_runs(session.inventory_runs, "C", "catalog"))
        rest_meta = spread(_listing(r) for r in valid_runs(session.inventory_runs, "C", "rest-metadata"))
        found.append(Target("C: catalog inventory", ">= 10x the REST inventory that keeps user metadata (listing time)",
                            _ratio(ratio) if ratio.n else "not measured (see notes)", _verdict(ratio, 10.0),
                            f"catalog: {catalog.text(2)} s", f"REST + user metadata: {rest_meta.text(2)} s"))
    return found


def headline(session: "Session", started: datetime, *, report_name: str) -> str:
    """bench/results/<date>-headline.md: the short table README.md quotes, targets with their verdicts."""
    rows = [[t.name, t.migrate, t.baseline, t.measured, t.goal, t.verdict] for t in targets(session)]
    memory = memory_curve(session.args.results_dir, started)
    lines = [
        f"Measured {started:%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores shared with the servers (`bash bench/run "
        + " ".join(session.args.argv) + f"`; full report `bench/results/{report_name}`). Medians (min–max) over "
        f"{session.rounds} paired round{'s' if session.rounds != 1 else ''}; each ratio is taken per round against the baseline measured in the same round.",
        "",
        table(["figure", "migrate", "baseline", "ratio", "target", "verdict"], rows) if rows else "No target measured.",
    ]
    if memory is not None:
        path, memory_rows = memory
        plot = path.with_suffix(".png")
        lines += ["", f"Memory curve (`{path.name}`" + (f", plot [{plot.name}]({plot.name})" if plot.is_file() else "") + "):", "", _memory_curve_table(memory_rows)]
    return "\n".join(lines) + "\n"


# -- the memory curve (bench/memory.py's results, another module's file: read defensively) --
def memory_curve(results: Path, started: datetime) -> tuple[Path, list[dict[str, Any]]] | None:
    """The rows of bench/results/<date>-memory.json (this run's date, else the newest such file), or None.

    Read defensively (bench/memory.py is another module's): a list of rows,
    or an object holding one under "rows" or "points"; each row a mapping
    with stage, objects, peak RSS (`peak_rss_mib` or `rss_mib`) and wall
    time (`wall_s` or `wall`). Anything else is skipped, never an error.
    """
    today = results / f"{started:%Y-%m-%d}-memory.json"
    candidates = [today] if today.is_file() else sorted(results.glob("*-memory.json"))[-1:]
    for path in candidates:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        rows = next((data[key] for key in ("rows", "points") if isinstance(data.get(key), list)), None) if isinstance(data, dict) else data
        if isinstance(rows, list):
            return path, [row for row in rows if isinstance(row, dict)]
    return None


def _cell(row: dict[str, Any], keys: tuple[str, ...], fmt: str) -> str:
    value = next((row[key] for key in keys if row.get(key) is not None), None)
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    try:
        return format(value, fmt)
    except (TypeError, ValueError):
        return str(value)


def _memory_curve_table(rows: list[dict[str, Any]]) -> str:
    return table(
        ["stage", "objects", "peak RSS MiB", "wall s"],
        [
            [_cell(r, ("stage",), ""), _cell(r, ("objects",), ","), _cell(r, ("peak_rss_mib", "rss_mib"), ".0f"), _cell(r, ("wall_s", "wall"), ".1f")]
            for r in rows
        ],
    )


def _memory_curve_section(session: "Session", started: datetime) -> str | None:
    found = memory_curve(session.args.results_dir, started)
    if found is None:
        return None
    path, rows = found
    plot = path.with_suffix(".png")
    return (
        f"## Memory curve (from `{path.name}`, written by `python -m bench.memory`)\n\n"
        + (_memory_curve_table(rows) if rows else "The file holds no rows.")
        + (f"\n\n![peak RSS by object count]({plot.name})" if plot.is_file() else "\n\n(no PNG beside it)")
    )


def _copy_section(session: "Session", name: str) -> str:
    spec = session.specs[name]
    names = [shown for c in session.args.contenders for shown in ((c, RUN_ALONE) if c == "migrate" else (c,))]
    contenders = [c for c in names if any(r.dataset == name and r.contender == c for r in session.runs)]
    route = "Supabase (migrate: REST; the others: its S3 endpoint) -> S3" if name == "S" else "S3 -> S3"
    section = f"## Dataset {name}: {spec.title}, {route}\n\n" + copy_table(
        session.runs, name, contenders, best_of=S_BASELINES if name == "S" else None
    )
    section += (
        "\n\n`migrate` is `migrate plan` + `migrate run` timed together (wall and CPU added up, the larger peak RSS): "
        "the pair a user runs, against `rclone copy`, which lists and copies in one command. "
        f"`{RUN_ALONE}` is the `migrate run` of the same runs without its plan."
    )
    if name == "S":
        section += (
            f" The plan is `{SUPABASE_PLAN.relative_to(SUPABASE_PLAN.parents[2])}` (REST list-v2 pages, then each object's user "
            "metadata); rclone runs with `--metadata` so that it carries the user metadata too; s5cmd goes through local disk and "
            "carries none (see the check column of every run)."
        )
    extras = [r.engine for r in valid_runs(session.runs, name, "migrate") if r.engine]
    plans = spread(e["plan"]["wall"] for e in extras if "plan" in e)
    reruns = [e["rerun"] for e in extras if "rerun" in e]
    if plans.n:
        section += (
            f"\n\nOf which `migrate plan`: {plans.text(2)} s wall, "
            f"{spread(e['plan']['user'] + e['plan']['sys'] for e in extras if 'plan' in e).text(2)} s CPU, "
            f"peak RSS {spread(e['plan']['max_rss_kib'] / 1024 for e in extras if 'plan' in e).text(0)} MiB."
        )
    if reruns:
        section += (
            f" A second `migrate run` with everything already done (start-up, manifest, journal look-ups): "
            f"{spread(r['wall'] for r in reruns).text(2)} s wall, {spread(r['user'] + r['sys'] for r in reruns).text(2)} s CPU "
            "-- the fixed part of the CPU figure above."
        )
    return section


def _verify_section(session: "Session") -> str:
    rows = []
    for dataset in sorted({r.dataset for r in session.verify_runs}):
        for name in ("rclone check", "migrate verify quick", "migrate verify fast", "rclone check --download", "migrate verify deep"):
            total = [r for r in session.verify_runs if r.dataset == dataset and r.contender == name]
            mine = [r for r in total if r.valid]
            if not total:
                rows.append([dataset, f"`{name}`", "not run", "", "", "", "", "", "see notes"])
                continue
            baseline = {mine: theirs for mine, theirs, _ in VERIFY_PAIRS}.get(name)
            ratio = _ratio(round_ratios(session.verify_runs, dataset, name, baseline, SPEED)) if baseline else "1"
            rows.append(
                [
                    dataset,
                    f"`{name}`",
                    f"{len(mine)}/{len(total)}",
                    spread(r.measurement.wall for r in mine).text(2),
                    spread(r.objects_per_s for r in mine).text(0),
                    spread(r.measurement.cpu for r in mine).text(2),
                    spread(r.rss_mib for r in mine).text(0),
                    ratio,
                    total[-1].check,
                ]
            )
    return (
        "## Verification (against the destination `migrate run` wrote)\n\n"
        + table(["dataset", "check", "valid runs", "seconds", "objects/s", "client CPU s", "peak RSS MiB", "speed vs its rclone pair", "result (last run)"], rows)
        + "\n\n`migrate verify quick` and `fast` pair with `rclone check` (size + stored checksums; fast also HEADs every object "
        "to read its headers back), `deep` with `rclone check --download` "
        "(both sides read again). Seconds are whole processes (start-up included) for both tools."
    )


def _memory_section(session: "Session") -> str:
    from bench.harness import MEMORY_CONCURRENCY, MEMORY_PART_SIZE
    from migrate.transfer import TransferOptions

    spec = session.specs["M"]
    rows = []
    for name in ("migrate", "rclone-default"):
        total = [r for r in session.memory_runs if r.contender == name]
        mine = [r for r in total if r.valid]
        settings = (
            f"`migrate plan` + `migrate run --workers {MEMORY_CONCURRENCY}`, part {MEMORY_PART_SIZE // MiB} MiB "
            f"(byte budget {TransferOptions(concurrency=MEMORY_CONCURRENCY, part_size=MEMORY_PART_SIZE).memory_budget // MiB} MiB)"
            if name == "migrate"
            else "defaults"
        )
        rows.append(
            [
                f"`{name}`",
                settings,
                f"{len(mine)}/{len(total)}",
                spread(r.rss_mib for r in mine).text(0),
                spread(r.mib_per_s for r in mine).text(1),
                spread(r.measurement.cpu for r in mine).text(2),
            ]
        )
    return f"## Memory: one {spec.min_size // MiB:,} MiB object, S3 -> S3\n\n" + table(
        ["contender", "settings", "valid runs", "peak RSS MiB", "MiB/s", "client CPU s"], rows
    )


def _inventory_section(session: "Session") -> str:
    runs = session.inventory_runs
    rest = spread(_listing(r) for r in runs if r.contender == "rest" and r.valid)
    rest_meta = spread(_listing(r) for r in runs if r.contender == "rest-metadata" and r.valid)
    rows = []
    for method, label in INVENTORY_LABELS.items():
        total = [r for r in runs if r.contender == method]
        if not total:
            continue
        mine = [r for r in total if r.valid]
        listing = spread(_listing(r) for r in mine)
        rows.append(
            [
                label,
                f"{len(mine)}/{len(total)}",
                listing.text(2),
                spread(r.objects / _listing(r) for r in mine if _listing(r)).text(0),
                spread(r.measurement.wall for r in mine).text(2),
                spread(r.rss_mib for r in mine).text(0),
                spread(r.measurement.cpu for r in mine).text(2),
                spread(r.server_cpu for r in mine).text(1),
                f"{rest.median / listing.median:.1f}x" if listing.n and rest.n else "n/a",
                f"{rest_meta.median / listing.median:.1f}x" if listing.n and rest_meta.n else "n/a",
            ]
        )
    return (
        f"## Inventory of C ({session.specs['C'].count:,} objects in one bucket of the bundled Supabase server)\n\n"
        + table(
            ["method", "valid runs", "listing s", "objects/s", "process s", "peak RSS MiB", "client CPU s", "server CPU s", "speed-up vs REST", "vs REST + metadata"],
            rows,
        )
        + "\n\nlisting s = the `iter_objects` loop alone (the target compares catalog with REST + metadata, per round); process s = the child's whole wall time, "
        "interpreter start-up and imports included; server CPU = the Supabase server process (PostgreSQL's own CPU not included). "
        "A run is valid when every object and byte was listed (and, for catalog and REST + metadata, every object's user metadata)."
    )


def render(session: "Session", started: datetime, machine: list[tuple[str, str]], versions: list[tuple[str, str]]) -> Report:
    args = session.args
    datasets = "-".join(args.datasets) + ("-quick" if args.quick else "")
    report = Report(title=f"migrate benchmark, {started:%Y-%m-%d %H:%M} UTC ({datasets})")
    report.header += [("date (UTC)", f"{started:%Y-%m-%d %H:%M:%S}"), ("command", "`bash bench/run " + " ".join(args.argv) + "`")]
    report.header += machine + versions
    report.header += [
        ("runs per contender", f"{session.rounds} (alternating: every contender once per round, rounds repeated)"),
        ("seed", str(args.seed)),
        ("server", "one SeaweedFS (`weed server -s3`) on 127.0.0.1 with source and destination buckets; a fresh destination bucket per run; "
                   "S and C: the bundled Supabase Storage server on 127.0.0.1 as the source"),
        ("migrate's plan", f"`{PLAN.relative_to(PLAN.parents[2])}` (defaults: concurrency 16, part 16 MiB, multipart from 64 MiB, SHA256, on_conflict skip)"),
        ("child timeout", f"{session.ctx.timeout:.0f}s"),
        # The default run is meant to fit in 45 minutes on 2 cores (bench/README.md): this says whether it did.
        ("benchmark wall time", f"{(datetime.now(started.tzinfo) - started).total_seconds() / 60:.1f} minutes (servers, seeding, checks and clean-up included)"),
        ("code measured", f"a snapshot of migrate/ taken at the start, source hash `{session.source_at_start}` (bench.environment.source_fingerprint)"),
    ]
    sections = report.sections
    sections.append(
        "Every contender moves the bytes through its own process (no server-side copy). Figures are the child process's own: "
        "wall time; client CPU = user + sys of the child from `os.wait4` (s5cmd: download + upload added up); peak RSS = its "
        "`ru_maxrss` (children are started by a small launcher so the harness's memory does not leak into it). Server CPU is "
        "SeaweedFS's user + sys during the run (on S, plus the Supabase server's): it shares the same 2 cores, so client CPU costs wall time too. Medians over valid "
        "runs, (min–max) after; ratios are taken per round against rclone in the same round, then the median (min–max) of "
        "those. A run is valid when the child exited 0 and the copy checks out: object count, every size, and the MD5 of "
        "64 sampled objects (of every object for B and the memory object)."
    )
    every = session.runs + session.verify_runs + session.memory_runs + session.inventory_runs
    sources = sorted({r.source for r in every if r.source}, key=lambda h: min(i for i, r in enumerate(every) if r.source == h))
    if len(sources) > 1:
        changed = [f"`{h}` from {next(r for r in every if r.source == h).dataset} {next(r for r in every if r.source == h).contender}" for h in sources]
        sections.append(
            "**Warning: migrate/ changed while this benchmark ran** (someone edited the code under test); runs before and "
            "after the change measure different code. Source hashes in order of first use: " + ", ".join(changed) + ". "
            "The `source` column of the raw JSON says which run measured which."
        )
    found = targets(session)
    if found and args.quick:
        sections.append(
            "**--quick is a smoke test**: tiny datasets, one run each. Start-up costs dominate its ratios, so the verdicts "
            "below say only that every stage ran and every copy checked out, not how migrate compares."
        )
    if found:
        sections.append(
            "## Headline: `migrate plan` + `migrate run` against `rclone copy`, and the other targets\n\n"
            + table(["figure", "migrate", "baseline", "ratio", "target", "verdict"], [[t.name, t.migrate, t.baseline, t.measured, t.goal, t.verdict] for t in found])
        )
    sections.append("## Contenders\n\n" + table(["contender", "what runs"], [[f"`{n}`", CONTENDERS[n].description] for n in args.contenders]))
    if session.seeding:
        sections.append("## Seeding\n\n" + table(["dataset", "how", "objects", "MiB", "seconds"], session.seeding))
    for name in ("A", "B", "S"):
        if any(r.dataset == name for r in session.runs):
            sections.append(_copy_section(session, name))
    if session.verify_runs:
        sections.append(_verify_section(session))
    if session.memory_runs:
        sections.append(_memory_section(session))
    if session.inventory_runs:
        sections.append(_inventory_section(session))
    curve = _memory_curve_section(session, started)
    if curve:
        sections.append(curve)
    if session.profile_section:
        sections.append(session.profile_section)
    if session.notes:
        sections.append("## Notes\n\n" + "\n".join(f"- {note}" for note in session.notes))
    if every:
        sections.append("## Every run\n\n" + runs_table(every))
    return report
