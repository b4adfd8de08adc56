"""Echo rates: ustack vs raw Python frame reflect vs the Linux kernel.

For each link (TAP, AF_PACKET over veth) and each protocol (ICMP echo, UDP
echo) the closed-loop C generator (bench/loadgen.c) measures how many echoes
per second the responder answers:

  ustack    ``ustack up ... --service udp-echo:7`` (the CLI, as a user runs it),
            the compiled build (mypyc)
  ustack pure  the same with ``USTACK_PURE=1``: the pure-Python sources
  reflect   bench/reflect.py: swap addresses and send back, nothing else; the
            ceiling for any Python stack on that link
  kernel    the kernel itself: ICMP answered by the kernel, UDP by the C echo
            server (recvmmsg/sendmmsg) on the responder's veth end; there is no
            kernel at the far end of a TAP, so the TAP rows show the veth figure

Each figure is min/median/max over several short runs; the ratios use the
medians of this same invocation.  The two ustack builds are measured in
turns: each round starts a fresh ``ustack up`` of each build (the order
alternating between rounds) for one ICMP and one UDP run, so the machine's
drift falls on both alike; compiled/pure is the ratio of their medians.
The goal (issue 10): UDP echo over AF_PACKET, the compiled ustack at least
0.8 of the raw reflect rate.  ``--build compiled|pure`` measures one build
only; without the compiled build (not installed) the benchmark stops with
status 1 unless given ``--build pure``.  Generator and responder are pinned
to different cores.  Raw numbers go to bench/results/echo-<timestamp>.json.

    python3 bench/bench_echo.py [--quick] [--runs N] [--seconds S] [--build B]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import harness  # bench/harness.py: run as a script, bench/ is on sys.path
import loadgen
from harness import BENCH, GEN_BOUND

from ustack_testbed import (
    Netns,
    Testbed,
    TestbedError,
    Topology,
    UstackProcess,
    packet_topology,
    tap_topology,
)

REFLECT = BENCH / "reflect.py"
UDP_PORT = 7
LINKS = ("tap", "packet")
PROTOS = ("icmp", "udp")
# The ustack responder of each build (the compiled one keeps the old name).
USTACK_ROWS = {"compiled": "ustack", "pure": "ustack-pure"}
RESPONDERS = (*USTACK_ROWS.values(), "reflect", "kernel")
LINK_TITLES = {"tap": "TAP", "packet": "AF_PACKET"}
# Issue 10's goal: UDP echo over AF_PACKET, compiled ustack / raw reflect.
GOAL_LINK, GOAL_PROTO, GOAL_SHARE = "packet", "udp", 0.8


@dataclass(slots=True)
class Cell(harness.Figure):
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

    @property
    def label(self) -> str:
        return f"{self.link}/{self.responder}/{self.proto}"

    def samples(self) -> list[float]:
        return [r.rate for r in self.runs]


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
    builds: tuple[str, ...] = harness.BUILDS  # the ustack builds to measure


@dataclass(slots=True)
class Report:
    config: Config
    cells: dict[tuple[str, str, str], Cell] = field(default_factory=dict)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # ``ustack --version``'s words for each build measured (by build).
    builds: dict[str, str] = field(default_factory=dict)

    def cell(self, link: str, responder: str, proto: str) -> Cell:
        key = (link, responder, proto)
        if key not in self.cells:
            self.cells[key] = Cell(link, responder, proto)
        return self.cells[key]


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------


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
        [*harness.taskset(cfg.resp_cpu), *loadgen.server_argv(binary, addr, UDP_PORT, seconds)],
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
    cmd = [*harness.taskset(cfg.gen_cpu), *spec.argv(loadgen.build())]
    proc = ns.run(cmd, check=False, timeout=cfg.seconds + cfg.warmup + 30)
    if proc.returncode != 0:
        raise loadgen.LoadgenError(f"loadgen {proto} failed: {proc.stderr.strip()}")
    return loadgen.parse_result(proc.stdout)


def measure_responder(
    report: Report, topo: Topology, responder: str, addr: str, pid: int, runs: int | None = None
) -> None:
    """``runs`` (default: all) runs against the responder now answering at ``addr``.

    Runs alternate between ICMP and UDP so slow drift of a shared machine
    spreads over both instead of biasing one.
    """
    cfg = report.config
    for _ in range(cfg.runs if runs is None else runs):
        for proto in PROTOS:
            cell = report.cell(topo.kind, responder, proto)
            meter = harness.UsageMeter(pid)
            cell.runs.append(client_run(topo.peer_ns, cfg, proto, addr))
            usage = meter.stop()
            cell.resp_cpu.append(usage.cpu)
            cell.resp_wait.append(usage.wait)
            cell.foreign.append(usage.foreign)


def budget(cfg: Config) -> float:
    """A hard time bound for one responder process (it stops by itself)."""
    return cfg.runs * len(PROTOS) * (cfg.seconds + cfg.warmup + 1.0) + 60.0


def measure_topology(report: Report, tb: Testbed, kind: str, responders: Sequence[str]) -> None:
    cfg = report.config
    topo = packet_topology(tb) if kind == "packet" else tap_topology(tb)
    # Ping sockets (SOCK_DGRAM/IPPROTO_ICMP) for the generator, root included.
    topo.peer_ns.sysctl("net.ipv4.ping_group_range", "0 2147483647")
    for responder in responders:
        harness.flush_neighbours(topo)
        if responder == "kernel":
            measure_kernel(report, topo)
            continue
        if responder == "ustack":
            measure_ustack_builds(report, topo)
            continue
        proc = start_reflect(topo, budget(cfg))
        try:
            harness.pin(proc.pid, cfg.resp_cpu)
            measure_responder(report, topo, responder, topo.stack_ip, proc.pid)
        finally:
            report.counters[f"{kind}/{responder}"] = proc.stop(timeout=15)


def measure_ustack_builds(report: Report, topo: Topology) -> None:
    """The ustack rows of every build asked for, in turns.

    Each round starts a fresh ``ustack up`` of each build for one run of
    each protocol; the builds take turns going first.  Its counters are
    summed over the rounds.  A build that fails to start is noted and not
    tried again on this link (it must not cost the other rows); one that
    starts as the other build stops the benchmark (BuildUnavailable).
    """
    cfg = report.config
    failed: set[str] = set()
    for i in range(cfg.runs):
        order = cfg.builds if i % 2 == 0 else cfg.builds[::-1]
        for build in order:
            if build in failed:
                continue
            responder = USTACK_ROWS[build]
            harness.flush_neighbours(topo)
            try:
                proc = topo.start_ustack(
                    "--service",
                    f"udp-echo:{UDP_PORT}",
                    "--name",
                    f"bench-{topo.stack_if}",
                    env=harness.build_env(build),
                )
            except TestbedError as exc:
                first = str(exc).strip().splitlines()[-1:] or [""]
                report.notes.append(f"{responder} on {topo.kind} did not start: {first[0]}")
                failed.add(build)
                continue
            try:
                harness.check_running_build(proc.pid, build, f"{responder} on {topo.kind}")
                harness.pin(proc.pid, cfg.resp_cpu)
                measure_responder(report, topo, responder, topo.stack_ip, proc.pid, runs=1)
            finally:
                counters = report.counters.setdefault(f"{topo.kind}/{responder}", {})
                for name, value in proc.stop(timeout=15).items():
                    counters[name] = counters.get(name, 0) + value


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
    # Before anything is measured: the builds asked for must be there.
    report.builds = {b: harness.ustack_build(b) for b in cfg.builds}
    skip = harness.ustack_available()
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


def goal_ratio(report: Report) -> float | None:
    """Issue 10's figure: compiled ustack / raw reflect, UDP over AF_PACKET."""
    u = report.cells.get((GOAL_LINK, USTACK_ROWS["compiled"], GOAL_PROTO))
    r = report.cells.get((GOAL_LINK, "reflect", GOAL_PROTO))
    mu = None if u is None else u.median()
    mr = None if r is None else r.median()
    return None if mu is None or not mr else mu / mr


