"""What the namespace benchmarks (bench_echo.py, bench_tcp.py) share.

Both run a C client in the peer namespace against a server in the stack's
namespace, several short runs per figure, and report min / median / max.
This module holds the common parts: the run options, pinning client and
server to different cores, the CPU share of the server and of everything
else during a run (a figure taken while other processes ran is not a
capacity), the table, the footnotes about timing and pinning, and the JSON
file of raw numbers in bench/results/.

It also holds what every benchmark shares about the build it measures
(``--build``, the ``build:`` line, the refusal to pass a pure-Python figure
off as the compiled one): see "Builds" below.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ustack_testbed import TestbedError, Topology

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
# CPU used by other processes during a run (in cores) above which a figure
# is flagged: something else ran on the cores the benchmark pinned work to.
BUSY_LIMIT = 0.05
# Median client CPU share at or above which a figure is marked as bounded by
# the client (the load generator) rather than by the server under test.
GEN_BOUND = 0.9


# --------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------


class RunConfig(Protocol):
    """What every benchmark's Config holds: runs per figure, how long each,
    and the cores client (generator) and server are pinned to."""

    @property
    def runs(self) -> int: ...
    @property
    def seconds(self) -> float: ...
    @property
    def warmup(self) -> float: ...
    @property
    def gen_cpu(self) -> int | None: ...
    @property
    def resp_cpu(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Timing:
    """The RunConfig part of a Config, as the shared options give it."""

    runs: int
    seconds: float
    warmup: float
    gen_cpu: int | None
    resp_cpu: int | None


def add_run_options(p: argparse.ArgumentParser, links: Sequence[str]) -> None:
    """--quick, --runs, --seconds and --link, read back by ``run_timing``."""
    p.add_argument("--quick", action="store_true", help="3 runs x 0.5 s (a smoke run)")
    p.add_argument("--runs", type=int, help="runs per figure (default 5)")
    p.add_argument("--seconds", type=float, help="seconds per run (default 2)")
    p.add_argument("--link", choices=links, action="append", help="only this link (repeatable)")


def run_timing(p: argparse.ArgumentParser, a: argparse.Namespace) -> Timing:
    runs = a.runs or (3 if a.quick else 5)
    seconds = a.seconds or (0.5 if a.quick else 2.0)
    if not (1 <= runs <= 50 and 0 < seconds <= 30):
        p.error("--runs must be 1..50 and --seconds in (0, 30]")
    gen_cpu, resp_cpu = pick_cpus()
    return Timing(runs, seconds, 0.2 if a.quick else 0.3, gen_cpu, resp_cpu)


def ustack_available() -> str | None:
    """None if `ustack up` exists, else why the ustack rows are skipped."""
    proc = subprocess.run(
        [sys.executable, "-m", "ustack.cli", "up", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if proc.returncode != 0:
        return "ustack rows skipped: `python3 -m ustack.cli up --help` failed"
    return None


def flush_neighbours(topo: Topology) -> None:
    """Forget the previous server's MAC: each ustack process brings its own."""
    topo.peer_ns.ip("neigh", "flush", "dev", topo.peer_if, check=False)


# --------------------------------------------------------------------------
# Builds
# --------------------------------------------------------------------------
#
# ``make install`` compiles ustack's core with mypyc; ``USTACK_PURE=1`` in a
# process's environment makes it import the pure-Python sources instead
# (ustack/purepy.py).  Every benchmark measures the compiled build unless
# told ``--build pure``, says which build it measured in one ``build:`` line,
# and stops with status 1 when the compiled build is asked for and is not
# there: a pure-Python figure must never pass for the compiled one.

BUILDS = ("compiled", "pure")
PURE_ENV = "USTACK_PURE"  # ustack.purepy.ENV (not imported: see process_build)


class BuildUnavailable(Exception):
    """The build asked for is not the one that runs (the compiled one is not installed)."""


