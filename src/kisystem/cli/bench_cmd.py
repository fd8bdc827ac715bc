"""`kisystem bench ...`: benchmarks that print figures measured in one run."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from kisystem.bench.cache import answers_path
from kisystem.bench.humaneval import ArmTotals, humaneval_tasks, merge_pieces
from kisystem.cli.bench_taskpack_cmd import taskpack
from kisystem.cli.context import AppContext, pass_app
from kisystem.cli.tasks_cmd import parse_range
from kisystem.errors import UsageError
from kisystem.loop.humaneval import PROBLEM_COUNT
from kisystem.loop.taskspec import TaskSpec

if TYPE_CHECKING:
    from kisystem.bench.routing import OutcomeTable


@click.group("bench")
def bench_group() -> None:
    """Benchmarks: the same tasks under several strategies, in one process."""


@bench_group.command("humaneval")
@click.option("--range", "span", default="0:40", show_default=True, help="Problems A:B (half-open).")
@click.option("--cache", "cache_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Answer and verdict cache [default: HOME/bench/answers.db, shared by the benchmarks].")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Results JSON [default: humaneval-A-B.json next to the cache].")
@click.option("--loop-only", is_flag=True,
              help="Only the loop arm: to compare loop settings, e.g. KISYSTEM_LESSONS_IN_PROMPTS=1 against 0.")
@pass_app
def humaneval(app: AppContext, span: str, cache_file: Path | None, out_file: Path | None, loop_only: bool) -> None:
    """The loop against single shot and compute-matched resampling on HumanEval problems.

    Every answer and judged attempt is cached: an interrupted run resumes where it
    stopped.  A long range can be run in pieces in separate sittings (--range 80:122,
    then 122:164), each starting from an empty record, and summed with
    `kisystem bench humaneval-merge`.
    """
    from kisystem.bench.humaneval import HumanEvalBench

    start, stop = parse_range(span, PROBLEM_COUNT)
    tasks = humaneval_tasks(start, stop)
    cache_file = cache_file or answers_path(app.paths.home)
    bench = HumanEvalBench(app.config, app.inventory, app.paths, cache_file, loop_only=loop_only)
    started = time.monotonic()
    worked: list[float] = []  # seconds of the problems that were not all answered from the cache
    last = [started]

    def progress(number: int, task: TaskSpec, outcomes: dict) -> None:
        now = time.monotonic()
        elapsed, took, last[0] = now - started, now - last[0], now
        if took > CACHED_PROBLEM_S:
            worked.append(took)
        eta = sum(worked) / len(worked) * (len(tasks) - number) if worked else 0.0
        loop = outcomes["loop"]
        singles = " ".join(f"{arm.split('-')[-1]}{'+' if o.solved else '-'}" for arm, o in outcomes.items()
                           if arm.startswith("single"))
        singles = f", single {singles}" if singles else ""
        app.err_console.print(f"[{number}/{len(tasks)}] {task.id}: loop {'+' if loop.solved else '-'} in "
                              f"{loop.attempts} ({loop.model_s:.0f} model-s){singles} · "
                              f"{_minutes(elapsed)}, ~{_minutes(eta)} left", soft_wrap=True)

    warn = lambda msg: app.err_console.print(f"[yellow]warning: {msg}[/yellow]")
    ladder, totals = asyncio.run(bench.run(tasks, progress, warn))
    app.console.print(humaneval_table(list(totals.values()), f"HumanEval {start}:{stop}"))
    settings = ("-loop" if loop_only else "") + ("-lessons" if app.config.lessons_in_prompts else "")
    out = out_file or cache_file.with_name(f"humaneval-{start}-{stop}{settings}.json")
    out.write_text(json.dumps({"range": [start, stop], "ladder": ladder, "inventory": app.inventory.source,
                               "config": app.config.to_dict(),
                               "arms": [t.to_dict() for t in totals.values()]}, indent=1))
    app.console.print(f"results: {out}\ncache: {cache_file}")


@bench_group.command("humaneval-merge")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Merged results JSON [default: humaneval-A-C.json next to the first file].")
@pass_app
def humaneval_merge(app: AppContext, results: tuple[Path, ...], out_file: Path | None) -> None:
    """Sum the results of `bench humaneval` pieces (contiguous ranges, one ladder) into one table."""
    pieces = []
    for path in results:
        try:
            pieces.append(json.loads(path.read_text()))
        except (OSError, ValueError) as err:
            raise UsageError(f"{path}: not a bench humaneval result ({err})") from err
    merged = merge_pieces(pieces)
    start, stop = merged["range"]
    arms = [ArmTotals.from_dict(a) for a in merged["arms"]]
    app.console.print(humaneval_table(arms, f"HumanEval {start}:{stop} (pieces {merged['pieces']})"))
    out = out_file or results[0].with_name(f"humaneval-{start}-{stop}.json")
    out.write_text(json.dumps(merged, indent=1))
    app.console.print(f"results: {out}")


CACHED_PROBLEM_S = 5.0  # a problem answered from the cache takes about a second of judging


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def humaneval_table(totals: list, title: str) -> Table:
    t = Table(title=title)
    for col in ("arm", "solved", "attempts", "tokens", "model time", "wall time", "solved / model-min"):
        t.add_column(col)
    for r in totals:
        t.add_row(r.arm, f"{r.solved}/{r.problems}", str(r.attempts), str(r.tokens), f"{r.model_s:.0f} s",
                  f"{r.wall_s:.0f} s", f"{r.solved_per_model_minute:.2f}")
    return t


@bench_group.command("ensemble")
@click.option("--range", "span", default="0:20", show_default=True, help="HumanEval problems A:B (half-open).")
@click.option("--cache", "cache_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Answer and verdict cache [default: HOME/bench/answers.db, shared by the benchmarks].")
@pass_app
def ensemble(app: AppContext, span: str, cache_file: Path | None) -> None:
    """Best single model, the full ensemble and the adaptive ensemble on the same HumanEval problems:
    solved, wall time, model-seconds, solved per model-minute, early-stop savings, and the concurrent
    fan-out's wall time against its members run one after another.  Resumes an interrupted range."""
    from kisystem.bench import ensemble as eb

    start, stop = parse_range(span, PROBLEM_COUNT)
    tasks = humaneval_tasks(start, stop)
    cache_file = cache_file or answers_path(app.paths.home)
    out = cache_file.with_name(f"ensemble-{start}-{stop}.json")
    bench = eb.EnsembleBench(app.config, app.inventory, app.paths, cache_file, out.with_suffix(".progress.jsonl"))

    def progress(number: int, task: TaskSpec, outcomes: dict, resumed: bool) -> None:
        marks = " ".join(f"{arm.removeprefix(eb.SINGLE)}{'+' if o.solved else '-'}" for arm, o in outcomes.items())
        app.err_console.print(f"[{number}/{len(tasks)}] {task.id}: {marks}{' (recorded earlier)' if resumed else ''}",
                              soft_wrap=True, markup=False)

    warn = lambda msg: app.err_console.print(f"[yellow]warning: {msg}[/yellow]")
    fleet, totals = asyncio.run(bench.run(tasks, progress, warn))
    arms = list(totals.values())
    app.console.print(eb.table(arms, f"Ensembles on HumanEval {start}:{stop}, fleet: {', '.join(fleet)}"))
    for line in eb.verdict(arms):
        app.console.print(line, markup=False)
    out.write_text(json.dumps({"range": [start, stop], "fleet": fleet, "inventory": app.inventory.source,
                               "config": app.config.to_dict(), "arms": [a.to_dict() for a in arms],
                               "verdict": eb.verdict(arms)}, indent=1))
    app.console.print(f"results: {out}\ncache: {cache_file}")


