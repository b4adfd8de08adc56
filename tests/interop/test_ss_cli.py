"""``ustack ss`` and ``ustack stats --watch`` on a running ``ustack serve``
during a live transfer to the kernel (curl in the peer namespace), with the
kernel's own ``ss`` on the other end as the judge of the byte counts; and
two real stacks run as the workers ``NAME@0``/``NAME@1`` of one name."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ustack_testbed import Netns, Testbed, Topology, topology

pytestmark = pytest.mark.root

SIZE = 16 << 20
RUN_DIR = os.environ.get("USTACK_RUN_DIR", "/run/ustack")
RATE = "1M"  # curl reads 1 MB/s: the transfer outlasts the test (curl is stopped)


def ustack(ns: Netns, *args: str) -> subprocess.CompletedProcess[str]:
    return ns.run([sys.executable, "-m", "ustack.cli", *args], check=False, timeout=30)


def _fields(line: str) -> dict[str, str]:
    return dict(w.split(":", 1) for w in line.split() if ":" in w)


def _separators(line: str) -> dict[str, str]:
    """Each field of an ``ss -i`` line and how its value follows its name:
    ``:`` (``mss:1448``), ``" "`` (``send 12Mbps``) or ``""`` (a flag)."""
    out: dict[str, str] = {}
    words = line.split()
    for i, w in enumerate(words):
        if ":" in w:
            out.setdefault(w.split(":", 1)[0], ":")
        elif i + 1 < len(words) and re.fullmatch(r"[\d.]+[KMGT]?bps", words[i + 1]):
            out[w] = " "
        elif not re.fullmatch(r"[\d.]+[KMGT]?bps", w):
            out.setdefault(w, "")
    return out


def _kernel_bytes_received(topo: Topology, port: int) -> int:
    """What the kernel's ss says the peer received on the connection to port."""
    out = topo.peer_ns.run(["ss", "-tniH", "dst", f"{topo.stack_ip}:{port}"]).stdout
    m = re.search(r"bytes_received:(\d+)", out)
    assert m, out
    return int(m.group(1))


@pytest.mark.parametrize("kind", ["tap", "packet"])
def test_ss_shows_a_live_transfer(tmp_path: Path, testbed: Testbed, kind: str) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(SIZE))
    topo = topology(testbed, kind)
    # A small receive buffer on the kernel's side: TCP goes at curl's pace
    # (else the kernel takes the whole file into its buffer at once).
    topo.peer_ns.sysctl("net.ipv4.tcp_rmem", "4096 65536 262144")
    args = ["serve", str(root), *topo.ustack_args()[1:]]
    stack = testbed.start_ustack(topo.stack_ns, args, timeout=20)
    curl = topo.peer_ns.popen(
        ["curl", "-sS", "--max-time", "30", "--limit-rate", RATE, "-o", "/dev/null",
         f"http://{topo.stack_ip}/big.bin"], stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)
        listening = ustack(topo.stack_ns, "ss", "-ltn", "--name", stack.name)
        assert listening.returncode == 0, listening.stderr
        rows = [line.split() for line in listening.stdout.splitlines()[1:]]
        assert rows and rows[0][:5] == ["LISTEN", "0", rows[0][2], "0.0.0.0:80", "0.0.0.0:*"]

        kernel_before = _kernel_bytes_received(topo, 80)
        proc = ustack(topo.stack_ns, "ss", "-tni", "--name", stack.name)
        kernel_after = _kernel_bytes_received(topo, 80)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].split()[:3] == ["State", "Recv-Q", "Send-Q"], proc.stdout
        assert len(lines) == 3, proc.stdout  # one connection, its -i line
        state, recv_q, send_q, local, peer = lines[1].split()
        assert (state, local) == ("ESTAB", f"{topo.stack_ip}:80")
        assert peer.startswith(f"{topo.peer_ip}:")
        assert int(recv_q) == 0 and int(send_q) > 0  # the file waits in the send queue
        f = _fields(lines[2])
        words = lines[2].split()
        assert "cubic" in words and "sack" in words and "ts" in words
        mss = int(f["mss"])
        assert 1000 < mss <= 1460
        assert 2 <= int(f["cwnd"]) < 10_000
        rtt, rttvar = (float(x) for x in f["rtt"].split("/"))
        assert 0 < rtt < 200 and rttvar >= 0  # ms, on a veth/TAP in one machine
        assert float(f["rto"]) >= 200
        acked = int(f["bytes_acked"])
        # About two seconds at 1 MB/s.
        assert 500_000 < acked < SIZE
        assert int(f["bytes_sent"]) >= acked
        # The kernel's ss on the other end, just before and just after: it
        # had received at most what we had sent, and then at least what we
        # saw acknowledged.
        assert kernel_before <= int(f["bytes_sent"])
        assert acked <= kernel_after
        assert int(f["segs_out"]) > acked // (mss * 2)
        assert int(f["segs_in"]) > 10
        # ss's separators: "delivery_rate 1234bps" (-n: a plain number), "mss:1448".
        assert re.fullmatch(r"\d+bps", words[words.index("delivery_rate") + 1]), words
        kernel = topo.peer_ns.run(["ss", "-tniH", "dst", f"{topo.stack_ip}:80"]).stdout
        ours, theirs = _separators(lines[2]), _separators(kernel)
        common = set(ours) & set(theirs)
        assert {"rto", "mss", "cwnd", "segs_out", "send"} <= common, (ours, theirs)
        assert {k: ours[k] for k in common} == {k: theirs[k] for k in common}

        js = json.loads(ustack(topo.stack_ns, "ss", "-i", "--json",
                               "--name", stack.name).stdout)
        (row,) = js["connections"]
        assert row["info"]["bytes_acked"] >= acked

        watch = ustack(topo.stack_ns, "stats", "--name", stack.name, "--watch", "0.5",
                       "--count", "4")
        assert watch.returncode == 0, watch.stderr
        blocks = watch.stdout.split(f"#ustack {stack.name} ")[1:]
        assert len(blocks) == 4, watch.stdout
        assert curl.poll() is None  # (still running: the counters had to move)
        intervals = [{ln.split()[0]: int(ln.split()[1]) for ln in b.splitlines()[1:]}
                     for b in blocks]
        # curl's rate limit closes the window now and then (the persist
        # timer backs off): some interval may see nothing move, not all.
        assert any(m.get("TcpOutSegs", 0) > 0 and m.get("LinkTxFrames", 0) > 0
                   for m in intervals), watch.stdout
        assert all(v != 0 for m in intervals for v in m.values())
        assert not any("TcpPassiveOpens" in m for m in intervals)  # opened before
    finally:
        curl.kill()
        curl.wait(10)
    stack.stop()


