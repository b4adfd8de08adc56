"""A server under a SYN flood: ``ustack serve`` with SYN cookies against the kernel.

One veth pair, offloads on. The flood, ``ustack flood`` from 64 source
addresses, runs in one namespace pinned to one core; the targets run in the
other namespace, pinned to the other core, where the veth's receive
processing goes too (RPS), so each target's core carries all its work:

  ustack    ``ustack serve`` on AF_PACKET at 198.18.1.5 (its own address on
            the target's veth), port 80, ``--syncookies always`` (or off,
            on for the second part);
  kernel    a Python socket listening on 198.18.1.1:80 with backlog 4096
            and ``net.ipv4.tcp_syncookies=2`` (a cookie for every SYN);
  nginx     one nginx worker on the kernel (198.18.1.1:8080), the
            namespace's ``tcp_syncookies`` at its default, 1.

Parts:

  rate  (a) SYN-ACKs per second, ustack with cookies always against the
        kernel with tcp_syncookies=2: the flood as fast as it goes, then at
        ``--rate`` SYNs/s; the SYN-ACKs and the fraction of SYNs answered
        are the flood's own counts (``ustack flood`` matches each SYN-ACK
        to its SYN).
  mix   (b) legitimate clients during a flood at half the kernel's SYN-ACK
        rate of part (a) (or ``--mix-rate``): ``ustack flood --mix-load``
        opens a connection per request (4 at a time) from 8 other addresses
        for the flood's duration; their success rate (requests answered
        over connections attempted) and p99 connect and last-byte latency,
        against ustack serve with cookies always, on and off, and nginx.

  stateless (c) ``ustack serve --stateless`` against ``ustack serve`` for a 1 KB
        file, a connection per request (``ustack load --close`` from 200
        addresses, on the flood's core): requests per second and the
        server's CPU per request with 64 clients at a time; its resident
        memory above what it held before, at its peak, with ``-c 10000``
        on a fresh server (the generator holds fewer at once: the table
        says how many; a stateful server also keeps TIME-WAIT records, up
        to 32,768, for the connections it closed).

  memory (2) ``ustack serve``'s resident memory before, during (its peak)
        and after a flood of 2,000,000 SYNs from 200 addresses at random
        and random ports, at ``--mix-rate`` (or half of ``--rate``), with
        cookies always and on (the default: the SYN queue, bounded by the
        backlog, fills and cookies answer the rest); once per mode.

Figures are min / median / max over ``--runs`` runs; ratios are of medians.

    python3 bench/bench_synflood.py [--quick] [--runs N] [--seconds S]
        [--rate PPS] [--mix-rate PPS] [--part rate mix stateless memory]
        [--build compiled|pure]

Needs root and nginx (scripts/install-system-deps.sh).  Everything it
creates is deleted on exit; raw numbers go to bench/results/synflood-*.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from bench_http import BenchError, nginx_conf

from ustack_testbed import Testbed, Topology, UstackProcess, packet_topology

PARTS = ("rate", "mix", "stateless", "memory")
MEMORY_SYNS = 2_000_000
USTACK_IP = "198.18.1.5"
FIRST_SOURCE = "198.18.1.10"
SOURCES = 64
MIX_SOURCES = 8
MIX_CONNS = 4
NGINX_PORT = 8080  # bench_http's nginx configuration listens here
COUNT = 100_000_000  # far more than a run's seconds allow: the duration bounds it
MODES = ("always", "on", "off")

LISTENER = (
    "import socket, time\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 80)); s.listen(4096)\n"
    "time.sleep(3600)\n"
)


@dataclass(frozen=True)
class Config:
    runs: int
    seconds: float
    rate: int
    mix_rate: int | None
    parts: tuple[str, ...]
    build: str
    gen_cpu: int | None
    resp_cpu: int | None


@dataclass
class Cell:
    synack_rate: list[float] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)
    offered: list[float] = field(default_factory=list)
    success: list[float] = field(default_factory=list)
    connect_p99_ms: list[float] = field(default_factory=list)
    ttlb_p99_ms: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    cpu_us_per_req: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    held: list[float] = field(default_factory=list)  # clients' connections open at most
    errors: list[str] = field(default_factory=list)


class Bench:
    def __init__(self, tb: Testbed, cfg: Config, tmp: Path) -> None:
        self.tb = tb
        self.cfg = cfg
        self.tmp = tmp
        self.topo: Topology = packet_topology(tb, offloads=True)
        peer = self.topo.peer_ns
        peer.sysctl("net.core.somaxconn", "4096")
        if cfg.resp_cpu is not None:
            mask = format(1 << cfg.resp_cpu, "x")
            peer.run(["sh", "-c",
                      f"echo {mask} > /sys/class/net/{self.topo.peer_if}/queues/rx-0/rps_cpus"])
        self.root = tmp / "www"
        self.root.mkdir()
        (self.root / "1k.bin").write_bytes(bytes(range(256)) * 4)
        srv = harness.taskset(cfg.resp_cpu)
        self.listener = peer.popen([*srv, sys.executable, "-c", LISTENER])
        (tmp / "nginx.conf").write_text(nginx_conf(str(tmp), "0.0.0.0", str(self.root)))
        self.nginx = peer.popen([*srv, "nginx", "-p", str(tmp), "-c", f"{tmp}/nginx.conf"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.serve: UstackProcess | None = None
        self.serve_mode = ""
        deadline = time.monotonic() + 10
        while not (tmp / "nginx.pid").exists():
            if self.nginx.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"nginx did not start (exit {self.nginx.poll()})")
            time.sleep(0.05)

    def start_serve(self, mode: str) -> None:
        """``ustack serve`` with cookies ``mode``, or ``stateless``."""
        if self.serve_mode == mode:
            return
        self.stop_serve()
        extra = ["--stateless"] if mode == "stateless" else ["--syncookies", mode]
        self.serve = self.tb.start_ustack(
            self.topo.peer_ns,
            ["serve", str(self.root), "--link", f"packet:{self.topo.peer_if}", "--ip",
             f"{USTACK_IP}/24", *extra],
            timeout=20, env=harness.build_env(self.cfg.build))
        harness.pin(self.serve.popen.pid, self.cfg.resp_cpu)
        self.serve_mode = mode

    def stop_serve(self) -> None:
        if self.serve is not None:
            self.serve.stop()
            self.serve = None
            self.serve_mode = ""

    def sysctl_cookies(self, value: int) -> None:
        self.topo.peer_ns.sysctl("net.ipv4.tcp_syncookies", str(value))

    def flood(self, target: str, rate: int | None, mix_url: str | None) -> dict[str, Any]:
        cfg = self.cfg
        out = self.tmp / "flood.json"
        out.unlink(missing_ok=True)
        argv = [*harness.taskset(cfg.gen_cpu), sys.executable, "-m", "ustack.cli", "flood",
                "--to", target, "--link", f"packet:{self.topo.stack_if}",
                "--ip", f"{FIRST_SOURCE}/24", "--sources", str(SOURCES),
                "--count", str(COUNT), "--duration", str(cfg.seconds), "--grace", "0.5",
                "--json", str(out)]
        if rate:
            argv += ["--rate", str(rate)]
        if mix_url:
            argv += ["--mix-load", mix_url, "--mix-sources", str(MIX_SOURCES),
                     "--mix-conns", str(MIX_CONNS)]
        proc = self.topo.stack_ns.run(argv, check=False, timeout=cfg.seconds + 60,
                                      env=harness.build_env(cfg.build))
        if proc.returncode != 0 or not out.exists():
            raise BenchError(f"ustack flood exit {proc.returncode}: "
                                     f"{proc.stderr.strip()[-400:]}")
        doc: dict[str, Any] = json.loads(out.read_text())
        self.topo.peer_ns.ip("neigh", "flush", "dev", self.topo.peer_if, check=False)
        return doc

    def flood_memory(self, rate: int) -> tuple[dict[str, Any], list[int]]:
        """``MEMORY_SYNS`` SYNs from random sources against ustack serve,
        its resident bytes sampled every 50 ms from before to a second after."""
        assert self.serve is not None
        pid = self.serve.popen.pid
        out = self.tmp / "flood.json"
        out.unlink(missing_ok=True)
        argv = [*harness.taskset(self.cfg.gen_cpu), sys.executable, "-m", "ustack.cli", "flood",
                "--to", f"{USTACK_IP}:80", "--link", f"packet:{self.topo.stack_if}",
                "--ip", f"{FIRST_SOURCE}/24", "--sources", "200", "--rand-source",
                "--count", str(MEMORY_SYNS), "--duration", "120", "--rate", str(rate),
                "--grace", "0.5", "--json", str(out)]
        samples = [_rss(pid)]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                samples.append(_rss(pid))

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        try:
            proc = self.topo.stack_ns.run(argv, check=False, timeout=180,
                                          env=harness.build_env(self.cfg.build))
            time.sleep(1.0)
        finally:
            stop.set()
            t.join()
        samples.append(_rss(pid))
        if proc.returncode != 0 or not out.exists():
            raise BenchError(f"ustack flood exit {proc.returncode}: {proc.stderr.strip()[-400:]}")
        doc: dict[str, Any] = json.loads(out.read_text())
        return doc, samples

    def load(self, conns: int) -> tuple[dict[str, Any], float, float]:
        """``ustack load --close`` against ustack serve: its report, the
        server's CPU seconds and the most resident memory it held above its
        level before (bytes)."""
        assert self.serve is not None
        pid = self.serve.popen.pid
        out = self.tmp / "load.json"
        out.unlink(missing_ok=True)
        argv = [*harness.taskset(self.cfg.gen_cpu), sys.executable, "-m", "ustack.cli", "load",
                f"http://{USTACK_IP}/1k.bin", "--link", f"packet:{self.topo.stack_if}",
                "--ip", f"{FIRST_SOURCE}/24", "--sources", "200", "-c", str(conns), "--close",
                "-d", str(self.cfg.seconds), "--timeout", "5", "--json", str(out)]
        base = _rss(pid)
        peak = [base]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                peak[0] = max(peak[0], _rss(pid))

        t = threading.Thread(target=sample, daemon=True)
        cpu0 = harness.cpu_seconds(pid)
        t.start()
        try:
            proc = self.topo.stack_ns.run(argv, check=False, timeout=self.cfg.seconds + 60,
                                          env=harness.build_env(self.cfg.build))
        finally:
            stop.set()
            t.join()
        cpu = harness.cpu_seconds(pid) - cpu0
        if proc.returncode not in (0, 1) or not out.exists():
            raise BenchError(f"ustack load exit {proc.returncode}: {proc.stderr.strip()[-400:]}")
        doc: dict[str, Any] = json.loads(out.read_text())
        return doc, cpu, float(peak[0] - base)

    def close(self) -> None:
        self.stop_serve()
        for p in (self.listener, self.nginx):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def _rss(pid: int) -> int:
    """Resident bytes of ``pid`` now (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _rate_cell(cell: Cell, doc: dict[str, Any]) -> None:
    t = doc["targets"][0]
    cell.synack_rate.append(float(t["synack_per_s"]))
    cell.answered.append(float(t["synack_fraction"]))
    cell.offered.append(float(doc["pps"]))


def _mix_cell(cell: Cell, doc: dict[str, Any]) -> None:
    _rate_cell(cell, doc)
    mix = doc["mix_load"]
    cell.success.append(float(mix["success_rate"]))
    lat = mix["latency_us"]
    for key, dest in (("connect", cell.connect_p99_ms), ("ttlb", cell.ttlb_p99_ms)):
        p99 = lat.get(key, {}).get("p99")
        if p99 is not None and lat[key].get("count"):
            dest.append(p99 / 1000)


def measure(cfg: Config) -> dict[str, Any]:
    build = harness.ustack_build(cfg.build)
    cells: dict[tuple[str, str], Cell] = {}
    with Testbed() as tb, tempfile.TemporaryDirectory(prefix="bench-synflood-") as tmpdir:
        bench = Bench(tb, cfg, Path(tmpdir))
        try:
            kernel_rate: float | None = None
            if "rate" in cfg.parts:
                bench.sysctl_cookies(2)
                for offered in ("max", str(cfg.rate)):
                    for r in range(cfg.runs):
                        order = ("ustack", "kernel") if r % 2 == 0 else ("kernel", "ustack")
                        for who in order:
                            cell = cells.setdefault((f"rate {offered}", who), Cell())
                            try:
                                if who == "ustack":
                                    bench.start_serve("always")
                                    doc = bench.flood(f"{USTACK_IP}:80", None if offered == "max"
                                                      else cfg.rate, None)
                                else:
                                    doc = bench.flood(f"{bench.topo.peer_ip}:80",
                                                      None if offered == "max" else cfg.rate,
                                                      None)
                                _rate_cell(cell, doc)
                            except BenchError as e:
                                cell.errors.append(str(e))
                k = cells.get(("rate max", "kernel"))
                if k is not None and k.synack_rate:
                    kernel_rate = statistics.median(k.synack_rate)
            if "mix" in cfg.parts:
                rate = cfg.mix_rate or (int(kernel_rate / 2) if kernel_rate else cfg.rate // 2)
                bench.sysctl_cookies(1)
                targets = [(f"ustack {m}", m) for m in MODES] + [("nginx", "")]
                for r in range(cfg.runs):
                    for name, mode in (targets if r % 2 == 0 else targets[::-1]):
                        cell = cells.setdefault((f"mix {rate}", name), Cell())
                        try:
                            if mode:
                                bench.start_serve(mode)
                                doc = bench.flood(f"{USTACK_IP}:80", rate,
                                                  f"http://{USTACK_IP}/1k.bin")
                            else:
                                ip = bench.topo.peer_ip
                                doc = bench.flood(f"{ip}:{NGINX_PORT}", rate,
                                                  f"http://{ip}:{NGINX_PORT}/1k.bin")
                            _mix_cell(cell, doc)
                        except BenchError as e:
                            cell.errors.append(str(e))
            if "stateless" in cfg.parts:
                for r in range(cfg.runs):
                    for mode in (("stateless", "on") if r % 2 == 0 else ("on", "stateless")):
                        name = "stateless" if mode == "stateless" else "stateful"
                        cell = cells.setdefault(("stateless", name), Cell())
                        try:
                            bench.start_serve(mode)
                            doc, cpu, _ = bench.load(64)
                            done = doc["requests"]["succeeded"]
                            if not done:
                                raise BenchError("no request succeeded")
                            cell.rps.append(done / doc["elapsed"])
                            cell.cpu_us_per_req.append(cpu / done * 1e6)
                            # A fresh server for the memory: what the first run
                            # freed it would reuse, and not show as grown.
                            bench.stop_serve()
                            bench.start_serve(mode)
                            doc, _, grew = bench.load(10_000)
                            cell.rss_mb.append(grew / 1e6)
                            cell.held.append(float(doc["connections"]["held_max"]))
                        except BenchError as e:
                            cell.errors.append(str(e))
            if "memory" in cfg.parts:
                rate = cfg.mix_rate or cfg.rate // 2
                for mode in ("always", "on"):
                    cell = cells.setdefault(("memory", f"cookies {mode}"), Cell())
                    try:
                        bench.stop_serve()
                        bench.start_serve(mode)
                        doc, samples = bench.flood_memory(rate)
                        cell.rss_mb = [samples[0] / 1e6, max(samples) / 1e6, samples[-1] / 1e6]
                        t = doc["targets"][0]
                        cell.offered.append(float(doc["sent"]))
                        cell.synack_rate.append(float(t["synack"]))
                        assert bench.serve is not None
                        counters = bench.serve.stop()
                        bench.serve = None
                        bench.serve_mode = ""
                        cell.held.append(float(counters.get("TcpPassiveOpens", 0)))
                    except BenchError as e:
                        cell.errors.append(str(e))
        finally:
            bench.close()
    return {"build": build, "cells": cells}


def _mmm(values: Sequence[float], fmt: str) -> str:
    if not values:
        return "-"
    return " / ".join(format(v, fmt) for v in (min(values), statistics.median(values),
                                                 max(values)))


def show(cfg: Config, result: dict[str, Any]) -> None:
    print(harness.build_line(result["build"], "ustack serve and ustack flood"))
    cells: dict[tuple[str, str], Cell] = result["cells"]
    rows = []
    for (part, who), c in cells.items():
        if not part.startswith("rate"):
            continue
        ref = cells.get((part, "kernel"))
        ratio = ""
        if who == "ustack" and ref is not None and ref.synack_rate and c.synack_rate:
            ratio = f"{statistics.median(c.synack_rate) / statistics.median(ref.synack_rate):.2f}"
        rows.append([part.split()[1], who, _mmm(c.offered, ",.0f"), _mmm(c.synack_rate, ",.0f"),
                     _mmm([100 * a for a in c.answered], ".1f"), ratio])
    if rows:
        harness.print_table("(a) SYN-ACKs per second on one core, cookies for every SYN",
                            ["offered", "target", "SYNs/s sent", "SYN-ACKs/s", "answered %",
                             "ustack / kernel"], rows, label_columns=2)
    rows = []
    for (part, who), c in cells.items():
        if not part.startswith("mix"):
            continue
        rows.append([who, _mmm(c.offered, ",.0f"), _mmm([100 * s for s in c.success], ".2f"),
                     _mmm(c.connect_p99_ms, ".2f"), _mmm(c.ttlb_p99_ms, ".2f")])
    if rows:
        rate = next(p for p, _ in cells if p.startswith("mix")).split()[1]
        harness.print_table(f"(b) legitimate clients during a flood of {int(rate):,} SYNs/s",
                            ["target", "SYNs/s sent", "success %", "connect p99 ms",
                             "last byte p99 ms"], rows, label_columns=1)
    st = cells.get(("stateless", "stateless"))
    sf = cells.get(("stateless", "stateful"))
    if st is not None and sf is not None:
        rows = [[name, _mmm(c.rps, ",.0f"), _mmm(c.cpu_us_per_req, ".1f"), _mmm(c.rss_mb, ".1f"),
                 _mmm(c.held, ",.0f")] for name, c in (("stateful", sf), ("stateless", st))]
        harness.print_table("(c) ustack serve, 1 KB, a connection per request",
                            ["server", "req/s (64 clients)", "cpu us/request",
                             "memory MB grown (-c 10,000)", "connections held at most"], rows,
                            label_columns=1)
        if st.cpu_us_per_req and sf.cpu_us_per_req and st.rss_mb and sf.rss_mb:
            cpu = 1 - statistics.median(st.cpu_us_per_req) / statistics.median(sf.cpu_us_per_req)
            mem_sf = statistics.median(sf.rss_mb)
            mem = 1 - statistics.median(st.rss_mb) / mem_sf if mem_sf > 0 else 0.0
            print(f"goal: stateless uses >= 90 % less memory and >= 20 % less CPU per request: "
                  f"{'met' if mem >= 0.9 and cpu >= 0.2 else 'NOT met'} "
                  f"(memory {100 * mem:.0f} % less, CPU {100 * cpu:.0f} % less)")
    rows = []
    for (part, who), c in cells.items():
        if part == "memory" and len(c.rss_mb) == 3:
            before, peak, after = c.rss_mb
            rows.append([who, f"{c.offered[0]:,.0f}", f"{c.synack_rate[0]:,.0f}",
                         f"{before:.1f}", f"{peak:.1f}", f"{after:.1f}",
                         f"{c.held[0]:,.0f}"])
    if rows:
        harness.print_table("(2) ustack serve's resident memory under a flood of 2,000,000 SYNs",
                            ["serve", "SYNs sent", "SYN-ACKs", "before MB", "peak MB",
                             "after MB", "connections made"], rows, label_columns=1)
    print(f"  min / median / max over {cfg.runs} runs x {cfg.seconds:g} s; "
          f"{MIX_CONNS} clients at a time from {MIX_SOURCES} addresses, a connection per "
          "request; success: requests answered over connections attempted")
    print("  " + harness.pinning_note(cfg, "flood", "target and its receive processing (RPS)"))
    ustack = cells.get(("rate max", "ustack"))
    kernel = cells.get(("rate max", "kernel"))
    if ustack and kernel and ustack.synack_rate and kernel.synack_rate:
        r = statistics.median(ustack.synack_rate) / statistics.median(kernel.synack_rate)
        print(f"goal: SYN-ACK rate with cookies >= the kernel's: "
              f"{'met' if r >= 1 else 'NOT met'} ({r:.2f})")
    for part_who, c in cells.items():
        if part_who[0].startswith("mix") and part_who[1] == "ustack always" and c.success:
            s = statistics.median(c.success)
            print(f"goal: legitimate clients under the flood > 99 % (ustack serve, cookies "
                  f"always): {'met' if s > 0.99 else 'NOT met'} ({100 * s:.2f} %)")
    for (part, who), c in cells.items():
        for e in c.errors:
            print(f"  ! {part} {who}: {e}")


def document(cfg: Config, result: dict[str, Any]) -> dict[str, Any]:
    cells = {f"{p}/{w}": vars(c) for (p, w), c in result["cells"].items()}
    return harness.result_document("synflood", cfg, build=result["build"], cells=cells)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 runs x 1 s (a smoke run)")
    p.add_argument("--runs", type=int, help="runs per figure (default 3)")
    p.add_argument("--seconds", type=float, help="seconds per run (default 3)")
    p.add_argument("--rate", type=int, default=200_000,
                   help="the fixed offered rate of part (a)'s second row (default 200000)")
    p.add_argument("--mix-rate", type=int,
                   help="the flood's rate in part (b) (default: half the kernel's SYN-ACK "
                        "rate measured in part (a), or half of --rate without it)")
    p.add_argument("--part", nargs="+", choices=PARTS, default=list(PARTS))
    harness.add_build_option(p)
    a = p.parse_args(argv)
    runs = a.runs or (2 if a.quick else 3)
    seconds = a.seconds or (1.0 if a.quick else 3.0)
    if not (1 <= runs <= 50 and 0 < seconds <= 30 and a.rate > 0):
        p.error("--runs must be 1..50, --seconds in (0, 30], --rate positive")
    gen_cpu, resp_cpu = harness.pick_cpus()
    cfg = Config(runs, seconds, a.rate, a.mix_rate, tuple(a.part), a.build, gen_cpu, resp_cpu)
    return harness.run_benchmark(
        "bench_synflood", lambda: measure(cfg), lambda r: show(cfg, r),
        lambda r: document(cfg, r), tools=("nginx",))


if __name__ == "__main__":
    sys.exit(main())
