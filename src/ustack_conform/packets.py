"""Frames for the conformance runner: what the script's peer sends, what the stack sent.

The runner plays the remote end of an in-memory Ethernet link.  Inbound
script lines become complete Ethernet/IPv4/TCP (or ICMP) frames here, with
every number already mapped into sequence space by the runner; outbound
frames are decoded into ``Sent`` records the runner compares with the
script.  Both directions are written with their own ``struct`` layouts
rather than ``ustack.wire``, so that the frame the stack is judged by is
not decoded by the code that encoded it.  Only the checksum arithmetic
(RFC 1071, tested against scapy in tests/unit/test_wire_checksum.py) is
shared.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import NamedTuple

from ustack.wire.checksum import checksum
from ustack_conform.script import TcpOptionSpec

__all__ = [
    "Endpoints",
    "Sent",
    "encode_options",
    "icmp_frame",
    "parse_frame",
    "parse_options",
    "quoted_tcp_header",
    "tcp_frame",
]

_ETH = struct.Struct("!6s6sH")
_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_ICMP = struct.Struct("!BBHI")
_PSEUDO = struct.Struct("!4s4sBBH")
_ETH_IPV4 = 0x0800
_PROTO_ICMP = 1
_PROTO_TCP = 6
_MASK = 0xFFFFFFFF
MAX_OPTIONS = 40  # RFC 9293 3.1: the data offset field allows 60-byte headers

# Option kinds (IANA "TCP Option Kind Numbers").
_EOL, _NOP, _MSS, _WS, _SACK_OK, _SACK, _TS, _MD5, _FO = 0, 1, 2, 3, 4, 5, 8, 19, 34


class Endpoints(NamedTuple):
    """The two ends of the link: the stack under test and the script's peer."""

    stack_mac: bytes
    peer_mac: bytes
    stack_ip: bytes
    peer_ip: bytes


def encode_options(specs: Sequence[TcpOptionSpec], sack_edge: Callable[[int], int],
                   ts_ecr: Callable[[int], int]) -> bytes:
    """The option bytes of an inbound packet line, in the order written.

    ``sack_edge`` maps a SACK block edge as written (relative to the
    stack's ISN) into sequence space; ``ts_ecr`` maps a timestamp echo
    reply.  The list is padded with EOL to a multiple of four bytes (RFC
    9293 3.1: the header ends on a 32-bit boundary).  Raises ValueError
    when the options do not fit in 40 bytes or a value is out of range.
    """
    out = bytearray()
    for o in specs:
        k = o.kind
        if k == "eol":
            out.append(_EOL)
        elif k == "nop":
            out.append(_NOP)
        elif k == "mss":
            out += struct.pack("!BBH", _MSS, 4, o.value or 0)
        elif k == "wscale":
            out += struct.pack("!BBB", _WS, 3, o.value or 0)
        elif k == "sackOK":
            out += bytes((_SACK_OK, 2))
        elif k == "sack":
            out += bytes((_SACK, 2 + 8 * len(o.blocks)))
            for left, right in o.blocks:
                out += struct.pack("!II", sack_edge(left), sack_edge(right))
        elif k == "TS":
            out += struct.pack("!BBII", _TS, 10, (o.value or 0) & _MASK, ts_ecr(o.ecr or 0))
        elif k == "md5":
            # RFC 2385: a 16-byte digest.  The runner has no key to sign with;
            # the zero digest makes a stack without TCP-MD5 see the option
            # and one with it reject the segment.
            out += bytes((_MD5, 18)) + bytes(16)
        elif k == "FO":
            cookie = _hex_bytes(o.text or "")
            out += bytes((_FO, 2 + len(cookie))) + cookie
        else:
            raise ValueError(f"unknown TCP option {k!r}")
    if len(out) % 4:
        out += bytes(4 - len(out) % 4)
    if len(out) > MAX_OPTIONS:
        raise ValueError(f"TCP options take {len(out)} bytes, more than {MAX_OPTIONS}")
    return bytes(out)


