"""`make demo`: the whole system in about a minute, in namespaces it makes and deletes.

A small LAN is built inside network namespaces: a Linux bridge in the
namespace ``lan`` (the kernel there, 198.18.1.1, is the client: ping, curl)
and one veth per ustack process, each in a namespace of its own:

    ustack up      198.18.1.2    answers ping and UDP echo
    ustack serve   198.18.1.3    HTTP, traced (--trace) for the plot
    ustack load    198.18.1.16+  many source addresses, against serve
    ustack flood   198.18.1.128+ a bounded SYN flood, against serve

Each step prints the command it runs (as a user would type it) and what it
showed; a step that fails stops the demo with one line and exit 1.  The
plot of the traced transfer is left in a directory whose path is printed;
everything else is deleted, on failure too.  Addresses are from
198.18.0.0/15 and no namespace has a route anywhere else.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ustack_testbed import Netns, Testbed, TestbedError, UstackProcess

LAN_CIDR = "198.18.1.1/24"
LAN_IP = "198.18.1.1"
UP_CIDR = "198.18.1.2/24"
SERVE_IP = "198.18.1.3"
LOAD_CIDR = "198.18.1.16/24"
FLOOD_CIDR = "198.18.1.128/24"
ECHO_PORT = 7
BIG = 8 * 1024 * 1024  # the traced transfer
USTACK = [sys.executable, "-m", "ustack.cli"]


class DemoFailed(Exception):
    pass


def heading(n: int, text: str) -> None:
    print(f"\n== {n}. {text}", flush=True)


def show(cmd: list[str]) -> None:
    words = ["ustack", *cmd[len(USTACK):]] if cmd[:len(USTACK)] == USTACK else cmd
    print("   $ " + shlex.join(words), flush=True)


def indent(text: str, limit: int = 40) -> str:
    lines = text.rstrip().splitlines()
    if len(lines) > limit:
        lines = [*lines[:limit], f"... ({len(lines) - limit} more lines)"]
    return "\n".join("     " + line for line in lines)


class Lan:
    """A bridge in namespace ``lan`` with the kernel on it, and a veth into
    a namespace of its own for each ustack process."""

    def __init__(self, tb: Testbed) -> None:
        self.tb = tb
        self.ns = tb.netns("lan")
        self.bridge = tb.ifname("b", self.ns)
        self.ns.ip("link", "add", self.bridge, "type", "bridge")
        # No STP listening/learning delay: ports forward at once.
        self.ns.ip("link", "set", self.bridge, "type", "bridge", "forward_delay", "0")
        self.ns.add_address(self.bridge, LAN_CIDR)
        self.ns.link_up(self.bridge)
        # Connection-per-request curl loops must not run out of ports.
        self.ns.sysctl("net.ipv4.tcp_tw_reuse", "1")

    def port(self, role: str) -> tuple[Netns, str]:
        """A new namespace for ``role`` and its veth end (up, no address,
        offloads as the kernel sets them) whose peer is on the bridge."""
        ns = self.tb.netns(role)
        lan_end, own_end = self.tb.veth(self.ns, ns, offloads_off=False)
        self.ns.ip("link", "set", lan_end, "master", self.bridge)
        return ns, own_end

    def curl(self, url: str, *extra: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return self.ns.run(["curl", "-sS", "--max-time", str(timeout), *extra, url],
                           check=False, timeout=timeout + 5)


def start(tb: Testbed, ns: Netns, args: list[str]) -> UstackProcess:
    show([*USTACK, *args])
    stack = tb.start_ustack(ns, args, timeout=20)
    print("   " + stack.ready_line, flush=True)
    return stack


def step_up(tb: Testbed, lan: Lan) -> None:
    heading(1, "ustack up: a process with its own MAC and IP on the LAN")
    ns, link = lan.port("up")
    stack = start(tb, ns, ["up", "--link", f"packet:{link}", "--ip", UP_CIDR,
                           "--service", f"udp-echo:{ECHO_PORT}", "--name", "demo-up"])
    ip = UP_CIDR.partition("/")[0]
    cmd = ["ping", "-c", "3", "-i", "0.2", "-W", "2", ip]
    show(cmd)
    ping = lan.ns.run(["timeout", "15", *cmd], check=False, timeout=20)
    print(indent(ping.stdout, 8))
    if ping.returncode != 0:
        raise DemoFailed(f"ping failed (exit {ping.returncode}) {ping.stderr.strip()}")
    print(f"   UDP echo: the kernel sends datagrams to {ip}:{ECHO_PORT}")
    udp_echo(lan.ns.socket(socket.AF_INET, socket.SOCK_DGRAM), ip)
    counters = stack.stop()
    shown = {k: v for k, v in counters.items() if k.startswith(("IcmpIn", "Udp", "Arp"))}
    print("   its counters on exit (nstat names): "
          + ", ".join(f"{k} {v}" for k, v in shown.items()))


def udp_echo(sock: socket.socket, ip: str) -> None:
    with sock:
        sock.settimeout(2.0)
        for i, text in enumerate(["hello, ustack", "x" * 3000], 1):
            payload = text.encode()
            sock.sendto(payload, (ip, ECHO_PORT))
            try:
                reply, peer = sock.recvfrom(65535)
            except TimeoutError:
                raise DemoFailed(f"no echo for datagram {i} ({len(payload)} bytes)") from None
            shown = text if len(text) <= 20 else f"{len(text)} bytes, fragmented"
            ok = "ok" if reply == payload else "MISMATCH"
            print(f"     sent {shown!r:28} <- echoed by {peer[0]}:{peer[1]} [{ok}]")
            if reply != payload:
                raise DemoFailed(f"echo of datagram {i} differs ({len(reply)} bytes back)")


def step_serve(tb: Testbed, lan: Lan, www: Path, trace: Path) -> UstackProcess:
    heading(2, "ustack serve: HTTP from its own address, fetched by curl")
    ns, link = lan.port("serve")
    server = start(tb, ns, ["serve", str(www), "--link", f"packet:{link}",
                            "--ip", f"{SERVE_IP}/24", "--name", "demo-serve",
                            "--trace", str(trace)])
    url = f"http://{SERVE_IP}/hello.txt"
    show(["curl", "-sS", "-i", url])
    got = lan.curl(url, "-i")
    print(indent(got.stdout, 12))
    if got.returncode != 0 or "200 OK" not in got.stdout:
        raise DemoFailed(f"curl {url}: exit {got.returncode} {got.stderr.strip()}")
    return server


def step_load(tb: Testbed, lan: Lan) -> None:
    heading(3, "ustack load: 100 source addresses, a connection per request, 3 s")
    ns, link = lan.port("load")
    cmd = [*USTACK, "load", f"http://{SERVE_IP}/1k.bin", "--link", f"packet:{link}",
           "--ip", LOAD_CIDR, "--sources", "100", "-c", "16", "-d", "3", "--close"]
    show(cmd)
    got = ns.run(cmd, check=False, timeout=60)
    print(indent(got.stdout, 45))
    if got.returncode != 0:
        raise DemoFailed(f"ustack load: exit {got.returncode} {got.stderr.strip()}")


def step_flood(tb: Testbed, lan: Lan, server: UstackProcess) -> None:
    heading(4, "ustack flood: 40,000 SYNs in 2 s from 100 addresses; curl keeps being served")
    ns, link = lan.port("flood")
    before = server.stats()
    stop = threading.Event()
    tries: list[bool] = []

    def curl_loop() -> None:
        while not stop.is_set():
            got = lan.curl(f"http://{SERVE_IP}/hello.txt", "-o", "/dev/null", timeout=5)
            tries.append(got.returncode == 0)
            time.sleep(0.05)

    worker = threading.Thread(target=curl_loop, daemon=True)
    worker.start()
    cmd = [*USTACK, "flood", "--to", f"{SERVE_IP}:80", "--link", f"packet:{link}",
           "--ip", FLOOD_CIDR, "--sources", "100", "--rand-source", "--rate", "20000",
           "--count", "40000", "--duration", "2"]
    show(cmd)
    try:
        got = ns.run(cmd, check=False, timeout=60)
    finally:
        stop.set()
        worker.join(timeout=10)
    print(indent(got.stdout, 20))
    if got.returncode != 0:
        raise DemoFailed(f"ustack flood: exit {got.returncode} {got.stderr.strip()}")
    after = server.stats()
    sent = after.get("TcpExtSyncookiesSent", 0) - before.get("TcpExtSyncookiesSent", 0)
    ok = sum(tries)
    print(f"   ustack serve answered with {sent} SYN cookies (TcpExtSyncookiesSent) and "
          f"kept no state for them;")
    print(f"   curl meanwhile: {ok} of {len(tries)} fetches succeeded")
    if not tries or ok < len(tries):
        raise DemoFailed(f"curl failed during the flood: {len(tries) - ok} of {len(tries)}")


def step_ss(tb: Testbed, lan: Lan, server: UstackProcess) -> None:
    heading(5, f"ustack ss -i: a live {BIG >> 20} MB transfer seen from inside the stack")
    fetch = lan.ns.popen(["curl", "-sS", "--max-time", "30", "--limit-rate", "4M", "-o",
                          "/dev/null", f"http://{SERVE_IP}/big.bin"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        cmd = [*USTACK, "ss", "-t", "-i", "-n", "--name", "demo-serve"]
        show(cmd)
        got = server.ns.run(cmd, check=False, timeout=20)
        print(indent(got.stdout, 12))
        if got.returncode != 0 or "ESTAB" not in got.stdout:
            raise DemoFailed(f"ustack ss showed no established connection "
                             f"(exit {got.returncode}) {got.stderr.strip()}")
        if fetch.wait(timeout=40) != 0:
            why = fetch.stderr.read() if fetch.stderr else ""
            raise DemoFailed(f"curl of big.bin failed: {why.strip()}")
    finally:
        if fetch.poll() is None:
            fetch.kill()
            fetch.wait()


def step_plot(server: UstackProcess, trace: Path, out: Path) -> None:
    heading(6, "ustack plot: the traced transfer as a time-sequence graph")
    server.stop()  # the trace is complete once the server has stopped
    cmd = [*USTACK, "plot", str(trace), "-o", str(out)]
    show(cmd)
    got = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    print(indent(got.stdout + got.stderr, 6))
    if got.returncode != 0 or not out.exists():
        raise DemoFailed(f"ustack plot: exit {got.returncode} {got.stderr.strip()}")
    print(f"   the plot: {out}")


def docroot(parent: Path) -> Path:
    www = parent / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello from ustack serve\n")
    (www / "1k.bin").write_bytes(bytes(range(256)) * 4)
    (www / "big.bin").write_bytes(os.urandom(BIG))
    return www


def run_demo(keep: Path) -> None:
    with Testbed() as tb, tempfile.TemporaryDirectory(prefix="ustack-demo-") as tmp:
        lan = Lan(tb)
        print(f"A LAN in namespace {lan.ns.name}: bridge {lan.bridge}, the kernel at "
              f"{LAN_IP}; each ustack process on a veth in a namespace of its own.")
        step_up(tb, lan)
        trace = keep / "serve-trace.jsonl"
        server = step_serve(tb, lan, docroot(Path(tmp)), trace)
        step_load(tb, lan)
        step_flood(tb, lan, server)
        step_ss(tb, lan, server)
        step_plot(server, trace, keep / "transfer.png")
        print("\nCleaning up: the namespaces, the bridge and the veths are deleted.")


def main() -> int:
    if os.geteuid() != 0:
        print("demo: needs root (it creates network namespaces and veth pairs)",
              file=sys.stderr)
        return 1
    keep = Path(tempfile.mkdtemp(prefix="ustack-demo-out-"))
    t0 = time.monotonic()
    try:
        run_demo(keep)
    except (DemoFailed, TestbedError, OSError, subprocess.SubprocessError) as exc:
        print(f"\ndemo: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"\ndemo: all steps passed in {time.monotonic() - t0:.0f} s; "
          f"the plot and the trace are in {keep}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
