"""SYN floods by ``ustack flood`` and by ``hping3 --flood``, measured at the receiver.

One veth pair, offloads on (veth's defaults): the generator on one end in
its namespace, pinned to one core; the target, the kernel in the peer
namespace (198.18.1.1), on the other.  Receive packet steering on the
target's veth (``rps_cpus``) moves its receive processing to the other
core, as if the target were another machine: without it the target's
whole receive path runs on the sending core, inside the generator's send
calls, and is charged to the generator (``--no-rps`` measures that).

Two targets:

  listener  a socket listening on port 80 with ``tcp_syncookies=2`` (a
            SYN cookie for every SYN, no state): every SYN answered with
            a SYN-ACK, which the generator receives;
  sink      port 80's TCP dropped by a blackhole policy rule before TCP
            (``ip rule ... ipproto tcp dport 80 blackhole``): nothing
            answers, so the rate is the generator's and the link's.

Generators, each run for ``--seconds`` and bounded by count as well:

  ustack    ``ustack flood --to 198.18.1.1:80`` from 64 source addresses
            on AF_PACKET (SYNs written into the TX ring), with a count far
            above what the time allows, so the duration ends it;
  hping3    ``timeout S hping3 -q -S -p 80 --flood -c N`` from the kernel
            of the generator's namespace (its veth end gets 198.18.1.2 for
            these runs); ``-c`` does not stop a flood on every hping3
            version, ``timeout`` does.  That kernel would answer every
            SYN-ACK with a RST, which the target would count as a second
            packet per SYN: a blackhole rule in the generator's namespace
            drops the SYN-ACKs before its TCP (ustack flood never answers
            them either);
  trafgen   (netsniff-ng, when installed) the same SYN, one template,
            from a packet socket's ring: the kernel tool's ceiling.

Every rate is taken the same way, at the receiver: the target veth's
``rx_packets`` read every 10 ms by a sampler in the peer namespace, over
the window in which it grew by at least a tenth of its fastest step (the
start-up and the tail left out).  For the listener the kernel's
``TcpExtSyncookiesSent`` (nstat, peer namespace) over the packets received
is the share of SYNs the target answered.  Figures are min / median / max
over ``--runs`` runs; the ratio is of medians (ustack / hping3).  The
ustack rows also show ustack's own count of SYN-ACKs and its profile (CPU
user/system, microseconds per SYN writing, in the send calls, receiving).

    python3 bench/bench_flood.py [--quick] [--runs N] [--seconds S]
        [--target listener sink] [--no-rps] [--build compiled|pure]

Needs root and hping3 (scripts/install-system-deps.sh).  Everything it
creates is deleted on exit; raw numbers go to bench/results/flood-*.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

from ustack_testbed import Testbed, Topology, packet_topology

TARGETS = ("listener", "sink")
TOOLS = ("ustack", "hping3", "trafgen")
PORT = 80
SOURCES = 64  # ustack's source addresses: 198.18.1.10 ..
FIRST_SOURCE = "198.18.1.10"
HPING_IP = "198.18.1.2/24"  # the generator namespace's kernel address, hping3 runs only
COUNT = 100_000_000  # far more than a run's seconds allow: the duration bounds it
SAMPLE_EVERY = 0.01

SAMPLER = r"""
import sys, time
path = "/sys/class/net/%s/statistics/rx_packets" % sys.argv[1]
end = time.monotonic() + float(sys.argv[2])
out = []
f = open(path)
while True:
    now = time.monotonic()
    f.seek(0)
    out.append("%.6f %s" % (now, f.read().strip()))
    if now >= end:
        break
    time.sleep(float(sys.argv[3]))
