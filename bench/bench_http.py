"""HTTP servers on ustack and on the kernel, loaded by the same wrk client.

The same ``wrk -t 1 -c C`` (with ``bench/wrk_summary.lua``, which prints
its counts and latency percentiles as JSON) in the peer namespace, pinned
to one core, fetches one static file from each server, pinned to the other:

  serve packet          ``ustack serve`` (issue 12) on AF_PACKET on a veth
                        end (veth offloads off);
  serve packet+offload  the same with ``--vnet-hdr`` (veth offloads on:
                        checksums offloaded, 64 KB super-frames both ways);
  serve tap             ``ustack serve`` on a TAP (``--host-ip``: the client
                        is the kernel on the TAP's other side);
  serve tap+offload     the same with ``--vnet-hdr``;
  nginx                 nginx, one process (``master_process off``,
                        ``worker_processes 1``), sendfile, on the kernel's
                        stack over a veth pair (offloads on: the kernel at
                        its best);
  asyncio               ``bench/asyncio_static.py``: an asyncio.Protocol
                        server answering from pre-built responses, on the
                        kernel (the fastest a Python server there gets);
  http.server           the standard library's http.server speaking
                        HTTP/1.1 (``bench/http_server11.py``: ``python3 -m
                        http.server -p HTTP/1.1`` that also says
                        ``Connection: close`` when it closes) on the kernel;
  run packet, run tap   the same http.server, unmodified, under ``ustack
                        run`` (its sockets on ustack through the socket
                        layer) on the AF_PACKET veth and on a TAP.

Files of 1 KB, 100 KB and 10 MB; two modes: ``keepalive`` (wrk's
persistent connections) and ``close`` (``-H "Connection: close"``: a new
TCP connection per request; ``net.ipv4.tcp_tw_reuse=1`` in the client's
namespace).  For each (size, mode, server): requests/s and MB/s (10^6 B,
every byte wrk read) as min / median / max over the runs, latency p50 and
p99 (medians over the runs), wrk's errors (connect, read, write, timeout,
status >= 400), the CPU share of the server process and of wrk, and the
ratio of medians to asyncio and to nginx measured in the same invocation
(requests/s for files under 1 MB, MB/s for larger ones).  Any error, a
server that fails, or a response shorter than the file is a ``!`` line and
makes the exit status 1.  Then issue 12's goals as ``goal:`` lines, and the
raw numbers as JSON in ``bench/results/http-<timestamp>.json``.

When ``ustack serve`` does not exist in the ustack installed here, its rows
say "not available" and the rest runs.  The ustack rows run the compiled
build, or with ``--build pure`` the pure-Python one.

    python3 bench/bench_http.py [--quick] [--runs N] [--seconds S]
        [--conns C] [--warmup S] [--size 1K 100K 10M] [--mode keepalive close]
        [--only SERVER ...] [--build compiled|pure]

Needs root (namespaces), wrk and nginx (scripts/install-system-deps.sh).
Everything it creates is deleted on exit.
"""

from __future__ import annotations

import argparse
import json
import os
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
from harness import UsageMeter, busy_warning, pick_cpus, taskset

from ustack_testbed import Netns, Testbed, TestbedError

BENCH = Path(__file__).resolve().parent
WRK_LUA = BENCH / "wrk_summary.lua"
ASYNCIO_STATIC = BENCH / "asyncio_static.py"
HTTP_SERVER11 = BENCH / "http_server11.py"
PORT = 8080
# How long a server may take to say it is ready (ustack imports the stack,
# opens the link and, for serve, builds its responses first).
START_TIMEOUT = 60.0
# wrk's per-request timeout: longer than any run (wrk -d at most 60 s here
# is checked below), so a slow 10 MB response is a low figure, not an error;
# a server that stops answering still shows as a rate of 0.
WRK_TIMEOUT = 10
SIZES = {"1K": 1024, "100K": 100 * 1024, "10M": 10 * 1024 * 1024}
MODES = ("keepalive", "close")
# Sizes from which ratios are of MB/s (a response's bytes, not its headers,
# dominate) instead of requests/s.
BYTES_RATIO_FROM = 1 << 20


