"""asyncio echo throughput: ustack.aio against asyncio on the kernel's stack.

The same asyncio server program (an ``asyncio.Protocol`` echo: every
``data_received`` goes straight back with ``transport.write``; or with
``--api streams`` a StreamReader/StreamWriter loop) runs

  kernel veth      on a kernel socket, the client's kernel at the other end
                   of a veth pair (two namespaces; veth's offloads on, its
                   default) -- the reference every ratio is to;
  ustack packet    on ``ustack.aio`` over AF_PACKET on a veth (offloads off);
  ustack tap       on ``ustack.aio`` over a TAP;
  ustack tap+offload  the same with virtio-net headers (``vnet_hdr=True``):
                   checksums are offloaded both ways, and the kernel and
                   ustack pass each other 64 KB super-frames (TSO/GRO).

The client is one Python process in the peer namespace, on kernel TCP
connections, in two modes, each measured against every server in the run:

  pingpong  each connection sends a 1 KB message and waits for its echo
            before sending the next, so every message is one
            ``data_received`` and one write on the server: a latency-bound
            rate, what an RPC-style protocol sees;
  stream    each connection keeps 256 KB of 1 KB messages in flight
            (written 64 per send()) and counts the echoed bytes: the
            throughput a pipelined protocol sees, where the server's
            stack may coalesce messages into larger reads and writes.

Client and server are pinned to different cores.  Each figure is messages
per second (and MB/s), min / median / max over the runs; the server's CPU
share is printed so a client-bound figure is visible.

The ustack.aio servers run the compiled build, or with ``--build pure`` the
pure-Python one (``USTACK_PURE=1``); a ``build:`` line says which.  Without
the compiled build (not installed) the benchmark stops with status 1 unless
given ``--build pure``.

    python3 bench/bench_aio.py [--quick] [--runs N] [--seconds S] [--conns C]
                               [--size B] [--api protocol|streams]
                               [--mode pingpong|stream] [--build compiled|pure]

Needs root (namespaces).  Everything it creates is deleted on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SERVER_PORT = 7
MODES = ("pingpong", "stream")
# Issue 10's goals, ustack.aio / asyncio on the kernel: ping-pong with 1 KB
# messages (best ustack row), streamed with offload (the tap+offload row).
GOALS = {"pingpong": 0.5, "stream": 1.0}
STREAM_BATCH = 64  # messages per client send() in stream mode
OUTSTANDING = 256 * 1024  # bytes in flight per connection in stream mode


# --------------------------------------------------------------------------
# The server (run as a subprocess: --serve kernel|ustack)
# --------------------------------------------------------------------------


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.write = transport.write  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.write(data)


async def echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def serve(a: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    ip = a.ip.partition("/")[0]
    if a.serve == "kernel":
        if a.api == "streams":
            server = await asyncio.start_server(echo_stream, ip, SERVER_PORT)
        else:
            server = await loop.create_server(EchoProtocol, ip, SERVER_PORT)
        print("ready", flush=True)
        await stop.wait()
        server.close()
        return
    from ustack import aio

    async with aio.running(a.link, a.ip, host_ip=a.host_ip, vnet_hdr=a.vnet_hdr) as st:
        # asyncio sets TCP_NODELAY on its TCP transports; the same here.
        st.stack.tcp.config.nodelay = True
        if a.api == "streams":
            userver = await aio.start_server(echo_stream, ip, SERVER_PORT, stack=st)
        else:
            userver = await aio.create_server(EchoProtocol, ip, SERVER_PORT, stack=st)
        print("ready", flush=True)
        await stop.wait()
        userver.close()


# --------------------------------------------------------------------------
# The client (run as a subprocess: --client IP)
# --------------------------------------------------------------------------


def _connect(ip: str, conns: int, events: int,
             nodelay: bool) -> tuple[selectors.BaseSelector, list[socket.socket]]:
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(conns):
        s = socket.create_connection((ip, SERVER_PORT), timeout=5)
        if nodelay:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
        sel.register(s, events)
    return sel, socks


def _measure(sel: selectors.BaseSelector, socks: list[socket.socket],
             handle: Callable[[socket.socket, int, int], int], unit: int, seconds: float,
             warmup: float) -> None:
    """Run ``handle(sock, fd, events)`` for every readiness until the time is up.

    What ``handle`` returns is summed after the warm-up; the sum divided by
    ``unit`` is printed as messages, with the seconds and the client's CPU share.
    """
    count = 0
    t0 = time.monotonic()
    start = t0 + warmup
    end = start + seconds
    counting = False
    cpu0 = 0.0
    now = t0
    while now < end:
        for key, events in sel.select(1.0):
            count += handle(key.fileobj, key.fd, events)  # type: ignore[arg-type]
        now = time.monotonic()
        if not counting and now >= start:
            counting = True
            count = 0
            start = now
            cpu0 = time.process_time()
    wall = now - start
    cpu = (time.process_time() - cpu0) / wall
    for s in socks:
        s.close()
    print(f"msgs={count // unit} seconds={wall:.4f} cpu={cpu:.3f}", flush=True)


def client(ip: str, conns: int, size: int, seconds: float, warmup: float) -> None:
    """Ping-pong ``size``-byte messages on ``conns`` connections; print msgs/s."""
    msg = b"m" * size
    sel, socks = _connect(ip, conns, selectors.EVENT_READ, nodelay=True)
    left = {s.fileno(): size for s in socks}
    for s in socks:
        s.send(msg)

    def handle(s: socket.socket, fd: int, events: int) -> int:
        data = s.recv(65536)
        if not data:
            raise SystemExit("server closed a connection")
        rest = left[fd] - len(data)
        done = 0
        if rest <= 0:
            done = 1
            s.send(msg)  # 1 KB into an empty send buffer: never partial
            rest += size
        left[fd] = rest
        return done

    _measure(sel, socks, handle, 1, seconds, warmup)


def client_stream(ip: str, conns: int, size: int, seconds: float, warmup: float) -> None:
    """Pipeline ``size``-byte messages on ``conns`` connections; print msgs/s.

    Each connection keeps up to OUTSTANDING bytes of messages in flight,
    written STREAM_BATCH messages per send() (so the client's system calls
    are not what is measured), and counts the echoed bytes that come back.
    """
    chunk = b"m" * (size * STREAM_BATCH)
    rw = selectors.EVENT_READ | selectors.EVENT_WRITE
    sel, socks = _connect(ip, conns, rw, nodelay=False)
    outstanding = {s.fileno(): 0 for s in socks}

    def handle(s: socket.socket, fd: int, events: int) -> int:
        received = 0
        if events & selectors.EVENT_READ:
            with contextlib.suppress(BlockingIOError):
                data = s.recv(1 << 18)
                if not data:
                    raise SystemExit("server closed a connection")
                received = len(data)
                was = outstanding[fd]
                outstanding[fd] = was - received
                if was >= OUTSTANDING > outstanding[fd]:
                    sel.modify(s, rw)
        if events & selectors.EVENT_WRITE and outstanding[fd] < OUTSTANDING:
            with contextlib.suppress(BlockingIOError):
                outstanding[fd] += s.send(chunk)
            if outstanding[fd] >= OUTSTANDING:
                sel.modify(s, selectors.EVENT_READ)
        return received

    _measure(sel, socks, handle, size, seconds, warmup)


# --------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    mode: str = "pingpong"
    rates: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)


def self_cmd(cpu: int | None, *args: str) -> list[str]:
    from harness import taskset

    return [*taskset(cpu), sys.executable, str(Path(__file__).resolve()), *args]


def measure_server(rows: dict[str, Row], server_ns: object, client_ns: object,
                   server_args: list[str], ip: str, a: argparse.Namespace,
                   cpus: tuple[int | None, int | None]) -> None:
    """Start one server; run the client ``a.runs`` times in every mode against it."""
    from harness import build_env, check_running_build, cpu_seconds

    from ustack_testbed import Netns

    assert isinstance(server_ns, Netns) and isinstance(client_ns, Netns)
    name = next(iter(rows.values())).name
    # The server's build: USTACK_PURE set or not (ustack.aio runs in it).
    proc = server_ns.popen(self_cmd(cpus[1], "--serve", *server_args, "--api", a.api),
                           stdout=subprocess.PIPE, text=True, env=build_env(a.build))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"{name}: server did not start (exit {proc.poll()})")
        if server_args[0] == "ustack":
            check_running_build(proc.pid, a.build, f"{name} server")
        def client_run(mode: str, seconds: float) -> str:
            return client_ns.run(
                self_cmd(cpus[0], "--client", ip, "--mode", mode, "--conns", str(a.conns),
                         "--size", str(a.size), "--seconds", str(seconds),
                         "--warmup", str(a.warmup)),
                timeout=seconds + a.warmup + 30).stdout

        # One unmeasured run first: against a freshly started kernel server
        # the first run is often a quarter of the later ones (ustack's are
        # not), and a median over few runs should not depend on it.
        client_run(next(iter(rows)), 0.5)
        for _ in range(a.runs):
            for mode, row in rows.items():
                c0 = cpu_seconds(proc.pid)
                t0 = time.monotonic()
                out = client_run(mode, a.seconds)
                wall = time.monotonic() - t0
                share = (cpu_seconds(proc.pid) - c0) / wall
                fields = dict(kv.split("=") for kv in out.split()[-3:])
                row.rates.append(int(fields["msgs"]) / float(fields["seconds"]))
                row.client_cpu.append(float(fields["cpu"]))
                row.server_cpu.append(share)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


SERVERS = ("kernel veth", "ustack.aio packet", "ustack.aio tap", "ustack.aio tap+offload")


def run_all(a: argparse.Namespace) -> dict[str, list[Row]]:
    """Every server in every mode; returns the rows by mode, kernel first."""
    from harness import pick_cpus

    from ustack_testbed import Testbed

    cpus = pick_cpus()
    table = {mode: [Row(name, mode) for name in SERVERS] for mode in a.modes}
    with Testbed() as tb:
        # kernel <-> kernel over a veth pair.
        kc, ks = tb.netns("kclient"), tb.netns("kserver")
        # Offloads stay on (veth's default): the kernel at its best, with
        # its own segmentation and checksum offloads, as the ustack
        # tap+offload row has them.
        tb.veth(kc, ks, "198.18.10.1/24", "198.18.10.2/24", offloads_off=False)
        # kernel client <-> ustack on AF_PACKET over a veth pair.
        pc, ph = tb.netns("pclient"), tb.netns("phost")
        _, host_if = tb.veth(pc, ph, "198.18.11.1/24")
        # kernel client <-> ustack on a TAP (the stack creates it).
        tns = tb.netns("tap")
        tap = tb.ifname("t", tns)
        # The same with virtio-net headers: the kernel vouches for received
        # checksums, finishes the ones we send, and both sides may pass
        # 64 KB super-frames (TSO/GRO) instead of MSS-sized segments.
        ons = tb.netns("tapo")
        otap = tb.ifname("o", ons)
        plans = [
            (ks, kc, ["kernel", "--ip", "198.18.10.2/24"], "198.18.10.2"),
            (ph, pc, ["ustack", "--link", f"packet:{host_if}", "--ip", "198.18.11.2/24"],
             "198.18.11.2"),
            (tns, tns, ["ustack", "--link", f"tap:{tap}", "--ip", "198.18.12.2/24",
                        "--host-ip", "198.18.12.1/24"], "198.18.12.2"),
            (ons, ons, ["ustack", "--link", f"tap:{otap}", "--ip", "198.18.13.2/24",
                        "--host-ip", "198.18.13.1/24", "--vnet-hdr"], "198.18.13.2"),
        ]
        for i, (sns, cns, sargs, ip) in enumerate(plans):
            rows = {mode: table[mode][i] for mode in a.modes}
            measure_server(rows, sns, cns, sargs, ip, a, cpus)
    return table


HEADINGS = {
    "pingpong": "ping-pong: each connection sends a message and waits for its echo",
    "stream": (f"stream: each connection keeps {OUTSTANDING // 1024} KB of messages in flight, "
               f"{STREAM_BATCH} per send()"),
}


def report(table: dict[str, list[Row]], a: argparse.Namespace) -> None:
    from harness import build_line, min_median_max

    print(f"asyncio echo, {a.size} B messages, {a.conns} connections, API {a.api}, "
          f"{a.runs} x {a.seconds:g} s per mode")
    print(build_line(a.build_words, "the ustack.aio servers"))
    for mode, rows in table.items():
        ref = statistics.median(rows[0].rates)
        print()
        print(HEADINGS[mode])
        print(f"{'server':<24} {'min':>9} {'median':>9} {'max':>9}  msgs/s   MB/s  ratio  "
              f"server-cpu client-cpu")
        for row in rows:
            med = statistics.median(row.rates)
            print(f"{row.name:<24} {min_median_max(row.rates)}  {med * a.size / 1e6:12.1f}  "
                  f"{med / ref:5.2f}  {statistics.median(row.server_cpu):10.2f} "
                  f"{statistics.median(row.client_cpu):10.2f}")
        goal = GOALS[mode]
        candidates = rows[1:] if mode == "pingpong" else [
            r for r in rows[1:] if "offload" in r.name]
        if not candidates:
            print(f"goal ustack.aio >= {goal:.1f} x kernel asyncio ({mode}): not measured")
            continue
        best = max(statistics.median(r.rates) for r in candidates) / ref
        print(f"goal ustack.aio >= {goal:.1f} x kernel asyncio ({mode}"
              f"{'' if mode == 'pingpong' else ', with offload'}): "
              f"{'met' if best >= goal else 'NOT met'} (ustack.aio / kernel = {best:.2f})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2 runs of 1 s")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--api", choices=["protocol", "streams"], default="protocol")
    p.add_argument("--mode", choices=MODES, help="measure one mode only (default: both)")
    p.add_argument("--serve", choices=["kernel", "ustack"], help=argparse.SUPPRESS)
    p.add_argument("--client", metavar="IP", help=argparse.SUPPRESS)
    p.add_argument("--link", help=argparse.SUPPRESS)
    p.add_argument("--ip", help=argparse.SUPPRESS)
    p.add_argument("--host-ip", help=argparse.SUPPRESS)
    p.add_argument("--vnet-hdr", action="store_true", help=argparse.SUPPRESS)
    from harness import BuildUnavailable, add_build_option, ustack_build

    add_build_option(p)
    a = p.parse_args(argv)
    if a.serve:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(a))
        return 0
    if a.client:
        run_client = client_stream if a.mode == "stream" else client
        run_client(a.client, a.conns, a.size, a.seconds, a.warmup)
        return 0
    a.modes = MODES if a.mode is None else (a.mode,)
    if a.quick:
        a.runs, a.seconds = 2, 1.0
    if os.geteuid() != 0:
        print("bench_aio: needs root (network namespaces)", file=sys.stderr)
        return 1
    try:
        # Before anything is measured: the build asked for must be there.
        a.build_words = ustack_build(a.build)
        table = run_all(a)
    except BuildUnavailable as exc:
        print(f"bench_aio: {exc}", file=sys.stderr)
        return 1
    report(table, a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