def test_two_workers_are_listed_as_one_stack(testbed: Testbed) -> None:
    """Two real ``ustack up`` named X@0 and X@1 (what --workers names its
    workers): ``ss`` and ``stats`` see one stack, merged."""
    taps = [topology(testbed, "tap") for _ in range(2)]
    base = f"ssw{os.getpid()}"
    stacks = [t.start_ustack("--name", f"{base}@{k}") for k, t in enumerate(taps)]
    ns = taps[0].stack_ns
    for t in taps:
        assert t.peer_ns.run(["ping", "-c", "1", "-W", "2", t.stack_ip],
                             check=False).returncode == 0
    proc = ustack(ns, "stats", "--name", base)
    assert proc.returncode == 0, proc.stderr
    merged = dict(line.split() for line in proc.stdout.splitlines())
    per = ustack(ns, "stats", "--name", base, "--per-worker").stdout
    assert f"# {base}@0 pid {stacks[0].pid}" in per and f"# {base}@1 pid {stacks[1].pid}" in per
    assert int(merged["IcmpInEchos"]) >= 2
    ss = ustack(ns, "ss", "-a", "--per-worker", "--name", base)
    assert ss.returncode == 0 and ss.stdout.split()[0] == "Worker", ss.stderr
    names = ustack(ns, "ss", "--name", f"{base}@x")
    assert names.returncode == 2
    assert names.stderr.startswith("ustack ss: --name ") and names.stderr.count("\n") == 1
    for s in stacks:
        s.stop()


def test_a_name_is_one_stack_or_one_group_of_workers(testbed: Testbed) -> None:
    """``ustack up --name B`` while B@0 runs (a worker of the stack B), and
    ``--name B@0`` while B runs: refused in one line, so that ``ss`` and
    ``stats`` never merge two unrelated stacks."""
    taps = [topology(testbed, "tap") for _ in range(2)]
    base = f"ssn{os.getpid()}"
    worker = taps[0].start_ustack("--name", f"{base}@0")
    clash = ustack(taps[1].stack_ns, *taps[1].ustack_args("--name", base))
    assert clash.returncode != 0
    assert clash.stderr == (f"ustack up: --name '{base}': the stack '{base}' is already "
                            f"running as {base}@0 ({RUN_DIR})\n")
    worker.stop()
    whole = taps[0].start_ustack("--name", base)
    clash = ustack(taps[1].stack_ns, *taps[1].ustack_args("--name", f"{base}@3"))
    assert clash.returncode != 0 and clash.stderr.count("\n") == 1
    assert f"is already running as {base} " in clash.stderr
    stats = ustack(taps[0].stack_ns, "stats", "--name", base, "--json")
    assert json.loads(stats.stdout)["pid"] == whole.pid  # one stack, not a merge
    whole.stop()
