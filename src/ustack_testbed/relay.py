"""An impairment relay: a layer-2 bridge between two veth ends that loses,
reorders, duplicates, corrupts and delays frames, the same for any stack.

This kernel has no ``tc netem``, and ustack's own ``--fault`` acts inside the
stack under test, which the kernel reference cannot use.  The relay sits in a
namespace of its own between two peers (``relay_topology``)::

    left ns (peer 1) --veth-- relay ns --veth-- right ns (peer 2)

and forwards every frame from one side to the other, so the peers share a
/24 and ARP each other through it.  Whatever the peers are (two kernels, or
ustack and a kernel), the same relay with the same seed stands between them.

The faults are ustack's own (``ustack.link.fault``): the left veth end is an
AF_PACKET ``PacketDevice`` wrapped in a ``FaultInjector``; its receive lane
acts on left-to-right frames and its send lane on right-to-left ones, each
with its own random stream seeded from the spec (``"{seed}:rx"`` and
``"{seed}:tx"``), so the decisions of one direction do not shift with the
traffic of the other.  In the spec, ``dir=rx`` means left to right only and
``dir=tx`` right to left only.  Same seed and same frames, same decisions.

The relay forwards frames as they are and checks no checksum (a corrupted
frame is the receiver's to reject).  Its veth ends have offloads off
(``Testbed.veth``), as must the peers' ends: a GSO super-frame would not fit
the ring's slots, and a frame the relay forwards must be whole and
checksummed.  It is bounded: the delay queues hold at most ``limit`` frames
per direction (more are dropped and counted as overflow), a full TX ring
drops and counts, and the process stops by itself after ``--seconds``, on
SIGTERM/SIGINT and when its parent goes away.  On exit it prints its
counters, one ``name value`` a line (``parse_counters``).

    python -m ustack_testbed relay --left IF --right IF [--fault SPEC]
                                   [--seconds S] [--limit N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from ustack.link.base import Device
from ustack.link.fault import FaultInjector, FaultSpec
from ustack_testbed.commands import get_libc, terminate
from ustack_testbed.errors import TestbedError
from ustack_testbed.netns import Netns
from ustack_testbed.process import parse_counters

#: Frames taken from one side per turn of the loop.
BATCH = 64
#: Default bound of each direction's delay queue (frames): 10 ms of 1500-byte
#: frames at 1.2 GB/s, or 15 MB of memory per direction at most.
DEFAULT_LIMIT = 10_000
#: Default time limit of a relay process (seconds).
DEFAULT_SECONDS = 600.0
#: The longest the loop sleeps: how soon it notices a signal or an orphaning.
MAX_SLEEP = 0.2
_PR_SET_PDEATHSIG = 1

# Counter names per direction, in the order printed.
DIRECTIONS = ("l2r", "r2l")
FIELDS = (
    "received",
    "forwarded",
    "lost",
    "duplicated",
    "reordered",
    "corrupted",
    "delayed",
    "overflow",
    "tx_full",
    "waiting",
)


class Relay:
    """Forwards frames between ``left`` and ``right`` with ``spec``'s faults.

    Device-agnostic (the tests drive it over pipes with a fake clock):
    ``step(now)`` moves what is there, ``deadline()`` says when delayed or
    held frames fall due, ``serve()`` is the loop that waits in between.
    """

    def __init__(
        self, left: Device, right: Device, spec: FaultSpec, *, limit: int = DEFAULT_LIMIT
    ) -> None:
        self.spec = replace(spec, limit=limit)
        self.left_dev = left
        self.right = right
        self.left: Device = FaultInjector(left, self.spec) if self.spec.active else left

    def step(self, now: float) -> bool:
        """Forward what waits on either side and what fell due; True if a frame moved."""
        frames = self.left.recv_batch(BATCH, now)  # also sends due right-to-left frames
        if frames:
            self.right.send_batch(frames, now)
        back = self.right.recv_batch(BATCH, now)
        if back:
            self.left.send_batch(back, now)
        return bool(frames or back)

    def deadline(self) -> float | None:
        return self.left.next_deadline()

    def serve(
        self,
        until: float,
        clock: Callable[[], float] = time.monotonic,
        keep_going: Callable[[], bool] = lambda: True,
    ) -> None:
        """Forward until ``clock()`` reaches ``until`` or ``keep_going()`` says no
        (asked at least every ``MAX_SLEEP`` seconds)."""
        poller = select.poll()
        for dev in (self.left_dev, self.right):
            poller.register(dev.fileno(), select.POLLIN)
        while keep_going():
            now = clock()
            if now >= until:
                return
            while self.step(now):
                now = clock()
                if now >= until:
                    return
            wake = min(until, now + MAX_SLEEP)
            due = self.deadline()
            if due is not None and due < wake:
                wake = due
            if wake > now:
                # Round up: a poll that wakes a little early just loops.
                poller.poll(max(1, int((wake - now) * 1000.0 + 0.999)))

    def counters(self) -> dict[str, int]:
        """Per direction (``l2r_...``, ``r2l_...``): what came in, went out,
        and what the faults and the bounds did to it."""
        left, right = self.left_dev.stats(), self.right.stats()
        faults = self.left.stats() if self.left is not self.left_dev else {}
        out: dict[str, int] = {}
        for d, src, dst, lane in (
            ("l2r", left, right, "fault_rx"),
            ("r2l", right, left, "fault_tx"),
        ):
            out[f"{d}_received"] = src.get("rx_frames", 0)
            out[f"{d}_forwarded"] = dst.get("tx_frames", 0)
            for name in ("lost", "duplicated", "reordered", "corrupted", "delayed", "overflow"):
                out[f"{d}_{name}"] = faults.get(f"{lane}_{name}", 0)
            out[f"{d}_tx_full"] = dst.get("tx_ring_full", 0) + dst.get("tx_queue_full", 0)
            out[f"{d}_waiting"] = faults.get(f"{lane}_waiting", 0)
        return out

    def close(self) -> None:
        self.left.close()
        self.right.close()


# --------------------------------------------------------------------------
# The process
# --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ustack_testbed relay",
        description="forward frames between two interfaces with seeded faults",
    )
    p.add_argument("--left", required=True, metavar="IFACE", help="the left side's veth end")
    p.add_argument("--right", required=True, metavar="IFACE", help="the right side's veth end")
    p.add_argument(
        "--fault",
        default="",
        metavar="SPEC",
        help="ustack's fault spec, e.g. loss=2%%,dup=1%%,seed=7 (dir=rx: left to right only)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help="stop after this long (default %(default)g)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help="frames waiting for their delay per direction (default %(default)d)",
    )
    return p


def main(argv: Sequence[str]) -> int:
    from ustack.link.errors import LinkError
    from ustack.link.packet import PacketDevice

    p = build_parser()
    a = p.parse_args(list(argv))
    try:
        spec = FaultSpec.parse(a.fault)
    except ValueError as exc:
        p.error(str(exc))
    if not 0 < a.seconds <= 86400 or a.limit < 1:
        p.error("--seconds must be in (0, 86400] and --limit >= 1")
    # Stop when the parent goes away: SIGTERM from the kernel, and (for a
    # parent that was gone before this line ran) a changed parent pid.
    parent = os.getppid()
    get_libc().prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        left = PacketDevice(a.left)
        try:
            right = PacketDevice(a.right)
        except BaseException:
            left.close()
            raise
    except LinkError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 1
    relay = Relay(left, right, spec, limit=a.limit)
    print(f"ready: left={a.left} right={a.right} fault={relay.spec}", flush=True)
    start = time.monotonic()
    try:
        relay.serve(start + a.seconds, keep_going=lambda: not stop and os.getppid() == parent)
    finally:
        counters = relay.counters()
        relay.close()
        for name, value in counters.items():
            print(f"{name} {value}")
        print(f"seconds {int(time.monotonic() - start)}", flush=True)
    return 0


class RelayProcess:
    """A relay running in its namespace (``RelayTopology.start_relay``)."""

    def __init__(self, ns: Netns, args: Sequence[str], ready_timeout: float = 10.0) -> None:
        self.counters: dict[str, int] = {}
        self.output = ""
        self.popen: subprocess.Popen[str] = ns.popen(
            [sys.executable, "-m", "ustack_testbed", "relay", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stdout = self.popen.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], ready_timeout)
        line = stdout.readline() if ready else ""
        if not line.startswith("ready:"):
            self._finish()
            raise TestbedError(f"relay did not start: {line}{self.output}".strip())
        self.ready_line = line.strip()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _finish(self) -> None:
        terminate(self.popen)
        out, err = self.popen.communicate(timeout=5)
        self.output = (out or "") + (err or "")

    def stop(self) -> dict[str, int]:
        """SIGTERM, wait, and the counters it printed."""
        if self.popen.returncode is None:
            self._finish()
            self.counters = parse_counters(self.output)
            if self.popen.returncode != 0:
                raise TestbedError(f"relay exited {self.popen.returncode}: {self.output[-500:]}")
        return self.counters

    def __enter__(self) -> RelayProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()


def counters_line(counters: dict[str, int], prefix: str) -> str:
    """``received 120 forwarded 118 lost 2 ...``: the nonzero counters of one direction."""
    parts = [
        f"{name} {counters[f'{prefix}_{name}']}"
        for name in FIELDS
        if counters.get(f"{prefix}_{name}")
    ]
    return " ".join(parts) or "nothing"

