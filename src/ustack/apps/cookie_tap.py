"""A SYN flood answered in the receive ring: cookie SYN-ACKs with no trip
through the layers.

Under a flood nearly every frame is a SYN that a listener answers with a
SYN cookie (tcp/cookies.py) and forgets.  Through the stack each one is a
frame object, an Ethernet, IPv4 and TCP parse, a segment, a listener
lookup, an outgoing segment and a frame built layer by layer (about 10 us
compiled, where the kernel spends about 4 in all).  ``CookieTap`` sees
each frame where the kernel wrote it in the AF_PACKET ring
(``rings.FrameTap``, as ``ustack flood`` reads its answers), and takes
only what is plainly such a SYN:

- to our MAC, IPv4 without options or fragments, its header checksum good;
- TCP with exactly SYN set, no text, its checksum good (or vouched for by
  the kernel), to a listener at one of our addresses;
- a listener that answers with a cookie now (mode always, or on with its
  SYN queue full: ``TcpLayer``'s rule), its accept queue not full;
- no connection or TIME-WAIT record of that 4-tuple (a SYN there may
  reopen one, RFC 6191: the layer decides);
- a route back out of this interface to a neighbour already resolved.

Anything else goes on through the stack, unchanged, which is also where
the same SYN would be answered the same way: the SYN-ACK is made by the
same ``cookies.synack`` and the same counters move (the frame's
EthInFrames ... TcpExtSyncookiesSent, and out).  The SYN-ACK joins the
interface's transmit queue like any other frame.
"""

from __future__ import annotations

import mmap
import struct
from typing import Final

from ustack.link.rings import FrameTap
from ustack.net import ipv4 as wip_net
from ustack.net.interface import HEADROOM, Interface
from ustack.net.sockaddr import ANY
from ustack.tcp import cookies
from ustack.tcp.layer import TcpLayer
from ustack.wire import ethernet as weth
from ustack.wire import ipv4 as wip
from ustack.wire import tcp as wtcp
from ustack.wire.checksum import sum_span

# Ethernet destination (4 + 2 bytes), EtherType, IPv4 version/IHL, total
# length, flags/fragment offset, protocol, then the TCP ports, sequence
# number, data offset and flags.
_SYN: Final = struct.Struct("!IH6xHBxH2xHxB10xHHI4xBB")
_SYN_MIN: Final = weth.HEADER_LEN + 40
_FRAGMENT_BITS: Final = wip.FLAG_MF | wip.OFFSET_MASK
_IP: Final = weth.HEADER_LEN  # where the IPv4 header starts in a frame
_SYN_ONLY: Final = 0x3F  # FIN SYN RST PSH ACK URG: of these, SYN alone
_SYN_ACK: Final = wtcp.SYN | wtcp.ACK
_M32: Final = 0xFFFFFFFF


def _syn_options(pkt: bytes, start: int, end: int) -> tuple[int, int, bool, int]:
    """What a SYN's options offer, read in place: (MSS or 0, window scale
    or -1, SACK-permitted, TSval or -1); MSS -2 when they are malformed as
    ``wire.tcp.parse_options`` would refuse them (the stack then counts the
    segment).  A later option of a kind overrides an earlier one, as there."""
    mss = 0
    ws = -1
    sack = False
    tsval = -1
    i = start
    while i < end:
        kind = pkt[i]
        if kind == wtcp.OPT_NOP:
            i += 1
            continue
        if kind == wtcp.OPT_EOL:
            break
        if i + 1 >= end:
            return -2, -1, False, -1
        length = pkt[i + 1]
        if length < 2 or i + length > end:
            return -2, -1, False, -1
        if kind == wtcp.OPT_MSS:
            if length != 4:
                return -2, -1, False, -1
            mss = (pkt[i + 2] << 8) | pkt[i + 3]
        elif kind == wtcp.OPT_WSCALE:
            if length != 3:
                return -2, -1, False, -1
            ws = pkt[i + 2]
        elif kind == wtcp.OPT_SACK_PERMITTED:
            if length != 2:
                return -2, -1, False, -1
            sack = True
        elif kind == wtcp.OPT_TIMESTAMPS:
            if length != 10:
                return -2, -1, False, -1
            tsval = ((pkt[i + 2] << 24) | (pkt[i + 3] << 16) | (pkt[i + 4] << 8)
                     | pkt[i + 5])
        elif kind == wtcp.OPT_SACK and (length < 10 or (length - 2) % 8):
            return -2, -1, False, -1
        i += length
    return mss, ws, sack, tsval