print("\n".join(out))
"""

LISTENER = (
    "import socket, time\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('0.0.0.0', {PORT})); s.listen(4096)\n"
    "time.sleep(3600)\n"
)


@dataclass(frozen=True)
class Config:
    runs: int
    seconds: float
    targets: tuple[str, ...]
    rps: bool
    build: str
    gen_cpu: int | None
    resp_cpu: int | None


@dataclass
class Cell:
    """The runs of one (target, tool)."""

    pps: list[float] = field(default_factory=list)  # at the receiver
    answered: list[float] = field(default_factory=list)  # cookies sent / packets received
    ustack: list[dict[str, Any]] = field(default_factory=list)  # ustack's own reports
    errors: list[str] = field(default_factory=list)


def window_rate(samples: Sequence[tuple[float, int]]) -> tuple[float, int]:
    """(packets per second over the busy window, packets in all) of
    (time, rx_packets) samples: the window runs over the steps that grew
    by a tenth of the largest step at least."""
    if len(samples) < 3:
        return 0.0, 0
    steps = [(samples[i][0], samples[i][1] - samples[i - 1][1], samples[i - 1][0])
             for i in range(1, len(samples))]
    top = max(d for _, d, _ in steps)
    if top <= 0:
        return 0.0, 0
    busy = [i for i, (_, d, _) in enumerate(steps) if d >= top / 10]
    first, last = busy[0], busy[-1]
    packets = sum(d for _, d, _ in steps[first:last + 1])
    seconds = steps[last][0] - steps[first][2]
    total = samples[-1][1] - samples[0][1]
    return (packets / seconds if seconds > 0 else 0.0), total


def blackhole(ns: Any, field: str, on: bool) -> None:
    """Drop TCP with ``field`` (dport, sport) 80 in ``ns`` before its TCP
    sees it: a blackhole policy rule ahead of the local table's (which
    moves from priority 0 to 100 and back)."""
    if on:
        ns.ip("rule", "add", "pref", "100", "lookup", "local")
        ns.ip("rule", "del", "pref", "0")
        ns.ip("rule", "add", "pref", "10", "ipproto", "tcp", field, str(PORT), "blackhole")
    else:
        ns.ip("rule", "del", "pref", "10")
        ns.ip("rule", "add", "pref", "0", "lookup", "local")
        ns.ip("rule", "del", "pref", "100")


class Bench:
    def __init__(self, tb: Testbed, cfg: Config) -> None:
        self.tb = tb
        self.cfg = cfg
        self.topo: Topology = packet_topology(tb, offloads=True)
        peer = self.topo.peer_ns
        peer.sysctl("net.ipv4.tcp_syncookies", "2")
        peer.sysctl("net.core.somaxconn", "4096")
        if cfg.rps and cfg.resp_cpu is not None:
            mask = format(1 << cfg.resp_cpu, "x")
            peer.run(["sh", "-c",
                      f"echo {mask} > /sys/class/net/{self.topo.peer_if}/queues/rx-0/rps_cpus"])
        self.listener = peer.popen([sys.executable, "-c", LISTENER])
        self.sink = False
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-flood-"))

    def set_target(self, target: str) -> None:
        """The listener answers; the sink drops port 80's TCP before TCP."""
        want = target == "sink"
        if want != self.sink:
            blackhole(self.topo.peer_ns, "dport", want)
        self.sink = want

    @contextlib.contextmanager
    def sampling(self, seconds: float) -> Iterator[list[tuple[float, int]]]:
        """rx_packets of the target's veth sampled for ``seconds``; the list
        is filled when the block ends."""
        proc = self.topo.peer_ns.popen(
            [sys.executable, "-c", SAMPLER, self.topo.peer_if, str(seconds),
             str(SAMPLE_EVERY)], stdout=subprocess.PIPE, text=True)
        out: list[tuple[float, int]] = []
        time.sleep(0.05)
        try:
            yield out
        finally:
            text, _ = proc.communicate(timeout=seconds + 30)
            for line in text.splitlines():
                t, n = line.split()
                out.append((float(t), int(n)))

    def cookies(self) -> int:
        text = self.topo.peer_ns.run(["nstat", "-az", "TcpExtSyncookiesSent"]).stdout
        for line in text.splitlines():
            if line.startswith("TcpExtSyncookiesSent"):
                return int(line.split()[1])
        return 0

    def run_one(self, tool: str, cell: Cell, target: str) -> None:
        cfg = self.cfg
        s = cfg.seconds
        gen = harness.taskset(cfg.gen_cpu)
        host = self.topo.stack_ns
        cookies0 = self.cookies() if target == "listener" else 0
        report: dict[str, Any] | None = None
        with self.sampling(s + 3.0) as samples:
            if tool == "ustack":
                out = self.tmp / "flood.json"
                out.unlink(missing_ok=True)
                proc = host.run(
                    [*gen, sys.executable, "-m", "ustack.cli", "flood",
                     "--to", f"{self.topo.peer_ip}:{PORT}", "--link", self.topo.link,
                     "--ip", f"{FIRST_SOURCE}/24", "--sources", str(SOURCES),
                     "--count", str(COUNT), "--duration", str(s), "--grace", "0.3",
                     "--json", str(out)],
                    check=False, timeout=s + 60, env=harness.build_env(cfg.build))
                if proc.returncode != 0:
                    cell.errors.append(f"ustack flood exit {proc.returncode}: "
                                       f"{proc.stderr.strip()[-300:]}")
                else:
                    report = json.loads(out.read_text())
            elif tool == "hping3":
                host.add_address(self.topo.stack_if, HPING_IP)
                blackhole(host, "sport", True)
                try:
                    host.run([*gen, "timeout", "--signal=INT", str(s), "hping3", "-q", "-S",
                              "-p", str(PORT), "--flood", "-c", str(COUNT),
                              self.topo.peer_ip], check=False, timeout=s + 30)
                finally:
                    blackhole(host, "sport", False)
                    host.ip("addr", "del", HPING_IP, "dev", self.topo.stack_if, check=False)
                    host.ip("neigh", "flush", "dev", self.topo.stack_if, check=False)
            else:
                self.trafgen(s)
        pps, total = window_rate(samples)
        if pps <= 0:
            cell.errors.append(f"{tool}: no packets reached the target")
            return
        cell.pps.append(pps)
        if target == "listener" and total:
            cell.answered.append((self.cookies() - cookies0) / total)
        if report is not None:
            cell.ustack.append(report)
        self.topo.peer_ns.ip("neigh", "flush", "dev", self.topo.peer_if, check=False)

    def trafgen(self, seconds: float) -> None:
        """trafgen sending one SYN template (random source port) to the target."""
        mac = self.topo.peer_ns.run(["cat", f"/sys/class/net/{self.topo.peer_if}/address"]
                                    ).stdout.strip()
        dst = ", ".join(f"0x{b}" for b in mac.split(":"))
        conf = self.tmp / "syn.cfg"
        conf.write_text(
            "{\n"
            f"  {dst},  0x02, 0x00, 0x00, 0x00, 0x00, 0x02,  c16(0x0800),\n"
            "  0x45, 0, c16(40), drnd(2), c16(0x4000), 64, 6, csumip(14, 33),\n"
            "  198, 18, 1, 2,  198, 18, 1, 1,\n"
            f"  drnd(2), c16({PORT}), drnd(4), c32(0), c16(0x5002), c16(64240),\n"
            "  csumtcp(14, 34), c16(0),\n"
            "}\n")
        self.topo.stack_ns.run([*harness.taskset(self.cfg.gen_cpu), "timeout", "--signal=INT",
                                str(seconds), "trafgen", "--dev", self.topo.stack_if, "--conf",
                                str(conf), "--qdisc-path", "-q"], check=False,
                               timeout=seconds + 30)


