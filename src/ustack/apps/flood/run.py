"""A flood run: targets resolved, SYNs sent in batches, answers counted.

``Flood`` drives one Stack: it resolves each target's next hop once
through the stack's ARP (``ArpLayer.request``), takes TCP from the IPv4
layer (``answers.FloodAnswers``), then sends in batches until ``count``
SYNs are sent or ``duration`` has passed, whichever comes first (a flood
is never unbounded), and keeps receiving for ``grace`` seconds after the
last SYN for late answers.  Between batches the stack polls its device,
so it answers the target's ARP requests for the source addresses and the
answers are counted as they come.

How SYNs leave: on an AF_PACKET device with a TX ring, ``SynWriter``
writes them straight into the ring's free slots and one ``send()`` kicks
the batch out (``PacketDevice.send_written``); on any other device
(TAP, a wrapped device: pcap, faults; the in-memory pipe of the tests)
they are frames handed to ``send_batch``.  The answers are taken in the
receive ring where there is one (``answers.FloodTap``).  ``rate`` (SYNs per second)
paces them with a token bucket; without it every batch goes as soon as
the ring has room.

The run measures itself: the CPU time it used (user and system, from
``getrusage``: the kernel's side of a TX ring kick, which on a veth
includes the target's receive path run on the sending core, shows as
system time), the wall time spent sending and receiving, and the cost of
writing one SYN (``write_ns``, timed on a scratch writer before the run),
so the report can say where the time went.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ustack.apps.flood.answers import FloodAnswers, FloodTap
from ustack.apps.flood.syn import FloodTarget, SynWriter, frame_len
from ustack.link.packet import PacketDevice
from ustack.net.interface import Interface
from ustack.net.neighbours import ArpTable
from ustack.stack import BATCH, Stack

MAX_COUNT: Final = 100_000_000  # SYNs in one run at most (one bit each for the answers)
MAX_DURATION: Final = 3600.0  # seconds
DEFAULT_BATCH: Final = 256  # SYNs per kick (a quarter of the default 1024-slot TX ring)
_DRAIN_POLLS: Final = 64  # receive polls after a batch at most (BATCH frames each)
_CALIBRATE: Final = 2000  # SYNs written to a scratch buffer to time ``write``
_MIN_SLEEP: Final = 0.0002  # seconds: a shorter wait for the rate is spent polling


class FloodError(Exception):
    """What stops a flood before it starts (one line, for the command)."""


@dataclass(frozen=True)
class FloodConfig:
    """A flood's parameters, checked when made (``ValueError``, one line)."""

    targets: tuple[tuple[bytes, int], ...]  # (address, port)
    count: int = 100_000
    duration: float = 10.0
    rate: float | None = None  # SYNs per second in all; None: as fast as possible
    rand_source: bool = False
    options: bool = True  # Linux's SYN options (MSS, SACK-permitted, timestamps, wscale)
    grace: float = 1.0  # seconds to wait for late answers after the last SYN
    batch: int = DEFAULT_BATCH
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError("--to: at least one target IP:PORT")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError("--to: the same target twice")
        for _, port in self.targets:
            if not 0 < port < 65536:
                raise ValueError(f"--to: port {port} is not 1..65535")
        if isinstance(self.count, bool) or not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"--count {self.count}: between 1 and {MAX_COUNT:,} "
                             "(a flood is bounded)")
        if not 0 < self.duration <= MAX_DURATION:
            raise ValueError(f"--duration {self.duration}: more than 0 and at most "
                             f"{MAX_DURATION:g} seconds (a flood is bounded)")
        if self.rate is not None and not 0 < self.rate < float("inf"):
            raise ValueError(f"--rate {self.rate}: a positive number of SYNs per second")
        if not 0 <= self.grace <= 60:
            raise ValueError(f"--grace {self.grace}: 0 to 60 seconds")
        if not 1 <= self.batch <= 65536:
            raise ValueError(f"--batch {self.batch}: 1 to 65536")


class TokenBucket:
    """``rate`` tokens a second, ``burst`` at most saved (RFC 2697's
    single-rate bucket, one colour): a batch takes as many as it has."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = 1.0
        self.last = now

    def available(self, now: float) -> int:
        t = self.tokens + (now - self.last) * self.rate
        self.last = now
        self.tokens = t if t < self.burst else self.burst
        return int(self.tokens)

    def take(self, n: int) -> None:
        self.tokens -= n

    def wait(self, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens are there."""
        return max(0.0, (n - self.tokens) / self.rate)


@dataclass
class FloodTimes:
    """Where a run's time went (seconds; CPU from getrusage)."""

    started: float = 0.0
    sending_ended: float = 0.0
    ended: float = 0.0
    send_wall: float = 0.0  # in the send calls: writing the SYNs, kicking the ring
    receive_wall: float = 0.0  # in the stack's polls: answers, ARP, flush
    wait_wall: float = 0.0  # waiting for tokens (a --rate run)
    user_cpu: float = 0.0  # during the sending
    system_cpu: float = 0.0
    write_ns: float = 0.0  # one SYN written, calibrated before the run
    batches: int = 0
    ring_full: int = 0  # batches cut short by a full TX ring