def add_build_option(p: argparse.ArgumentParser, *, both: bool = False) -> None:
    """``--build compiled|pure`` (default compiled); with ``both``, also
    ``both`` (the default then): each build in turn, in the same invocation."""
    choices = ("both", *BUILDS) if both else BUILDS
    p.add_argument(
        "--build",
        choices=choices,
        default=choices[0],
        help="which build of ustack to measure (default %(default)s; "
        f"pure: {PURE_ENV}=1, the uncompiled sources)",
    )


def builds_of(choice: str) -> tuple[str, ...]:
    """``--build``'s value as the builds to measure, compiled first."""
    return BUILDS if choice == "both" else (choice,)


def build_env(build: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) for a process of ``build``.

    Pure: with ``USTACK_PURE=1``.  Compiled: without ``USTACK_PURE`` at all,
    so an inherited one cannot turn the compiled figure into a pure one.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if k != PURE_ENV}
    if build == "pure":
        env[PURE_ENV] = "1"
    return env


def build_kind(describe: str) -> str:
    """``"compiled"`` or ``"pure"`` from ``purepy.describe()``'s words."""
    return "compiled" if describe.startswith("compiled") else "pure"


def check_build(build: str, describe: str) -> str:
    """``describe`` (``purepy.describe()``'s words for what runs) when it is
    ``build``; else BuildUnavailable saying what to do."""
    if build_kind(describe) == build:
        return describe
    if build == "compiled":
        how = (
            f"unset {PURE_ENV}"
            if PURE_ENV in describe
            else "compile it with `make install` (in a source tree: "
            "`python setup.py build_ext --inplace`)"
        )
        raise BuildUnavailable(
            f"the compiled build is not available (ustack here: {describe}); {how}, "
            "or pass --build pure to measure the pure-Python build instead"
        )
    raise BuildUnavailable(f"asked for the pure build, but ustack runs {describe}")


def ustack_build(build: str) -> str:
    """What ``ustack --version`` says of ``build`` (e.g. "compiled with mypyc"),
    checked to be ``build`` (BuildUnavailable otherwise).

    Run with this interpreter and ``build_env(build)``, as the ``ustack``
    processes a benchmark starts are, so the same modules load.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "ustack.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        env=build_env(build),
    )
    m = re.fullmatch(r"ustack \S+ \((.+)\)", proc.stdout.strip())
    if proc.returncode != 0 or m is None:
        said = (proc.stderr.strip() or proc.stdout.strip())[-300:]
        raise BuildUnavailable(f"`ustack --version` failed (exit {proc.returncode}): {said}")
    return check_build(build, m.group(1))


def running_build(pid: int) -> str | None:
    """The build a running ustack process ``pid`` has loaded, from its memory
    map: ``"compiled"`` when mypyc's shared library (``*__mypyc.*.so``, the
    code of every compiled module) is mapped, else ``"pure"``; None when the
    process is gone.  (Not a module's own extension: a compiled module that
    imports another initialises it inside the shared library, and the
    other's stub file is never loaded.)"""
    try:
        with open(f"/proc/{pid}/maps") as f:
            maps = f.read()
    except OSError:
        return None
    for line in maps.splitlines():
        path = Path(line.rpartition(" ")[2])
        if "__mypyc." in path.name and path.suffix == ".so" and (path.parent / "ustack").is_dir():
            return "compiled"  # ustack's (it lies beside the package), not another's
    return "pure"


def check_running_build(pid: int, build: str, what: str) -> None:
    """BuildUnavailable unless process ``pid`` (``what``) runs ``build``."""
    got = running_build(pid)
    if got is not None and got != build:
        raise BuildUnavailable(f"{what} (pid {pid}) runs the {got} build, not the {build} one")


def process_build(build: str, script: str) -> str:
    """Make this process run ``build`` of ustack; its ``purepy.describe()``.

    For a benchmark that runs ustack in its own process.  The build is fixed
    when ustack is first imported (by ``USTACK_PURE``), so when this process's
    environment asks for the other one, the script (``script``, the caller's
    ``__file__``) starts again in its place with ``build_env(build)``
    (os.execv).  That happens only when this process was started as that
    script; a ``main()`` called from elsewhere keeps its process.  Raises
    BuildUnavailable when ``build`` is not what runs.
    """
    from ustack import purepy

    wanted_pure = build == "pure"
    started_as_script = Path(sys.argv[0]).resolve() == Path(script).resolve()
    if purepy.pure_requested() != wanted_pure and started_as_script:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.argv], build_env(build))
    return check_build(build, purepy.describe())


