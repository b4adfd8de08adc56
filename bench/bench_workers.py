"""``--workers``: one stack vs two, per second and per CPU-second of the server.

Two workloads, each against 1 and then 2 workers on AF_PACKET on a veth end
(offloads off), the kernel peer in the other namespace as the client:

  http  ``ustack serve --workers N``, ``wrk -t 1 -c C`` fetching a 1 KB file
        over keep-alive connections (bench/wrk_summary.lua; C flows, so the
        fanout hash spreads them);
  udp   ``ustack up --workers N --service udp-echo:7``, F closed-loop C
        clients (bench/loadgen.c, window W/F each): F flows.

For each: requests (echoes) per second, the server's CPU over the run in
cores (user + system time of the parent and every worker, /proc/PID/stat),
and requests per CPU-second of the server, as min / median / max over the
runs; then the ratios of the medians, 2 workers over 1.  On a 2-core
machine the load generator needs a core too, so two workers cannot double
the rate; what scaling leaves visible is the rate per CPU-second (flat:
the workers add capacity without overhead of their own) and the rate
itself (up as far as the cores allow).  The load generator is pinned to
one core; one worker to the other; two workers are not pinned (they share
both cores with the generator).  Raw numbers in
``bench/results/bench_workers-<timestamp>.json``.

    python3 bench/bench_workers.py [--quick] [--runs N] [--seconds S]
        [--conns C] [--flows F] [--window W] [--only http|udp] [--build compiled|pure]

Needs root (namespaces), wrk and a C compiler (loadgen).  Every run is
bounded in time; everything it creates is deleted on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_http
import harness
import loadgen

from ustack_testbed import Testbed, Topology, UstackProcess, topology

PORT = 8080
ECHO_PORT = 7
WORKLOADS = ("http", "udp")
WORKERS = (1, 2)
HEADERS = ("workload", "workers", "req/s min/med/max", "server cpu (cores)",
           "req per cpu-s min/med/max", "errors")


@dataclass(frozen=True)
class Config:
    runs: int
    seconds: float
    warmup: float
    gen_cpu: int | None
    resp_cpu: int | None
    conns: int
    flows: int
    window: int
    workloads: tuple[str, ...]
    build: str


@dataclass
class Cell:
    workload: str
    workers: int
    runs: list[dict[str, float]] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        return [r[key] for r in self.runs]

    def median(self, key: str) -> float:
        return statistics.median(self.values(key)) if self.runs else 0.0


@dataclass
class Report:
    cfg: Config
    build: str
    cells: list[Cell] = field(default_factory=list)


def server_pids(pid: int) -> list[int]:
    """``pid`` and its children (the workers of a ``--workers`` parent)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [pid, *(int(p) for p in f.read().split())]
    except OSError:
        return [pid]


def server_cpu(pids: list[int]) -> float:
    total = 0.0
    for p in pids:
        with contextlib.suppress(OSError):  # a worker gone (it shows in the errors)
            total += harness.cpu_seconds(p)
    return total


def start_server(tb: Testbed, topo: Topology, cfg: Config, workload: str, workers: int,
                 docroot: str) -> UstackProcess:
    harness.flush_neighbours(topo)
    link = ["--link", topo.link, "--ip", topo.stack_cidr, "--workers", str(workers)]
    if workload == "http":
        args = ["serve", docroot, *link, "--port", str(PORT)]
    else:
        args = ["up", *link, "--service", f"udp-echo:{ECHO_PORT}"]
    proc = tb.start_ustack(topo.stack_ns, args, timeout=60, env=harness.build_env(cfg.build))
    harness.check_running_build(proc.pid if workers == 1 else server_pids(proc.pid)[-1],
                                cfg.build, "ustack")
    if workers == 1:
        harness.pin(proc.pid, cfg.resp_cpu)
    return proc


def http_run(topo: Topology, cfg: Config, seconds: float) -> tuple[float, int]:
    """(requests per second, errors) of one wrk run."""
    secs = max(1, round(seconds))  # wrk takes whole seconds
    argv = bench_http.wrk_argv(f"http://{topo.stack_ip}:{PORT}/f1k", cfg.conns, secs,
                               "keepalive", cfg.gen_cpu)
    result, _ = bench_http.run_wrk(topo.peer_ns, argv, secs + 30)
    return result.rate, sum(result.errors.values())


