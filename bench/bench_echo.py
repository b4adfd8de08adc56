"""Echo rates: ustack vs raw Python frame reflect vs the Linux kernel.

For each link (TAP, AF_PACKET over veth) and each protocol (ICMP echo, UDP
echo) the closed-loop C generator (bench/loadgen.c) measures how many echoes
per second the responder answers:

  ustack    ``ustack up ... --service udp-echo:7`` (the CLI, as a user runs it)
  reflect   bench/reflect.py: swap addresses and send back, nothing else; the
            ceiling for any Python stack on that link
  kernel    the kernel itself: ICMP answered by the kernel, UDP by the C echo
            server (recvmmsg/sendmmsg) on the responder's veth end; there is no
            kernel at the far end of a TAP, so the TAP rows show the veth figure

Each figure is min/median/max over several short runs; the ratios use the
medians of this same invocation.  Generator and responder are pinned to
different cores.  Raw numbers go to bench/results/echo-<timestamp>.json.

    python3 bench/bench_echo.py [--quick] [--runs N] [--seconds S]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import loadgen  # bench/loadgen.py: run as a script, bench/ is on sys.path

from ustack.testbed import (
    Netns,
    Testbed,
    TestbedError,
    Topology,
    UstackProcess,
    packet_topology,
    tap_topology,
)

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
REFLECT = BENCH / "reflect.py"
UDP_PORT = 7
LINKS = ("tap", "packet")
PROTOS = ("icmp", "udp")
RESPONDERS = ("ustack", "reflect", "kernel")
LINK_TITLES = {"tap": "TAP", "packet": "AF_PACKET"}
# CPU used by other processes during a run (in cores) above which a figure
# is flagged: something else ran on the cores the benchmark pinned work to.
BUSY_LIMIT = 0.05
# Median generator CPU share at or above which a figure is marked as bounded
# by the generator rather than by the responder.
GEN_BOUND = 0.9


@dataclass(slots=True)
class Cell:
    """All runs of one responder on one link for one protocol."""

    link: str
    responder: str
    proto: str
    runs: list[loadgen.Result] = field(default_factory=list)
    # The responder process's CPU time over wall time, per run: near 1.0 says
    # it was the bottleneck (the generator's share is in each Result.cpu).
    resp_cpu: list[float] = field(default_factory=list)
    # Its time spent waiting on a run queue for a CPU, over wall time: more
    # than a few percent means something else ran on its core.
    resp_wait: list[float] = field(default_factory=list)
    # CPU (in cores) that processes other than the benchmark's used per run.
    foreign: list[float] = field(default_factory=list)

    def rates(self) -> list[float]:
        return [r.rate for r in self.runs]

    def summary(self) -> tuple[float, float, float] | None:
        rates = self.rates()
        if not rates:
            return None
        return min(rates), statistics.median(rates), max(rates)

    def median(self) -> float | None:
        s = self.summary()
        return None if s is None else s[1]


@dataclass(slots=True)
class Config:
    runs: int
    seconds: float
    warmup: float
    window: int
    size: int
    timeout_ms: float
    links: tuple[str, ...]
    gen_cpu: int | None
    resp_cpu: int | None


@dataclass(slots=True)
class Report:
    config: Config
    cells: dict[tuple[str, str, str], Cell] = field(default_factory=dict)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def cell(self, link: str, responder: str, proto: str) -> Cell:
        key = (link, responder, proto)
        if key not in self.cells:
            self.cells[key] = Cell(link, responder, proto)
        return self.cells[key]


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------


def pick_cpus() -> tuple[int | None, int | None]:
    """(generator cpu, responder cpu): two different cores when there are two."""
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


def start_reflect(topo: Topology, seconds: float) -> UstackProcess:
    """bench/reflect.py on the topology's link, driven like a ustack process."""
    args = ["--link", topo.link, "--ip", topo.stack_cidr, "-t", str(seconds)]
    if topo.kind == "tap":
        args += ["--host-ip", topo.peer_cidr]
    errfile = tempfile.TemporaryFile(mode="w+", prefix="reflect-stderr-")  # noqa: SIM115
    popen = topo.stack_ns.popen(
        [sys.executable, str(REFLECT), *args],
        stdout=subprocess.PIPE,
        stderr=errfile,
        text=True,
    )
    proc = UstackProcess(topo.stack_ns, popen, f"reflect-{topo.stack_if}", errfile)
    proc.wait_ready(15.0)
    return proc