def build_line(describe: str, what: str = "") -> str:
    """The one line that says which build a benchmark measured."""
    return f"build: {describe}" + (f" ({what})" if what else "")


# --------------------------------------------------------------------------
# Cores
# --------------------------------------------------------------------------


def pick_cpus() -> tuple[int | None, int | None]:
    """(client cpu, server cpu): two different cores when there are two."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]


def pin(pid: int, cpu: int | None) -> None:
    """Pin every thread of ``pid`` (a stack may have started helper threads)."""
    if cpu is None:
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), {cpu})


def taskset(cpu: int | None) -> list[str]:
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


# --------------------------------------------------------------------------
# CPU use during a run
# --------------------------------------------------------------------------


_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PF_KTHREAD = 0x00200000


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads) from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        # Fields after the parenthesised command name; utime, stime are 14, 15.
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def wait_seconds(pid: int) -> float:
    """Run-queue wait of all threads of ``pid`` (schedstat field 2, ns)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[1])
    return total / 1e9


def foreign_cpu_seconds(exclude: set[int]) -> dict[int, float]:
    """CPU seconds so far of every user process not in ``exclude``, by pid.

    Kernel threads are left out: ksoftirqd and friends do the benchmark's own
    packet work.  What remains ran on the cores the benchmark pinned its
    client and server to, and the figure is then not a capacity.
    """
    out: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[6]) & _PF_KTHREAD:
            continue
        out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return out


def foreign_load(before: dict[int, float], after: dict[int, float], wall: float) -> float:
    """Cores' worth of CPU that other processes used between two snapshots."""
    used = sum(t - before.get(pid, 0.0) for pid, t in after.items())
    return max(0.0, used) / wall


@dataclass(frozen=True, slots=True)
class Usage:
    """Over one run: the server's CPU share and run-queue wait (over wall
    time), and the cores' worth of CPU that other processes used."""

    wall: float
    cpu: float
    wait: float
    foreign: float