@bench_group.command("routing")
@click.option("--range", "span", default="0:40", show_default=True,
              help="HumanEval problems A:B (half-open); 'none' for no HumanEval.")
@click.option("--pack", is_flag=True, help="Add the task pack's CPU tasks (C, C++, DSP; CUDA needs a GPU).")
@click.option("--testsdocs", is_flag=True, help="Add the Tests/Docs tasks of examples/testsdocs.")
@click.option("--k", "k", type=click.IntRange(1, 10), default=None,
              help="Recorded samples per model and task [default: the largest stop-loss of the routes' models].")
@click.option("--shuffle-seed", type=int, default=0, show_default=True,
              help="Seed of the stream order and of Thompson.")
@click.option("--stream-length", type=click.IntRange(1), default=None,
              help="Tasks in the replayed stream [default: 3 passes].")
@pass_app
def routing(app: AppContext, span: str, pack: bool, testsdocs: bool, k: int | None, shuffle_seed: int,
            stream_length: int | None) -> None:
    """Replay one task stream, mixed over domains, under static, spec, Thompson and oracle routing.

    Real outcomes of every model of each task's route (k samples per task) are recorded
    once and cached under HOME/bench, one file per task set; later runs replay from the
    cache without a model.  Each model keeps its own stop-loss in the replay.
    """
    from collections import Counter

    from kisystem.bench import (
        routing as rb,  # lazy: the policies pull in the meta-supervisor
    )
    from kisystem.errors import UsageError

    humaneval = None if span.strip().lower() in ("", "none") else parse_range(span, PROBLEM_COUNT)
    tasks, mix = rb.mixed_tasks(humaneval, pack, rb.TESTSDOCS_DIR if testsdocs else None)
    if not tasks:
        raise UsageError("no tasks: give a HumanEval --range, --pack or --testsdocs")
    chains = {t.domain: app.inventory.route(t.domain).chain for t in tasks}
    stoploss = app.config.stoploss_per_model
    per_model = rb.own_stoplosses(app.inventory, (m for c in chains.values() for m in c))
    needed = rb.default_k(stoploss, per_model, chains)
    k = k or needed
    cache = rb.cache_path(app.paths.home, [t.id for t in tasks], chains, k)
    table = _outcomes(app, tasks, cache, k)
    if k < needed:
        app.err_console.print(f"[yellow]k={k} < the largest stop-loss {needed}: "
                              f"some models get only {k} tries in the replay[/yellow]")
    stream = rb.task_stream(table.tasks, stream_length or 3 * len(table.tasks), shuffle_seed)
    specs = {t.id: t for t in tasks}
    rows = rb.comparison(rb.replay(app.config, table, specs, stream, shuffle_seed, per_model=per_model))
    title = f"Routing replay: {mix}, k={k}, {len(stream)} tasks"
    app.console.print(routing_table(rows, title, table.models, dict(table.chains)))
    for line in [*rb.verdict(rows), *rb.evidence_lines(rows)]:
        app.console.print(line)
    out = cache.with_name(f"{cache.stem.replace('outcomes', 'replay')}-n{len(stream)}-seed{shuffle_seed}.json")
    meta = {"tasks": mix, "range": list(humaneval) if humaneval else None, "pack": pack, "testsdocs": testsdocs,
            "k": k, "seed": shuffle_seed, "stream_length": len(stream), "stoploss_per_model": stoploss,
            "stoploss_own": per_model, "chains": {d: list(c) for d, c in table.chains.items()},
            "domains": dict(Counter(table.domains.values()))}
    app.console.print(f"results: {rb.save_replay(out, meta, rows)}")


