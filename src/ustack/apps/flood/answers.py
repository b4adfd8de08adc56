"""Counting the flood's answers, and never answering them.

During a flood ``FloodAnswers`` stands in the IPv4 layer's table for TCP
(``Ipv4Layer.protocols[6]``; ``install``/``uninstall``).  A segment from
a target's address and port to one of the flood's source addresses is
the flood's: it is counted and dropped here, so the TCP layer never sees
a SYN-ACK for a connection it does not have (it would answer with a RST,
RFC 9293 3.10.7.1, and the target would free what it holds) and no state
is kept for it.  Everything else (a connection of the stack's own to the
same target included) goes to the TCP layer as before.

Which SYN an answer is for is in its acknowledgment number: the flood's
sequence numbers are a keyed hash of the 4-tuple plus the SYN's serial
number, scrambled (``syn.serial_of``), so a SYN-ACK, or a RST with ACK (RFC 9293
3.10.7.1: ``<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`` for a SYN to a
closed port), names its SYN without a table.  One bit per SYN sent
(``answered``, ``count`` bits: bounded by the flood's count) tells a first
answer from a repeated one (a SYN-ACK the target retransmits when no
cookies are in use).  A segment whose acknowledgment names no SYN of ours
is ``unmatched`` (counted, dropped: ``DropFloodAnswerUnmatched``).

On an AF_PACKET link with a TPACKET_V2 ring, ``FloodTap`` takes the
answers in the ring itself (``link.rings.FrameTap``): their headers read
in place, counted by the same ``FloodAnswers.count``, with no frame object
and no trip through Ethernet and IPv4 (0.5 us an answer instead of 1.7 in
a flood against a kernel answering with SYN cookies); what it does not
take goes through the layers to ``FloodAnswers.input`` as before.
"""

from __future__ import annotations

import mmap
import struct
from typing import Final

from ustack.apps.flood.syn import FloodTarget, SynWriter, serial_of
from ustack.counters import Counters
from ustack.link.rings import FrameTap
from ustack.net.host import RX_CSUM_OK, Host
from ustack.net.interface import Interface
from ustack.net.ipv4 import Ipv4Layer, ProtocolFront
from ustack.tcp.drops import count_header_error
from ustack.tcp.layer import TcpLayer
from ustack.wire import ethernet as weth
from ustack.wire import ipv4 as wip
from ustack.wire import tcp as wtcp
from ustack.wire.checksum import sum_mod, sum_span
from ustack.wire.errors import ParseError

_SYN_ACK: Final = wtcp.SYN | wtcp.ACK
_FRAGMENT_BITS: Final = wip.FLAG_MF | wip.OFFSET_MASK


class FloodAnswers(ProtocolFront):
    """The TCP handler during a flood: answers counted per target
    (``FloodTarget``), everything else handed to ``tcp``."""

    __slots__ = ("answered", "by_addr", "counters", "first", "host", "ip", "last", "max_count",
                 "previous", "tcp", "writer")

    def __init__(self, host: Host, ip: Ipv4Layer, tcp: TcpLayer, writer: SynWriter,
                 max_count: int) -> None:
        super().__init__(ip, wip.PROTO_TCP)
        self.host = host
        self.counters: Counters = host.counters
        self.tcp = tcp
        self.writer = writer
        self.first = writer.first
        self.last = writer.first + writer.count - 1
        # The targets by address; a few ports per address at most.
        self.by_addr: dict[bytes, list[FloodTarget]] = {}
        for t in writer.targets:
            self.by_addr.setdefault(t.ip, []).append(t)
        self.max_count = max_count
        self.answered = bytearray((max_count + 7) >> 3)

    def input(self, iface: Interface, src: bytes, dst: bytes, payload: bytes, pkt: bytes,
              rx: int) -> None:
        targets = self.by_addr.get(src)
        n = len(payload)
        if targets is None or n < 20:
            self.tcp.input(iface, src, dst, payload, pkt, rx)
            return
        sport = (payload[0] << 8) | payload[1]
        target: FloodTarget | None = None
        for t in targets:
            if t.port == sport:
                target = t
                break
        d = int.from_bytes(dst, "big")
        if target is None or not self.first <= d <= self.last:
            self.tcp.input(iface, src, dst, payload, pkt, rx)
            return
        dport = (payload[2] << 8) | payload[3]
        if self.tcp.conns and (dst, dport, src, sport) in self.tcp.conns:
            # A connection of the stack's own (not a flood's SYN): TCP's.
            self.tcp.input(iface, src, dst, payload, pkt, rx)
            return
        c = self.counters
        try:
            _, _, _, ack, _, flags, _ = wtcp.parse_fields(
                payload, -1 if rx & RX_CSUM_OK else sum_mod(src + dst))
        except ParseError as e:
            count_header_error(c, e)
            return
        c.TcpInSegs += 1
        self.count(target, d, dport, sport, ack, flags)

    def count(self, target: FloodTarget, d: int, dport: int, sport: int, ack: int,
              flags: int) -> None:
        """Count a valid segment from ``target`` to our ``d``:``dport``."""
        if flags & _SYN_ACK == _SYN_ACK:
            rst = False
        elif flags & wtcp.RST and flags & wtcp.ACK:
            rst = True
        else:
            target.other += 1
            self.counters.drop("flood_answer_other")
            return
        k = serial_of(ack, d, (dport << 16) | sport, target.key)
        nt = self.writer.nt
        if k >= self.writer.sent or k % nt != target.index:
            target.unmatched += 1
            self.counters.drop("flood_answer_unmatched")
            return
        byte = k >> 3
        bit = 1 << (k & 7)
        seen = self.answered[byte]
        now = self.host.now
        if seen & bit:
            target.dup += 1
        else:
            self.answered[byte] = seen | bit
            target.answered += 1
            if rst:
                target.rst += 1
            else:
                target.synack += 1
            if target.first_answer < 0:
                target.first_answer = now
        target.last_answer = now