def measure(cfg: Config) -> dict[str, Any]:
    build = harness.ustack_build(cfg.build)
    tools = [t for t in TOOLS if t != "trafgen" or shutil.which("trafgen")]
    cells: dict[tuple[str, str], Cell] = {}
    with Testbed() as tb:
        bench = Bench(tb, cfg)
        time.sleep(0.2)
        for target in cfg.targets:
            bench.set_target(target)
            for r in range(cfg.runs):
                # The tools in turns, the order alternating run by run.
                order = tools if r % 2 == 0 else tools[::-1]
                for tool in order:
                    bench.run_one(tool, cells.setdefault((target, tool), Cell()), target)
        shutil.rmtree(bench.tmp, ignore_errors=True)
    return {"build": build, "tools": tools, "cells": cells}


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def show(cfg: Config, result: dict[str, Any]) -> None:
    print(harness.build_line(result["build"], "ustack flood"))
    cells: dict[tuple[str, str], Cell] = result["cells"]
    rows = []
    for target in cfg.targets:
        ref = _median(cells.get((target, "hping3"), Cell()).pps)
        for tool in result["tools"]:
            cell = cells.get((target, tool), Cell())
            if not cell.pps:
                rows.append([target, tool, "failed", "", "", "", ""])
                continue
            lo, mid, hi = min(cell.pps), statistics.median(cell.pps), max(cell.pps)
            ratio = f"{mid / ref:.2f}" if ref else ""
            answered = (f"{statistics.median(cell.answered):.1%}" if cell.answered else "")
            rows.append([target, tool, f"{lo:,.0f}", f"{mid:,.0f}", f"{hi:,.0f}", ratio,
                         answered])
    harness.print_table("SYNs per second at the receiver",
                        ["target", "generator", "min", "median", "max", "vs hping3",
                         "answered"], rows, label_columns=2)
    print(f"  min / median / max over {cfg.runs} runs x {cfg.seconds:g} s; ratio of medians; "
          "answered: the target's SYN cookies over the packets it received")
    print("  " + harness.pinning_note(cfg, "generator", "target's receive processing (RPS)"
                                      if cfg.rps else "nothing (no RPS)"))
    for target in cfg.targets:
        reports = cells.get((target, "ustack"), Cell()).ustack
        if not reports:
            continue
        prof = [r["profile"] for r in reports]

        def med(key: str, profs: list[dict[str, Any]] = prof) -> float:
            vals = [p[key] for p in profs if p.get(key) is not None]
            return statistics.median(vals) if vals else 0.0

        own = statistics.median(r["pps"] for r in reports)
        synacks = statistics.median(r["targets"][0]["synack_fraction"] for r in reports)
        dropped = statistics.median(r["device"].get("link_rx_dropped", 0) / r["sent"]
                                    for r in reports if r["sent"])
        print(f"  ustack {target}: its own count {own:,.0f} SYNs/s sent, SYN-ACKs counted "
              f"{synacks:.1%}" + (f" (the link dropped {dropped:.1%} of them on the way in)"
                                  if dropped else "")
              + f"; per SYN (medians): writing {med('write_us_per_syn'):.3f} us, "
              f"send calls {med('send_us_per_syn'):.3f} us, receiving "
              f"{med('receive_us_per_syn'):.3f} us; CPU user {med('user_cpu_s'):.2f} s, "
              f"system {med('system_cpu_s'):.2f} s per run")
    for (target, tool), cell in cells.items():
        for e in cell.errors:
            print(f"  ! {target} {tool}: {e}")


