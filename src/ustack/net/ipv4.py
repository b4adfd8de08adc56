"""IPv4 input and output for a host (RFC 791, RFC 1122 3.2.1, 3.3).

Input validates the header (``wire.ipv4.parse``: version, lengths,
checksum), accepts datagrams for our addresses and broadcasts, reassembles
fragments and dispatches by protocol number.  A host does not forward:
anything else is counted as IpInAddrErrors and dropped.

Output writes the header into the headroom the transport left (bytes 14..34
of the frame buffer) with the source address and address sum of the next
hop (``route``), fragments datagrams larger than the interface MTU unless DF
is asked for, and fills bytes 0..14 with the neighbour's prebuilt Ethernet
header when its ARP entry is fresh; any other frame goes to
``ArpLayer.resolve`` (a refresh probe, or a wait for the resolution).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Final

from ustack.link.vnet import GsoFrame
from ustack.net.arp import ArpLayer
from ustack.net.host import RX_IP_BROADCAST, RX_LINK_BROADCAST, Host
from ustack.net.interface import HEADROOM, Interface
from ustack.net.pmtu import PathMtu
from ustack.net.reassembly import Reassembler
from ustack.net.route import NextHop
from ustack.net.sockaddr import ANY
from ustack.wire import icmp as wicmp
from ustack.wire import ipv4 as wip
from ustack.wire.checksum import sum_span
from ustack.wire.errors import ParseError


class ProtocolHandler:
    """A protocol above IPv4 (ICMP, UDP, TCP): what ``Ipv4Layer.input``
    delivers a datagram to, registered by its number in ``protocols``.

    A base class the layers extend, not a callable in a table: the compiled
    build then calls ``input`` directly (a native method call), where a bound
    method stored in a dict would go through a generic Python call.
    """

    __slots__ = ()

    def input(self, iface: Interface, src: bytes, dst: bytes, payload: bytes, pkt: bytes,
              rx: int) -> None:
        """Take a datagram from ``src`` to ``dst`` (our address or a
        broadcast).  ``pkt`` is the datagram as received (header first):
        what an ICMP error about it quotes, and where ``error_header`` finds
        the rest of the header.  ``rx`` holds the frame's properties
        (``net.host.RX_*``).  The hot path never builds a header object it
        would not use."""
        raise NotImplementedError


class ProtocolFront(ProtocolHandler):
    """A handler put in front of the one registered for ``proto`` while it
    is installed (``ustack flood``'s answers, stateless HTTP): it takes
    what is its own and hands the rest to ``previous``."""

    def __init__(self, ip: Ipv4Layer, proto: int) -> None:
        self.ip = ip
        self.proto = proto
        self.previous: ProtocolHandler | None = None

    def install(self) -> None:
        """Take ``proto`` from the IPv4 layer (until ``uninstall``)."""
        if self.previous is None:
            self.previous = self.ip.protocols.get(self.proto)
            self.ip.protocols[self.proto] = self

    def uninstall(self) -> None:
        if self.previous is not None:
            self.ip.protocols[self.proto] = self.previous
            self.previous = None


class CallbackProtocol(ProtocolHandler):
    """A protocol served by a plain function (a tool's or a test's), called
    with what ``ProtocolHandler.input`` gets."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[Interface, bytes, bytes, bytes, bytes, int], None]
                 ) -> None:
        self.callback = callback

    def input(self, iface: Interface, src: bytes, dst: bytes, payload: bytes, pkt: bytes,
              rx: int) -> None:
        self.callback(iface, src, dst, payload, pkt, rx)


# Told about an ICMP error that quotes one of our datagrams:
# (quoted header, quoted transport bytes, icmp type, icmp code, next-hop mtu).
ErrorHandler = Callable[[wip.Ipv4Header, bytes, int, int, int], None]

# Sends an ICMP error about a received datagram: (type, code, packet, rx).
ErrorSender = Callable[[int, int, bytes, int], None]

DEFAULT_TTL: Final = 64  # RFC 1700 / Linux ip_default_ttl
__all__ = ["DEFAULT_TTL", "MARTIAN_FIRST", "CallbackProtocol", "ErrorHandler", "ErrorSender",
           "Ipv4Layer", "ProtocolHandler", "error_header"]

