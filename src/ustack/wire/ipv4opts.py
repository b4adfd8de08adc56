"""IPv4 options a host updates: Record Route and Timestamp (RFC 791 3.1).

What an echo reply carries back (RFC 1122 3.2.2.6: a Record Route or
Timestamp option of an echo request SHOULD be updated to include this host
and returned in the reply, so the route recorded is the whole round trip).
Everything else in the option list is walked over and left out of the reply.

Formats (RFC 791): Record Route is type 7, length, pointer (the 1-based
octet of the option where the next address goes, at least 4), then the
address slots; full when the pointer exceeds the length.  Timestamp is type
68, length, pointer (at least 5), overflow (high 4 bits: hosts that could
not record, the area being full) and flag (low 4 bits: 0 timestamps only,
1 address and timestamp, 3 timestamps at prespecified addresses), then the
slots.  A malformed option raises ``ParseError`` (Linux sends a parameter
problem for those; a host may as well drop the datagram).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ustack.wire.errors import ParseError

OPT_EOL: Final = 0
OPT_NOP: Final = 1
OPT_RR: Final = 7
OPT_TS: Final = 68
TS_ONLY: Final = 0
TS_AND_ADDR: Final = 1
TS_PRESPEC: Final = 3

__all__ = ["OPT_EOL", "OPT_NOP", "OPT_RR", "OPT_TS", "TS_AND_ADDR", "TS_ONLY", "TS_PRESPEC",
           "echo_options"]


def _record_route(opt: bytearray, addr: bytes) -> None:
    n = len(opt)
    ptr = opt[2]
    if ptr < 4:
        raise ParseError("ipv4_option_pointer", f"record route pointer {ptr}")
    if ptr > n:
        return  # full: RFC 791 says the datagram goes on unrecorded
    if ptr + 3 > n:
        raise ParseError("ipv4_option_pointer", f"record route pointer {ptr} in {n} bytes")
    opt[ptr - 1:ptr + 3] = addr
    opt[2] = ptr + 4


def _timestamp(opt: bytearray, addr: bytes, is_ours: Callable[[bytes], bool],
               ts_ms: int) -> None:
    n = len(opt)
    if n < 4:
        raise ParseError("ipv4_option_length", f"timestamp option of {n} bytes")
    ptr = opt[2]
    flag = opt[3] & 0x0F
    if ptr < 5:
        raise ParseError("ipv4_option_pointer", f"timestamp pointer {ptr}")
    stamp = ts_ms.to_bytes(4, "big")
    if ptr > n:
        # Full: count one more host that could not record (RFC 791), which
        # with prespecified addresses means nothing (Linux leaves those).
        if flag != TS_PRESPEC:
            overflow = opt[3] >> 4
            if overflow == 15:
                # "If the overflow count itself overflows, the original
                # datagram is considered to be in error and is discarded."
                raise ParseError("ipv4_option_ts_overflow", "overflow count at 15")
            opt[3] = ((overflow + 1) << 4) | flag
        return
    if flag == TS_ONLY:
        if ptr + 3 > n:
            raise ParseError("ipv4_option_pointer", f"timestamp pointer {ptr} in {n} bytes")
        opt[ptr - 1:ptr + 3] = stamp
        opt[2] = ptr + 4
    elif flag in (TS_AND_ADDR, TS_PRESPEC):
        if ptr + 7 > n:
            raise ParseError("ipv4_option_pointer", f"timestamp pointer {ptr} in {n} bytes")
        if flag == TS_AND_ADDR:
            opt[ptr - 1:ptr + 3] = addr
        elif not is_ours(bytes(opt[ptr - 1:ptr + 3])):
            return  # the next prespecified address is another host's turn
        opt[ptr + 3:ptr + 7] = stamp
        opt[2] = ptr + 8
    else:
        raise ParseError("ipv4_option_ts_flag", f"timestamp flag {flag}")


def echo_options(options: bytes, addr: bytes, is_ours: Callable[[bytes], bool],
                 ts_ms: int) -> bytes:
    """The options for the reply to a datagram that carried ``options``.

    Record Route gets ``addr`` (the reply's source) if it has room;
    Timestamp gets ``ts_ms`` (milliseconds since midnight UT, RFC 791) by
    its flag, with ``addr`` for flag 1 and only where the next prespecified
    address ``is_ours`` for flag 3.  Returned in their order, padded with
    EOL to a multiple of 4; ``b""`` when the datagram had neither.
    """
    out = bytearray()
    i = 0
    n = len(options)
    while i < n:
        t = options[i]
        if t == OPT_EOL:
            break
        if t == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n or options[i + 1] < 2 or i + options[i + 1] > n:
            raise ParseError("ipv4_option_length", f"option {t} at {i}")
        ln = options[i + 1]
        if t in (OPT_RR, OPT_TS):
            if ln < 3:
                raise ParseError("ipv4_option_length", f"option {t} of {ln} bytes")
            opt = bytearray(options[i:i + ln])
            if t == OPT_RR:
                _record_route(opt, addr)
            else:
                _timestamp(opt, addr, is_ours, ts_ms)
            out += opt
        i += ln
    if len(out) & 3:
        out += bytes(4 - (len(out) & 3))
    return bytes(out)