def _outcomes(app: AppContext, tasks: list[TaskSpec], cache: Path, k: int) -> OutcomeTable:
    from kisystem.bench import routing as rb

    if cache.exists():
        app.err_console.print(f"reusing recorded outcomes from {cache}")
        return rb.load_table(cache)
    app.err_console.print(f"recording {k} samples per model for {len(tasks)} tasks into {cache}")

    def progress(task: str, per_model) -> None:
        parts = [f"{m} {sum(s.solved for s in ss)}/{len(ss)} ({sum(s.cost_s for s in ss):.1f} s)"
                 for m, ss in per_model.items()]
        app.err_console.print(f"{task}: " + ", ".join(parts))

    warn = lambda msg: app.err_console.print(f"[yellow]warning:[/yellow] {msg}")
    return asyncio.run(rb.record_table(app.config, app.inventory, app.paths, tasks, k, cache, progress, warn))


def routing_table(rows: list[dict], title: str, models: list[str], chains: dict[str, tuple[str, ...]]) -> Table:
    routes = "; ".join(f"{d}: {' → '.join(c)}" for d, c in chains.items())
    t = Table(title=title, caption=f"(×) ratio to the static route; regret: solved and seconds against the oracle;"
              f" Q1-Q4: the stream's quarters; starts: {' / '.join(models)}; routes: {routes}")
    for col in ("policy", "solved", "seconds", "solved/min", "regret", "solve % Q1-Q4", "s/task Q1-Q4", "starts"):
        t.add_column(col, no_wrap=True)
    for r in rows:
        t.add_row(r["policy"], f"{r['solved']}/{r['attempted']} ({_x(r['solved_vs_static'])})",
                  f"{r['cost_s']:.0f} ({_x(r['cost_vs_static'])})",
                  f"{r['solved_per_minute']:.2f} ({_x(r['solved_per_minute_vs_static'])})",
                  f"{r['regret_solved']}, {r['regret_s']:+.0f}",
                  " ".join(f"{100 * q:.0f}" for q in r["quarter_solve_rate"]),
                  " ".join(f"{q:.1f}" for q in r["quarter_cost_s"]),
                  " / ".join(str(r["starts"].get(m, 0)) for m in models))
    return t


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}×"


@bench_group.command("profiling")
@click.option("--iterations", default=None, type=click.IntRange(2),
              help="Run only the first N versions of the scripted sequence [default: all 14].")
@click.option("--size", default=None, type=click.IntRange(1),
              help="Matrix size for the benchmark harness [default: the task's 256].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of tables.")
