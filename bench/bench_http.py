"""Requests per second of the unmodified ``http.server`` on ustack and on the kernel.

The standard library's ``python3 -m http.server PORT --bind IP --directory
DIR``, unchanged, serves a directory holding one small ``index.html``
(default 1 KB), and runs

  kernel veth      as is, on the kernel's stack, reached over a veth pair
                   from a client namespace -- the reference every ratio is to;
  ustack packet    under ``ustack run --link packet:<veth end>`` on a veth
                   pair (its AF_INET sockets on ustack over AF_PACKET);
  ustack tap       under ``ustack run --link tap:NAME --host-ip ...``, the
                   client on the kernel's side of the TAP.

The client is ApacheBench (``ab``, apache2-utils) in the peer namespace,
keeping ``--conns`` requests in flight (``ab -c``) of ``GET /`` for the
duration (``ab -t``) and counting complete responses.  http.server speaks
HTTP/1.0 and closes the connection after each response, and ab does not
ask for keep-alive, so **every request is a new TCP connection**: the figure
is handshake + request + response + close per request, i.e. connections
per second as much as requests per second.  A figure counts only complete
responses of the right length with status 200 (ab's failed and non-2xx
ones are subtracted and shown).  Client and server are pinned to different
cores; each figure is min / median / max over the runs, the ratio is of
medians, and the CPU shares (server process, ab) tell which side was the
bottleneck.

The ustack rows run the compiled build, or with ``--build pure`` the
pure-Python one (``USTACK_PURE=1``); a ``build:`` line says which.  Without
the compiled build (not installed) the benchmark stops with status 1 unless
given ``--build pure``.

    python3 bench/bench_http.py [--quick] [--runs N] [--seconds S]
                                [--conns C] [--size B] [--warmup N]
                                [--build compiled|pure]

Needs root (namespaces) and ``ab`` (scripts/install-system-deps.sh).
Everything it creates is deleted on exit.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from harness import UsageMeter, busy_warning, min_median_max, pick_cpus, taskset

from ustack_testbed import Netns, Testbed, TestbedError

PORT = 8080
# How long a server may take to print "Serving HTTP on ..." (ustack run
# imports the stack and opens the link first).
START_TIMEOUT = 30.0
# ab's per-request timeout (-s): a connection the server never answers
# fails the run after this long instead of hanging it.
AB_SOCKET_TIMEOUT = 10
# ab -t alone caps the run at 50000 requests; -n after it lifts the cap.
AB_MAX_REQUESTS = 10_000_000
ROWS = ("kernel veth", "ustack packet", "ustack tap")


class BenchError(RuntimeError):
    """A server did not start, or ab failed or printed something unexpected."""


# --------------------------------------------------------------------------
# ab
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AbResult:
    complete: int
    failed: int
    non2xx: int
    seconds: float
    doc_length: int

    @property
    def ok(self) -> int:
        return self.complete - self.failed - self.non2xx

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


_AB_FIELDS = {
    "complete": re.compile(r"^Complete requests:\s+(\d+)", re.M),
    "failed": re.compile(r"^Failed requests:\s+(\d+)", re.M),
    "non2xx": re.compile(r"^Non-2xx responses:\s+(\d+)", re.M),
    "seconds": re.compile(r"^Time taken for tests:\s+([\d.]+) seconds", re.M),
    "doc_length": re.compile(r"^Document Length:\s+(\d+) bytes", re.M),
}


def parse_ab(text: str) -> AbResult:
    """The counts of ab's report (``Non-2xx responses`` is absent when 0)."""
    found: dict[str, str] = {}
    for name, pattern in _AB_FIELDS.items():
        m = pattern.search(text)
        if m is not None:
            found[name] = m.group(1)
        elif name != "non2xx":
            raise BenchError(f"ab output has no {name!r}:\n{text.strip()[-2000:]}")
    return AbResult(int(found["complete"]), int(found["failed"]), int(found.get("non2xx", "0")),
                    float(found["seconds"]), int(found["doc_length"]))


def ab_argv(url: str, conns: int, *, seconds: int = 0, requests: int = 0) -> list[str]:
    """ab for ``seconds`` (``-t``) or for ``requests`` (``-n``), ``conns`` at once.

    ``-r``: a reset connection is counted as failed instead of ending ab.
    """
    argv = ["ab", "-q", "-r", "-s", str(AB_SOCKET_TIMEOUT), "-c", str(conns)]
    if seconds:
        argv += ["-t", str(seconds), "-n", str(AB_MAX_REQUESTS)]
    else:
        argv += ["-n", str(requests)]
    return [*argv, url]