class BenchError(RuntimeError):
    """A server did not start or died, or wrk failed or printed no summary."""


# --------------------------------------------------------------------------
# The servers
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kind:
    """One server of the table: its option name, label and how it runs."""

    key: str  # --only name
    label: str
    program: str  # serve, run, nginx, asyncio, http.server
    link: str  # kernel, packet, packet+offload, tap, tap+offload

    @property
    def ustack(self) -> bool:
        return self.program in ("serve", "run")


SERVERS = (
    Kind("serve-packet", "serve packet", "serve", "packet"),
    Kind("serve-packet-offload", "serve packet+offload", "serve", "packet+offload"),
    Kind("serve-tap", "serve tap", "serve", "tap"),
    Kind("serve-tap-offload", "serve tap+offload", "serve", "tap+offload"),
    Kind("nginx", "nginx", "nginx", "kernel"),
    Kind("asyncio", "asyncio", "asyncio", "kernel"),
    Kind("http.server", "http.server", "http.server", "kernel"),
    Kind("run-packet", "run packet", "run", "packet"),
    Kind("run-tap", "run tap", "run", "tap"),
)
BY_KEY = {k.key: k for k in SERVERS}
# --only groups.
GROUPS = {"serve": [k.key for k in SERVERS if k.program == "serve"],
          "run": [k.key for k in SERVERS if k.program == "run"],
          "kernel": [k.key for k in SERVERS if k.link == "kernel"]}


@dataclass(frozen=True, slots=True)
class Link:
    """Where a server runs and where wrk runs, and the server's address."""

    server_ns: Netns
    client_ns: Netns
    client_if: str  # the client's interface (its ARP entry is flushed per server)
    ip: str
    ustack_args: tuple[str, ...]  # --link ... --ip ... for ustack serve/run


