"""IPv4 reassembly with the RFC 815 hole-descriptor list.

Safety rules beyond RFC 815 (RFC 791 leaves them open; these follow what
the Teardrop/overlap attacks taught, cf. RFC 5722 for IPv6):

* Overlap discards the datagram (the RFC 5722 rule for IPv6, which Linux
  applies to IPv4 as well): a fragment that covers both bytes already
  received and bytes still missing drops every fragment of its datagram,
  counted in IpReasmFails and IpExtReasmOverlaps (Linux's names) and as
  ``reasm_overlap``.  Overlaps are how the Teardrop family crashed stacks
  and how fragment-overlap evasion shows a firewall other bytes than the
  host; no honest sender produces them.
* A duplicate -- a fragment all of whose bytes were received already (an
  exact duplicate, or one inside data received) -- is dropped alone and the
  datagram kept, as Linux does (drop reason DUP_FRAG; RFC 8200 4.5 allows
  it for exact duplicates): the network does duplicate packets.  It writes
  nothing, so data once accepted is never rewritten.
* A datagram whose fragments disagree about where it ends (two different
  last fragments, data past the end) is dropped whole.
* The reassembled datagram may not exceed 65535 bytes (RFC 791).
* Memory is bounded per source address and in total; a fragment that would
  exceed either is dropped and counted, and a new datagram never evicts an
  old one (evicting would let a flood of starts destroy every real datagram).
  Every datagram is charged at least ``CHARGE_MIN`` bytes, so one source
  cannot hold the whole table with tiny fragments either.
* An incomplete datagram is dropped after ``TIMEOUT`` seconds (RFC 1122
  3.3.2 suggests 60-120 s; Linux uses 30 s, as the issue asks).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Final

from ustack.wire.ipv4 import Ipv4Header, header_bytes

if TYPE_CHECKING:
    from ustack.counters import Counters
    from ustack.timers import Timer, TimerHeap

_INF: Final = 1 << 20  # "infinity" for the last hole, beyond any IPv4 payload
_MAX_PAYLOAD: Final = 65535 - 20

Key = tuple[bytes, bytes, int, int]  # src, dst, proto, ident


class _Datagram:
    __slots__ = ("buf", "first", "holes", "size", "timer", "total")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.holes: list[list[int]] = [[0, _INF]]  # inclusive [first, last]
        self.total: int | None = None  # payload length once the last fragment came
        self.first: bytes | None = None  # the offset-0 fragment's IP header
        self.size = 0  # bytes charged against the memory limits
        self.timer: Timer | None = None


class Reassembler:
    TIMEOUT: Final = 30.0
    MAX_TOTAL: Final = 4 * 1024 * 1024  # like Linux ipfrag_high_thresh
    MAX_PER_SOURCE: Final = 512 * 1024
    MAX_DATAGRAMS: Final = 1024
    CHARGE_MIN: Final = 2048  # per datagram: one source holds at most 256 of them

    __slots__ = ("_by_source", "_datagrams", "_total", "counters", "on_timeout", "timers")

    def __init__(self, counters: Counters, timers: TimerHeap,
                 on_timeout: Callable[[bytes], None] | None = None) -> None:
        self.counters = counters
        self.timers = timers
        # Told the first fragment's header + 8 data bytes when a datagram whose
        # first fragment arrived times out, to send ICMP time exceeded.
        self.on_timeout = on_timeout
        self._datagrams: dict[Key, _Datagram] = {}
        self._by_source: dict[bytes, int] = {}
        self._total = 0

    def __len__(self) -> int:
        return len(self._datagrams)

    @property
    def memory(self) -> int:
        return self._total

    def add(self, hdr: Ipv4Header, payload: bytes, now: float) -> bytes | None:
        """Add one fragment; returns the whole payload when the datagram is complete.

        ``hdr`` is the fragment's parsed header and ``payload`` its data
        (IP padding already cut).  The caller dispatches the returned payload
        with ``hdr.src``, ``hdr.dst`` and ``hdr.proto``.
        """
        c = self.counters
        c.IpReasmReqds += 1
        start = hdr.frag_offset
        end = start + len(payload)  # exclusive
        more = hdr.more_fragments
        if end > _MAX_PAYLOAD:
            c.IpReasmFails += 1
            c.drop("reasm_too_long")
            return None
        if more and (len(payload) == 0 or len(payload) & 7):
            # Every fragment but the last carries a multiple of 8 bytes (RFC 791).
            c.IpReasmFails += 1
            c.drop("reasm_bad_fragment_len")
            return None
        key = (hdr.src, hdr.dst, hdr.proto, hdr.ident)
        d = self._datagrams.get(key)
        if d is None:
            src_used = self._by_source.get(hdr.src, 0)
            if len(self._datagrams) >= self.MAX_DATAGRAMS:
                c.IpReasmFails += 1
                c.drop("reasm_too_many")
                return None
            if (src_used + self.CHARGE_MIN > self.MAX_PER_SOURCE
                    or self._total + self.CHARGE_MIN > self.MAX_TOTAL):
                c.IpReasmFails += 1
                c.drop("reasm_memory")
                return None
            d = self._datagrams[key] = _Datagram()
            d.size = self.CHARGE_MIN
            self._total += self.CHARGE_MIN
            self._by_source[hdr.src] = src_used + self.CHARGE_MIN
            d.timer = self.timers.call_at(now + self.TIMEOUT, partial(self._expire, key))
        if not more:
            if (d.total is not None and d.total != end) or len(d.buf) > end:
                self._drop(key, d, "reasm_inconsistent_end")
                return None
            d.total = end
        elif d.total is not None and end > d.total:
            self._drop(key, d, "reasm_past_end")
            return None
        if start < end:
            # How much of the fragment falls into holes: all of it is new
            # data, none of it a duplicate, some of it an overlap.
            missing = 0
            for h_first, h_last in d.holes:
                lo = max(start, h_first)
                hi = min(end - 1, h_last)
                if lo <= hi:
                    missing += hi - lo + 1
            if missing == 0:
                c.drop("reasm_duplicate")
                return None
            if missing != end - start:
                c.IpExtReasmOverlaps += 1
                self._drop(key, d, "reasm_overlap")
                return None
        # Charge memory beyond what the datagram is already charged (at least
        # CHARGE_MIN) before touching the buffer.
        grow = end - d.size
        if grow > 0:
            src_used = self._by_source.get(hdr.src, 0)
            if self._total + grow > self.MAX_TOTAL or src_used + grow > self.MAX_PER_SOURCE:
                c.drop("reasm_memory")
                self._drop(key, d, None)
                return None
            d.size += grow
            self._total += grow
            self._by_source[hdr.src] = src_used + grow
        if end > len(d.buf):
            d.buf.extend(bytes(end - len(d.buf)))
        if start == 0 and d.first is None:
            # Kept to quote in ICMP time exceeded (RFC 792: header + 64 bits).
            d.first = header_bytes(hdr.src, hdr.dst, hdr.proto, hdr.total_length,
                                   ident=hdr.ident, flags=hdr.flags, ttl=hdr.ttl,
                                   tos=hdr.tos) + payload[:8]
        # RFC 815 steps 1-7, writing only the part of each hole the fragment covers.
        last = end - 1
        new_holes: list[list[int]] = []
        for hole in d.holes:
            h_first, h_last = hole
            if start > h_last or last < h_first:
                new_holes.append(hole)
                continue
            lo = max(start, h_first)
            hi = min(last, h_last)
            d.buf[lo:hi + 1] = payload[lo - start:hi - start + 1]
            if start > h_first:
                new_holes.append([h_first, start - 1])
            if last < h_last and more:
                new_holes.append([last + 1, h_last])
        if d.total is not None:
            new_holes = [h for h in new_holes if h[0] < d.total]
            for h in new_holes:
                if h[1] >= d.total:
                    h[1] = d.total - 1
        d.holes = new_holes
        if new_holes or d.total is None:
            return None
        self._forget(key, d)
        c.IpReasmOKs += 1
        return bytes(d.buf)

    def _expire(self, key: Key, _now: float) -> None:
        d = self._datagrams.get(key)
        if d is None:
            return
        self.counters.IpReasmTimeout += 1
        self._drop(key, d, "reasm_timeout")
        if d.first is not None and self.on_timeout is not None:
            # RFC 792/1122 3.3.2: time exceeded (code 1) only when the first
            # fragment arrived; quote it.
            self.on_timeout(d.first)

    def _drop(self, key: Key, d: _Datagram, reason: str | None) -> None:
        self._forget(key, d)
        self.counters.IpReasmFails += 1
        if reason:
            self.counters.drop(reason)

    def _forget(self, key: Key, d: _Datagram) -> None:
        del self._datagrams[key]
        if d.timer is not None:
            d.timer.cancel()
        self._total -= d.size
        left = self._by_source.get(key[0], 0) - d.size
        if left > 0:
            self._by_source[key[0]] = left
        else:
            self._by_source.pop(key[0], None)