def run_ab(ns: Netns, argv: list[str], limit: float) -> tuple[AbResult, float]:
    """Run ab in ``ns``; (its result, its CPU share over its wall time).

    ab's CPU time comes from RUSAGE_CHILDREN: it is the only child that is
    reaped during the call (``ip netns exec`` execs ab, same pid).
    """
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = ns.run(argv, check=False, timeout=limit)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise BenchError(f"ab exited {proc.returncode}: {' '.join(argv)}\n"
                         f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / wall
    return parse_ab(proc.stdout), cpu


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------


def server_argv(cpu: int | None, ip: str, docroot: str, ustack: list[str] | None) -> list[str]:
    """``python3 -m http.server``, under ``ustack run <ustack opts> --`` if given.

    ``python3 -m ustack.cli`` is the ``ustack`` command (its console script)
    with this interpreter, so a venv needs no PATH entry.
    """
    http = ["-m", "http.server", str(PORT), "--bind", ip, "--directory", docroot]
    if ustack is None:
        return [*taskset(cpu), sys.executable, *http]
    return [*taskset(cpu), sys.executable, "-m", "ustack.cli", "run", *ustack, "--",
            "python3", *http]


class Server:
    """A server process in a namespace, ready once it printed "Serving HTTP".

    stderr goes to a temporary file (http.server logs every request there;
    a pipe nobody reads would fill and stall it), kept for error messages.
    """

    def __init__(self, ns: Netns, argv: list[str], build: str) -> None:
        self.errfile: IO[str] = tempfile.TemporaryFile(  # noqa: SIM115 (closed in stop)
            mode="w+", prefix="bench-http-")
        # Unbuffered, so the "Serving HTTP" line arrives now, not at exit;
        # USTACK_PURE set or not for ``build`` (``ustack run`` runs the stack
        # in this process).
        env = {**harness.build_env(build), "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[Any] = ns.popen(
            argv, stdout=subprocess.PIPE, stderr=self.errfile, env=env)
        self.argv = argv

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float) -> None:
        out = self.proc.stdout
        assert out is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(out, selectors.EVENT_READ)
            buf = b""
            while b"Serving HTTP" not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    break
                if sel.select(left):
                    chunk = os.read(out.fileno(), 4096)
                    if not chunk:
                        break
                    buf += chunk
            else:
                return
        raise BenchError(f"server did not start (exit {self.proc.poll()}): "
                         f"{' '.join(self.argv)}\nstdout: {buf.decode(errors='replace')}")

    def stderr_tail(self) -> str:
        self.errfile.seek(0, os.SEEK_END)
        size = self.errfile.tell()
        self.errfile.seek(max(0, size - 2000))
        return self.errfile.read()

    def stop(self) -> None:
        """SIGTERM by pid (ustack run then lingers up to 2 s), then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.errfile.close()


# --------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    rates: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    foreign: list[float] = field(default_factory=list)  # other processes' cores
    failed: int = 0
    non2xx: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    row: Row
    server_ns: Netns
    client_ns: Netns
    ip: str
    ustack: list[str] | None  # ustack run options; None: the kernel


def measure_row(plan: Plan, a: argparse.Namespace, docroot: str,
                cpus: tuple[int | None, int | None]) -> None:
    row = plan.row
    server = Server(plan.server_ns, server_argv(cpus[1], plan.ip, docroot, plan.ustack),
                    a.build)
    url = f"http://{plan.ip}:{PORT}/"
    try:
        server.wait_ready(START_TIMEOUT)
        if plan.ustack is not None:
            harness.check_running_build(server.pid, a.build, f"{row.name} server")
        if a.warmup:
            # ARP, the first connections, http.server's imports: not measured.
            run_ab(plan.client_ns, [*taskset(cpus[0]), *ab_argv(url, a.conns,
                                                               requests=a.warmup)], 60.0)
        argv = [*taskset(cpus[0]), *ab_argv(url, a.conns, seconds=a.seconds)]
        for _ in range(a.runs):
            if server.proc.poll() is not None:
                raise BenchError(f"server exited ({server.proc.returncode}) between runs")
            # ab has exited when the meter stops, so it is not counted as
            # another process's load; anything else that ran is.
            meter = UsageMeter(server.pid)
            res, client_cpu = run_ab(plan.client_ns, argv, a.seconds + AB_SOCKET_TIMEOUT + 30.0)
            usage = meter.stop()
            if res.doc_length != a.size:
                raise BenchError(f"{row.name}: served {res.doc_length} B, expected {a.size} B")
            row.rates.append(res.rate)
            row.server_cpu.append(usage.cpu)
            row.foreign.append(usage.foreign)
            row.client_cpu.append(client_cpu)
            row.failed += res.failed
            row.non2xx += res.non2xx
    except (BenchError, TestbedError) as exc:
        raise BenchError(f"{row.name}: {exc}\nserver stderr (tail): {server.stderr_tail()}") \
            from None
    finally:
        server.stop()


def run_all(a: argparse.Namespace, docroot: str) -> list[Row]:
    cpus = pick_cpus()
    rows = [Row(name) for name in ROWS]
    with Testbed() as tb:
        # kernel client <-> kernel http.server over a veth pair.
        kc, ks = tb.netns("hkclient"), tb.netns("hkserver")
        tb.veth(kc, ks, "198.18.20.1/24", "198.18.20.2/24")
        # kernel client <-> ustack on AF_PACKET on the other veth end (no
        # kernel address there, so the kernel in that namespace stays out).
        pc, ph = tb.netns("hpclient"), tb.netns("hphost")
        _, host_if = tb.veth(pc, ph, "198.18.21.1/24")
        # kernel client <-> ustack on a TAP that ustack run creates.
        tns = tb.netns("htap")
        tap = tb.ifname("t", tns)
        plans = [
            Plan(rows[0], ks, kc, "198.18.20.2", None),
            Plan(rows[1], ph, pc, "198.18.21.2",
                 ["--link", f"packet:{host_if}", "--ip", "198.18.21.2/24"]),
            Plan(rows[2], tns, tns, "198.18.22.2",
                 ["--link", f"tap:{tap}", "--ip", "198.18.22.2/24",
                  "--host-ip", "198.18.22.1/24"]),
        ]
        for plan in plans:
            measure_row(plan, a, docroot, cpus)
    return rows


def report(rows: list[Row], a: argparse.Namespace) -> None:
    ref = statistics.median(rows[0].rates)
    gen, srv = pick_cpus()
    print(f"http.server (unmodified), GET / of a {a.size} B file, ab -c {a.conns}, "
          f"{a.runs} x {a.seconds} s (after {a.warmup} warm-up requests)")
    print("HTTP/1.0: every request is a new TCP connection (handshake, request, "
          "response, close)")
    print(harness.build_line(a.build_words, "the ustack rows: ustack run"))
    print(f"{'server':<16} {'min':>9} {'median':>9} {'max':>9}  req/s   ratio  "
          f"server-cpu client-cpu  failed")
    for row in rows:
        med = statistics.median(row.rates)
        print(f"{row.name:<16} {min_median_max(row.rates)}        {med / ref:5.2f}  "
              f"{statistics.median(row.server_cpu):10.2f} "
              f"{statistics.median(row.client_cpu):10.2f}  {row.failed + row.non2xx:6d}")
    print("req/s: complete 200 responses per second; ratio: median / kernel median; "
          "cpu: median share of a core (server process incl. ustack's thread; ab)")
    if gen is None:
        print("pinning: not pinned (fewer than 2 cpus)")
    else:
        print(f"pinning: ab on cpu {gen}, http.server on cpu {srv}")
    for line in busy_warning({row.name: max(row.foreign) for row in rows}):
        print(line)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2 runs of 1 s")
    p.add_argument("--runs", type=int, help="runs per row (default 5; --quick 2)")
    p.add_argument("--seconds", type=int, help="seconds per run, ab -t (default 3; --quick 1)")
    p.add_argument("--warmup", type=int, help="unmeasured requests before the runs "
                   "(default 500; --quick 100; 0: none)")
    p.add_argument("--conns", type=int, default=4, help="requests in flight (ab -c)")
    p.add_argument("--size", type=int, default=1024, help="bytes of the served file")
    harness.add_build_option(p)
    a = p.parse_args(argv)
    a.runs = a.runs if a.runs is not None else (2 if a.quick else 5)
    a.seconds = a.seconds if a.seconds is not None else (1 if a.quick else 3)
    a.warmup = a.warmup if a.warmup is not None else (100 if a.quick else 500)
    if not (1 <= a.runs <= 50 and 1 <= a.seconds <= 60 and 1 <= a.conns <= 256
            and 0 <= a.warmup <= 100_000 and 0 <= a.size <= 1 << 20):
        p.error("--runs 1..50, --seconds 1..60, --conns 1..256, --warmup 0..100000, "
                "--size 0..1 MiB")
    if os.geteuid() != 0:
        print("bench_http: needs root (network namespaces)", file=sys.stderr)
        return 1
    if shutil.which("ab") is None:
        print("bench_http: needs ab (apache2-utils; scripts/install-system-deps.sh)",
              file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-http-") as docroot:
        Path(docroot, "index.html").write_bytes(b"x" * a.size)
        try:
            # Before anything is measured: the build asked for must be there.
            a.build_words = harness.ustack_build(a.build)
            rows = run_all(a, docroot)
        except (BenchError, TestbedError, harness.BuildUnavailable) as exc:
            print(f"bench_http: {exc}", file=sys.stderr)
            return 1
    report(rows, a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