class UsageMeter:
    """Measures ``pid`` (the server) and everyone else from here to ``stop()``.

    Raises FileNotFoundError when ``pid`` is already gone; a server that
    dies during the run counts as having used no CPU since the start.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._ours = {os.getpid(), pid}
        self._others = foreign_cpu_seconds(self._ours)
        self._cpu0 = cpu_seconds(pid)
        self._wait0 = wait_seconds(pid)
        self._t0 = time.monotonic()

    def stop(self) -> Usage:
        wall = time.monotonic() - self._t0
        try:
            cpu, wait = cpu_seconds(self.pid), wait_seconds(self.pid)
        except FileNotFoundError:
            cpu, wait = self._cpu0, self._wait0
        foreign = foreign_load(self._others, foreign_cpu_seconds(self._ours), wall)
        return Usage(wall, (cpu - self._cpu0) / wall, (wait - self._wait0) / wall, foreign)


# --------------------------------------------------------------------------
# Figures and notes
# --------------------------------------------------------------------------


def summary(values: Sequence[float]) -> tuple[float, float, float] | None:
    """(min, median, max) of the runs of one figure; None when there are none."""
    if not values:
        return None
    return min(values), statistics.median(values), max(values)


def min_median_max(values: Sequence[float], width: int = 9) -> str:
    """The three columns of one figure, as the tables of bench_aio/bench_http print them."""
    lo, mid, hi = min(values), statistics.median(values), max(values)
    return f"{lo:{width}.0f} {mid:{width}.0f} {hi:{width}.0f}"


class Figure:
    """The runs of one figure of a table; a subclass says what their values are."""

    __slots__ = ()

    def samples(self) -> Sequence[float]:
        raise NotImplementedError

    def summary(self) -> tuple[float, float, float] | None:
        return summary(self.samples())

    def median(self) -> float | None:
        s = self.summary()
        return None if s is None else s[1]


def timing_note(t: RunConfig, ratios: str) -> str:
    return (
        f"min / median / max over {t.runs} runs x {t.seconds:g} s "
        f"(+{t.warmup:g} s warm-up each); {ratios}"
    )


def pinning_note(t: RunConfig, client: str, server: str) -> str:
    if t.gen_cpu is None:
        return "pinning: not pinned (fewer than 2 cpus)"
    return f"pinning: {client} on cpu {t.gen_cpu}, {server} on cpu {t.resp_cpu}"


def cpu_share_note(roles: str, shares: Iterable[tuple[str, float, float]]) -> list[str]:
    """``cpu share client/server (medians): label c/s, ...``, or nothing."""
    parts = [f"{label} {client:.2f}/{server:.2f}" for label, client, server in shares]
    return [f"cpu share {roles} (medians): " + ", ".join(parts)] if parts else []


def busy_warning(worst: dict[str, float]) -> list[str]:
    """The warning for figures whose runs shared the cores with other work.

    ``worst``: the largest foreign load (in cores) of each figure's runs.
    """
    noisy = {k: v for k, v in worst.items() if v > BUSY_LIMIT}
    if not noisy:
        return []
    return [
        "WARNING: other processes used cpu during these runs (worst run, in cores), "
        "so the figures understate capacity: "
        + ", ".join(f"{k} {v:.2f}" for k, v in noisy.items())
    ]


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def print_table(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], *, label_columns: int
) -> None:
    """The table, with rich on a terminal; plain text in a log or CI output.

    The first ``label_columns`` columns are labels (left aligned), the rest
    figures (right aligned with rich).
    """
    try:
        if not sys.stdout.isatty():
            raise ImportError
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        print(title)
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        print("  ".join("-" * w for w in widths))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    else:
        table = Table(title=title)
        for i, h in enumerate(headers):
            table.add_column(h, justify="left" if i < label_columns else "right")
        for r in rows:
            table.add_row(*r)
        Console().print(table)


def result_document(benchmark: str, config: Any, **body: Any) -> dict[str, Any]:
    """The JSON of one invocation: what, when, on which host, with which
    config (a dataclass), then the benchmark's own ``body``."""
    return {
        "benchmark": benchmark,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {
            "kernel": platform.release(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "config": asdict(config),
        **body,
    }


R = TypeVar("R")


def run_benchmark(
    name: str,
    measure: Callable[[], R],
    show: Callable[[R], None],
    document: Callable[[R], dict[str, Any]],
    *,
    errors: tuple[type[Exception], ...] = (),
    tools: Sequence[str] = (),
) -> int:
    """A benchmark's main: measure, print the report, save its JSON.

    Without root it is skipped (status 0: nothing to measure here, not a
    failure); a missing command from ``tools``, a TestbedError, a
    BuildUnavailable or one of ``errors`` (the load tool's) is one line on
    stderr and status 1.
    """
    if os.geteuid() != 0:
        print(f"{name}: skipped (needs root: network namespaces, TAP, AF_PACKET)")
        return 0
    for tool in tools:
        if shutil.which(tool) is None:
            print(f"{name}: needs {tool} (scripts/install-system-deps.sh)", file=sys.stderr)
            return 1
    caught: tuple[type[Exception], ...] = (TestbedError, BuildUnavailable, *errors)
    try:
        report = measure()
    except caught as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    show(report)
    write_results(document(report))
    return 0


def write_results(document: dict[str, Any]) -> Path:
    """bench/results/<benchmark>-<timestamp>.json; prints where it went."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{document['benchmark']}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"  raw numbers: {path.relative_to(BENCH.parent)}")
    return path
