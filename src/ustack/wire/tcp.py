"""The TCP header and options (RFC 9293 3.1, RFC 7323, RFC 2018).

``parse`` does not look at options: the header keeps them raw and
``parse_options`` decodes them only when the caller needs them (a segment
without options, header_len == 20, costs one unpack).
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from ustack.wire.checksum import fold, sum_mod
from ustack.wire.errors import ParseError

HEADER: Final = struct.Struct("!HHIIBBHHH")
HEADER_LEN: Final = 20
CHECKSUM_OFFSET: Final = 16  # where the checksum field sits in the header
MAX_OPTIONS_LEN: Final = 40
PROTO_TCP: Final = 6

FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10
URG: Final = 0x20
ECE: Final = 0x40
CWR: Final = 0x80

# Option kinds (IANA "TCP Option Kind Numbers").
OPT_EOL: Final = 0
OPT_NOP: Final = 1
OPT_MSS: Final = 2
OPT_WSCALE: Final = 3
OPT_SACK_PERMITTED: Final = 4
OPT_SACK: Final = 5
OPT_TIMESTAMPS: Final = 8

_TS: Final = struct.Struct("!II")
_MSS: Final = struct.Struct("!BBH")
_WS: Final = struct.Struct("!BBBB")
_SACK_BLOCK: Final = struct.Struct("!II")
# RFC 7323 Appendix A: the recommended layout NOP NOP TS, which is what
# Linux and BSD send on every established segment; parsed without a loop.
TS_ALIGNED: Final = b"\x01\x01\x08\x0a"
_TS_OPTION: Final = struct.Struct("!4sII")
_CSUM_URG: Final = struct.Struct("!HH")
# (TSval, TSecr) of options in TS_ALIGNED layout at ``offset`` of a buffer:
# the bound method itself, public, so a caller pays one call, not two.
unpack_ts: Final = _TS.unpack_from

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


NO_OPTIONS: Final = TcpOptions()


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
    addr_sum = int.from_bytes(src + dst, "big") if src is not None and dst is not None else -1
    sport, dport, seq, ack, hl, flags, window = parse_fields(data, addr_sum)
    # The two fields the receive path's tuple leaves out, read again here
    # (4 bytes) rather than widen parse_fields for every segment received.
    csum: int
    urgent: int
    csum, urgent = _CSUM_URG.unpack_from(data, 16)
    return TcpHeader(sport, dport, seq, ack, hl, flags, window, csum, urgent,
                     bytes(data[20:hl]) if hl > 20 else b"")


def parse_fields(data: bytes | bytearray | memoryview, addr_sum: int
                 ) -> tuple[int, int, int, int, int, int, int]:
    """``parse`` for the receive path: (sport, dport, seq, ack, header length,
    flags, window), with no header object and the options left in ``data``.

    ``addr_sum`` is the source and destination addresses read as one
    integer (what the route cache keeps; any value congruent to it modulo
    0xFFFF will do, RFC 1071 2(B)), or -1 not to verify the checksum
    (a frame the kernel vouched for).  Raises ParseError as ``parse`` does.
    """
    n = len(data)
    if n < 20:
        raise ParseError("tcp_short", f"{n} bytes")
    # Typed: struct gives Any, and native ints make the arithmetic below C.
    sport: int
    dport: int
    seq: int
    ack: int
    off: int
    flags: int
    window: int
    csum: int
    sport, dport, seq, ack, off, flags, window, csum, _ = HEADER.unpack_from(data, 0)
    hl = (off >> 4) << 2
    if hl < 20:
        raise ParseError("tcp_header_len", f"data offset {hl >> 2}")
    if hl > n:
        raise ParseError("tcp_short", f"{n} bytes < data offset {hl}")
    # RFC 9293 3.1: the one's-complement sum over the pseudo-header and the
    # segment must be all ones, i.e. 0 modulo 0xFFFF (never the empty sum:
    # the pseudo-header holds protocol 6).  addr_sum is reduced first: 8
    # address bytes make an int past mypyc's 63-bit native range, and every
    # sum with it would be a long-integer operation.
    if addr_sum >= 0 and (sum_mod(data) + PROTO_TCP + n + addr_sum % 0xFFFF) % 0xFFFF:
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
    if n == 12 and raw[:4] == TS_ALIGNED:
        val: int
        ecr: int
        val, ecr = _TS.unpack_from(raw, 4)
        # tuple.__new__ skips the NamedTuple's Python-level __new__ (which
        # parses its arguments): about 100 ns less per segment, compiled.
        return tuple.__new__(TcpOptions, (None, None, False, (), val, ecr, ()))
    if not isinstance(raw, bytes):
        raw = bytes(raw)  # at most 40 bytes; indexing bytes compiles to C
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
            ts_val, ts_ecr = _TS.unpack_from(raw, i + 2)
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
    return tuple.__new__(
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
        head = b"\x04\x02\x08\x0a" if sack_permitted else TS_ALIGNED
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
    keeps it (the route cache does, per source and destination), or any
    value congruent to it modulo 0xFFFF.  (None,
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
        addr_sum = int.from_bytes(src + dst, "big")
    # The pseudo-header (RFC 9293 3.1): addresses, protocol, segment length.
    # The addresses' sum reduced first (congruent, RFC 1071 2(B)): as 8 bytes
    # it is past mypyc's 63-bit native ints, and each of the sums below
    # would be a long-integer operation.
    plen = len(payload)
    pseudo = addr_sum % 0xFFFF + PROTO_TCP + hl + plen
    if partial:
        csum = fold(pseudo)
    elif checksum:
        # The header summed from the field values (a 32-bit field is its two
        # 16-bit words modulo 0xFFFF, RFC 1071 2(B)), so it is written once.
        s = pseudo + sport + dport + seq + ack + (hl << 10) + flags + window + urgent
        if olen:
            # sum_mod, not int.from_bytes: up to 40 bytes would make s a
            # long integer (compiled: every sum after it generic).
            s += sum_mod(options)
        if payload_sum is not None:
            s += payload_sum
        elif plen:
            s += sum_mod(payload)
        r = s % 0xFFFF
        csum = 0xFFFF - r if r else 0
    else:
        csum = 0
    HEADER.pack_into(buf, offset, sport, dport, seq, ack, hl << 2, flags, window, csum, urgent)
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