_LIMITED_BROADCAST: Final = b"\xff\xff\xff\xff"
_FRAGMENT_BITS: Final = wip.FLAG_MF | wip.OFFSET_MASK


def error_header(pkt: bytes) -> wip.Ipv4Header | None:
    """The header of a datagram we are about to quote in an ICMP error.

    Tolerant like ``wire.icmp.quoted``: ``pkt`` may be a quote (header + 8
    bytes) whose total length field says more; None if not even a header.
    """
    if len(pkt) < 20 or pkt[0] >> 4 != 4 or len(pkt) < (pkt[0] & 15) << 2:
        return None
    vihl: int
    ff: int
    vihl, tos, total, ident, ff, ttl, proto, csum, src, dst = wip.HEADER.unpack_from(pkt)
    hl = (vihl & 15) << 2
    return wip.Ipv4Header(hl, tos, total, ident, ff & 0xE000, (ff & wip.OFFSET_MASK) << 3,
                          ttl, proto, csum, src, dst, bytes(pkt[20:hl]))


# RFC 1122 3.2.1.3: discard datagrams whose source is a broadcast (limited
# or directed), multicast (class D), class E, "this network" (0/8) or
# loopback (127/8) address.  The first octet decides all but the directed
# broadcast: a table of them, indexed by it (ICMP's error rules read it too).
MARTIAN_FIRST: Final = bytes([1 if b == 0 or b == 127 or b >= 224 else 0 for b in range(256)])


def _martian_source(src: bytes, iface: Interface) -> bool:
    return bool(MARTIAN_FIRST[src[0]]) or src == iface.broadcast


def _no_icmp(type_: int, code: int, pkt: bytes, rx: int) -> None:
    """Until an ICMP layer registers itself: no error is sent."""


# Identification counters (RFC 7739 5.3's hashed counters, as Linux's
# ip_idents): a table of them, each destination's chosen by a keyed hash.
_IDENT_SLOTS: Final = 2048


