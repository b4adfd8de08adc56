"""The TCP header and options (RFC 9293 3.1, RFC 7323, RFC 2018).

``parse`` does not look at options: the header keeps them raw and
``parse_options`` decodes them only when the caller needs them (a segment
without options, header_len == 20, costs one unpack).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ustack.wire.checksum import fold, sum_mod
from ustack.wire.errors import ParseError

HEADER = struct.Struct("!HHIIBBHHH")
HEADER_LEN = 20
CHECKSUM_OFFSET = 16  # where the checksum field sits in the header
MAX_OPTIONS_LEN = 40
PROTO_TCP = 6

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

# Option kinds (IANA "TCP Option Kind Numbers").
OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMPS = 8

_unpack_from = HEADER.unpack_from
_pack_into = HEADER.pack_into
_pack = HEADER.pack
_from_bytes = int.from_bytes
_tuple_new = tuple.__new__
_TS = struct.Struct("!II")
_ts_unpack_from = _TS.unpack_from
_MSS = struct.Struct("!BBH")
_WS = struct.Struct("!BBBB")
_SACK_BLOCK = struct.Struct("!II")
# RFC 7323 Appendix A: the recommended layout NOP NOP TS, which is what
# Linux and BSD send on every established segment; parsed without a loop.
TS_ALIGNED = b"\x01\x01\x08\x0a"
_TS_ALIGNED = TS_ALIGNED
_TS_OPTION = struct.Struct("!4sII")
_CSUM_URG = struct.Struct("!HH")
# (TSval, TSecr) of options in TS_ALIGNED layout at ``offset`` of a buffer.
unpack_ts = _TS.unpack_from

__all__ = [
    "ACK",
    "CWR",
    "ECE",
    "FIN",
    "HEADER",
    "HEADER_LEN",
    "NO_OPTIONS",
    "PSH",
    "RST",
    "SYN",
    "TS_ALIGNED",
    "URG",
    "TcpHeader",
    "TcpOptions",
    "build",
    "build_options",
    "pack_header_into",
    "parse",
    "parse_fields",
    "parse_options",
    "ts_option",
    "unpack_ts",
]


class TcpOptions(NamedTuple):
    mss: int | None = None
    wscale: int | None = None
    """The shift count as received; RFC 7323 2.3 caps its use at 14 (the caller's job)."""
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    """(left edge, right edge) pairs, RFC 2018 3."""
    ts_val: int | None = None
    ts_ecr: int | None = None
    unknown: tuple[tuple[int, bytes], ...] = ()
    """Options of other kinds, as (kind, value bytes without kind/length)."""


NO_OPTIONS = TcpOptions()


class TcpHeader(NamedTuple):
    sport: int
    dport: int
    seq: int
    ack: int
    header_len: int
    """Bytes (data offset * 4); the payload starts here."""
    flags: int
    """The 8 flag bits CWR..FIN."""
    window: int
    """The raw 16-bit field, not scaled."""
    checksum: int
    urgent: int
    options_raw: bytes
    """``header_len - 20`` option bytes, decode with ``parse_options``."""


def parse(
    data: bytes | bytearray | memoryview, src: bytes | None = None, dst: bytes | None = None
) -> TcpHeader:
    """Parse a whole segment (header + payload, IP padding removed).

    The checksum is verified when both ``src`` and ``dst`` are given.
    Reasons: tcp_short (under 20 bytes, or shorter than the data offset
    says), tcp_header_len (data offset < 5), tcp_checksum.
    """
    addr_sum = _from_bytes(src + dst, "big") if src is not None and dst is not None else -1
    sport, dport, seq, ack, hl, flags, window = parse_fields(data, addr_sum)
    # The two fields the receive path's tuple leaves out, read again here
    # (4 bytes) rather than widen parse_fields for every segment received.
    csum, urgent = _CSUM_URG.unpack_from(data, 16)
    return _tuple_new(
        TcpHeader,
        (
            sport, dport, seq, ack, hl, flags, window, csum, urgent,
            bytes(data[20:hl]) if hl > 20 else b"",
        ),
    )


def parse_fields(data: bytes | bytearray | memoryview, addr_sum: int
                 ) -> tuple[int, int, int, int, int, int, int]:
    """``parse`` for the receive path: (sport, dport, seq, ack, header length,
    flags, window), with no header object and the options left in ``data``.

    ``addr_sum`` is the source and destination addresses read as one
    integer (what the route cache keeps), or -1 not to verify the checksum
    (a frame the kernel vouched for).  Raises ParseError as ``parse`` does.
    """
    n = len(data)
    if n < 20:
        raise ParseError("tcp_short", f"{n} bytes")
    sport, dport, seq, ack, off, flags, window, csum, _ = _unpack_from(data, 0)
    hl = (off >> 4) << 2
    if hl < 20:
        raise ParseError("tcp_header_len", f"data offset {hl >> 2}")
    if hl > n:
        raise ParseError("tcp_short", f"{n} bytes < data offset {hl}")
    # RFC 9293 3.1: the one's-complement sum over the pseudo-header and the
    # segment must be all ones, i.e. 0 modulo 0xFFFF (never the empty sum:
    # the pseudo-header holds protocol 6).
    if addr_sum >= 0 and (sum_mod(data) + addr_sum + PROTO_TCP + n) % 0xFFFF:
        raise ParseError("tcp_checksum", f"{csum:#06x}")
    return sport, dport, seq, ack, hl, flags, window


def parse_options(raw: bytes | bytearray | memoryview) -> TcpOptions:
    """Decode the option bytes of a header (RFC 9293 3.2).

    Raises ParseError("tcp_option") for a length below 2 or past the end,
    a wrong fixed length for MSS (4), window scale (3), SACK-permitted (2)
    or timestamps (10), and a SACK option whose length is not 2 + 8k with
    k >= 1.  A later option of the same kind overrides an earlier one.
    """
    n = len(raw)
    if n == 12 and raw[:4] == _TS_ALIGNED:
        val, ecr = _ts_unpack_from(raw, 4)
        return _tuple_new(TcpOptions, (None, None, False, (), val, ecr, ()))
    mss: int | None = None
    wscale: int | None = None
    sack_permitted = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    ts_val: int | None = None
    ts_ecr: int | None = None
    unknown: list[tuple[int, bytes]] | None = None
    i = 0
    while i < n:
        kind = raw[i]
        if kind == OPT_NOP:
            i += 1
            continue
        if kind == OPT_EOL:
            break
        if i + 1 >= n:
            raise ParseError("tcp_option", f"kind {kind} without length at {i}")
        length = raw[i + 1]
        if length < 2 or i + length > n:
            raise ParseError("tcp_option", f"kind {kind} length {length} at {i} of {n}")
        if kind == OPT_TIMESTAMPS:
            if length != 10:
                raise ParseError("tcp_option", f"timestamps length {length}")
            ts_val, ts_ecr = _ts_unpack_from(raw, i + 2)
        elif kind == OPT_MSS:
            if length != 4:
                raise ParseError("tcp_option", f"mss length {length}")
            mss = (raw[i + 2] << 8) | raw[i + 3]
        elif kind == OPT_WSCALE:
            if length != 3:
                raise ParseError("tcp_option", f"window scale length {length}")
            wscale = raw[i + 2]
        elif kind == OPT_SACK_PERMITTED:
            if length != 2:
                raise ParseError("tcp_option", f"sack-permitted length {length}")
            sack_permitted = True
        elif kind == OPT_SACK:
            if length < 10 or (length - 2) & 7:
                raise ParseError("tcp_option", f"sack length {length}")
            sack_blocks = tuple(
                _SACK_BLOCK.unpack_from(raw, j) for j in range(i + 2, i + length, 8)
            )
        else:
            if unknown is None:
                unknown = []
            unknown.append((kind, bytes(raw[i + 2 : i + length])))
        i += length
    return _tuple_new(
        TcpOptions,
        (mss, wscale, sack_permitted, sack_blocks, ts_val, ts_ecr,
         tuple(unknown) if unknown else ()),
    )


def build_options(
    mss: int | None = None,
    wscale: int | None = None,
    sack_permitted: bool = False,
    sack_blocks: tuple[tuple[int, int], ...] | list[tuple[int, int]] = (),
    ts: tuple[int, int] | None = None,
) -> bytes:
    """Option bytes in Linux's layout (``tcp_options_write``), 32-bit aligned.

    SYN: MSS, SACK-permitted + timestamps packed into 12 bytes, NOP + window
    scale; established: NOP NOP timestamps, NOP NOP SACK.  Every piece is a
    multiple of 4 bytes, so no trailing padding is needed.  ValueError when
    the result exceeds 40 bytes (e.g. four SACK blocks with timestamps).
    """
    parts: list[bytes] = []
    if mss is not None:
        parts.append(_MSS.pack(OPT_MSS, 4, mss))
    if ts is not None:
        # SACK-permitted takes the place of the two NOPs before timestamps.
        head = b"\x04\x02\x08\x0a" if sack_permitted else _TS_ALIGNED
        parts.append(head + _TS.pack(ts[0], ts[1]))
    elif sack_permitted:
        parts.append(b"\x01\x01\x04\x02")
    if wscale is not None:
        parts.append(_WS.pack(OPT_NOP, OPT_WSCALE, 3, wscale))
    if sack_blocks:
        parts.append(bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(sack_blocks))))
        parts.extend(_SACK_BLOCK.pack(left, right) for left, right in sack_blocks)
    out = b"".join(parts)
    if len(out) > MAX_OPTIONS_LEN:
        raise ValueError(f"TCP options need {len(out)} bytes, at most 40 fit")
    return out