def make_links(tb: Testbed, needed: set[str]) -> dict[str, Link]:
    """The topologies the chosen servers need (a veth pair or a TAP each)."""
    links: dict[str, Link] = {}
    if "kernel" in needed:
        # Offloads on (veth's default): the kernel with its own TSO/GRO and
        # checksum offloads, as the +offload ustack rows have them.
        kc, ks = tb.netns("hkclient"), tb.netns("hkserver")
        cif, _ = tb.veth(kc, ks, "198.18.20.1/24", "198.18.20.2/24", offloads_off=False)
        links["kernel"] = Link(ks, kc, cif, "198.18.20.2", ())
    for name, net, offload in (("packet", 21, False), ("packet+offload", 23, True)):
        if name in needed:
            # No kernel address on ustack's end: the kernel there stays out.
            pc, ph = tb.netns(f"hp{net}client"), tb.netns(f"hp{net}host")
            cif, host_if = tb.veth(pc, ph, f"198.18.{net}.1/24", offloads_off=not offload)
            args = ["--link", f"packet:{host_if}", "--ip", f"198.18.{net}.2/24"]
            links[name] = Link(ph, pc, cif, f"198.18.{net}.2",
                               (*args, *(["--vnet-hdr"] if offload else [])))
    for name, net, offload in (("tap", 22, False), ("tap+offload", 24, True)):
        if name in needed:
            # ustack creates the TAP; the kernel on its other side is the client.
            ns = tb.netns(f"htap{net}")
            tap = tb.ifname("t", ns)
            args = ["--link", f"tap:{tap}", "--ip", f"198.18.{net}.2/24",
                    "--host-ip", f"198.18.{net}.1/24"]
            links[name] = Link(ns, ns, tap, f"198.18.{net}.2",
                               (*args, *(["--vnet-hdr"] if offload else [])))
    for link in links.values():
        # A new connection per request leaves the client's ports in
        # TIME_WAIT; reuse them (RFC 6191's timestamps make it safe).
        link.client_ns.sysctl("net.ipv4.tcp_tw_reuse", "1")
    return links


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 65;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type application/octet-stream;
    server {{
        listen {ip}:{port} backlog=4096;
        root {root};
{locations}
    }}
}}
"""
# tcp_nopush (TCP_CORK under sendfile) per file, whichever is faster here:
# on, the header (writev) and the body (sendfile) of a small response leave
# as one segment (1 KB keep-alive 58 k/s vs 51 k/s off) and 10 MB goes out
# in full segments (1.2-1.7 GB/s vs 1.1-1.2); but on a 100 KB keep-alive
# response the corked tail waits (0.78 GB/s vs 2.7 GB/s off).  Measured
# alternately on this benchmark's veth, wrk -c 16.
NGINX_NOPUSH_OFF = ("100K",)


def nginx_conf(tmp: str, ip: str, root: str) -> str:
    """A minimal nginx.conf: one process (it serves itself: no master, no
    worker, so no user switch and the measured pid is the server), every
    path in ``tmp``, tcp_nopush per file (NGINX_NOPUSH_OFF)."""
    locations = "\n".join(f"        location = /{file_name(size)} {{ tcp_nopush off; }}"
                          for size in NGINX_NOPUSH_OFF)
    return NGINX_CONF.format(tmp=tmp, ip=ip, port=PORT, root=root, locations=locations)


def server_argv(kind: Kind, link: Link, docroot: str, tmp: str, cpu: int | None) -> list[str]:
    """The command of ``kind`` on ``link``, pinned to ``cpu``.

    ``python3 -m ustack`` is the ``ustack`` command with this interpreter,
    so a venv needs no PATH entry.
    """
    http_server = [str(HTTP_SERVER11), str(PORT), "--bind", link.ip, "--directory", docroot]
    if kind.program == "serve":
        cmd = [sys.executable, "-m", "ustack", "serve", docroot, *link.ustack_args,
               "--port", str(PORT)]
    elif kind.program == "run":
        cmd = [sys.executable, "-m", "ustack", "run", *link.ustack_args, "--",
               "python3", *http_server]
    elif kind.program == "nginx":
        conf = Path(tmp, "nginx.conf")
        conf.write_text(nginx_conf(tmp, link.ip, docroot))
        cmd = ["nginx", "-p", tmp, "-c", str(conf), "-e", f"{tmp}/error.log"]
    elif kind.program == "asyncio":
        cmd = [sys.executable, str(ASYNCIO_STATIC), docroot, "--bind", link.ip,
               "--port", str(PORT)]
    else:
        cmd = [sys.executable, *http_server]
    return [*taskset(cpu), *cmd]


class Server:
    """A server process in a namespace, ready once it said so.

    Ready: ``ustack serve`` and asyncio_static print ``ready:``, http.server
    ``Serving HTTP``; nginx writes its pid file after it opened its
    listening socket.  stderr goes to a temporary file (http.server logs
    every request there; a pipe nobody reads would fill and stall it).
    """

    def __init__(self, kind: Kind, ns: Netns, argv: list[str], env: dict[str, str],
                 tmp: str) -> None:
        self.kind = kind
        self.tmp = tmp
        self.errfile: IO[str] = tempfile.TemporaryFile(  # noqa: SIM115 (closed in stop)
            mode="w+", prefix="bench-http-")
        self.proc: subprocess.Popen[Any] = ns.popen(
            argv, stdout=subprocess.PIPE, stderr=self.errfile, env=env)
        self.argv = argv
        self.out = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self, sel: selectors.BaseSelector, wait: float) -> bool:
        """Read what stdout has within ``wait`` s; False at its end."""
        out = self.proc.stdout
        assert out is not None
        if sel.select(wait):
            chunk = os.read(out.fileno(), 65536)
            if not chunk:
                return False
            self.out += chunk
        return True

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        word = b"Serving HTTP" if self.kind.program in ("run", "http.server") else b"ready:"
        pidfile = Path(self.tmp, "nginx.pid")
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while True:
                if self.kind.program == "nginx" and pidfile.exists():
                    return
                if self.kind.program != "nginx" and word in self.out:
                    return
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    break
                if not self._read(sel, min(left, 0.05)):
                    break
        raise BenchError(f"did not start (exit {self.proc.poll()}): {' '.join(self.argv)}\n"
                         f"stdout: {self.out.decode(errors='replace')[-2000:]}")

    def stderr_tail(self) -> str:
        self.errfile.seek(0, os.SEEK_END)
        size = self.errfile.tell()
        self.errfile.seek(max(0, size - 2000))
        tail = self.errfile.read()
        log = Path(self.tmp, "error.log")
        if self.kind.program == "nginx" and log.exists():
            tail += log.read_text()[-2000:]
        return tail

    def stop(self) -> str:
        """SIGINT (ustack serve, asyncio_static: they print their counters)
        or SIGTERM (``ustack run`` then lingers up to 2 s; nginx's fast
        shutdown) by pid, then SIGKILL; returns what it printed."""
        if self.proc.poll() is None:
            sig = signal.SIGINT if self.kind.program in ("serve", "asyncio") else signal.SIGTERM
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            # What it printed at exit (ustack serve's counters); bounded, in
            # case a child it left behind still holds the pipe open.
            deadline = time.monotonic() + 2.0
            with selectors.DefaultSelector() as sel:
                sel.register(self.proc.stdout, selectors.EVENT_READ)
                while (left := deadline - time.monotonic()) > 0 and self._read(sel, left):
                    pass
            self.proc.stdout.close()
        self.errfile.close()
        return self.out.decode(errors="replace")


def serve_available(build: str) -> str | None:
    """None when ``ustack serve`` exists in the ustack installed here, else why not."""
    proc = subprocess.run([sys.executable, "-m", "ustack", "serve", "--help"],
                          capture_output=True, text=True, timeout=60,
                          env=harness.build_env(build))
    if proc.returncode != 0:
        return "not available: `python -m ustack serve --help` failed"
    return None


# --------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------


ERROR_KINDS = ("connect", "read", "write", "timeout", "status")


@dataclass(frozen=True, slots=True)
class WrkResult:
    """wrk_summary.lua's JSON: counts over the run, latencies in microseconds."""

    duration_us: int
    requests: int
    bytes: int
    errors: dict[str, int]
    latency_us: dict[str, float]

    @property
    def rate(self) -> float:
        return self.requests / (self.duration_us / 1e6)

    @property
    def mbps(self) -> float:
        return self.bytes / (self.duration_us / 1e6) / 1e6


def parse_wrk(text: str) -> WrkResult:
    """The ``wrk-json:`` line wrk_summary.lua's done() prints."""
    for line in text.splitlines():
        if line.startswith("wrk-json: "):
            d = json.loads(line.removeprefix("wrk-json: "))
            if d["duration_us"] <= 0 or set(d["errors"]) != set(ERROR_KINDS):
                raise BenchError(f"wrk summary makes no sense: {line}")
            return WrkResult(d["duration_us"], d["requests"], d["bytes"], d["errors"],
                             d["latency_us"])
    raise BenchError(f"wrk printed no summary:\n{text.strip()[-2000:]}")


def wrk_argv(url: str, conns: int, seconds: int, mode: str, cpu: int | None) -> list[str]:
    close = ["-H", "Connection: close"] if mode == "close" else []
    return [*taskset(cpu), "wrk", "-t", "1", "-c", str(conns), "-d", f"{seconds}s",
            "--timeout", f"{WRK_TIMEOUT}s", "--latency", "-s", str(WRK_LUA), *close, url]


def run_wrk(ns: Netns, argv: list[str], limit: float) -> tuple[WrkResult, float]:
    """Run wrk in ``ns``; (its summary, its CPU share over its wall time).

    wrk's CPU time comes from RUSAGE_CHILDREN: it is the only child reaped
    during the call (``ip netns exec`` and taskset exec it, same pid).
    """
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = ns.run(argv, check=False, timeout=limit)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise BenchError(f"wrk exited {proc.returncode}: {' '.join(argv)}\n"
                         f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / wall
    return parse_wrk(proc.stdout), cpu


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------


@dataclass
class Cell:
    """The runs of one (size, mode, server)."""

    server: str  # label
    size: str
    mode: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    unavailable: str | None = None
    failure: str | None = None

    def values(self, key: str) -> list[float]:
        return [float(r[key]) for r in self.runs]

    def median(self, key: str) -> float | None:
        v = self.values(key)
        return statistics.median(v) if v else None

    def errors(self) -> dict[str, int]:
        return {k: sum(r["errors"][k] for r in self.runs) for k in ERROR_KINDS}

    def short(self) -> int:
        """Runs whose bytes fell short of requests x file size (truncated responses)."""
        return sum(1 for r in self.runs if r["bytes"] < r["requests"] * SIZES[self.size])

    def foreign(self) -> float:
        return max(self.values("foreign"), default=0.0)


@dataclass(frozen=True, slots=True)
class Config:
    runs: int
    seconds: int
    warmup: int
    conns: int
    sizes: tuple[str, ...]
    modes: tuple[str, ...]
    servers: tuple[str, ...]
    build: str
    wrk_cpu: int | None
    server_cpu: int | None


def file_name(size: str) -> str:
    return f"{size}.bin"


def measure_server(kind: Kind, link: Link, cfg: Config, docroot: str,
                   cells: dict[tuple[str, str, str], Cell], outputs: dict[str, str]) -> None:
    """Start ``kind`` once, then every (size, mode) against it: an optional
    warm-up run (ARP, the first connections, imports: not counted), then
    the runs."""
    link.client_ns.ip("neigh", "flush", "dev", link.client_if, check=False)
    env = {**harness.build_env(cfg.build), "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory(prefix="bench-http-srv-") as tmp:
        server = Server(kind, link.server_ns,
                        server_argv(kind, link, docroot, tmp, cfg.server_cpu), env, tmp)
        output = ""
        try:
            server.wait_ready(START_TIMEOUT)
            if kind.ustack:
                harness.check_running_build(server.pid, cfg.build, kind.label)
            for size in cfg.sizes:
                url = f"http://{link.ip}:{PORT}/{file_name(size)}"
                for mode in cfg.modes:
                    cell = cells[size, mode, kind.label]
                    argv = wrk_argv(url, cfg.conns, cfg.seconds, mode, cfg.wrk_cpu)
                    warm = wrk_argv(url, cfg.conns, cfg.warmup, mode, cfg.wrk_cpu)
                    limit = cfg.seconds + WRK_TIMEOUT + 30.0
                    try:
                        if cfg.warmup:
                            run_wrk(link.client_ns, warm, limit)
                        for _ in range(cfg.runs):
                            if server.proc.poll() is not None:
                                raise BenchError(f"server exited ({server.proc.returncode})")
                            # wrk has exited when the meter stops, so it is
                            # not counted as another process's load.
                            meter = UsageMeter(server.pid)
                            res, wrk_cpu = run_wrk(link.client_ns, argv, limit)
                            usage = meter.stop()
                            cell.runs.append({
                                "requests": res.requests, "bytes": res.bytes,
                                "duration_us": res.duration_us, "rate": res.rate,
                                "mbps": res.mbps, "errors": res.errors,
                                "latency_us": res.latency_us,
                                "p50_us": res.latency_us["p50"],
                                "p99_us": res.latency_us["p99"],
                                "server_cpu": usage.cpu, "wrk_cpu": wrk_cpu,
                                "foreign": usage.foreign})
                    except (BenchError, TestbedError) as exc:
                        cell.failure = f"{exc}\nserver stderr (tail): {server.stderr_tail()}"
                        if server.proc.poll() is not None:
                            raise
        except (BenchError, TestbedError, harness.BuildUnavailable) as exc:
            why = f"{exc}\nserver stderr (tail): {server.stderr_tail()}"
            for (_, _, label), cell in cells.items():
                if label == kind.label and cell.failure is None and not cell.runs:
                    cell.failure = why
        finally:
            output = server.stop()
    outputs[kind.label] = output[-4000:]


def run_all(cfg: Config, docroot: str, unavailable: dict[str, str]
            ) -> tuple[dict[tuple[str, str, str], Cell], dict[str, str]]:
    kinds = [BY_KEY[k] for k in cfg.servers]
    cells = {(size, mode, k.label): Cell(k.label, size, mode, unavailable=unavailable.get(k.key))
             for size in cfg.sizes for mode in cfg.modes for k in kinds}
    outputs: dict[str, str] = {}
    runnable = [k for k in kinds if k.key not in unavailable]
    with Testbed() as tb:
        links = make_links(tb, {k.link for k in runnable})
        for kind in runnable:
            measure_server(kind, links[kind.link], cfg, docroot, cells, outputs)
    return cells, outputs


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def ratio_key(size: str) -> str:
    return "mbps" if SIZES[size] >= BYTES_RATIO_FROM else "rate"


def ratio(cells: dict[tuple[str, str, str], Cell], size: str, mode: str, label: str,
          ref: str) -> float | None:
    """Median of ``label`` over median of ``ref``, same (size, mode); None if either is missing."""
    a, b = cells.get((size, mode, label)), cells.get((size, mode, ref))
    if a is None or b is None:
        return None
    key = ratio_key(size)
    ma, mb = a.median(key), b.median(key)
    if ma is None or mb is None or mb == 0:
        return None
    return ma / mb


def fmt3(values: list[float], scale: float, digits: int) -> str:
    lo, mid, hi = min(values), statistics.median(values), max(values)
    return " / ".join(f"{v / scale:.{digits}f}" for v in (lo, mid, hi))


def fmt_us(us: float | None) -> str:
    if us is None:
        return "-"
    return f"{us / 1000:.2f}ms" if us >= 1000 else f"{us:.0f}us"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.2f}" if r >= 0.1 else f"{r:.3f}"


HEADERS = ("server", "req/s (k) min / med / max", "MB/s min / med / max", "p50", "p99",
           "errors", "cpu srv/wrk", "x asyncio", "x nginx")


def table_rows(cells: dict[tuple[str, str, str], Cell], size: str, mode: str,
               labels: list[str]) -> list[list[str]]:
    rows = []
    for label in labels:
        c = cells[size, mode, label]
        if c.unavailable is not None or not c.runs:
            why = "not available" if c.unavailable is not None else "FAILED (see ! below)"
            rows.append([label, why, "-", "-", "-", "-", "-", "-", "-"])
            continue
        errs = sum(c.errors().values())
        rows.append([
            label,
            fmt3(c.values("rate"), 1000, 2),
            fmt3(c.values("mbps"), 1, 1),
            fmt_us(c.median("p50_us")),
            fmt_us(c.median("p99_us")),
            f"{errs}{' !' if errs or c.short() else ''}",
            f"{c.median('server_cpu'):.2f}/{c.median('wrk_cpu'):.2f}",
            fmt_ratio(ratio(cells, size, mode, label, "asyncio")),
            fmt_ratio(ratio(cells, size, mode, label, "nginx")),
        ])
    return rows


@dataclass(frozen=True, slots=True)
class Goal:
    text: str
    server: str
    measured: float | None
    target: float
    why: str = ""

    @property
    def met(self) -> bool | None:
        return None if self.measured is None else self.measured >= self.target

    def line(self) -> str:
        if self.measured is None:
            return f"goal: {self.text} ({self.server}): not measured{self.why}"
        verdict = "met" if self.met else "NOT met"
        return f"goal: {self.text} ({self.server}): {verdict} ({self.measured:.2f})"


def goals(cells: dict[tuple[str, str, str], Cell], cfg: Config) -> list[Goal]:
    """Issue 12's goals, one line per ustack serve row they concern."""
    out: list[Goal] = []
    serve = [k.label for k in SERVERS if k.program == "serve"]
    offload = [k.label for k in SERVERS if k.program == "serve" and k.link.endswith("offload")]
    specs = [("1K", "close", "1 KB close: ustack serve >= 1.0 x asyncio", "asyncio", 1.0, serve),
             ("1K", "keepalive", "1 KB keep-alive: ustack serve >= 0.5 x asyncio", "asyncio", 0.5,
              serve),
             ("10M", "keepalive", "10 MB keep-alive: ustack serve >= 0.8 x nginx MB/s with offload",
              "nginx", 0.8, offload)]
    for size, mode, text, ref, target, labels in specs:
        if size not in cfg.sizes or mode not in cfg.modes or ref not in cfg.servers:
            continue
        present = [cells[size, mode, label] for label in labels if (size, mode, label) in cells]
        if present and all(c.unavailable for c in present):
            # One line for all the rows of a command that is not there.
            out.append(Goal(text, "ustack serve", None, target, f": {present[0].unavailable}"))
            continue
        for c in present:
            out.append(Goal(text, c.server, ratio(cells, size, mode, c.server, ref), target))
    return out


def problems(cells: dict[tuple[str, str, str], Cell]) -> list[str]:
    """The ``!`` lines: servers that failed, wrk errors, short responses."""
    lines = []
    for (size, mode, label), c in cells.items():
        where = f"{size} {mode} {label}"
        if c.failure is not None:
            lines.append(f"! {where}: failed: {c.failure.strip()}")
        errs = c.errors()
        if any(errs.values()):
            lines.append(f"! {where}: wrk errors " + ", ".join(
                f"{k} {v}" for k, v in errs.items() if v) + " (status: responses >= 400)")
        if c.short():
            lines.append(f"! {where}: fewer bytes than requests x {SIZES[size]} B in "
                         f"{c.short()} run(s): truncated responses")
        if c.runs and all(r["bytes"] == 0 for r in c.runs):
            lines.append(f"! {where}: nothing received")
    return lines


def report(cells: dict[tuple[str, str, str], Cell], cfg: Config, build_words: str,
           goal_list: list[Goal], bad: list[str]) -> None:
    labels = [BY_KEY[k].label for k in cfg.servers]
    print(f"HTTP GET of one static file, wrk -t 1 -c {cfg.conns}, {cfg.runs} x {cfg.seconds} s "
          f"per figure (after {cfg.warmup} s warm-up)")
    if any(BY_KEY[k].ustack for k in cfg.servers):
        print(harness.build_line(build_words, "the ustack rows: ustack serve, ustack run"))
    else:
        print(harness.build_line("-", build_words))
    for size in cfg.sizes:
        for mode in cfg.modes:
            what = ("persistent connections" if mode == "keepalive"
                    else "Connection: close, a new TCP connection per request")
            print()
            harness.print_table(f"{size} ({SIZES[size]} B), {mode}: {what}", HEADERS,
                                table_rows(cells, size, mode, labels), label_columns=1)
    print()
    print("req/s and MB/s (10^6 B, all bytes wrk read): min / median / max over the runs; "
          "p50/p99: wrk's latency percentiles, medians over the runs; errors: wrk's connect, "
          "read, write, timeout and status >= 400, summed; cpu: median share of a core "
          "(server process incl. its threads; wrk)")
    print(f"x asyncio, x nginx: ratio of medians in this invocation, of req/s below "
          f"{BYTES_RATIO_FROM >> 20} MB, of MB/s from there")
    if cfg.wrk_cpu is None:
        print("pinning: not pinned (fewer than 2 cpus)")
    else:
        print(f"pinning: wrk on cpu {cfg.wrk_cpu}, the server on cpu {cfg.server_cpu}")
    missing = {c.server: c.unavailable for c in cells.values() if c.unavailable}
    for label, why in missing.items():
        print(f"{label}: {why}")
    if "http.server" in cfg.servers or "run-packet" in cfg.servers or "run-tap" in cfg.servers:
        print("http.server: bench/http_server11.py, the stdlib's speaking HTTP/1.1 (keep-alive, "
              "Connection: close said when it closes); it writes a response's headers and body "
              "in two sends, so on a persistent connection Nagle's algorithm and the client's "
              "delayed ACK hold each small response ~40 ms")
    for line in busy_warning({f"{c.size} {c.mode} {c.server}": c.foreign()
                              for c in cells.values() if c.runs}):
        print(line)
    for g in goal_list:
        print(g.line())
    for line in bad:
        print(line)


def document(cells: dict[tuple[str, str, str], Cell], cfg: Config, build_words: str,
             goal_list: list[Goal], bad: list[str], outputs: dict[str, str]) -> dict[str, Any]:
    out_cells = []
    for (size, mode, label), c in cells.items():
        summary = {key: harness.summary(c.values(key)) for key in ("rate", "mbps")}
        out_cells.append({
            "server": label, "size": size, "bytes": SIZES[size], "mode": mode,
            "unavailable": c.unavailable, "failure": c.failure, "runs": c.runs,
            "summary": summary, "errors": c.errors(),
            "ratio_to_asyncio": ratio(cells, size, mode, label, "asyncio"),
            "ratio_to_nginx": ratio(cells, size, mode, label, "nginx"),
            "ratio_of": ratio_key(size)})
    return harness.result_document(
        "http", cfg, build=build_words, cells=out_cells,
        goals=[{"goal": g.text, "server": g.server, "measured": g.measured,
                "target": g.target, "met": g.met} for g in goal_list],
        problems=bad, server_output=outputs)


def parse_only(values: list[str] | None, p: argparse.ArgumentParser) -> tuple[str, ...]:
    if not values:
        return tuple(k.key for k in SERVERS)
    chosen: set[str] = set()
    for v in values:
        if v in GROUPS:
            chosen.update(GROUPS[v])
        elif v in BY_KEY:
            chosen.add(v)
        else:
            p.error(f"--only {v}: one of {', '.join([*BY_KEY, *GROUPS])}")
    return tuple(k.key for k in SERVERS if k.key in chosen)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="1 run of 1 s, no warm-up, 1K and 10M keep-alive")
    p.add_argument("--runs", type=int, help="runs per figure (default 3; --quick 1)")
    p.add_argument("--seconds", type=int, help="seconds per run, wrk -d (default 3; --quick 1)")
    p.add_argument("--warmup", type=int,
                   help="seconds of unmeasured wrk before each figure (default 1; --quick 0)")
    p.add_argument("--conns", type=int, default=16, help="connections (wrk -c; default 16)")
    p.add_argument("--size", nargs="+", choices=SIZES, help="files (default all)")
    p.add_argument("--mode", nargs="+", choices=MODES, help="modes (default both)")
    p.add_argument("--only", nargs="+", metavar="SERVER",
                   help=f"only these servers: {', '.join(BY_KEY)}, or a group: "
                        f"{', '.join(GROUPS)}")
    harness.add_build_option(p)
    a = p.parse_args(argv)
    runs = a.runs if a.runs is not None else (1 if a.quick else 3)
    seconds = a.seconds if a.seconds is not None else (1 if a.quick else 3)
    warmup = a.warmup if a.warmup is not None else (0 if a.quick else 1)
    sizes = tuple(a.size) if a.size else (("1K", "10M") if a.quick else tuple(SIZES))
    modes = tuple(a.mode) if a.mode else (("keepalive",) if a.quick else MODES)
    if not (1 <= runs <= 50 and 1 <= seconds <= 60 and 0 <= warmup <= 60
            and 1 <= a.conns <= 1024):
        p.error("--runs 1..50, --seconds 1..60, --warmup 0..60, --conns 1..1024")
    servers = parse_only(a.only, p)
    if os.geteuid() != 0:
        print("bench_http: needs root (network namespaces)", file=sys.stderr)
        return 1
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and (tool == "wrk" or "nginx" in servers):
            print(f"bench_http: needs {tool} (scripts/install-system-deps.sh)", file=sys.stderr)
            return 1
    gen, srv = pick_cpus()
    cfg = Config(runs, seconds, warmup, a.conns, sizes, modes, servers, a.build, gen, srv)
    unavailable: dict[str, str] = {}
    build_words = "no ustack rows"
    try:
        if any(BY_KEY[k].ustack for k in servers):
            # Before anything is measured: the build asked for must be there.
            build_words = harness.ustack_build(a.build)
        if any(BY_KEY[k].program == "serve" for k in servers):
            why = serve_available(a.build)
            if why is not None:
                unavailable.update((k, why) for k in servers if BY_KEY[k].program == "serve")
        with tempfile.TemporaryDirectory(prefix="bench-http-") as docroot:
            os.chmod(docroot, 0o755)
            for size in sizes:
                # Not all one byte: a body a server or link could compress or
                # coalesce specially would flatter it.
                block = bytes(range(256)) * 4
                n = SIZES[size]
                Path(docroot, file_name(size)).write_bytes((block * (n // len(block) + 1))[:n])
            cells, outputs = run_all(cfg, docroot, unavailable)
    except (TestbedError, harness.BuildUnavailable) as exc:
        print(f"bench_http: {exc}", file=sys.stderr)
        return 1
    goal_list = goals(cells, cfg)
    bad = problems(cells)
    report(cells, cfg, build_words, goal_list, bad)
    harness.write_results(document(cells, cfg, build_words, goal_list, bad, outputs))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