class Flood:
    """A flood from ``iface`` of ``stack`` (see the module doc)."""

    def __init__(self, stack: Stack, iface: Interface, config: FloodConfig,
                 sources: tuple[int, int]) -> None:
        self.stack = stack
        self.iface = iface
        self.config = config
        first, n = sources
        self.sources = (first, n)
        for ip, _ in config.targets:
            a = int.from_bytes(ip, "big")
            if first <= a < first + n:
                raise FloodError(f"--to {_addr(ip)}: one of our own source addresses")
        self.targets: list[FloodTarget] = []
        self.writer: SynWriter | None = None
        self.answers: FloodAnswers | None = None
        self.path = ""
        self.frame_len = frame_len(config.options)
        self.times = FloodTimes()
        self.ring_dev: PacketDevice | None = None
        self.bucket: TokenBucket | None = None
        self._cpu0 = (0.0, 0.0)
        self.done_sending = False
        self.interrupted = False
        # The clock ``run`` was given: each receive poll of a step reads it,
        # so that what else runs on the stack meanwhile (``--mix-load``'s
        # clients) sees time move within a step, not only between steps.
        self.clock: Callable[[], float] | None = None
        self.min_batch = 1  # SYNs per send at least with a rate (``start``)
        self.tapped = False  # the answers are taken in the receive ring (``FloodTap``)

    # -- before -----------------------------------------------------------

    def resolve(self, clock: Callable[[], float], timeout: float | None = None, *,
                sleep: Callable[[float], None] = time.sleep,
                between: Callable[[float], None] | None = None) -> None:
        """Find every target's next hop and its MAC through the stack's ARP
        (broadcast requests, ``ArpTable.RETRY`` apart, ``TRIES`` of them);
        FloodError naming a target with no route or no answer.  ``sleep``
        and ``between`` as for ``run``."""
        stack = self.stack
        if timeout is None:
            timeout = ArpTable.RETRY * ArpTable.TRIES
        hops = []
        for ip, port in self.config.targets:
            try:
                hop = stack.ipv4.route(ip)
            except OSError:
                raise FloodError(f"--to {_addr(ip)}: no route (not on the subnet of --ip, "
                                 "and no --gw)") from None
            if hop.iface is not self.iface:
                raise FloodError(f"--to {_addr(ip)}: routed out of {hop.iface.name}, "
                                 f"not {self.iface.name}")
            hops.append((ip, port, hop.addr))
        now = clock()
        stack.poll(now)  # started: our addresses announced
        end = now + timeout
        while True:
            missing = [a for _, _, a in hops if self.iface.arp.fresh_hdr(a, now) is None]
            if not missing:
                break
            if now >= end:
                names = ", ".join(sorted({_addr(a) for a in missing}))
                raise FloodError(f"no ARP answer from {names} in {timeout:g} s: the target "
                                 "(or the next hop) is not on the link")
            for a in missing:
                stack.arp.request(self.iface, a)
            stack.flush(now)
            if between is not None:
                between(now)
            sleep(0.001)
            now = clock()
            stack.poll(now)
        self.targets = []
        for i, (ip, port, hop_addr) in enumerate(hops):
            hdr = self.iface.arp.fresh_hdr(hop_addr, now)
            assert hdr is not None
            key = int.from_bytes(os.urandom(4), "big")
            self.targets.append(FloodTarget(i, ip, port, hdr, key))

    # -- the run ------------------------------------------------------------

    def start(self, now: float) -> None:
        """Make the writer for the device's send path, take TCP, start the clock."""
        if not self.targets:
            raise FloodError("resolve() first")
        cfg = self.config
        first, n = self.sources
        mss = max(536, min(1460, self.iface.mtu - 40))
        dev = self.iface.device
        prefix = None
        if isinstance(dev, PacketDevice):
            prefix = dev.slot_prefix(self.frame_len)
        if prefix is not None:
            assert isinstance(dev, PacketDevice)
            self.ring_dev = dev
            self.path = "tx-ring"
        else:
            self.path = "send_batch"
        self.times.write_ns = self._calibrate(mss, prefix or b"")
        self.writer = SynWriter(self.targets, first, n, rand_source=cfg.rand_source,
                                options=cfg.options, mss=mss, prefix=prefix or b"",
                                seed=cfg.seed)
        self.answers = FloodAnswers(self.stack.host, self.stack.ipv4, self.stack.tcp,
                                    self.writer, cfg.count)
        self.answers.install()
        if self.ring_dev is not None:
            # The answers taken in the receive ring where it can (TPACKET_V2).
            self.tapped = self.ring_dev.set_rx_tap(FloodTap(self.answers, self.iface.mac))
        if cfg.rate is not None:
            # 2 ms of tokens at most: a run that falls behind does not
            # catch up in a burst, it shows as a rate not reached.
            self.min_batch = max(1, min(cfg.batch, int(cfg.rate * 0.0001)))
            self.bucket = TokenBucket(cfg.rate, max(2.0 * self.min_batch, cfg.rate * 0.002), now)
        self.times.started = now
        self._cpu0 = _cpu()

    def _calibrate(self, mss: int, prefix: bytes) -> float:
        """ns to write one SYN (a scratch writer and buffer, not sent)."""
        w = SynWriter(self.targets, self.sources[0], self.sources[1],
                      rand_source=self.config.rand_source, options=self.config.options,
                      mss=mss, prefix=prefix)
        buf = bytearray(len(prefix) + self.frame_len)
        t0 = time.perf_counter()
        for _ in range(_CALIBRATE):
            w.write(buf, 0)
        ns = (time.perf_counter() - t0) / _CALIBRATE * 1e9
        for t in self.targets:
            t.sent = 0  # (the scratch writer counted its SYNs on the targets)
        return ns

    def step(self, now: float) -> bool:
        """One batch at ``now`` and the receiving after it; False once the
        count is sent or the duration is over (the sending is finished)."""
        w = self.writer
        assert w is not None
        cfg = self.config
        if self.done_sending:
            return False
        if (w.sent >= cfg.count or now - self.times.started >= cfg.duration
                or self.interrupted):
            self._end_sending(now)
            return False
        n = min(cfg.batch, cfg.count - w.sent)
        bucket = self.bucket
        if bucket is not None:
            avail = bucket.available(now)
            # Paced in batches of ``min_batch`` (100 us of the rate) at
            # least: a kick per SYN would cost more than the SYN.
            n = min(n, avail) if avail >= min(self.min_batch, n) else 0
        times = self.times
        if n > 0:
            t0 = time.perf_counter()
            ring = self.ring_dev
            if ring is not None:
                sent = ring.send_written(w, n, self.frame_len, now)
            else:
                sent = self.iface.device.send_batch(w.frames(n), now)
                # (a frame the device would not take was written and counted
                # by the writer: the device's own counters say so)
                sent = n
            t1 = time.perf_counter()
            times.send_wall += t1 - t0
            times.batches += 1
            if sent < n:
                times.ring_full += 1
                if ring is not None and not ring.pending():
                    ring.kick()
            if bucket is not None:
                bucket.take(sent)
        t1 = time.perf_counter()
        stack = self.stack
        ring = self.ring_dev
        clock = self.clock
        for _ in range(_DRAIN_POLLS):
            got = stack.poll(now if clock is None else clock())
            # (frames the tap takes are not among those a poll returns)
            if not ring.pending() if ring is not None else got < BATCH:
                break
        times.receive_wall += time.perf_counter() - t1
        return True

    def _end_sending(self, now: float) -> None:
        self.done_sending = True
        self.times.sending_ended = now
        u0, s0 = self._cpu0
        u1, s1 = _cpu()
        self.times.user_cpu = u1 - u0
        self.times.system_cpu = s1 - s0

    def run(self, clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep,
            between: Callable[[float], None] | None = None) -> None:
        """``start``, ``step`` until the sending is over, then the grace
        period; TCP is given back to the stack whatever happens.
        ``between`` (tests: a scripted peer) is called after every step."""
        self.clock = clock
        try:
            self.start(clock())
            while True:
                now = clock()
                if not self.step(now):
                    break
                if between is not None:
                    between(now)
                bucket = self.bucket
                if bucket is not None and bucket.tokens < self.min_batch:
                    # A wait shorter than a sleep's overshoot (tens of us)
                    # is spent polling: the next step sends when it is over.
                    wait = bucket.wait(self.min_batch)
                    if wait >= _MIN_SLEEP:
                        t0 = time.perf_counter()
                        sleep(min(wait, 0.001))
                        self.times.wait_wall += time.perf_counter() - t0
            self.wait_grace(clock, sleep, between)
        finally:
            self.close()

    def wait_grace(self, clock: Callable[[], float], sleep: Callable[[float], None],
                   between: Callable[[float], None] | None = None) -> None:
        """Receive for ``grace`` seconds after the last SYN."""
        end = self.times.sending_ended + self.config.grace
        stack = self.stack
        while True:
            now = clock()
            if now >= end:
                break
            got = stack.poll(now)
            if between is not None:
                between(now)
            ring = self.ring_dev
            if not ring.pending() if ring is not None else got < BATCH:
                sleep(min(0.002, end - now))
        self.times.ended = clock()

    def stop(self) -> None:
        """End the sending at the next step (a signal handler may call it);
        the grace period still runs."""
        self.interrupted = True

    def close(self) -> None:
        if self.answers is not None:
            self.answers.uninstall()
        if self.tapped and self.ring_dev is not None:
            self.ring_dev.set_rx_tap(None)
            self.tapped = False

    # -- figures ----------------------------------------------------------

    @property
    def sent(self) -> int:
        return self.writer.sent if self.writer is not None else 0

    @property
    def send_seconds(self) -> float:
        return self.times.sending_ended - self.times.started

    @property
    def pps(self) -> float:
        s = self.send_seconds
        return self.sent / s if s > 0 else 0.0


def _addr(ip: bytes) -> str:
    return f"{ip[0]}.{ip[1]}.{ip[2]}.{ip[3]}"


def _cpu() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime
