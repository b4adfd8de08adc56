"""ustack load against wrk: two load generators on one core, the same nginx.

One nginx (one process, the kernel's stack, ``bench_http``'s configuration)
in a server namespace, pinned to one core, serves a 1 KB file.  A client
namespace holds both generators, pinned to the other core, taking turns run
by run:

  ustack load   ``ustack load`` on AF_PACKET on a veth end with no kernel
                address (veth offloads off), its addresses from a /22;
  wrk           ``wrk -t 1`` on the kernel's stack over a second veth pair
                (offloads on: the kernel at its best), with
                ``net.ipv4.tcp_tw_reuse=1``.

Two modes: ``keepalive`` (16 persistent connections) and ``close`` (a new
connection per request, 32 at a time: wrk sends ``Connection: close`` from
one address and its ephemeral ports; ``ustack load --close --sources 1000``
spreads them over 1000 addresses).  Per mode and generator: requests/s as
min / median / max over the runs, the generator's CPU share (a generator at
a full core is the limit, not nginx), errors; the ratio of the medians
(ustack load / wrk) taken in this invocation; issue 13's goals as ``goal:``
lines; the raw numbers in ``bench/results/load-<timestamp>.json``.  Any
error, or a generator that fails, is a ``!`` line and exit status 1.

    python3 bench/bench_load.py [--quick] [--runs N] [--seconds S]
        [--mode keepalive close] [--build compiled|pure]

Needs root (namespaces), wrk and nginx (scripts/install-system-deps.sh).
Everything it creates is deleted on exit.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from bench_http import WRK_TIMEOUT, BenchError, nginx_conf, run_wrk, wrk_argv
from harness import UsageMeter, busy_warning, pick_cpus, taskset

from ustack_testbed import Netns, Testbed

PORT = 8080  # bench_http's nginx configuration listens here
FILE = "1k.bin"
SIZE = 1024
MODES = ("keepalive", "close")
CONNS = {"keepalive": 16, "close": 32}
SOURCES = {"keepalive": 1, "close": 1000}
GENERATORS = ("ustack load", "wrk")
USTACK_NET = ("198.18.32.1/22", "198.18.32.2/22")  # nginx, ustack load
KERNEL_NET = ("198.18.36.1/24", "198.18.36.2/24")  # nginx, wrk


@dataclass
class Cell:
    mode: str
    generator: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = None

    def values(self, key: str) -> list[float]:
        return [float(r[key]) for r in self.runs]

    def median(self, key: str = "rate") -> float | None:
        v = self.values(key)
        return statistics.median(v) if v else None


@dataclass(frozen=True)
class Config:
    runs: int
    seconds: int
    warmup: int
    modes: tuple[str, ...]
    build: str
    gen_cpu: int | None
    server_cpu: int | None


def ustack_load_argv(cfg: Config, link: str, mode: str, seconds: int, out: str) -> list[str]:
    url = f"http://{USTACK_NET[0].split('/')[0]}:{PORT}/{FILE}"
    argv = [*taskset(cfg.gen_cpu), sys.executable, "-m", "ustack.cli", "load", url,
            "--link", f"packet:{link}", "--ip", USTACK_NET[1], "-c", str(CONNS[mode]),
            "-d", str(seconds), "--timeout", str(WRK_TIMEOUT), "--json", out]
    if mode == "close":
        argv += ["--close", "--sources", str(SOURCES[mode])]
    return argv


def run_ustack_load(ns: Netns, argv: list[str], out: str, env: dict[str, str],
                    limit: float) -> dict[str, Any]:
    """One run; what its JSON says, with the CPU share as the kernel counted it."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = ns.run(argv, check=False, timeout=limit, env=env)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1) or not Path(out).exists():
        raise BenchError(f"ustack load exited {proc.returncode}: {' '.join(argv)}\n"
                         f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    doc: dict[str, Any] = json.loads(Path(out).read_text())
    Path(out).unlink()
    doc["_cpu_wall"] = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / wall
    return doc


Cells = dict[tuple[str, str], Cell]


def measure(cfg: Config) -> tuple[Cells, str]:
    """The cells, and which build of ustack load ran (BuildUnavailable when
    the one asked for is not installed)."""
    build_words = harness.ustack_build(cfg.build)
    cells = {(m, g): Cell(m, g) for m in cfg.modes for g in GENERATORS}
    env = {**harness.build_env(cfg.build), "PYTHONUNBUFFERED": "1"}
    with Testbed() as tb, tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        server, client = tb.netns("ldserver"), tb.netns("ldclient")
        _, ustack_if = tb.veth(server, client, USTACK_NET[0])
        tb.veth(server, client, KERNEL_NET[0], KERNEL_NET[1], offloads_off=False)
        client.sysctl("net.ipv4.tcp_tw_reuse", "1")
        root = Path(tmp, "www")
        root.mkdir()
        (root / FILE).write_bytes(bytes(range(256)) * (SIZE // 256))
        Path(tmp, "nginx.conf").write_text(nginx_conf(tmp, "0.0.0.0", str(root)))
        nginx = server.popen([*taskset(cfg.server_cpu), "nginx", "-p", tmp, "-c",
                              f"{tmp}/nginx.conf"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not Path(tmp, "nginx.pid").exists():
                if nginx.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"nginx did not start (exit {nginx.poll()})")
                time.sleep(0.05)
            out = str(Path(tmp, "load.json"))
            wrk_url = f"http://{KERNEL_NET[0].split('/')[0]}:{PORT}/{FILE}"
            limit = cfg.seconds + WRK_TIMEOUT + 30.0
            for mode in cfg.modes:
                if cfg.warmup:  # ARP, imports, the first connections: not counted
                    run_ustack_load(client, ustack_load_argv(cfg, ustack_if, mode, cfg.warmup,
                                                             out), out, env, limit)
                    run_wrk(client, wrk_argv(wrk_url, CONNS[mode], cfg.warmup, mode,
                                             cfg.gen_cpu), limit)
                for _ in range(cfg.runs):
                    for gen in GENERATORS:  # taking turns: both see the same noise
                        cell = cells[mode, gen]
                        if cell.failure is not None:
                            continue
                        meter = UsageMeter(nginx.pid)
                        try:
                            if gen == "wrk":
                                res, cpu = run_wrk(client, wrk_argv(
                                    wrk_url, CONNS[mode], cfg.seconds, mode, cfg.gen_cpu), limit)
                                run = {"rate": res.rate, "requests": res.requests,
                                       "errors": sum(res.errors.values()),
                                       "error_kinds": res.errors, "gen_cpu": cpu,
                                       "p99_us": res.latency_us["p99"]}
                            else:
                                doc = run_ustack_load(client, ustack_load_argv(
                                    cfg, ustack_if, mode, cfg.seconds, out), out, env, limit)
                                run = {"rate": doc["requests"]["per_second"],
                                       "requests": doc["requests"]["completed"],
                                       "errors": doc["errors_total"],
                                       "error_kinds": doc["errors"],
                                       "gen_cpu": doc["_cpu_wall"],
                                       "p99_us": doc["latency_us"]["ttlb"]["p99"],
                                       "connections": doc["connections"]}
                        except BenchError as exc:
                            cell.failure = str(exc)
                            continue
                        usage = meter.stop()
                        run["server_cpu"] = usage.cpu
                        run["foreign"] = usage.foreign
                        cell.runs.append(run)
        finally:
            if nginx.poll() is None:
                nginx.terminate()
                try:
                    nginx.wait(10)
                except subprocess.TimeoutExpired:
                    nginx.kill()
                    nginx.wait(5)
    return cells, build_words


def ratio(cells: Cells, mode: str) -> float | None:
    u, w = cells[mode, "ustack load"].median(), cells[mode, "wrk"].median()
    return u / w if u is not None and w else None


GOALS = {"close": 1.0, "keepalive": 0.5}


def show(cells: Cells, cfg: Config, build_words: str) -> int:
    print(f"ustack load vs wrk against nginx (one process), 1 KB, {cfg.runs} x {cfg.seconds} s "
          f"per figure, turns taken run by run")
    print(harness.build_line(build_words, "the ustack load rows"))
    status = 0
    for mode in cfg.modes:
        rows = []
        for gen in GENERATORS:
            c = cells[mode, gen]
            if not c.runs:
                rows.append([gen, "failed", "", "", "", ""])
                continue
            lo, mid, hi = (x / 1000 for x in harness.summary(c.values("rate")) or (0, 0, 0))
            rows.append([gen, f"{lo:.1f} / {mid:.1f} / {hi:.1f}",
                         f"{statistics.median(c.values('gen_cpu')):.2f}",
                f"{statistics.median(c.values('server_cpu')):.2f}",
                f"{statistics.median(c.values('p99_us')) / 1000:.2f}",
                str(int(sum(c.values("errors"))))])
        conns = f"-c {CONNS[mode]}" + (f", {SOURCES[mode]} sources for ustack load"
                                       if SOURCES[mode] > 1 else "")
        harness.print_table(f"\n{mode} ({conns})",
                            ["generator", "req/s (k) min / med / max", "cpu gen", "cpu nginx",
                             "p99 ms", "errors"], rows, label_columns=1)
        q = ratio(cells, mode)
        print(f"ratio ustack load / wrk (medians): {'-' if q is None else f'{q:.2f}'}")
    print("pinning: not pinned (fewer than 2 cpus)" if cfg.gen_cpu is None else
          f"pinning: the generators on cpu {cfg.gen_cpu}, nginx on cpu {cfg.server_cpu}")
    for line in busy_warning({f"{m} {g}": max(c.values("foreign"), default=0.0)
                              for (m, g), c in cells.items()}):
        print(line)
    for (m, g), c in cells.items():
        if c.failure is not None:
            print(f"! {m} {g}: {c.failure}")
            status = 1
        bad = int(sum(c.values("errors")))
        if bad:
            print(f"! {m} {g}: {bad} errors")
            status = 1
        if c.runs and max(c.values("gen_cpu")) >= harness.GEN_BOUND:
            print(f"note: {m} {g}: the generator used a full core (it set the pace)")
    for mode in cfg.modes:
        r = ratio(cells, mode)
        what = "connection per request" if mode == "close" else "keep-alive"
        met = "met" if r is not None and r >= GOALS[mode] else "NOT met"
        print(f"goal: {what}: ustack load >= {GOALS[mode]} x wrk: {met} "
              f"({'-' if r is None else f'{r:.2f}'})")
    return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 runs of 1 s, no warm-up")
    p.add_argument("--runs", type=int, help="runs per figure (default 3)")
    p.add_argument("--seconds", type=int, help="seconds per run (default 4)")
    p.add_argument("--mode", nargs="+", choices=MODES, default=list(MODES))
    harness.add_build_option(p)
    a = p.parse_args(argv)
    runs = a.runs or (2 if a.quick else 3)
    seconds = a.seconds or (1 if a.quick else 4)
    if not (1 <= runs <= 20 and 1 <= seconds <= 30):
        p.error("--runs must be 1..20 and --seconds 1..30")
    gen_cpu, server_cpu = pick_cpus()
    cfg = Config(runs, seconds, 0 if a.quick else 1, tuple(a.mode), a.build, gen_cpu,
                 server_cpu)
    status = [0]

    def report(result: tuple[Cells, str]) -> None:
        status[0] = show(*result[:1], cfg, result[1])

    def document(result: tuple[Cells, str]) -> dict[str, Any]:
        cells = result[0]
        return harness.result_document(
            "load", cfg, cells=[{"mode": c.mode, "generator": c.generator, "runs": c.runs,
                                 "failure": c.failure} for c in cells.values()],
            ratios={m: ratio(cells, m) for m in cfg.modes})

    rc = harness.run_benchmark("bench_load", lambda: measure(cfg), report, document,
                               errors=(BenchError,), tools=("wrk", "nginx"))
    return rc or status[0]


if __name__ == "__main__":
    sys.exit(main())