@pass_app
def profiling(app: AppContext, iterations: int | None, size: int | None, as_json: bool) -> None:
    """Two-tier against always-full profiling on a scripted matmul optimization run
    (real compiled code, injected regressions, no model)."""
    from kisystem.bench import profiling as bench

    progress = bench.progress_printer(app.err_console)
    result = asyncio.run(bench.run_profiling_bench(iterations, size, app.config, progress=progress))
    out = bench.save(result, app.paths.home / "bench" / f"profiling-{time.strftime('%Y%m%d-%H%M%S')}.json")
    if as_json:
        click.echo(result.to_json())
        return
    for table in bench.tables(result):
        app.console.print(table)
    app.console.print(f"results: {out}")


@bench_group.command("queue")
@click.option("--tasks", type=click.IntRange(1), default=1000, show_default=True, help="Simulated tasks.")
@click.option("--workers", type=click.IntRange(1, 64), default=3, show_default=True, help="Simulated workers.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulated world.")
@click.option("--ops", type=click.IntRange(1), default=2000, show_default=True,
              help="Tasks pushed through the real queue for the throughput figure.")
@pass_app
def queue(app: AppContext, tasks: int, workers: int, seed: int, ops: int) -> None:
    """Cost-aware order against FIFO and the best order (simulated), and durable queue throughput."""
    from kisystem.bench import queue as qb  # lazy: pulls in the meta-supervisor

    for line in qb.report_lines(qb.guide_example(), qb.schedule_benchmark(tasks, workers, seed),
                                qb.throughput(ops, app.paths.home / "bench")):
        app.console.print(line, markup=False, highlight=False)


@bench_group.command("executors")
@click.option("--tasks", "sizes", default="200", show_default=True,
              help="Task counts, comma-separated: 200,2000 shows how the overhead grows.")
@click.option("--slots", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Attempts at once: runner workers here; model slots over the two Ray nodes.")
@click.option("--mean", "mean_s", type=click.FloatRange(0.01, 60), default=0.5, show_default=True,
              help="Mean simulated generation time in seconds (lognormal).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulated durations.")
@click.option("--executor", "executors", multiple=True, type=click.Choice(("local", "ray")),
              help="Only this executor; repeatable [default: local and ray].")
@click.option("--port", "port_base", type=click.IntRange(1024, 65535 - 72), default=18600, show_default=True,
              help="First of the 72 ports of the local Ray cluster.")
@pass_app
def executors_bench(app: AppContext, sizes: str, slots: int, mean_s: float, seed: int, executors: tuple[str, ...],
                    port_base: int) -> None:  # fmt: skip
    """Queue throughput and scheduling overhead per task, local executor against Ray on two local nodes.

    Simulated generations (a scripted model sleeps a drawn duration), a sandboxed `true` as the
    test: the figures are scheduling, not work.  Results go to HOME/bench/executors-STAMP.json."""
    import tempfile

    from kisystem.bench import executors as eb

    settings = eb.BenchSettings(eb.parse_sizes(sizes), slots, mean_s, seed, executors or eb.EXECUTOR_NAMES,
                                port_base=port_base)  # fmt: skip
    bench_dir = app.paths.home / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    progress = lambda line: app.err_console.print(line, markup=False, highlight=False)
    with tempfile.TemporaryDirectory(prefix="executors-", dir=bench_dir) as tmp:
        result = asyncio.run(eb.run_bench(settings, Path(tmp), progress))
    for table in eb.tables(result):
        app.console.print(table)
    for line in eb.growth_lines(result):
        app.console.print(line, markup=False, highlight=False)
    out = eb.save(result, bench_dir / f"executors-{time.strftime('%Y%m%d-%H%M%S')}.json")
    app.console.print(f"results: {out}")


@bench_group.command("models")
@click.option("--calls", default=5, show_default=True, type=click.IntRange(1, 100), help="Measured calls per model.")
@pass_app
def models(app: AppContext, calls: int) -> None:
    """First-token latency and tokens/s of each embedded model (served for the run)."""
    from kisystem.bench.models import measure
    from kisystem.models.inventory import load_inventory
    from kisystem.models.server import EmbeddedFleet

    inventory = load_inventory("embedded")
    names = [m.name for m in inventory.models.values()]
    with EmbeddedFleet(inventory, app.paths.home):
        speeds = asyncio.run(measure(inventory, names, calls))
    t = Table(title=f"embedded models, {calls} calls each after a warm-up")
    for col in ("model", "first token (median)", "min", "max", "tokens/s"):
        t.add_column(col)
    for s in speeds:
        t.add_row(s.model, f"{s.first_token_ms:.0f} ms", f"{s.first_token_min_ms:.0f} ms",
                  f"{s.first_token_max_ms:.0f} ms", f"{s.tokens_per_s:.0f}")
    app.console.print(t)


bench_group.add_command(taskpack)
