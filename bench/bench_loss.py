"""TCP transfer times through loss, reordering, corruption and delay: ustack
against the kernel, through the same impairment relay with the same seed.

    left ns (ustack or kernel) --veth-- relay ns --veth-- right ns (kernel)

The relay (``ustack_testbed.relay``) bridges the two veth pairs and applies
a fault profile with ustack's own fault injector (this kernel has no tc
netem).  For each profile, size and direction, and each run, the stack
under test on the left side moves the data once:

  send   it sends N bytes to a kernel sink on the right (tcpgen server -m
         discard, hashing what it got)
  recv   a kernel source on the right (tcpgen server -m source -N) sends
         N bytes to it

``ustack``: ustack on AF_PACKET at the left veth end, moving the data with
the code of ``ustack tcp send|recv`` (bench/losspeer.py); ``kernel``: the
kernel's TCP at the same end (the reference).  Both are timed from before
the connection (ARP and handshake included) until every byte and the FIN
are acknowledged (send) or the peer's FIN arrived (recv).  Run i of both
stacks goes through a freshly started relay seeded with seed 1000 + i, so
the two stacks meet the same random streams; the runs differ from each
other.  Every transfer is checked (SHA-256 end to end) and bounded in time;
a failure is reported, and makes the exit status 1, never hidden.  The
figures are times (min / median / max over the runs) and the ratio of the
medians ustack / kernel (above 1: ustack slower).

    python3 bench/bench_loss.py [--quick] [--runs N] [--profile NAME ...]
                                [--size 64K|1M|20M ...] [--direction send|recv]
                                [--pcap DIR] [--kernel-cc cubic|reno|bbr]
                                [--build compiled|pure]

The kernel's congestion control is set on its sockets (TCP_CONGESTION, both
kernel ends): CUBIC by default, Linux's own default and what ustack runs.
A machine may default to another (one of ours runs BBR, which does not
reduce its window on random loss: a comparison of loss recovery against it
compares congestion controllers instead); ``--kernel-cc`` chooses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness  # bench/harness.py: run as a script, bench/ is on sys.path
import tcpgen

from ustack_testbed import Netns, RelayTopology, Testbed, TestbedError, relay_topology
from ustack_testbed.commands import terminate

BENCH = Path(__file__).resolve().parent
PEER = BENCH / "losspeer.py"
PROFILES: dict[str, str] = {
    "none": "",  # the relay without faults: the fixed costs
    "loss 1%": "loss=1%",
    "loss 3%": "loss=3%",
    "loss 5%": "loss=5%",
    "reorder 5%": "reorder=5%",
    "corrupt 2%": "corrupt=2%",
    # 20 ms +- 10 ms: the injector adds a uniform share of the jitter.
    "delay 20±10ms": "delay=10ms,jitter=20ms",
}
SIZES: dict[str, int] = {"64K": 64 * 1024, "1M": 1 << 20, "20M": 20 << 20}
DIRECTIONS = ("send", "recv")
STACKS = ("kernel", "ustack")
PORT = 5301
SEED_BASE = 1000
# Per transfer: give up when nothing moves for IDLE seconds, and in all after
# BASE seconds plus one per RATE bytes (a transfer slower than 0.5 MB/s is a
# failure here, not something to wait for).
IDLE = 10.0
BASE = 20.0
RATE = 0.5e6
# The right kernel's counters worth a look for where time went.
KERNEL_COUNTERS = (
    "TcpRetransSegs",
    "TcpExtTCPTimeouts",
    "TcpExtTCPLossProbes",
    "TcpExtTCPLossProbeRecovery",
    "TcpExtTCPFastRetrans",
    "TcpExtTCPSackRecovery",
    "TcpExtTCPSackRecoveryFail",
    "TcpExtTCPSpuriousRTOs",
    "TcpExtTCPDSACKRecv",
    "TcpExtTCPDSACKUndo",
    "TcpExtTCPLossUndo",
    "TcpExtTCPSlowStartRetrans",
    "TcpExtTCPDelivered",
)

Key = tuple[str, str, str]  # (profile, size, direction)


@dataclass(slots=True)
class Cell(harness.Figure):
    """The runs of one stack in one (profile, size, direction)."""

    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)

    def samples(self) -> list[float]:
        return self.seconds


@dataclass(slots=True)
class Config:
    runs: int
    profiles: tuple[str, ...]
    sizes: tuple[str, ...]
    pcap: str | None
    gen_cpu: int | None
    resp_cpu: int | None
    build: str = "compiled"
    directions: tuple[str, ...] = DIRECTIONS
    kernel_cc: str = "cubic"


@dataclass(slots=True)
class Report:
    config: Config
    cells: dict[tuple[Key, str], Cell] = field(default_factory=dict)
    build: str = ""
    notes: list[str] = field(default_factory=list)

    def cell(self, key: Key, stack: str) -> Cell:
        return self.cells.setdefault((key, stack), Cell())

    @property
    def failed(self) -> bool:
        return any(c.failures for c in self.cells.values())


# --------------------------------------------------------------------------
# One transfer
# --------------------------------------------------------------------------


def kernel_tcp_counters(ns: Netns) -> dict[str, int]:
    out: dict[str, int] = {}
    text = ns.run(["cat", "/proc/net/snmp", "/proc/net/netstat"]).stdout
    lines = text.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        kind, _, keys = names.partition(":")
        if kind in ("Tcp", "TcpExt"):
            for k, v in zip(keys.split(), values.partition(":")[2].split(), strict=False):
                out[kind + k] = int(v)
    return out


def transfer(report: Report, topo: RelayTopology, key: Key, stack: str, run: int) -> None:
    """One transfer of ``stack`` for ``key`` through a relay seeded for ``run``."""
    cfg = report.config
    profile, size_name, direction = key
    n = SIZES[size_name]
    seed = SEED_BASE + run
    limit = BASE + n / RATE
    cell = report.cell(key, stack)
    entry: dict[str, Any] = {"run": run, "seed": seed}
    topo.set_left_kernel(stack == "kernel")
    topo.flush_neighbours()
    right_before = kernel_tcp_counters(topo.right_ns)
    spec = tcpgen.ServerSpec(
        "discard" if direction == "send" else "source",
        topo.right_ip,
        PORT,
        seconds=limit + 30,
        max_conns=1,
        bytes_per_conn=n if direction == "recv" else None,
        hash=True,
        verbose=True,
        seed=seed,
        cc=cfg.kernel_cc,
    )
    cmd = [*harness.taskset(cfg.resp_cpu), sys.executable, str(PEER), stack, direction]
    cmd += ["--to", f"{topo.right_ip}:{PORT}", "--bytes", str(n), "--seed", str(seed)]
    cmd += ["--timeout", str(IDLE)]
    pcap = None
    if cfg.pcap:
        name = f"{profile}-{size_name}-{direction}-{run}".replace(" ", "_").replace("%", "pc")
        pcap = Path(cfg.pcap) / (f"{name}.pcap" if stack == "ustack" else f"{name}-kernel.pcap")
    if stack == "kernel":
        cmd += ["--cc", cfg.kernel_cc]
    if stack == "ustack":
        cmd += ["--link", topo.link, "--ip", topo.left_cidr]
        if pcap:
            cmd += ["--pcap", str(pcap)]
    fault = f"{PROFILES[profile]},seed={seed}"
    result: dict[str, Any] = {}
    try:
        with topo.start_relay(fault, seconds=limit + 60) as relay:
            with (
                kernel_capture(topo, pcap if stack == "kernel" else None),
                tcpgen.ServerProcess(
                    spec, popen=topo.right_ns.popen, prefix=harness.taskset(cfg.gen_cpu)
                ) as server,
            ):
                proc = topo.left_ns.run(
                    cmd, check=False, timeout=limit, env=harness.build_env(cfg.build)
                )
                summary = server.wait(10) if proc.returncode == 0 else server.stop()
            entry["relay"] = {k: v for k, v in relay.stop().items() if v}
    except (TestbedError, tcpgen.TcpgenError) as exc:
        cell.failures.append(f"run {run}: {exc}"[-300:])
        entry["error"] = str(exc)[-300:]
        cell.raw.append(entry)
        return
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {}
    entry["peer"] = result
    entry["right_kernel"] = counter_delta(right_before, kernel_tcp_counters(topo.right_ns))
    conn = summary.conns[0] if summary.conns else None
    want = tcpgen.pattern_sha256(seed, n)
    if direction == "send":
        got, size = (conn.sha256_rx, conn.rx) if conn else (None, 0)
    else:
        got, size = result.get("sha256"), result.get("bytes", 0)
    why = ""
    if not result:
        why = f"no result (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-300:]}"
    elif not result.get("ok"):
        why = f"{result.get('error', 'incomplete')} after {result.get('bytes', 0)} bytes"
    elif size != n or got != want:
        why = f"CORRUPTED: {size} bytes, sha256 {str(got)[:12]} != {want[:12]}"
    elif stack == "ustack" and harness.build_kind(result.get("build", "")) != cfg.build:
        why = f"ran the {result.get('build')} build, not the {cfg.build} one"
    if why:
        cell.failures.append(f"run {run}: {why}")
        entry["error"] = why
    else:
        cell.seconds.append(float(result["seconds"]))
    cell.raw.append(entry)


@contextlib.contextmanager
def kernel_capture(topo: RelayTopology, pcap: Path | None) -> Iterator[None]:
    """tcpdump on the left veth end while the kernel is the left peer (what
    ustack's own --pcap shows for ustack: the frames as the left stack sees them)."""
    if pcap is None:
        yield
        return
    proc = topo.left_ns.popen(
        [
            "tcpdump",
            "-q",
            "-n",
            "-U",
            "--immediate-mode",
            "-s",
            "128",
            "-i",
            topo.left_if,
            "-w",
            str(pcap),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # (tcpdump attaches before the first frame)
    try:
        yield
    finally:
        time.sleep(0.1)
        terminate(proc)


def counter_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def measure(cfg: Config) -> Report:
    report = Report(cfg)
    report.build = harness.ustack_build(cfg.build)
    tcpgen.build()
    if cfg.pcap:
        Path(cfg.pcap).mkdir(parents=True, exist_ok=True)
    with Testbed() as tb:
        topo = relay_topology(tb)
        for profile in cfg.profiles:
            for size in cfg.sizes:
                for direction in cfg.directions:
                    key = (profile, size, direction)
                    for run in range(cfg.runs):
                        # Alternate which stack goes first: drift of a shared
                        # machine spreads over both.
                        order = STACKS if run % 2 == 0 else STACKS[::-1]
                        for stack in order:
                            transfer(report, topo, key, stack, run)
                    print_progress(report, key)
    return report


def print_progress(report: Report, key: Key) -> None:
    k, u = report.cells.get((key, "kernel")), report.cells.get((key, "ustack"))
    parts = [f"{s}={fmt_cell(c)}" for s, c in (("kernel", k), ("ustack", u))]
    print(f"  {' '.join(key)}: {' '.join(parts)}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def fmt_time(s: float) -> str:
    if s < 1.0:
        return f"{s * 1e3:.0f}ms" if s >= 0.01 else f"{s * 1e3:.1f}ms"
    return f"{s:.2f}s"


def fmt_cell(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    s = cell.summary()
    text = "-" if s is None else " / ".join(fmt_time(v) for v in s)
    return text + (f" !{len(cell.failures)}" if cell.failures else "")


def ratio(report: Report, key: Key) -> str:
    u, k = report.cells.get((key, "ustack")), report.cells.get((key, "kernel"))
    um = None if u is None else u.median()
    km = None if k is None else k.median()
    return "-" if um is None or not km else f"{um / km:.2f}"


HEADERS = ["profile", "size", "dir", "kernel min/med/max", "ustack min/med/max", "ustack/kernel"]


def table(report: Report) -> list[list[str]]:
    rows = []
    cfg = report.config
    for profile in cfg.profiles:
        for size in cfg.sizes:
            for direction in cfg.directions:
                key = (profile, size, direction)
                rows.append(
                    [
                        profile,
                        size,
                        direction,
                        fmt_cell(report.cells.get((key, "kernel"))),
                        fmt_cell(report.cells.get((key, "ustack"))),
                        ratio(report, key),
                    ]
                )
    return rows


def summed(cell: Cell, part: str, names: tuple[str, ...] | None = None) -> dict[str, int]:
    """Counters of every run of ``cell`` added up (``part``: peer, relay, right_kernel)."""
    total: dict[str, int] = {}
    for entry in cell.raw:
        block = entry.get(part) or {}
        if part == "peer":
            block = block.get("counters") or {}
        for k, v in block.items():
            if isinstance(v, int) and (names is None or k in names):
                total[k] = total.get(k, 0) + v
    return total


def where_time_went(report: Report, worst: int = 4) -> list[str]:
    """The cells where ustack's median is furthest above the kernel's: what
    the TCP counters of both senders say (per run, added up over the runs)."""
    ranked = []
    for (key, stack), cell in report.cells.items():
        if stack != "ustack":
            continue
        k = report.cells.get((key, "kernel"))
        um, km = cell.median(), None if k is None else k.median()
        if um is not None and km:
            ranked.append((um / km, key))
    lines = []
    for r, key in sorted(ranked, reverse=True)[:worst]:
        u, k = report.cells[(key, "ustack")], report.cells[(key, "kernel")]
        runs = len(u.raw)
        relay = summed(u, "relay")
        d = "l2r" if key[2] == "send" else "r2l"
        faults = ", ".join(
            f"{n} {relay.get(f'{d}_{n}', 0)}" for n in ("lost", "corrupted", "reordered")
        )
        lines.append(
            f"{' '.join(key)} (x{r:.2f}): data path over {runs} run(s): "
            f"{relay.get(f'{d}_received', 0)} frames, {faults}"
        )
        if key[2] == "send":
            uc = summed(u, "peer")
            kc = summed(k, "peer", KERNEL_COUNTERS)
            lines.append(
                f"    ustack sender: TcpOutSegs {uc.get('TcpOutSegs', 0)} "
                f"TcpRetransSegs {uc.get('TcpRetransSegs', 0)}; kernel sender: "
                + " ".join(f"{n.removeprefix('TcpExt')} {v}" for n, v in sorted(kc.items()))
            )
        else:
            for stack, c in (("ustack", u), ("kernel", k)):
                rc = summed(c, "right_kernel", KERNEL_COUNTERS)
                lines.append(
                    f"    right kernel sending to {stack}: "
                    + " ".join(f"{n.removeprefix('TcpExt')} {v}" for n, v in sorted(rc.items()))
                )
    return lines


def footnotes(report: Report) -> list[str]:
    cfg = report.config
    lines = [
        harness.build_line(report.build, "the ustack runs"),
        f"min / median / max over {cfg.runs} run(s) of one transfer each; run i of both stacks "
        f"through a fresh relay seeded {SEED_BASE}+i; ratio: median ustack / median kernel",
        "send: the left stack sends to a kernel sink; recv: a kernel source sends to it; "
        "time from before the connection to the last ACK of our FIN (send) or the peer's FIN "
        "(recv); every transfer's SHA-256 checked",
        "profiles: " + "; ".join(f"{p}: {s}" for p, s in PROFILES.items() if p in cfg.profiles),
        harness.pinning_note(cfg, "kernel peer (tcpgen server)", "left stack")
        + "; the relay unpinned",
        f"kernel congestion control: {cfg.kernel_cc} (both kernel ends); ustack: cubic",
    ]
    for (key, stack), cell in report.cells.items():
        for failure in cell.failures:
            lines.append(f"! FAILED {' '.join(key)} {stack}: {failure}")
    lines += report.notes
    return lines


def print_report(report: Report) -> None:
    harness.print_table(
        "TCP through an impairment relay: transfer time, ustack vs kernel (same relay, same seed)",
        HEADERS,
        table(report),
        label_columns=3,
    )
    for line in footnotes(report):
        print(f"  {line}")
    analysis = where_time_went(report)
    if analysis:
        print("  where ustack's time went (worst ratios):")
        for line in analysis:
            print(f"  {line}")


def to_json(report: Report) -> dict[str, Any]:
    cells = []
    for (key, stack), c in report.cells.items():
        s = c.summary()
        cells.append(
            {
                "profile": key[0],
                "spec": PROFILES[key[0]],
                "size": SIZES[key[1]],
                "direction": key[2],
                "stack": stack,
                "min": s[0] if s else None,
                "median": s[1] if s else None,
                "max": s[2] if s else None,
                "runs": c.raw,
                "failures": c.failures,
            }
        )
    return harness.result_document(
        "loss", report.config, build=report.build, cells=cells, notes=footnotes(report)
    )


def kernel_cc_usable(name: str) -> bool:
    """Does a socket take TCP_CONGESTION ``name`` (root may set any the
    kernel has, and the setsockopt loads its module)?"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())
        except OSError:
            return False
    return True


def parse_args(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(
        description="TCP transfer times through loss, reordering, corruption and delay"
    )
    p.add_argument("--quick", action="store_true", help="1 run, 64K and 1M only (a smoke run)")
    p.add_argument("--runs", type=int, help="runs per cell (default 3; quick 1)")
    p.add_argument("--profile", choices=list(PROFILES), action="append", help="only this one")
    p.add_argument("--size", choices=list(SIZES), action="append", help="only this size")
    p.add_argument("--direction", choices=DIRECTIONS, action="append", help="only this one")
    p.add_argument(
        "--pcap",
        metavar="DIR",
        help="a pcap per transfer to DIR (ustack: its own; kernel: tcpdump, -kernel.pcap)",
    )
    p.add_argument(
        "--kernel-cc",
        default="cubic",
        metavar="NAME",
        help="the kernel's congestion control in the test namespaces (default cubic, "
        "Linux's default and ustack's)",
    )
    harness.add_build_option(p)
    a = p.parse_args(argv)
    if not kernel_cc_usable(a.kernel_cc):
        p.error(f"--kernel-cc {a.kernel_cc}: the kernel has no such congestion control")
    if a.runs is not None and a.runs < 1:
        p.error(f"--runs must be at least 1, got {a.runs}")
    runs = a.runs or (1 if a.quick else 3)
    if not 1 <= runs <= 20:
        p.error("--runs must be 1..20")
    sizes = a.size or (["64K", "1M"] if a.quick else list(SIZES))
    gen_cpu, resp_cpu = harness.pick_cpus()
    return Config(
        runs=runs,
        profiles=tuple(p for p in PROFILES if p in (a.profile or PROFILES)),
        sizes=tuple(s for s in SIZES if s in sizes),
        pcap=a.pcap,
        gen_cpu=gen_cpu,
        resp_cpu=resp_cpu,
        build=a.build,
        directions=tuple(d for d in DIRECTIONS if d in (a.direction or DIRECTIONS)),
        kernel_cc=a.kernel_cc,
    )


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    reports: list[Report] = []

    def run() -> Report:
        reports.append(measure(cfg))
        return reports[-1]

    rc = harness.run_benchmark(
        "bench_loss", run, print_report, to_json, errors=(tcpgen.TcpgenError,), tools=("ethtool",)
    )
    if rc == 0 and reports and reports[0].failed:
        print(
            "bench_loss: some transfers failed or arrived corrupted (see ! lines)", file=sys.stderr
        )
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