def start_kernel_server(ns: Netns, addr: str, cfg: Config, seconds: float) -> subprocess.Popen[str]:
    """The C UDP echo server in ``ns``; returns its Popen once it is bound."""
    binary = loadgen.build()
    popen: subprocess.Popen[str] = ns.popen(
        [*taskset(cfg.resp_cpu), *loadgen.server_argv(binary, addr, UDP_PORT, seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert popen.stdout is not None
    line = popen.stdout.readline()
    if not line.startswith("ready:"):
        popen.kill()
        _, err = popen.communicate(timeout=5)
        raise TestbedError(f"kernel echo server did not start: {line}{err}")
    return popen


def stop_process(popen: subprocess.Popen[str]) -> str:
    popen.terminate()
    try:
        out, _ = popen.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        popen.kill()
        out, _ = popen.communicate(timeout=5)
    return out


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------


_CLK_TCK = os.sysconf("SC_CLK_TCK")


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


_PF_KTHREAD = 0x00200000


def foreign_cpu_seconds(exclude: set[int]) -> dict[int, float]:
    """CPU seconds so far of every user process not in ``exclude``, by pid.

    Kernel threads are left out: ksoftirqd and friends do the benchmark's own
    packet work.  What remains ran on the cores the benchmark pinned its
    generator and responder to, and the figure is then not a capacity.
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


def client_run(ns: Netns, cfg: Config, proto: str, addr: str) -> loadgen.Result:
    spec = loadgen.ClientSpec(
        mode=proto,
        addr=addr,
        port=UDP_PORT,
        size=cfg.size,
        window=cfg.window,
        seconds=cfg.seconds,
        warmup=cfg.warmup,
        timeout_ms=cfg.timeout_ms,
    )
    cmd = [*taskset(cfg.gen_cpu), *spec.argv(loadgen.build())]
    proc = ns.run(cmd, check=False, timeout=cfg.seconds + cfg.warmup + 30)
    if proc.returncode != 0:
        raise loadgen.LoadgenError(f"loadgen {proto} failed: {proc.stderr.strip()}")
    return loadgen.parse_result(proc.stdout)


def measure_responder(report: Report, topo: Topology, responder: str, addr: str, pid: int) -> None:
    """All runs against the responder now answering at ``addr``.

    Runs alternate between ICMP and UDP so slow drift of a shared machine
    spreads over both instead of biasing one.
    """
    cfg = report.config
    ours = {os.getpid(), pid}
    for _ in range(cfg.runs):
        for proto in PROTOS:
            cell = report.cell(topo.kind, responder, proto)
            others = foreign_cpu_seconds(ours)
            cpu0, wait0, t0 = cpu_seconds(pid), wait_seconds(pid), time.monotonic()
            cell.runs.append(client_run(topo.peer_ns, cfg, proto, addr))
            wall = time.monotonic() - t0
            cell.resp_cpu.append((cpu_seconds(pid) - cpu0) / wall)
            cell.resp_wait.append((wait_seconds(pid) - wait0) / wall)
            cell.foreign.append(foreign_load(others, foreign_cpu_seconds(ours), wall))


def budget(cfg: Config) -> float:
    """A hard time bound for one responder process (it stops by itself)."""
    return cfg.runs * len(PROTOS) * (cfg.seconds + cfg.warmup + 1.0) + 60.0


def flush_neighbours(topo: Topology) -> None:
    """Forget the previous responder's MAC: each one brings its own."""
    topo.peer_ns.ip("neigh", "flush", "dev", topo.peer_if, check=False)


def measure_topology(report: Report, tb: Testbed, kind: str, responders: Sequence[str]) -> None:
    cfg = report.config
    topo = packet_topology(tb) if kind == "packet" else tap_topology(tb)
    # Ping sockets (SOCK_DGRAM/IPPROTO_ICMP) for the generator, root included.
    topo.peer_ns.sysctl("net.ipv4.ping_group_range", "0 2147483647")
    for responder in responders:
        flush_neighbours(topo)
        if responder == "kernel":
            measure_kernel(report, topo)
            continue
        if responder == "ustack":
            try:
                proc = topo.start_ustack(
                    "--service", f"udp-echo:{UDP_PORT}", "--name", f"bench-{topo.stack_if}"
                )
            except TestbedError as exc:
                # A stack that cannot start yet must not cost the other rows.
                first = str(exc).strip().splitlines()[-1:] or [""]
                report.notes.append(f"ustack on {kind} did not start: {first[0]}")
                continue
        else:
            proc = start_reflect(topo, budget(cfg))
        try:
            pin(proc.pid, cfg.resp_cpu)
            measure_responder(report, topo, responder, topo.stack_ip, proc.pid)
        finally:
            report.counters[f"{kind}/{responder}"] = proc.stop(timeout=15)


def measure_kernel(report: Report, topo: Topology) -> None:
    """The responder's veth end, now with the kernel's IP stack behind it."""
    topo.stack_ns.add_address(topo.stack_if, topo.stack_cidr)
    server = start_kernel_server(topo.stack_ns, topo.stack_ip, report.config, budget(report.config))
    try:
        measure_responder(report, topo, "kernel", topo.stack_ip, server.pid)
    finally:
        last = stop_process(server).strip().splitlines()[-1:] or ["no output"]
        report.notes.append(f"kernel echo server: {last[0]}")
        topo.stack_ns.ip("addr", "del", topo.stack_cidr, "dev", topo.stack_if, check=False)


def measure(cfg: Config) -> Report:
    report = Report(cfg)
    skip = ustack_available()
    if skip:
        report.notes.append(skip)
    python_side = ("reflect",) if skip else ("ustack", "reflect")
    loadgen.build()
    with Testbed() as tb:
        # The kernel runs on the AF_PACKET topology even when only TAP rows
        # are asked for: its veth figure stands in for the TAP rows.
        measure_topology(
            report,
            tb,
            "packet",
            (*python_side, "kernel") if "packet" in cfg.links else ("kernel",),
        )
        if "tap" in cfg.links:
            measure_topology(report, tb, "tap", python_side)
    return report


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def fmt_rate(x: float) -> str:
    return f"{x / 1000:.1f}k"


def generator_bound(cell: Cell) -> bool:
    """The generator had (nearly) a whole core: the figure is a lower bound."""
    return bool(cell.runs) and statistics.median(r.cpu for r in cell.runs) >= GEN_BOUND


def fmt_summary(cell: Cell | None) -> str:
    s = None if cell is None else cell.summary()
    if cell is None or s is None:
        return "-"
    lo, med, hi = s
    mark = " ^" if generator_bound(cell) else ""
    return f"{fmt_rate(lo)} / {fmt_rate(med)} / {fmt_rate(hi)}{mark}"


def ratio(a: Cell | None, b: Cell | None) -> str:
    ma = None if a is None else a.median()
    mb = None if b is None else b.median()
    if ma is None or mb is None or mb == 0:
        return "-"
    return f"{ma / mb:.2f}"


def table_rows(report: Report) -> list[list[str]]:
    rows: list[list[str]] = []
    for link in LINKS:
        if link not in report.config.links:
            continue
        for proto in PROTOS:
            u = report.cells.get((link, "ustack", proto))
            r = report.cells.get((link, "reflect", proto))
            # No kernel behind a TAP: the veth (AF_PACKET topology) figure.
            k = report.cells.get(("packet", "kernel", proto))
            kernel = fmt_summary(k) + (" *" if link == "tap" and k else "")
            rows.append(
                [
                    LINK_TITLES[link],
                    proto.upper(),
                    fmt_summary(u),
                    fmt_summary(r),
                    kernel,
                    ratio(u, r),
                    ratio(u, k),
                ]
            )
    return rows


HEADERS = [
    "link",
    "echo",
    "ustack /s",
    "raw reflect /s",
    "kernel /s",
    "ustack/raw",
    "ustack/kernel",
]


def footnotes(report: Report) -> list[str]:
    cfg = report.config
    pinning = (
        f"generator (loadgen.c) on cpu {cfg.gen_cpu}, responder on cpu {cfg.resp_cpu}"
        if cfg.gen_cpu is not None
        else "not pinned (fewer than 2 cpus)"
    )
    lines = [
        f"min / median / max over {cfg.runs} runs x {cfg.seconds:g} s "
        f"(+{cfg.warmup:g} s warm-up each); ratios of medians from this run",
        f"closed loop, window {cfg.window} requests, {cfg.size}-byte payload, "
        f"timeout {cfg.timeout_ms:g} ms",
        f"pinning: {pinning}; the kernel answers ICMP in softirq context, "
        "mostly on the generator's cpu",
    ]
    if "tap" in cfg.links:
        lines.append(
            "* the kernel cannot sit at the far end of a TAP: TAP rows show the kernel's "
            "veth figure (AF_PACKET topology, responder end given the IP)"
        )
    if any(generator_bound(c) for c in report.cells.values()):
        lines.append(
            f"^ the generator used >= {GEN_BOUND:.0%} of its core: a lower bound on the "
            "responder's capacity"
        )
    lost = {
        f"{c.link}/{c.responder}/{c.proto}": sum(r.lost for r in c.runs)
        for c in report.cells.values()
        if any(r.lost for r in c.runs)
    }
    if lost:
        lines.append("requests lost (timed out): " + ", ".join(f"{k} {v}" for k, v in lost.items()))
    bad = sum(r.bad for c in report.cells.values() for r in c.runs)
    if bad:
        lines.append(f"replies with a wrong payload: {bad}")
    cpu = [
        f"{c.link}/{c.responder}/{c.proto} "
        f"{statistics.median(r.cpu for r in c.runs):.2f}/{statistics.median(c.resp_cpu):.2f}"
        for c in report.cells.values()
        if c.runs
    ]
    if cpu:
        lines.append("cpu share generator/responder (medians): " + ", ".join(cpu))
    noisy = {
        f"{c.link}/{c.responder}/{c.proto}": max(c.foreign)
        for c in report.cells.values()
        if c.foreign and max(c.foreign) > BUSY_LIMIT
    }
    if noisy:
        lines.append(
            "WARNING: other processes used cpu during these runs (worst run, in cores), "
            "so the figures understate capacity: "
            + ", ".join(f"{k} {v:.2f}" for k, v in noisy.items())
        )
    lines += report.notes
    return lines


def print_table(report: Report) -> None:
    rows = table_rows(report)
    title = "Echo rate (requests answered per second)"
    try:
        # rich only on a terminal: a log or CI output reads better as plain text.
        if not sys.stdout.isatty():
            raise ImportError
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
        print(title)
        print("  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)))
        print("  ".join("-" * w for w in widths))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    else:
        table = Table(title=title)
        for i, h in enumerate(HEADERS):
            table.add_column(h, justify="left" if i < 2 else "right")
        for r in rows:
            table.add_row(*r)
        Console().print(table)
    for line in footnotes(report):
        print(f"  {line}")


def to_json(report: Report) -> dict[str, Any]:
    cells = []
    for c in report.cells.values():
        s = c.summary()
        cells.append(
            {
                "link": c.link,
                "responder": c.responder,
                "proto": c.proto,
                "min": s[0] if s else None,
                "median": s[1] if s else None,
                "max": s[2] if s else None,
                "runs": [asdict(r) for r in c.runs],
                "responder_cpu": c.resp_cpu,
                "responder_wait": c.resp_wait,
                "foreign_load": c.foreign,
            }
        )
    ratios = {}
    for link in report.config.links:
        for proto in PROTOS:
            u = report.cells.get((link, "ustack", proto))
            r = report.cells.get((link, "reflect", proto))
            k = report.cells.get(("packet", "kernel", proto))
            for name, other in (("raw", r), ("kernel", k)):
                mu = None if u is None else u.median()
                mo = None if other is None else other.median()
                if mu is not None and mo:
                    ratios[f"{link}/{proto}/ustack_over_{name}"] = mu / mo
    return {
        "benchmark": "echo",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {
            "kernel": platform.release(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "config": asdict(report.config),
        "cells": cells,
        "ratios": ratios,
        "counters": report.counters,
        "notes": footnotes(report),
    }


def write_json(report: Report) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"echo-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(to_json(report), indent=2) + "\n")
    return path


# --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(description="echo rates: ustack vs raw reflect vs kernel")
    p.add_argument("--quick", action="store_true", help="3 runs x 0.5 s (a smoke run)")
    p.add_argument("--runs", type=int, help="runs per figure (default 5)")
    p.add_argument("--seconds", type=float, help="seconds per run (default 2)")
    # 768: TPACKET_V3 hands a block over only when it is full or its 1 ms
    # retire timer fires, so an AF_PACKET responder answers at most about
    # window/1 ms; the window must be larger than the rate in frames/ms.  It
    # must also stay below the TAP queue (txqueuelen 1000) or frames drop.
    p.add_argument("--window", type=int, default=768, help="outstanding requests (768)")
    p.add_argument("--size", type=int, default=64, help="payload bytes (64)")
    p.add_argument("--link", choices=LINKS, action="append", help="only this link (repeatable)")
    a = p.parse_args(argv)
    runs = a.runs or (3 if a.quick else 5)
    seconds = a.seconds or (0.5 if a.quick else 2.0)
    if not (1 <= runs <= 50 and 0 < seconds <= 30):
        p.error("--runs must be 1..50 and --seconds in (0, 30]")
    gen_cpu, resp_cpu = pick_cpus()
    return Config(
        runs=runs,
        seconds=seconds,
        warmup=0.2 if a.quick else 0.3,
        window=a.window,
        size=a.size,
        timeout_ms=100.0,
        links=tuple(a.link or LINKS),
        gen_cpu=gen_cpu,
        resp_cpu=resp_cpu,
    )


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    if os.geteuid() != 0:
        print("bench_echo: skipped (needs root: network namespaces, TAP, AF_PACKET)")
        return 0
    try:
        report = measure(cfg)
    except (loadgen.LoadgenError, TestbedError) as exc:
        print(f"bench_echo: {exc}", file=sys.stderr)
        return 1
    print_table(report)
    path = write_json(report)
    print(f"  raw numbers: {path.relative_to(BENCH.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