def document(cfg: Config, result: dict[str, Any]) -> dict[str, Any]:
    cells = {f"{t}/{g}": {"pps": c.pps, "answered": c.answered, "errors": c.errors,
                          "ustack_reports": c.ustack}
             for (t, g), c in result["cells"].items()}
    return harness.result_document("flood", cfg, build=result["build"], cells=cells)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 runs x 1 s (a smoke run)")
    p.add_argument("--runs", type=int, help="runs per figure (default 5)")
    p.add_argument("--seconds", type=float, help="seconds per run (default 2)")
    p.add_argument("--target", nargs="+", choices=TARGETS, default=list(TARGETS))
    p.add_argument("--no-rps", action="store_true",
                   help="leave the target's receive processing on the generator's core")
    harness.add_build_option(p)
    a = p.parse_args(argv)
    runs = a.runs or (3 if a.quick else 5)
    seconds = a.seconds or (1.0 if a.quick else 2.0)
    if not (1 <= runs <= 50 and 0 < seconds <= 30):
        p.error("--runs must be 1..50 and --seconds in (0, 30]")
    gen_cpu, resp_cpu = harness.pick_cpus()
    cfg = Config(runs, seconds, tuple(a.target), not a.no_rps, a.build, gen_cpu, resp_cpu)
    return harness.run_benchmark(
        "bench_flood", lambda: measure(cfg), lambda r: show(cfg, r),
        lambda r: document(cfg, r), tools=("hping3", "nstat"))


if __name__ == "__main__":
    sys.exit(main())
