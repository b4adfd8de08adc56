#!/usr/bin/env python3
"""Resident memory of ``ustack serve`` per open idle keep-alive connection
(issue 12's goal: under 4 KB), against nginx with one worker on the kernel.

For each server: start it, fetch one file once (so the response cache and
the allocator are warm), read its resident size (VmRSS), then open N kernel
connections from the peer namespace that each send one keep-alive GET and
stay open, read the resident size again, close them and read it once more.
The figure is (RSS with N open - RSS before) / N, min / median / max over
``--runs`` rounds, each with a fresh server process; nginx's own figure (its worker's and
master's RSS together) is measured the same way for the ratio.

    python3 bench/bench_http_memory.py [--conns 10000] [--runs 3] [--build compiled|pure]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness  # bench/harness.py: run as a script, bench/ is on sys.path

from ustack_testbed import Netns, Testbed, TestbedError, topology

KIND = "packet-offload"

CLIENT = textwrap.dedent("""
    import resource, socket, sys, time
    host, n = sys.argv[1], int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, n + 100))
    req = b"GET /1k.bin HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
    socks = []
    for i in range(n):
        s = socket.create_connection((host, 80), timeout=30)
        s.sendall(req)
        socks.append(s)
    got = 0
    for s in socks:  # every answer read: all N are idle keep-alive connections now
        buf = b""
        while b"\\r\\n\\r\\n" not in buf or len(buf) < buf.index(b"\\r\\n\\r\\n") + 4 + 1024:
            chunk = s.recv(65536)
            if not chunk:
                sys.exit("closed early")
            buf += chunk
        got += 1
    print("open", got, flush=True)
    sys.stdin.readline()
    for s in socks:
        s.close()
    print("closed", flush=True)
""")


@dataclass
class Config:
    conns: int
    runs: int
    build: str
    nginx: bool


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def one_round(peer: Netns, ip: str, pids: list[int], n: int) -> tuple[int, int, int]:
    """RSS (kB) before, with ``n`` idle connections, and after closing them."""
    peer.run(["curl", "-sS", "-o", "/dev/null", f"http://{ip}/1k.bin"], timeout=30)
    time.sleep(0.3)
    before = rss_kb(pids)
    client = peer.popen([sys.executable, "-c", CLIENT, ip, str(n)], stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, text=True)
    assert client.stdout is not None and client.stdin is not None
    line = client.stdout.readline()
    if not line.startswith("open"):
        client.kill()
        raise TestbedError(f"client failed: {line!r} exit {client.wait()}")
    time.sleep(0.5)
    during = rss_kb(pids)
    client.stdin.write("\n")
    client.stdin.flush()
    client.stdout.readline()
    client.wait(timeout=60)
    time.sleep(1.0)
    after = rss_kb(pids)
    return before, during, after


def nginx_conf(tmp: Path, ip: str, root: Path) -> Path:
    conf = tmp / "nginx.conf"
    conf.write_text(textwrap.dedent(f"""
        user root;
        worker_processes 1;
        daemon off;
        pid {tmp}/nginx.pid;
        error_log {tmp}/error.log;
        events {{ worker_connections 20000; }}
        worker_rlimit_nofile 30000;
        http {{
            access_log off;
            keepalive_timeout 300;
            keepalive_requests 1000000;
            server {{ listen {ip}:80; root {root}; }}
        }}
    """))
    return conf


def fresh_round(a: argparse.Namespace, name: str, argv: list[str], ns: Netns, ip: str,
                peer: Netns) -> tuple[int, int, int]:
    """Start ``name``, measure one round, stop it."""
    ustack = name.startswith("ustack")
    env = harness.build_env(a.build) if ustack else None
    proc = ns.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        if ustack:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("ready:"):
                raise TestbedError(f"{name} did not start: {line!r}")
            pids = [proc.pid]
        else:
            time.sleep(1.0)
            pids = [proc.pid, *children(proc.pid)]
        return one_round(peer, ip, pids, a.conns)
    finally:
        proc.send_signal(signal.SIGINT if ustack else signal.SIGQUIT)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def measure(a: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-http-mem-") as d, Testbed() as tb:
        tmp = Path(d)
        root = tmp / "www"
        root.mkdir()
        (root / "1k.bin").write_bytes(os.urandom(1024))
        topo = topology(tb, KIND)
        kpeer = topo.peer_ns
        topo.peer_ns.sysctl("net.ipv4.ip_local_port_range", "10000 65000")
        servers: list[tuple[str, list[str], Netns, str]] = [
            ("ustack serve", [sys.executable, "-m", "ustack.cli", "serve", str(root),
                              *topo.ustack_args("--idle-timeout", "600")[1:]],
             topo.stack_ns, topo.stack_ip),
        ]
        if not a.no_nginx:
            # nginx on the kernel: its own veth pair with the kernel's defaults.
            kns, kpeer = tb.netns("ksrv"), tb.netns("kcli")
            tb.veth(kns, kpeer, "198.18.30.2/24", "198.18.30.1/24", offloads_off=False)
            kpeer.sysctl("net.ipv4.ip_local_port_range", "10000 65000")
            servers.append(("nginx", ["nginx", "-c", str(nginx_conf(tmp, "198.18.30.2", root))],
                            kns, "198.18.30.2"))
        for name, argv, ns, ip in servers:
            # A fresh server per round: memory a process freed stays its own
            # (the allocator keeps it), so a second round in the same process
            # would measure reuse, not growth.
            rounds = [fresh_round(a, name, argv, ns, ip, topo.peer_ns if name.startswith(
                "ustack") else kpeer) for _ in range(a.runs)]
            per = [(during - before) * 1024 / a.conns for before, during, _ in rounds]
            results[name] = {"rounds_kb": rounds, "bytes_per_conn": per}
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conns", type=int, default=10000, help="idle connections (default 10000)")
    p.add_argument("--runs", type=int, default=3, help="rounds per server (default 3)")
    p.add_argument("--no-nginx", action="store_true", help="ustack serve only")
    harness.add_build_option(p)
    a = p.parse_args(argv)
    if not 1 <= a.conns <= 30000 or not 1 <= a.runs <= 10:
        p.error("--conns 1..30000, --runs 1..10")
    if os.geteuid() != 0:
        print("bench_http_memory: needs root (network namespaces)", file=sys.stderr)
        return 1
    try:
        results = measure(a)
    except (TestbedError, OSError, subprocess.SubprocessError) as e:
        print(f"bench_http_memory: {e}", file=sys.stderr)
        return 1
    print(f"resident memory per open idle keep-alive connection, {a.conns} connections, "
          f"{a.runs} rounds ({harness.build_line(harness.ustack_build(a.build), 'ustack')})")
    for name, r in results.items():
        per = r["bytes_per_conn"]
        rounds = ", ".join(f"{b}->{d}->{af} kB" for b, d, af in r["rounds_kb"])
        print(f"  {name:<13} {min(per):7.0f} / {statistics.median(per):7.0f} / {max(per):7.0f} "
              f"B per connection (min/median/max)   RSS before->open->closed: {rounds}")
    u = statistics.median(results["ustack serve"]["bytes_per_conn"])
    if "nginx" in results:
        k = statistics.median(results["nginx"]["bytes_per_conn"])
        print(f"  ratio ustack serve / nginx: {u / k:.2f}")
    print(f"goal: under 4096 B per idle keep-alive connection: "
          f"{'met' if u < 4096 else 'NOT met'} ({u:.0f} B)")
    cfg = Config(a.conns, a.runs, a.build, not a.no_nginx)
    harness.write_results(harness.result_document("http_memory", cfg, results=results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