def table_rows(report: Report) -> list[list[str]]:
    rows: list[list[str]] = []
    for link in LINKS:
        if link not in report.config.links:
            continue
        for proto in PROTOS:
            u = report.cells.get((link, USTACK_ROWS["compiled"], proto))
            p = report.cells.get((link, USTACK_ROWS["pure"], proto))
            r = report.cells.get((link, "reflect", proto))
            # No kernel behind a TAP: the veth (AF_PACKET topology) figure.
            k = report.cells.get(("packet", "kernel", proto))
            kernel = fmt_summary(k) + (" *" if link == "tap" and k else "")
            to_raw = ratio(u, r)
            if (link, proto) == (GOAL_LINK, GOAL_PROTO) and to_raw != "-":
                to_raw += f" (goal {GOAL_SHARE:.2f})"
            rows.append(
                [
                    LINK_TITLES[link],
                    proto.upper(),
                    fmt_summary(u),
                    fmt_summary(p),
                    fmt_summary(r),
                    kernel,
                    to_raw,
                    ratio(u, k),
                    ratio(u, p),
                ]
            )
    return rows


HEADERS = [
    "link",
    "echo",
    "ustack /s",
    "ustack pure /s",
    "raw reflect /s",
    "kernel /s",
    "ustack/raw",
    "ustack/kernel",
    "compiled/pure",
]


def goal_line(report: Report) -> str:
    what = f"goal: UDP echo over AF_PACKET, ustack (compiled) >= {GOAL_SHARE:.2f} x raw reflect: "
    share = goal_ratio(report)
    if share is None:
        return what + "not measured"
    return what + f"{share:.2f}, {'met' if share >= GOAL_SHARE else 'NOT met'}"


