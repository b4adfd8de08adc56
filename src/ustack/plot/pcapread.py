"""A time-sequence graph's data from a packet capture of any TCP.

Reads classic pcap files (microsecond or nanosecond, either byte order)
of Ethernet, raw IPv4 or Linux cooked (``tcpdump -i any``) frames, parses
them with ustack's own wire parsers, and groups the TCP segments by
connection.  The sender of a connection is the side that sent more
sequence space; what the capture tells of it:

- segments sent: every one carrying data (or SYN/FIN), a retransmission
  being one that starts below the highest sequence number sent before it;
- the cumulative ACK, the SACK blocks and the window's right edge (ACK +
  window, scaled by the shift the receiver's SYN announced) from the
  receiver's segments;
- bytes in flight, estimated: the highest sequence number sent less the
  last ACK (what was sent and not yet acknowledged, SACK not counted);
- srtt: RFC 6298's average of the time from a segment to the first ACK
  covering it, for segments sent once (Karn's rule).

cwnd and ssthresh are the sender's own and not on the wire: a capture's
picture shows bytes in flight instead.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from ustack.link import pcap
from ustack.plot.series import Conn, PlotInputError, Series, unwrap
from ustack.tcp import seq as sq
from ustack.wire import ethernet, ipv4, tcp
from ustack.wire.errors import ParseError

_LINK_ETHERNET = pcap.LINKTYPE_ETHERNET
_LINK_RAW = (101, 228)  # LINKTYPE_RAW, LINKTYPE_IPV4
_LINK_SLL = 113  # Linux cooked capture (tcpdump -i any)
_ETHERTYPE_IPV4 = 0x0800


@dataclass
class Segment:
    t: float
    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    ack: int
    flags: int
    window: int
    length: int  # payload bytes
    opts: tcp.TcpOptions


@dataclass
class _Flow:
    """Both directions of one connection, in the order seen."""

    id: int
    a: tuple[str, int]  # the side seen first
    b: tuple[str, int]
    segs: list[Segment] = field(default_factory=list)
    ended: bool = False  # a FIN or RST was seen
    roles: tuple[tuple[str, int], tuple[str, int], int] | None = None  # sender()'s answer

    def space(self, side: tuple[str, int]) -> int:
        """Sequence space ``side`` sent (highest end less lowest start)."""
        lo = hi = None
        for s in self.segs:
            if s.src != side:
                continue
            n = s.length + (1 if s.flags & (tcp.SYN | tcp.FIN) else 0)
            if lo is None or hi is None:
                lo, hi = s.seq, s.seq + n
                continue
            start = unwrap(s.seq, hi)
            lo = min(lo, start)
            hi = max(hi, start + n)
        return 0 if lo is None or hi is None else hi - lo

    def sender(self) -> tuple[tuple[str, int], tuple[str, int], int]:
        """The side that sent more, the other, and the space it sent
        (worked out once: each ``space`` walks every segment)."""
        if self.roles is None:
            sa, sb = self.space(self.a), self.space(self.b)
            self.roles = (self.a, self.b, sa) if sa >= sb else (self.b, self.a, sb)
        return self.roles


def read_pcap(path: str | Path) -> list[Segment]:
    """Every IPv4 TCP segment of the capture (others skipped)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        linktype, records = pcap.read_pcap(data)
    except pcap.PcapFormatError as e:
        why = {"short": "too short for a pcap",
               "pcapng": f"a pcapng file; convert it with editcap -F pcap {path} out.pcap"}
        raise PlotInputError(f"{path}: {why.get(e.reason, 'neither a pcap nor a --trace file')}"
                             ) from None
    if linktype not in (_LINK_ETHERNET, _LINK_SLL, *_LINK_RAW):
        raise PlotInputError(f"{path}: link type {linktype} (Ethernet, raw IPv4 and "
                             "Linux cooked captures are read)")
    out: list[Segment] = []
    for t, frame in records:
        seg = _segment(memoryview(frame), linktype, t)
        if seg is not None:
            out.append(seg)
    return out