def _hex_bytes(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


def _ipv4(ep: Endpoints, proto: int, body: bytes, ttl: int, tos: int, ident: int,
          src: bytes | None = None, dst: bytes | None = None) -> bytes:
    s = ep.peer_ip if src is None else src
    d = ep.stack_ip if dst is None else dst
    hdr = bytearray(_IP.pack(0x45, tos, 20 + len(body), ident, 0, ttl, proto, 0, s, d))
    c = checksum(hdr)
    hdr[10], hdr[11] = c >> 8, c & 0xFF
    return bytes(hdr) + body


def tcp_frame(ep: Endpoints, sport: int, dport: int, seq: int, ack: int, flags: int, win: int,
              options: bytes, payload: bytes, *, ttl: int = 64, tos: int = 0,
              ident: int = 0) -> bytes:
    """A complete Ethernet frame holding one TCP segment from the peer to the stack."""
    hl = 20 + len(options)
    seg = bytearray(_TCP.pack(sport, dport, seq & _MASK, ack & _MASK, (hl // 4) << 4,
                              flags & 0xFF, win & 0xFFFF, 0, 0))
    seg += options
    seg += payload
    pseudo = _PSEUDO.pack(ep.peer_ip, ep.stack_ip, 0, _PROTO_TCP, len(seg))
    c = checksum(pseudo + seg)
    seg[16], seg[17] = c >> 8, c & 0xFF
    return (_ETH.pack(ep.stack_mac, ep.peer_mac, _ETH_IPV4)
            + _ipv4(ep, _PROTO_TCP, bytes(seg), ttl, tos, ident))


def icmp_frame(ep: Endpoints, type_: int, code: int, rest: int, quoted_tcp: bytes, *,
               ident: int = 0) -> bytes:
    """An ICMP error from the peer about a segment the stack sent (RFC 792).

    The error quotes the stack's IPv4 header (stack -> peer) and the first
    eight bytes of its TCP header (``quoted_tcp``): ports and sequence
    number, all RFC 792 promises.
    """
    quote = _ipv4(ep, _PROTO_TCP, quoted_tcp, 64, 0, 0, src=ep.stack_ip, dst=ep.peer_ip)
    body = bytearray(_ICMP.pack(type_, code, 0, rest & _MASK)) + quote
    c = checksum(body)
    body[2], body[3] = c >> 8, c & 0xFF
    return (_ETH.pack(ep.stack_mac, ep.peer_mac, _ETH_IPV4)
            + _ipv4(ep, _PROTO_ICMP, bytes(body), 64, 0, ident))


def quoted_tcp_header(sport: int, dport: int, seq: int) -> bytes:
    """The first eight bytes of a TCP header, as an ICMP error quotes them."""
    return struct.pack("!HHI", sport, dport, seq & _MASK)


class Sent(NamedTuple):
    """One IPv4 packet the stack sent, decoded; ``t`` is when it left the stack.

    For TCP, ``options`` is the list of (kind, value bytes) in wire order
    (NOP and EOL included, value empty).  For ICMP (``proto`` 1) the TCP
    fields are zero and ``icmp_type``/``icmp_code`` are set.
    """

    t: float
    proto: int
    src: bytes
    dst: bytes
    ttl: int
    tos: int
    sport: int = 0
    dport: int = 0
    seq: int = 0
    ack: int = 0
    flags: int = 0
    win: int = 0
    options: tuple[tuple[int, bytes], ...] = ()
    payload_len: int = 0
    icmp_type: int = 0
    icmp_code: int = 0
    checksum_ok: bool = True


def parse_options(raw: bytes) -> tuple[tuple[int, bytes], ...] | None:
    """(kind, value) pairs in order, or None when the list is malformed."""
    out: list[tuple[int, bytes]] = []
    i, n = 0, len(raw)
    while i < n:
        kind = raw[i]
        if kind == _EOL:
            out.append((_EOL, b""))
            break  # RFC 9293 3.1: the rest is padding
        if kind == _NOP:
            out.append((_NOP, b""))
            i += 1
            continue
        if i + 1 >= n or raw[i + 1] < 2 or i + raw[i + 1] > n:
            return None
        length = raw[i + 1]
        out.append((kind, raw[i + 2:i + length]))
        i += length
    return tuple(out)


def parse_frame(frame: bytes, t: float) -> Sent | None:
    """Decode a frame the stack sent; None for anything but IPv4 TCP/ICMP (ARP...)."""
    if len(frame) < 14 + 20:
        return None
    _dst, _src, etype = _ETH.unpack_from(frame, 0)
    if etype != _ETH_IPV4:
        return None
    vihl, tos, total, _ident, _ff, ttl, proto, _c, src, dst = _IP.unpack_from(frame, 14)
    ihl = (vihl & 15) * 4
    if vihl >> 4 != 4 or ihl < 20 or 14 + total > len(frame) or total < ihl:
        return None
    ip = frame[14:14 + total]
    body = ip[ihl:]
    ok = checksum(ip[:ihl]) == 0
    if proto == _PROTO_TCP and len(body) >= 20:
        sport, dport, seq, ack, off, flags, win, _csum, _urg = _TCP.unpack_from(body, 0)
        hl = (off >> 4) * 4
        if hl < 20 or hl > len(body):
            return None
        opts = parse_options(body[20:hl])
        pseudo = _PSEUDO.pack(src, dst, 0, _PROTO_TCP, len(body))
        ok = ok and checksum(pseudo + body) == 0
        return Sent(t, proto, src, dst, ttl, tos, sport, dport, seq, ack, flags, win,
                    opts if opts is not None else ((255, b"malformed"),),
                    len(body) - hl, checksum_ok=ok)
    if proto == _PROTO_ICMP and len(body) >= 8:
        ok = ok and checksum(body) == 0
        return Sent(t, proto, src, dst, ttl, tos, icmp_type=body[0], icmp_code=body[1],
                    checksum_ok=ok)
    return None
