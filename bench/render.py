"""The Markdown report of one benchmark session: targets first, then a table per stage, then every run."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Callable

from bench.contenders import CONTENDERS, PLAN
from bench.datasets import MiB
from bench.report import Report, RunRecord, Spread, Target, copy_table, round_ratios, runs_table, spread, table, valid_runs

if TYPE_CHECKING:
    from bench.harness import Session

SPEED: Callable[[RunRecord], float] = lambda r: r.objects_per_s  # noqa: E731
VERIFY_PAIRS = (("migrate verify fast", "rclone check"), ("migrate verify deep", "rclone check --download"))
INVENTORY_LABELS = {
    "catalog": "`CatalogStore.iter_objects` (PostgreSQL storage.objects)",
    "rest": "`SupabaseStore.iter_objects`, fetch_user_metadata=False",
    "rest-metadata": "`SupabaseStore.iter_objects`, fetch_user_metadata=True",
}


def _ratio(value: Spread) -> str:
    return "n/a" if value.n == 0 else value.text(2) + "x"


def _listing(run: RunRecord) -> float | None:
    return float(run.engine["list_seconds"]) if run.engine and "list_seconds" in run.engine else None


def targets(session: "Session") -> list[Target]:
    """The issue's targets, each with what this session measured against it."""
    runs, found = session.runs, []
    if any(r.dataset == "A" for r in runs):
        ratio = round_ratios(runs, "A", "migrate", "rclone-tuned", SPEED)
        cpu = spread(r.cpu_ms_per_object for r in valid_runs(runs, "A", "migrate"))
        found.append(Target("A: throughput", ">= 1.25x rclone-tuned objects/s", _ratio(ratio), ratio.median >= 1.25 if ratio.n else None))
        found.append(Target("A: client CPU", "<= 1.0 ms per object", f"{cpu.text(3)} ms" if cpu.n else "n/a", cpu.median <= 1.0 if cpu.n else None))
    if any(r.dataset == "B" for r in runs):
        ratio = round_ratios(runs, "B", "migrate", "rclone-default", lambda r: r.mib_per_s)
        rss = spread(r.rss_mib for r in valid_runs(runs, "B", "migrate"))
        found.append(Target("B: throughput", ">= 1.0x rclone-default MiB/s", _ratio(ratio), ratio.median >= 1.0 if ratio.n else None))
        found.append(Target("B: peak RSS", "<= 250 MiB", f"{rss.text(0)} MiB" if rss.n else "n/a", rss.median <= 250 if rss.n else None))
    if "verify" in session.args.stages and runs:
        for (mine, theirs), goal in zip(VERIFY_PAIRS, (2.0, 1.0)):
            for dataset in [d for d in ("A", "B") if any(r.dataset == d for r in session.verify_runs)]:
                ratio = round_ratios(session.verify_runs, dataset, mine, theirs, SPEED)
                found.append(
                    Target(
                        f"{dataset}: {mine}",
                        f">= {goal:g}x {theirs} (speed)",
                        _ratio(ratio) if ratio.n else "not measured (see notes)",
                        ratio.median >= goal if ratio.n else None,
                    )
                )
    if session.inventory_runs:
        catalog = spread(_listing(r) for r in session.inventory_runs if r.contender == "catalog" and r.valid)
        rest = spread(_listing(r) for r in session.inventory_runs if r.contender == "rest" and r.valid)
        if catalog.n and rest.n:
            speedup = rest.median / catalog.median
            found.append(Target("C: catalog inventory", ">= 10x faster than REST (fetch_user_metadata=False)", f"{speedup:.1f}x (listing time, medians)", speedup >= 10))
    return found


def _copy_section(session: "Session", name: str) -> str:
    spec = session.specs[name]
    contenders = [c for c in session.args.contenders if any(r.dataset == name and r.contender == c for r in session.runs)]
    section = f"## Dataset {name}: {spec.title}, S3 -> S3\n\n" + copy_table(session.runs, name, contenders)
    extras = [r.engine for r in valid_runs(session.runs, name, "migrate") if r.engine]
    plans = spread(e["plan"]["wall"] for e in extras if "plan" in e)
    reruns = [e["rerun"] for e in extras if "rerun" in e]
    if plans.n:
        section += (
            f"\n\n`migrate plan` before each `migrate run` (not counted above): {plans.text(2)} s wall, "
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
        for name in ("rclone check", "migrate verify fast", "rclone check --download", "migrate verify deep"):
            total = [r for r in session.verify_runs if r.dataset == dataset and r.contender == name]
            mine = [r for r in total if r.valid]
            if not total:
                rows.append([dataset, f"`{name}`", "not run", "", "", "", "", "", "see notes"])
                continue
            baseline = dict(VERIFY_PAIRS).get(name)
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
        + "\n\n`migrate verify fast` pairs with `rclone check` (size + stored checksums), `deep` with `rclone check --download` "
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
            f"`migrate run --workers {MEMORY_CONCURRENCY}`, part {MEMORY_PART_SIZE // MiB} MiB "
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
        + "\n\nlisting s = the `iter_objects` loop alone (what the target compares); process s = the child's whole wall time, "
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
        ("server", "one SeaweedFS (`weed server -s3`) on 127.0.0.1 with source and destination buckets; a fresh destination bucket per run"),
        ("migrate's plan", f"`{PLAN.relative_to(PLAN.parents[2])}` (defaults: concurrency 16, part 16 MiB, multipart from 64 MiB, SHA256, on_conflict skip)"),
        ("child timeout", f"{session.ctx.timeout:.0f}s"),
        ("code measured", f"a snapshot of migrate/ taken at the start, source hash `{session.source_at_start}` (bench.environment.source_fingerprint)"),
    ]
    sections = report.sections
    sections.append(
        "Every contender moves the bytes through its own process (no server-side copy). Figures are the child process's own: "
        "wall time; client CPU = user + sys of the child from `os.wait4` (s5cmd: download + upload added up); peak RSS = its "
        "`ru_maxrss` (children are started by a small launcher so the harness's memory does not leak into it). Server CPU is "
        "SeaweedFS's user + sys during the run: it shares the same 2 cores, so client CPU costs wall time too. Medians over valid "
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
        sections.append("## Headline: targets\n\n" + table(["target", "goal", "measured", "verdict"], [[t.name, t.goal, t.measured, t.verdict] for t in found]))
    sections.append("## Contenders\n\n" + table(["contender", "what runs"], [[f"`{n}`", CONTENDERS[n].description] for n in args.contenders]))
    if session.seeding:
        sections.append("## Seeding\n\n" + table(["dataset", "how", "objects", "MiB", "seconds"], session.seeding))
    for name in ("A", "B"):
        if any(r.dataset == name for r in session.runs):
            sections.append(_copy_section(session, name))
    if session.verify_runs:
        sections.append(_verify_section(session))
    if session.memory_runs:
        sections.append(_memory_section(session))
    if session.inventory_runs:
        sections.append(_inventory_section(session))
    if session.profile_section:
        sections.append(session.profile_section)
    if session.notes:
        sections.append("## Notes\n\n" + "\n".join(f"- {note}" for note in session.notes))
    if every:
        sections.append("## Every run\n\n" + runs_table(every))
    return report
