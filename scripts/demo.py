"""`make demo`: a ustack in a private network namespace, talking to Linux.

Creates a namespace, starts `ustack up` on a TAP device inside it, and lets
the kernel in that namespace ping it, send it UDP datagrams and learn its
MAC.  Everything is deleted at the end; nothing touches the machine's own
network (addresses are from 198.18.0.0/15, there is no default route).
Exits non-zero if any step fails.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys

from ustack_testbed import Testbed, TestbedError, UstackProcess, tap_topology

ECHO_PORT = 7


class DemoFailed(Exception):
    pass


def heading(n: int, text: str) -> None:
    print(f"\n== {n}. {text}")


def show(cmd: list[str]) -> None:
    print("   $ " + shlex.join(cmd))


def indent(text: str) -> str:
    return "\n".join("     " + line for line in text.rstrip().splitlines())


def run_demo() -> None:
    with Testbed() as tb:
        topo = tap_topology(tb)
        ns = topo.stack_ns
        print(f"Namespace {ns.name}: a private network stack of the kernel, used as")
        print("ustack's peer. Addresses come from 198.18.0.0/15 (benchmarking range).")

        heading(1, "Start ustack: it creates a TAP device and owns its own MAC and IP")
        args = topo.ustack_args("--service", f"udp-echo:{ECHO_PORT}")
        show(["ustack", *args])
        stack = topo.start_ustack("--service", f"udp-echo:{ECHO_PORT}")
        print("   " + stack.ready_line)
        print(f"   kernel side of {topo.stack_if}: {topo.peer_cidr}; ustack: {topo.stack_cidr}")

        heading(2, "The kernel pings ustack (ARP, then ICMP echo)")
        cmd = ["ping", "-c", "3", "-i", "0.2", "-W", "2", topo.stack_ip]
        show(cmd)
        ping = ns.run(["timeout", "15", *cmd], check=False, timeout=20)
        print(indent(ping.stdout))
        if ping.returncode != 0:
            raise DemoFailed(f"ping failed (exit {ping.returncode}) {ping.stderr.strip()}")

        heading(3, f"UDP echo: a kernel socket sends datagrams to ustack port {ECHO_PORT}")
        udp_echo(ns.socket(socket.AF_INET, socket.SOCK_DGRAM), topo.stack_ip)

        heading(4, "The kernel's neighbour table has learned ustack's MAC")
        cmd = ["ip", "neigh", "show", topo.stack_ip, "dev", topo.peer_if]
        show(cmd)
        neigh = ns.run(cmd).stdout
        print(indent(neigh))
        if stack.mac.lower() not in neigh.lower():
            raise DemoFailed(f"{stack.mac} not in the kernel's neighbour table")

        heading(5, "Stop ustack (SIGINT); it prints its counters (netstat -s names)")
        print_counters(stack)

        print(f"\nCleaning up: namespace {ns.name} and TAP {topo.stack_if} are deleted.")


def udp_echo(sock: socket.socket, ip: str) -> None:
    with sock:
        sock.settimeout(2.0)
        for i, text in enumerate(["hello, ustack", "user-space UDP", "x" * 3000], 1):
            payload = text.encode()
            sock.sendto(payload, (ip, ECHO_PORT))
            try:
                reply, peer = sock.recvfrom(65535)
            except TimeoutError:
                raise DemoFailed(f"no echo for datagram {i} ({len(payload)} bytes)") from None
            shown = text if len(text) <= 20 else f"{text[:8]}... ({len(text)} bytes, fragmented)"
            ok = "ok" if reply == payload else "MISMATCH"
            print(f"   sent {shown!r:44} <- echoed by {peer[0]}:{peer[1]} [{ok}]")
            if reply != payload:
                raise DemoFailed(f"echo of datagram {i} differs ({len(reply)} bytes back)")


def print_counters(stack: UstackProcess) -> None:
    counters = stack.stop()
    if not counters:
        raise DemoFailed("ustack printed no counters")
    width = max(len(name) for name in counters)
    for name, value in counters.items():
        print(f"   {name:<{width}} {value}")


def main() -> int:
    if os.geteuid() != 0:
        print("demo: needs root (it creates a network namespace and a TAP device)", file=sys.stderr)
        return 1
    try:
        run_demo()
    except (DemoFailed, TestbedError, OSError) as exc:
        print(f"\ndemo: FAILED: {exc}", file=sys.stderr)
        return 1
    print("\ndemo: all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