class CookieTap(FrameTap):
    """The tap: ``take`` answers a plain SYN (see the module's rules) and
    returns True, or returns False and leaves the frame to the stack."""

    __slots__ = ("counters", "host", "iface", "layer", "mac_hi", "mac_lo")

    def __init__(self, layer: TcpLayer, iface: Interface) -> None:
        self.layer = layer
        self.host = layer.host
        self.counters = layer.host.counters
        self.iface = iface
        self.mac_hi = int.from_bytes(iface.mac[:4], "big")
        self.mac_lo = int.from_bytes(iface.mac[4:6], "big")

    def take(self, buf: mmap.mmap, start: int, length: int, trusted: bool) -> bool:
        if length < _SYN_MIN:
            return False
        mac_hi: int
        mac_lo: int
        etype: int
        vihl: int
        total: int
        ff: int
        proto: int
        sport: int
        dport: int
        seq: int
        off: int
        flags: int
        (mac_hi, mac_lo, etype, vihl, total, ff, proto, sport, dport, seq, off,
         flags) = _SYN.unpack_from(buf, start)
        hl = (off >> 4) << 2
        if (flags & _SYN_ONLY != wtcp.SYN or mac_lo != self.mac_lo or mac_hi != self.mac_hi
                or etype != weth.ETHERTYPE_IPV4 or vihl != 0x45 or proto != wip.PROTO_TCP
                or ff & _FRAGMENT_BITS or total != 20 + hl or hl < 20
                or total > length - weth.HEADER_LEN):
            return False
        pkt = buf[start + _IP:start + _IP + total]
        src = pkt[12:16]
        if wip_net.MARTIAN_FIRST[src[0]] or src == self.iface.broadcast:
            return False  # the IPv4 layer drops it (RFC 1812 5.3.7)
        dst = pkt[16:20]
        layer = self.layer
        listener = layer.listeners.get((dst, dport))
        if listener is None:
            listener = layer.listeners.get((ANY, dport))
            if listener is None or dst not in self.host.local_addrs:
                return False
        if listener.closed:
            return False
        if (len(listener.accept_queue) >= listener.backlog
                or not cookies.cookie_now(listener, layer.syncookies)):
            return False
        if (layer.conns and (dst, dport, src, sport) in layer.conns) or (
                layer.tw.records and (dst, dport, src, sport) in layer.tw.records):
            return False
        host = self.host
        hop = host.routes.lookup(src, dst)
        if hop is None or hop.iface is not self.iface:
            return False
        now = host.now
        link_hdr = self.iface.arp.fresh_hdr(hop.addr, now)
        if link_hdr is None:
            return False
        # RFC 791 3.1 and RFC 9293 3.1: both checksums, as the layers would
        # (the kernel's mark covers the transport one only).
        if sum_span(pkt, 0, 20) or (not trusted and (
                hop.addr_sum + wip.PROTO_TCP + hl + sum_span(pkt, 20, total)) % 0xFFFF):
            return False
        peer_mss, peer_ws, peer_sack, peer_tsval = _syn_options(pkt, 40, 20 + hl)
        if peer_mss < 0:
            return False  # malformed: the stack counts it
        cfg = cookies.listener_settings(layer.config, listener)
        mss = min(cfg.mss, layer.path_mss(self.iface, src))
        iss, window, options = cookies.synack_fields(
            layer.cookie_secret, dst, dport, src, sport, seq, peer_mss, peer_ws, peer_sack,
            peer_tsval, cfg, mss, now)
        tlen = 20 + len(options)
        frame = bytearray(HEADROOM + tlen)
        wip.pack_framed_header_into(frame, link_hdr, cfg.tos, 20 + tlen,
                                    layer.ip.next_ident(src), wip.FLAG_DF, cfg.ttl,
                                    wip.PROTO_TCP, dst, src, hop.addr_sum)
        wtcp.pack_header_into(frame, HEADROOM, dst, src, dport, sport, iss, (seq + 1) & _M32,
                              _SYN_ACK, window, options, b"", addr_sum=hop.addr_sum)
        self.iface.txq.append(frame)
        listener.cookie_sent = now
        c = self.counters
        c.EthInFrames += 1
        c.IpInReceives += 1
        c.IpInDelivers += 1
        c.TcpInSegs += 1
        c.TcpExtTCPReqQFullDoCookies += 1  # (every cookie, as Linux's tcp_syn_flood_action)
        c.TcpExtSyncookiesSent += 1
        c.TcpOutSegs += 1
        c.IpOutRequests += 1
        return True


def attach(layer: TcpLayer, iface: Interface) -> bool:
    """Answer SYN floods on ``iface`` in its receive ring, where its device
    has one that takes a tap (AF_PACKET, TPACKET_V2) and sends plain frames
    (no virtio-net header); False (nothing done) elsewhere."""
    from ustack.link.packet import PacketDevice

    dev = iface.device
    if iface.gso or not isinstance(dev, PacketDevice):
        return False
    return dev.set_rx_tap(CookieTap(layer, iface))