def ts_option(ts_val: int, ts_ecr: int) -> bytes:
    """NOP NOP timestamps (RFC 7323, TS_ALIGNED layout): 12 option bytes."""
    return _TS_OPTION.pack(TS_ALIGNED, ts_val, ts_ecr)


def pack_header_into(
    buf: bytearray | memoryview,
    offset: int,
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    options: bytes = b"",
    payload: bytes | bytearray | memoryview = b"",
    urgent: int = 0,
    checksum: bool = True,
    *,
    payload_sum: int | None = None,
    addr_sum: int | None = None,
    partial: bool = False,
) -> int:
    """Write header + options at ``buf[offset:]``; return the header length.

    The payload is only read for the checksum; the caller places it after
    the header.  ``options`` must be a multiple of 4 bytes (``build_options``
    output).  ``checksum=False`` leaves the field 0.  ``partial=True``
    writes what a device finishing the checksum expects (checksum offload,
    the kernel's CHECKSUM_PARTIAL): the folded pseudo-header sum, not
    complemented.  ``payload_sum``, if given, is a precomputed
    ``checksum.sum_mod(payload)`` used instead of summing the payload
    again (RFC 1071 2(B): sums compose); ``payload`` still gives the length.
    ``addr_sum`` is ``src + dst`` read as one integer, when the caller
    keeps it (the route cache does, per source and destination).  (None,
    not ``wire.udp``'s -1, for "not given": CPython tests ``is None`` in
    one instruction, and this runs for every segment sent.)
    """
    olen = len(options)
    if olen:
        if olen & 3 or olen > MAX_OPTIONS_LEN:
            raise ValueError(f"TCP options must be a multiple of 4 up to 40 bytes, got {olen}")
        buf[offset + 20 : offset + 20 + olen] = options
    hl = 20 + olen
    if addr_sum is None:
        addr_sum = _from_bytes(src + dst, "big")
    # The pseudo-header (RFC 9293 3.1): addresses, protocol, segment length.
    pseudo = addr_sum + PROTO_TCP + hl + len(payload)
    if partial:
        csum = fold(pseudo)
    elif checksum:
        # The header summed from the field values (a 32-bit field is its two
        # 16-bit words modulo 0xFFFF, RFC 1071 2(B)), so it is written once.
        s = pseudo + sport + dport + seq + ack + (hl << 10) + flags + window + urgent
        if olen:
            s += _from_bytes(options, "big")
        if payload_sum is not None:
            s += payload_sum
        elif payload:
            s += sum_mod(payload)
        r = s % 0xFFFF
        csum = 0xFFFF - r if r else 0
    else:
        csum = 0
    _pack_into(buf, offset, sport, dport, seq, ack, hl << 2, flags, window, csum, urgent)
    return hl


def build(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    options: bytes = b"",
    payload: bytes | bytearray | memoryview = b"",
    urgent: int = 0,
    checksum: bool = True,
    *,
    payload_sum: int | None = None,
) -> bytes:
    """A whole segment: header + options + payload, checksummed unless told not to."""
    buf = bytearray(20 + len(options) + len(payload))
    hl = pack_header_into(buf, 0, src, dst, sport, dport, seq, ack, flags, window, options,
                          payload, urgent, checksum, payload_sum=payload_sum)
    buf[hl:] = payload
    return bytes(buf)