def _segment(frame: memoryview, linktype: int, t: float) -> Segment | None:
    try:
        if linktype == _LINK_ETHERNET:
            eth = ethernet.parse(frame)
            if eth.ethertype != _ETHERTYPE_IPV4:
                return None
            pkt = frame[ethernet.HEADER_LEN:]
        elif linktype == _LINK_SLL:
            if len(frame) < 16 or struct.unpack_from("!H", frame, 14)[0] != _ETHERTYPE_IPV4:
                return None
            pkt = frame[16:]
        else:
            pkt = frame
        # The header's own fields, not ipv4.parse: a capture cut at a snap
        # length (tcpdump -s 128) holds less than the total length says,
        # and the payload's length is the header's word, not the bytes kept.
        vihl, _tos, total, _id, ff, _ttl, proto, _sum, src, dst = ipv4.unpack_fields(pkt, 0)
        hl = (vihl & 0x0F) << 2
        if vihl >> 4 != 4 or proto != ipv4.PROTO_TCP or ff & 0x3FFF or hl < 20:
            return None  # not IPv4 TCP, or a fragment
        h = tcp.parse(pkt[hl:total])
        opts = tcp.parse_options(h.options_raw) if h.options_raw else tcp.NO_OPTIONS
    except (ParseError, struct.error):
        return None  # a frame cut inside its headers, or no TCP
    return Segment(t, (ipv4.addr_to_str(src), h.sport), (ipv4.addr_to_str(dst), h.dport),
                   h.seq, h.ack, h.flags, h.window, total - hl - h.header_len, opts)


def flows(segs: list[Segment]) -> list[_Flow]:
    """The connections, numbered from 1 in the order first seen."""
    current: dict[tuple[tuple[str, int], tuple[str, int]], _Flow] = {}
    result: list[_Flow] = []
    for s in segs:
        key = (s.src, s.dst) if s.src <= s.dst else (s.dst, s.src)
        fl = current.get(key)
        if fl is None or (s.flags & (tcp.SYN | tcp.ACK) == tcp.SYN and fl.ended):
            # A SYN on a 4-tuple whose connection ended starts a new one.
            fl = current[key] = _Flow(len(result) + 1, s.src, s.dst)
            result.append(fl)
        if s.flags & (tcp.FIN | tcp.RST):
            fl.ended = True
        fl.segs.append(s)
    return result


def pcap_conns(fls: list[_Flow]) -> list[Conn]:
    out = []
    for fl in fls:
        snd, rcv, sent = fl.sender()
        out.append(Conn(fl.id, f"{snd[0]}:{snd[1]} > {rcv[0]}:{rcv[1]}", sent))
    return out


def from_pcap(fl: _Flow, conn: Conn) -> Series:
    """The series of the sender of ``fl`` (``Conn`` from ``pcap_conns``)."""
    snd, _rcv, _sent = fl.sender()
    segs = fl.segs
    t0 = segs[0].t if segs else 0.0
    s = Series("pcap", conn, t0)
    base: int | None = None  # the sender's ISN: relative 0
    wscale_snd = wscale_rcv = None  # shifts each side's SYN announced
    for g in segs:
        if g.flags & tcp.SYN:
            if g.src == snd:
                base = g.seq
                wscale_snd = g.opts.wscale
            else:
                wscale_rcv = g.opts.wscale
    if base is None:
        first = next((g for g in segs if g.src == snd), None)
        base = sq.ahead(first.seq, 1) if first is not None else 0
    # RFC 7323 2.2: windows are scaled only when both SYNs carried the option.
    shift = min(wscale_rcv, 14) if wscale_snd is not None and wscale_rcv is not None else 0
    top = 0  # highest relative sequence number sent
    ack = 0  # last cumulative ACK, relative
    srtt: float | None = None
    timed: dict[int, float] = {}  # end -> time sent, for segments sent once
    for g in segs:
        t = g.t - t0
        if g.src == snd:
            n = g.length + (1 if g.flags & (tcp.SYN | tcp.FIN) else 0)
            if not n:
                continue  # a pure ACK, a keepalive or window probe
            seq = unwrap(sq.ahead(g.seq, base), top)
            end = seq + n
            if seq < top:
                s.retransmitted.append((t, seq, end))
                # Karn: what a retransmission covers is timed no more.
                for e in [e for e in timed if seq < e <= end]:
                    del timed[e]
            else:
                s.sent.append((t, seq, end))
                timed[end] = t
            top = max(top, end)
            s.inflight.append((t, top - ack))
            continue
        if not g.flags & tcp.ACK:
            continue
        a = unwrap(sq.ahead(g.ack, base), top)
        if a > ack or not s.acks:
            ack = max(a, ack)
            s.acks.append((t, ack))
            done = [e for e in timed if e <= ack]
            if done:
                sample = t - max(timed[e] for e in done)
                # RFC 6298 2.3: SRTT = 7/8 SRTT + 1/8 R (the first: R).
                srtt = sample if srtt is None else 0.875 * srtt + 0.125 * sample
                s.srtt.append((t, srtt))
                for e in done:
                    del timed[e]
            s.inflight.append((t, top - ack))
        win = g.window if g.flags & tcp.SYN else g.window << shift
        s.window.append((t, ack + win))
        for left, right in g.opts.sack_blocks:
            s.sacks.append((t, unwrap(sq.ahead(left, base), top),
                            unwrap(sq.ahead(right, base), top)))
    return s