def udp_run(topo: Topology, cfg: Config, seconds: float) -> tuple[float, int]:
    """(echoes per second, bad replies) of ``flows`` loadgen clients at once."""
    binary = loadgen.build()
    spec = loadgen.ClientSpec(mode="udp", addr=topo.stack_ip, port=ECHO_PORT,
                              window=max(1, cfg.window // cfg.flows), seconds=seconds,
                              warmup=0.1)
    argv = [*harness.taskset(cfg.gen_cpu), *spec.argv(binary)]
    procs = [topo.peer_ns.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(cfg.flows)]
    rate, bad = 0.0, 0
    for p in procs:
        out, err = p.communicate(timeout=seconds + 30)
        if p.returncode != 0:
            raise loadgen.LoadgenError(f"loadgen failed: {err.strip()[-300:]}")
        r = loadgen.parse_result(out)
        rate += r.rate
        bad += r.bad
    return rate, bad


def measure_cell(tb: Testbed, topo: Topology, cfg: Config, workload: str, workers: int,
                 docroot: str) -> Cell:
    cell = Cell(workload, workers)
    proc = start_server(tb, topo, cfg, workload, workers, docroot)
    run = http_run if workload == "http" else udp_run
    try:
        run(topo, cfg, cfg.warmup)  # ARP, connections, caches
        for _ in range(cfg.runs):
            pids = server_pids(proc.pid)
            cpu0, t0 = server_cpu(pids), time.monotonic()
            rate, errors = run(topo, cfg, cfg.seconds)
            wall = time.monotonic() - t0
            cores = (server_cpu(pids) - cpu0) / wall
            cell.runs.append({"rate": rate, "cores": cores,
                              "per_cpu": rate / cores if cores > 0 else 0.0,
                              "errors": float(errors)})
    finally:
        proc.stop(timeout=20)
    return cell


def measure(cfg: Config) -> Report:
    describe = harness.ustack_build(cfg.build)
    loadgen.build()
    report = Report(cfg, describe)
    with Testbed() as tb, tempfile.TemporaryDirectory(prefix="bench-workers-") as docroot:
        Path(docroot, "f1k").write_bytes(bytes(range(256)) * 4)
        topo = topology(tb, "packet")
        for workload in cfg.workloads:
            for workers in WORKERS:
                report.cells.append(measure_cell(tb, topo, cfg, workload, workers, docroot))
    return report


def ratios(report: Report) -> dict[str, float]:
    out: dict[str, float] = {}
    by = {(c.workload, c.workers): c for c in report.cells}
    for w in report.cfg.workloads:
        one, two = by.get((w, 1)), by.get((w, 2))
        if one is None or two is None:
            continue
        for key in ("rate", "per_cpu"):
            if one.median(key) > 0:
                out[f"{w}/{key}/2_over_1"] = two.median(key) / one.median(key)
    return out


def show(report: Report) -> None:
    rows = []
    for c in report.cells:
        mmm = harness.min_median_max
        rows.append([c.workload, str(c.workers), mmm(c.values("rate")),
                     f"{c.median('cores'):.2f}", mmm(c.values("per_cpu")),
                     f"{sum(c.values('errors')):.0f}"])
    harness.print_table("--workers: 1 vs 2 (AF_PACKET, veth)", HEADERS, rows, label_columns=2)
    r = ratios(report)
    for w in report.cfg.workloads:
        if f"{w}/rate/2_over_1" in r:
            print(f"  {w}: 2 workers / 1: req/s x{r[f'{w}/rate/2_over_1']:.2f}, "
                  f"req per cpu-s x{r[f'{w}/per_cpu/2_over_1']:.2f}")
    cfg = report.cfg
    print("  " + harness.timing_note(cfg, "ratios of medians in this invocation"))
    print("  " + harness.pinning_note(cfg, "load generator", "1 worker")
          + "; 2 workers not pinned")
    print(f"  build: ustack: {report.build}")


def document(report: Report) -> dict[str, Any]:
    return harness.result_document(
        "bench_workers", report.cfg, build=report.build,
        cells=[{"workload": c.workload, "workers": c.workers, "runs": c.runs}
               for c in report.cells],
        ratios=ratios(report))


def parse_args(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(description="ustack --workers: 1 vs 2 workers")
    p.add_argument("--quick", action="store_true", help="3 runs x 1 s (a smoke run)")
    p.add_argument("--runs", type=int, help="runs per figure (default 5)")
    p.add_argument("--seconds", type=float, help="seconds per run (default 2)")
    p.add_argument("--conns", type=int, default=16, help="wrk connections (16)")
    p.add_argument("--flows", type=int, default=8, help="UDP clients, one flow each (8)")
    p.add_argument("--window", type=int, default=256,
                   help="UDP requests outstanding, over all clients (256)")
    p.add_argument("--only", choices=WORKLOADS, action="append", help="only this workload")
    harness.add_build_option(p)
    a = p.parse_args(argv)
    runs = a.runs or (3 if a.quick else 5)
    seconds = a.seconds or (1.0 if a.quick else 2.0)
    if not (1 <= runs <= 50 and 0 < seconds <= 30 and 1 <= a.flows <= 64 and a.conns >= 1):
        p.error("--runs 1..50, --seconds (0, 30], --flows 1..64, --conns >= 1")
    gen_cpu, resp_cpu = harness.pick_cpus()
    return Config(runs=runs, seconds=seconds, warmup=1.0 if not a.quick else 0.5,
                  gen_cpu=gen_cpu, resp_cpu=resp_cpu, conns=a.conns, flows=a.flows,
                  window=a.window, workloads=tuple(a.only or WORKLOADS), build=a.build)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    return harness.run_benchmark("bench_workers", lambda: measure(cfg), show, document,
                                 errors=(loadgen.LoadgenError, bench_http.BenchError),
                                 tools=("wrk",))


if __name__ == "__main__":
    sys.exit(main())