# The headers of an answer as the tap reads them in the ring: destination
# MAC (as 4 + 2 bytes), EtherType; IPv4 version/IHL, total length, flags
# and fragment offset, protocol, source, destination; TCP ports, ack, data
# offset and flags (RFC 791 3.1, RFC 9293 3.1 offsets).
_ANSWER: Final = struct.Struct("!IH6xHBxH2xHxB2xIIHH4xIBB")
_ANSWER_MIN: Final = weth.HEADER_LEN + 40


class FloodTap(FrameTap):
    """The flood's answers taken in the AF_PACKET ring (``rings.FrameTap``):
    the headers read in place with one ``unpack_from``, the IPv4 header
    checksum verified, the segment counted by ``FloodAnswers.count``; no
    frame object, no copy.  Only the frames the kernel vouched for (its
    checksum offload marks: the veth's default) and that are plainly the
    flood's (ours by MAC, IPv4 without options or fragments, TCP from a
    target's address and port to a source of ours, no connection of the
    stack's own) are taken; every other frame goes on through the stack,
    where ``FloodAnswers.input`` checks the transport checksum too."""

    __slots__ = ("answers", "by_ip", "counters", "mac_hi", "mac_lo")

    def __init__(self, answers: FloodAnswers, mac: bytes) -> None:
        self.answers = answers
        self.counters = answers.counters
        self.mac_hi = int.from_bytes(mac[:4], "big")
        self.mac_lo = int.from_bytes(mac[4:6], "big")
        self.by_ip: dict[int, list[FloodTarget]] = {}
        for t in answers.writer.targets:
            self.by_ip.setdefault(t.ip32, []).append(t)

    def take(self, buf: mmap.mmap, start: int, length: int, trusted: bool) -> bool:
        if not trusted or length < _ANSWER_MIN:
            return False
        mac_hi: int
        mac_lo: int
        etype: int
        vihl: int
        total: int
        ff: int
        proto: int
        src: int
        dst: int
        sport: int
        dport: int
        ack: int
        off: int
        flags: int
        (mac_hi, mac_lo, etype, vihl, total, ff, proto, src, dst, sport, dport, ack, off,
         flags) = _ANSWER.unpack_from(buf, start)
        if (mac_lo != self.mac_lo or mac_hi != self.mac_hi or etype != weth.ETHERTYPE_IPV4
                or vihl != 0x45 or proto != wip.PROTO_TCP or ff & _FRAGMENT_BITS
                or not 40 <= total <= length - weth.HEADER_LEN
                or not 20 <= (off >> 4) << 2 <= total - 20):
            return False
        targets = self.by_ip.get(src)
        if targets is None:
            return False
        target: FloodTarget | None = None
        for t in targets:
            if t.port == sport:
                target = t
                break
        answers = self.answers
        if target is None or not answers.first <= dst <= answers.last:
            return False
        tcp = answers.tcp
        if tcp.conns and (dst.to_bytes(4, "big"), dport, target.ip, sport) in tcp.conns:
            return False
        # RFC 791 3.1: the header checksum (the kernel's mark is about the
        # transport checksum only).
        if sum_span(buf[start + weth.HEADER_LEN:start + weth.HEADER_LEN + 20], 0, 20):
            return False
        c = self.counters
        c.EthInFrames += 1
        c.IpInReceives += 1
        c.IpInDelivers += 1
        c.TcpInSegs += 1
        answers.count(target, dst, dport, sport, ack, flags)
        return True
