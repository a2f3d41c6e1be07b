"""What the benchmarks share: estate files on disk, wall-clock timing, peak memory, the table and the JSON.

Every benchmark is a script that measures, prints a table and writes ``bench/results/<name>.json``. None of
them asserts anything: a missed target is a row marked "missed", not a failure, because a timing depends on
the machine (the numbers in a report say which one).

Heavy phases run in a fresh child process (the script itself, started again with ``--worker``) so that
each measurement starts from a cold interpreter, as a user's command would, and the peak memory a worker
reports is that of the work alone, not of the parent that generated the estate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
T = TypeVar("T")
P = ParamSpec("P")


# ----------------------------------------------------------------------------------- measurements


@dataclass(frozen=True)
class Row:
    """One line of a benchmark's table: a measured value and, when the issue sets one, its target."""

    metric: str
    value: float | int | str
    unit: str = ""
    target: float | None = None
    """The value must be at most this (every target of the project is an upper bound)."""
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.target is None or not isinstance(self.value, int | float):
            return None
        return float(self.value) <= self.target


@dataclass
class Report:
    """Everything one benchmark run measured, written as JSON and shown as a table."""

    name: str
    title: str
    assets: int
    nominal_assets: int
    """The size the targets are stated for; a smaller smoke run shows them for orientation only."""
    seed: int
    quick: bool
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_run(cls, name: str, title: str, args: Any, nominal_assets: int) -> Report:
        """The report of a run from its command line's ``--assets``, ``--seed`` and ``--quick``."""
        return cls(name, title, args.assets, nominal_assets, args.seed, args.quick)

    def add(
        self, metric: str, value: float | int | str, unit: str = "", target: float | None = None, note: str = ""
    ) -> None:
        self.rows.append(Row(metric, value, unit, target, note))

    def document(self) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "title": self.title,
            "assets": self.assets,
            "nominal_assets": self.nominal_assets,
            "seed": self.seed,
            "quick": self.quick,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "rows": [{**asdict(r), "met": r.met} for r in self.rows],
            "details": self.details,
        }


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` is the elapsed wall-clock time in seconds."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


def timed(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> tuple[T, float]:
    """``fn(*args, **kwargs)`` and the wall-clock seconds it took."""
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def cpu_timed(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> tuple[T, float, float]:
    """``fn(*args, **kwargs)``, the wall-clock seconds and the CPU seconds of this process it took.

    On a machine shared with other work, wall time grows with the load while CPU time barely does; both
    are reported so that a reader can tell a slow program from a busy machine.
    """
    start, start_cpu = time.perf_counter(), time.process_time()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start, time.process_time() - start_cpu


@dataclass(frozen=True)
class ProcessTimes:
    """Wall-clock and CPU (user + system) seconds of each run of one command."""

    wall: list[float]
    cpu: list[float]

    @property
    def best(self) -> float:
        return min(self.wall)

    @property
    def best_cpu(self) -> float:
        return min(self.cpu)


def time_processes(commands: Mapping[str, Sequence[str]], repeat: int) -> dict[str, ProcessTimes]:
    """Time several commands, interleaved (A, B, C, A, B, C…), so that a change in the machine's load
    during the run falls on all of them alike and their ratios stay fair."""
    wall: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, argv in commands.items():
            once = time_process(argv, 1)
            wall[name] += once.wall
            cpu[name] += once.cpu
    return {name: ProcessTimes(wall[name], cpu[name]) for name in commands}


def time_process(argv: Sequence[str], repeat: int) -> ProcessTimes:
    """Time running ``argv`` as a whole process, ``repeat`` times, its output discarded.

    Best-of-N is the fairest figure on a shared machine: noise only ever adds time. A run that fails is an
    error here, because its time would measure the failure, not the work.
    """
    wall, cpu = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        if done.returncode != 0:
            raise SystemExit(
                f"benchmark command failed with status {done.returncode}: {' '.join(argv)}\n"
                + done.stderr.decode(errors="replace")[-2000:]
            )
    return ProcessTimes(wall, cpu)


def peak_rss_bytes() -> int:
    """Peak resident memory of this process.

    ``VmHWM`` (Linux) is the high-water mark of this process's own address space. ``ru_maxrss`` is the
    fallback elsewhere; on Linux it can carry over the parent's peak across fork and exec, which would
    charge the generator's memory to the worker.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def current_rss_bytes() -> int:
    """Resident memory of this process now (``VmRSS``; 0 where /proc is not there)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# ----------------------------------------------------------------------------------- estates on disk


def ringfence_command() -> list[str]:
    """The installed ``ringfence`` entry point beside this interpreter (the venv's), as a user runs it."""
    beside = Path(sys.executable).with_name("ringfence")
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-c", "from ringfence.cli.main import main; main()"]


def estate_files(
    assets: int, seed: int, workdir: Path, formats: Sequence[str] = ("json",), *, log: Callable[[str], None] = print
) -> dict[str, Path]:
    """Generated estate files (``estate-N-sS.json`` / ``.yaml``) in ``workdir``, written once and reused.

    The generator is deterministic by seed, so a file already there with the same name is the same estate:
    ``run_all`` shares one directory and the million-asset estate is generated once.
    """
    paths = {fmt: workdir / f"estate-{assets}-s{seed}.{fmt}" for fmt in formats}
    missing = [fmt for fmt, path in paths.items() if not path.exists()]
    if not missing:
        return paths
    from ringfence.core.generate import generate_estate
    from ringfence.files.disk import write_document

    log(f"generating a {assets:,}-asset estate (seed {seed})…")
    document, seconds = timed(generate_estate, assets, seed=seed)
    log(f"  generated in {seconds:.1f} s")
    for fmt in missing:
        start = time.perf_counter()
        if fmt == "yaml":
            # The generator shares sub-objects between assets, which a YAML dumper writes as anchors and
            # aliases; a team's file has none, so write (and later parse) every asset in full.
            document = json.loads(json.dumps(document))
        write_document(document, paths[fmt])
        seconds = time.perf_counter() - start
        size = paths[fmt].stat().st_size
        log(f"  wrote {paths[fmt].name} ({size / 1e6:,.0f} MB) in {seconds:.1f} s")
    return paths


@contextmanager
def work_directory(given: Path | None) -> Iterator[Path]:
    """The directory for estate files: the one given (kept), or a temporary one (removed afterwards)."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="ringfence-bench-") as tmp:
        yield Path(tmp)


# ----------------------------------------------------------------------------------- workers


def run_worker(script: Path, args: Sequence[str]) -> dict[str, Any]:
    """Run ``script --worker ARGS`` in a fresh interpreter and return the JSON document it prints last."""
    done = subprocess.run([sys.executable, str(script), "--worker", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker {script.name} {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if not lines:
        raise SystemExit(f"worker {script.name} {' '.join(args)} printed nothing:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_estate_worker(script: Path, args: argparse.Namespace, report: Report, what: str, *extra: str) -> dict[str, Any]:
    """Generate (or reuse) the JSON estate of ``args``, run ``script``'s worker on it with ``extra`` arguments,
    and add its load and compile times to ``report`` (reported, not part of the target)."""
    with work_directory(args.workdir) as workdir:
        files = estate_files(args.assets, args.seed, workdir, ("json",), log=log)
        log(f"worker: load, compile, {what}…")
        result = run_worker(script.resolve(), [str(files["json"]), *extra])
    report.add("load from JSON (not in the target)", result["load"], "s")
    report.add("compile (not in the target)", result["compile"], "s")
    return result


def add_load_and_compile(report: Report, shape: str, result: Mapping[str, Any]) -> None:
    """The row every estate benchmark gives for information: loading and compiling the estate it then measures."""
    report.add(
        f"{shape}: load + compile (not in the target)",
        result["load"] + result["compile"],
        "s",
        note=f"load {result['load']:.1f} s, compile {result['compile']:.1f} s; worker peak {result['peak_mb']:,.0f} MB",
    )


def emit(document: dict[str, Any]) -> None:
    """A worker's answer: one JSON line on stdout."""
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


def common_arguments(parser: argparse.ArgumentParser, default_assets: int) -> None:
    parser.add_argument("--assets", type=int, default=default_assets, help=f"estate size (default {default_assets:,})")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and queries (a smoke run)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep and reuse generated estate files here (default: a temp dir)"
    )
    parser.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


# ----------------------------------------------------------------------------------- output


def format_value(value: float | int | str, unit: str) -> str:
    if isinstance(value, str):
        return value
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "MB":
        return f"{value:,.0f} MB"
    if unit == "×":
        return f"{value:.2f}×"
    if isinstance(value, float):
        return f"{value:,.3f}{(' ' + unit) if unit else ''}"
    return f"{value:,}{(' ' + unit) if unit else ''}"


def cpu_text(seconds: float) -> str:
    """A CPU time for a note: ``CPU 1.234 s``."""
    return "CPU " + format_value(seconds, "s")


def status_text(row: Row) -> str:
    met = row.met
    if met is None:
        return ""
    return "[green]met[/]" if met else "[bold red]missed[/]"


def show(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=report.title, title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("")
    table.add_column("note", overflow="fold")
    for row in report.rows:
        target = "" if row.target is None else "≤ " + format_value(row.target, row.unit)
        table.add_row(row.metric, format_value(row.value, row.unit), target, status_text(row), row.note)
    # Wide enough for the notes when the output goes to a file or a pipe (Rich assumes 80 columns there).
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)
    console.print(table)
    if report.assets != report.nominal_assets:
        console.print(
            f"[yellow]This run used {report.assets:,} assets; the targets are stated for "
            f"{report.nominal_assets:,} and are shown for orientation only.[/]"
        )


def save(report: Report) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{report.name}.json"
    path.write_text(json.dumps(report.document(), indent=2) + "\n")
    return path


def finish(report: Report) -> None:
    show(report)
    path = save(report)
    print(f"results: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


def log(message: str) -> None:
    """Progress for the person waiting, on stderr so stdout stays the table."""
    print(message, file=sys.stderr, flush=True)