def build_note(report: Report) -> str:
    """The ``build:`` line: ``ustack --version``'s words for each ustack row."""
    if not report.builds:
        return harness.build_line("-", "no ustack rows")
    names = {"compiled": "ustack", "pure": "ustack pure"}
    return harness.build_line("; ".join(f"{names[b]}: {d}" for b, d in report.builds.items()))


def footnotes(report: Report) -> list[str]:
    cfg = report.config
    lines = [
        build_note(report),
        harness.timing_note(
            cfg,
            "ratios of medians from this run; each round starts each ustack build afresh "
            "for one ICMP and one UDP run, the builds in turns",
        ),
        f"closed loop, window {cfg.window} requests, {cfg.size}-byte payload, "
        f"timeout {cfg.timeout_ms:g} ms",
        harness.pinning_note(cfg, "generator (loadgen.c)", "responder")
        + "; the kernel answers ICMP in softirq context, mostly on the generator's cpu",
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
        c.label: sum(r.lost for r in c.runs)
        for c in report.cells.values()
        if any(r.lost for r in c.runs)
    }
    if lost:
        lines.append("requests lost (timed out): " + ", ".join(f"{k} {v}" for k, v in lost.items()))
    bad = sum(r.bad for c in report.cells.values() for r in c.runs)
    if bad:
        lines.append(f"replies with a wrong payload: {bad}")
    cells = [c for c in report.cells.values() if c.runs]
    lines += harness.cpu_share_note(
        "generator/responder",
        (
            (c.label, statistics.median(r.cpu for r in c.runs), statistics.median(c.resp_cpu))
            for c in cells
        ),
    )
    lines += harness.busy_warning({c.label: max(c.foreign) for c in cells})
    lines += report.notes
    return lines


def print_table(report: Report) -> None:
    harness.print_table(
        "Echo rate (requests answered per second)", HEADERS, table_rows(report), label_columns=2
    )
    if "packet" in report.config.links:
        print(f"  {goal_line(report)}")
    for line in footnotes(report):
        print(f"  {line}")


def to_json(report: Report) -> dict[str, Any]:
    cells = []
    for c in report.cells.values():
        s = c.summary()
        builds = {row: build for build, row in USTACK_ROWS.items()}
        cells.append(
            {
                "link": c.link,
                "responder": c.responder,
                "build": builds.get(c.responder),
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
            u = report.cells.get((link, USTACK_ROWS["compiled"], proto))
            p = report.cells.get((link, USTACK_ROWS["pure"], proto))
            r = report.cells.get((link, "reflect", proto))
            k = report.cells.get(("packet", "kernel", proto))
            for name, a, b in (
                ("ustack_over_raw", u, r),
                ("ustack_over_kernel", u, k),
                ("ustack_pure_over_raw", p, r),
                ("ustack_pure_over_kernel", p, k),
                ("compiled_over_pure", u, p),
            ):
                ma = None if a is None else a.median()
                mb = None if b is None else b.median()
                if ma is not None and mb:
                    ratios[f"{link}/{proto}/{name}"] = ma / mb
    return harness.result_document(
        "echo",
        report.config,
        builds=report.builds,
        cells=cells,
        ratios=ratios,
        goal={
            "what": f"{GOAL_LINK}/{GOAL_PROTO}: compiled ustack / raw reflect",
            "share": GOAL_SHARE,
            "measured": goal_ratio(report),
        },
        counters=report.counters,
        notes=footnotes(report),
    )


# --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(description="echo rates: ustack vs raw reflect vs kernel")
    harness.add_run_options(p, LINKS)
    # 768: TPACKET_V3 hands a block over only when it is full or its 1 ms
    # retire timer fires, so an AF_PACKET responder answers at most about
    # window/1 ms; the window must be larger than the rate in frames/ms.  It
    # must also stay below the TAP queue (txqueuelen 1000) or frames drop.
    p.add_argument("--window", type=int, default=768, help="outstanding requests (768)")
    p.add_argument("--size", type=int, default=64, help="payload bytes (64)")
    harness.add_build_option(p, both=True)
    a = p.parse_args(argv)
    t = harness.run_timing(p, a)
    return Config(
        runs=t.runs,
        seconds=t.seconds,
        warmup=t.warmup,
        window=a.window,
        size=a.size,
        timeout_ms=100.0,
        links=tuple(a.link or LINKS),
        gen_cpu=t.gen_cpu,
        resp_cpu=t.resp_cpu,
        builds=harness.builds_of(a.build),
    )


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    return harness.run_benchmark(
        "bench_echo", lambda: measure(cfg), print_table, to_json, errors=(loadgen.LoadgenError,)
    )


if __name__ == "__main__":
    sys.exit(main())