class Ipv4Layer:
    __slots__ = ("arp", "counters", "errors", "host", "icmp_error", "idents", "pmtu",
                 "protocols", "reasm")

    def __init__(self, host: Host, arp: ArpLayer) -> None:
        self.host = host
        # Read per datagram, so held directly (the host keeps it for its
        # lifetime); every method here uses this one.
        self.counters = host.counters
        self.arp = arp
        self.protocols: dict[int, ProtocolHandler] = {}
        self.errors: dict[int, ErrorHandler] = {}
        # ICMP sits above IPv4 (it sends through ``output``), so it registers
        # its send_error here, as the transports register their handlers.
        self.icmp_error: ErrorSender = _no_icmp
        self.reasm = Reassembler(host.counters, host.timers, self._reasm_timeout)
        # RFC 6864 4.1: the ID only has to be unique per (src, dst, proto)
        # for non-atomic datagrams.  One global counter would tell anyone who
        # pings us how many datagrams we sent to others (the idle scan, RFC
        # 7739 3); so each destination draws from one of ``_IDENT_SLOTS``
        # counters, each starting at random (``next_ident``).
        rnd = os.urandom(2 * _IDENT_SLOTS)
        self.idents: list[int] = [(rnd[2 * i] << 8) | rnd[2 * i + 1]
                                  for i in range(_IDENT_SLOTS)]
        # Path MTU estimates (RFC 1191), kept by the transports that check
        # the ICMP errors (``PathMtu.lower``) and read for new connections.
        self.pmtu = PathMtu()

    # -- input ------------------------------------------------------------

    def input(self, iface: Interface, pkt: bytes, rx: int) -> None:
        c = self.counters
        c.IpInReceives += 1
        # Fast path: the common datagram has no options and is not a fragment.
        # It is validated exactly as wire.ipv4.parse would (version, IHL,
        # total length, header checksum) without building a header object.
        # The fields are read byte by byte (RFC 791 3.1 offsets: total length
        # at 2, flags/fragment offset at 6, protocol at 9, addresses at 12
        # and 16): compiled, native integer reads, no tuple of boxed values.
        n = len(pkt)
        if n >= 20 and pkt[0] == 0x45:
            total = (pkt[2] << 8) | pkt[3]
            # RFC 1071: the header's words sum to 0xFFFF (0 modulo 0xFFFF).
            if (20 <= total <= n and not ((pkt[6] << 8) | pkt[7]) & _FRAGMENT_BITS
                    and not sum_span(pkt, 0, 20)):
                dst = pkt[16:20]
                src = pkt[12:16]
                if ((dst == iface.ip or dst in self.host.local_addrs)
                        and not MARTIAN_FIRST[src[0]] and src != iface.broadcast):
                    handler = self.protocols.get(pkt[9])
                    if handler is not None:
                        c.IpInDelivers += 1
                        handler.input(iface, src, dst, pkt[20:total], pkt, rx)
                        return
        self._input_slow(iface, pkt, rx)

    def input_link_broadcast(self, iface: Interface, pkt: bytes, rx: int) -> None:
        """A datagram that came in a link-layer broadcast frame.

        RFC 1122 3.2.2: no ICMP error may answer it, even when its IP
        destination is our unicast address (``RX_LINK_BROADCAST`` travels
        with it to whoever would send one).
        """
        self.counters.IpInReceives += 1
        self._input_slow(iface, pkt, rx | RX_LINK_BROADCAST)

    def _input_slow(self, iface: Interface, pkt: bytes, rx: int) -> None:
        """Everything the fast path does not take: options, fragments,
        broadcasts, unknown protocols and every kind of malformed header."""
        host = self.host
        c = self.counters
        try:
            h = wip.parse(pkt)
        except ParseError as e:
            c.IpInHdrErrors += 1
            c.drop(e.reason)
            return
        dst = h.dst
        if dst != iface.ip and dst not in host.local_addrs:
            if dst == _LIMITED_BROADCAST or dst == iface.broadcast:
                # Travels up with the datagram: no layer above works it out again.
                rx |= RX_IP_BROADCAST
            else:
                c.IpInAddrErrors += 1
                c.drop("ipv4_not_for_us")
                return
        if _martian_source(h.src, iface):
            c.IpInAddrErrors += 1
            c.drop("ipv4_martian_source")
            return
        if h.flags & wip.FLAG_MF or h.frag_offset:
            whole = self.reasm.add(h, pkt[h.header_len:h.total_length], host.now)
            if whole is None:
                return
            payload = whole
            # What an ICMP error about the reassembled datagram quotes: the
            # datagram as one unfragmented whole (RFC 792: header + 64 bits).
            pkt = wip.header_bytes(h.src, h.dst, h.proto, 20 + len(whole), ident=h.ident,
                                   flags=0, ttl=h.ttl, tos=h.tos) + whole[:8]
        else:
            payload = pkt[h.header_len:h.total_length]
        handler = self.protocols.get(h.proto)
        if handler is None:
            c.IpInUnknownProtos += 1
            c.drop("ipv4_unknown_protocol")
            # (Not about a broadcast: the ICMP layer declines by ``rx``.)
            self.icmp_error(wicmp.DEST_UNREACH, wicmp.PROTO_UNREACH, pkt, rx)
            return
        c.IpInDelivers += 1
        handler.input(iface, h.src, dst, payload, pkt, rx)

    def _reasm_timeout(self, quote: bytes) -> None:
        # RFC 1122 3.3.2 / RFC 792: time exceeded, code 1 (fragment
        # reassembly time exceeded), quoting the first fragment.
        self.icmp_error(wicmp.TIME_EXCEEDED, wicmp.REASM_TIME_EXCEEDED, quote, 0)

    # -- output -----------------------------------------------------------

    def next_ident(self, dst: bytes) -> int:
        """The Identification for the next datagram to ``dst``: its counter
        is the one ``hash(dst)`` picks -- Python's hash of bytes is SipHash
        with a key drawn at random per process (the secret RFC 7739 5.3's
        function needs), and a bytes object keeps its hash, so a
        connection's address is hashed once."""
        i = hash(dst) & (_IDENT_SLOTS - 1)
        ident = (self.idents[i] + 1) & 0xFFFF
        self.idents[i] = ident
        return ident

    def route(self, dst: bytes, src: bytes = ANY) -> NextHop:
        """The next hop for ``dst`` from ``src`` (ANY: the outgoing
        interface's address), or OSError(ENETUNREACH) like the kernel."""
        hop = self.host.routes.lookup(dst, src)
        if hop is None:
            self.counters.IpOutNoRoutes += 1
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        return hop

    def output_with_options(self, hop: NextHop, dst: bytes, proto: int, body: bytes,
                            options: bytes, ttl: int = DEFAULT_TTL) -> bool:
        """Send ``body`` (a whole transport message) with the IPv4 ``options``
        (padded already), unfragmented: False, nothing sent, when it would
        not fit the MTU (the caller sends it without them).  Rare (ICMP
        echo replies with Record Route or Timestamp), so not the hot path's
        preallocated headroom."""
        iface = hop.iface
        hl = 20 + len(options)
        total = hl + len(body)
        if total > iface.mtu:
            return False
        self.counters.IpOutRequests += 1
        ident = self.next_ident(dst)
        buf = bytearray(14 + total)
        buf[14 + hl:] = body
        wip.pack_header_into(buf, 14, src=hop.src, dst=dst, proto=proto, total_length=total,
                             ident=ident, ttl=ttl, options=options)
        hdr = iface.arp.fresh_hdr(hop.addr, self.host.now)
        if hdr is not None:
            buf[0:14] = hdr
            iface.txq.append(buf)
        else:
            self.arp.resolve(iface, hop.addr, buf)
        return True

    def output(self, hop: NextHop, dst: bytes, proto: int, buf: bytearray,
               ttl: int = DEFAULT_TTL, tos: int = 0, df: bool = False) -> None:
        """Send the transport segment at ``buf[HEADROOM:]`` to ``dst`` via ``hop``.

        The one IPv4 output path: every transport and ICMP hand their
        frames here, and here the header is written (``wire.ipv4``), the
        datagram fragmented when it exceeds the MTU, and the frame handed
        to the neighbour.  The source address and the address sum are the
        hop's (``route``: the sender's bound address or the interface's).
        A datagram over the MTU with ``df`` (TCP's, which sizes its segments
        to the path MTU) is dropped, counted (IpFragFails,
        DropIpv4DfTooBig): a sizing slip loses one segment, which TCP
        resends, and never takes the stack down with an exception.
        """
        iface = hop.iface
        total = len(buf) - 14
        self.counters.IpOutRequests += 1
        # (next_ident, inline: once per datagram.)
        i = hash(dst) & (_IDENT_SLOTS - 1)
        ident = (self.idents[i] + 1) & 0xFFFF
        self.idents[i] = ident
        if total <= iface.mtu or type(buf) is GsoFrame:
            # (A GSO super-frame is cut by the device, not fragmented here.)
            ff = wip.FLAG_DF if df else 0
            # A neighbour in the cache and not due for a refresh: the link
            # header is its prebuilt one, written with the IPv4 header in one
            # go; anything else is ARP's, which fills the link header itself.
            hdr = iface.arp.fresh_hdr(hop.addr, self.host.now)
            if hdr is not None:
                wip.pack_framed_header_into(buf, hdr, tos, total, ident, ff, ttl, proto,
                                            hop.src, dst, hop.addr_sum)
                iface.txq.append(buf)
            else:
                wip.pack_plain_header_into(buf, 14, tos, total, ident, ff, ttl, proto, hop.src,
                                           dst, hop.addr_sum)
                self.arp.resolve(iface, hop.addr, buf)
            return
        c = self.counters
        if df:
            c.IpFragFails += 1
            c.drop("ipv4_df_too_big")
            return
        # RFC 791 fragmentation: every fragment but the last carries a
        # multiple of 8 data bytes; all copy the header (we send no options).
        payload = memoryview(buf)[HEADROOM:]
        step = (iface.mtu - 20) & ~7
        n = len(payload)
        off = 0
        # One neighbour for every fragment: its header when fresh, else ARP.
        frag_hdr = iface.arp.fresh_hdr(hop.addr, self.host.now)
        txq = iface.txq
        while off < n:
            chunk = payload[off:off + step]
            more = off + step < n
            frag = bytearray(HEADROOM + len(chunk))
            frag[HEADROOM:] = chunk
            wip.pack_header_into(frag, 14, src=hop.src, dst=dst, proto=proto,
                                 total_length=20 + len(chunk), ident=ident,
                                 flags=wip.FLAG_MF if more else 0, frag_offset=off,
                                 ttl=ttl, tos=tos)
            if frag_hdr is not None:
                frag[0:14] = frag_hdr
                txq.append(frag)
            else:
                self.arp.resolve(iface, hop.addr, frag)
            c.IpFragCreates += 1
            off += step
        c.IpFragOKs += 1
