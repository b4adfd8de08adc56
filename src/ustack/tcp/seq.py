"""Sequence-number arithmetic modulo 2**32 (RFC 9293 3.4, RFC 1982).

Every comparison of sequence or acknowledgment numbers in ustack goes
through these functions: ``a < b`` on raw integers is wrong as soon as the
space wraps, which it does every 4 GiB of data.  ``lt(a, b)`` means "a comes
before b", valid while the two are less than 2**31 apart.
"""

from __future__ import annotations

from typing import Final

# Final: the compiled build inlines them into every use, here and in the
# modules that import them (each is otherwise a dictionary lookup).
MOD: Final = 1 << 32
MASK: Final = MOD - 1
HALF: Final = 1 << 31


def add(a: int, n: int) -> int:
    """``a + n`` in sequence space."""
    return (a + n) & MASK


def ahead(a: int, b: int) -> int:
    """How far ``a`` is past ``b``, as a count in 0 .. 2**32 - 1 (timestamp
    ticks elapsed, RFC 7323 4.1; bytes from one sequence number to the next)."""
    return (a - b) & MASK


def sub(a: int, b: int) -> int:
    """Signed distance from ``b`` to ``a`` (positive when a is after b)."""
    return ((a - b + HALF) & MASK) - HALF


# The comparisons, each one test of a distance taken modulo 2**32: ``a`` is
# before ``b`` when the distance from ``b`` to ``a`` lies in the half of the
# space below ``b`` (RFC 1982 3.2; distances of exactly 2**31 compare as
# neither before nor after).


def lt(a: int, b: int) -> bool:
    return ((a - b) & MASK) > HALF


def le(a: int, b: int) -> bool:
    return ((b - a) & MASK) < HALF


def gt(a: int, b: int) -> bool:
    return ((b - a) & MASK) > HALF


def ge(a: int, b: int) -> bool:
    return ((a - b) & MASK) < HALF


def between(lo: int, x: int, hi: int) -> bool:
    """``lo <= x < hi`` in sequence space (an empty range when lo == hi)."""
    return ((x - lo) & MASK) < ((hi - lo) & MASK)


def pair_le(a1: int, a2: int, b1: int, b2: int) -> bool:
    """``(a1, a2) =< (b1, b2)``, by the first number, then the second: RFC
    9293 3.10.7.4's test for a window update, SND.WL1 < SEG.SEQ or (SND.WL1
    = SEG.SEQ and SND.WL2 =< SEG.ACK), in one call."""
    d = (b1 - a1) & MASK
    if d:
        return d < HALF  # lt(a1, b1)
    return ((b2 - a2) & MASK) < HALF  # le(a2, b2)


def max_seq(a: int, b: int) -> int:
    return a if ge(a, b) else b


def min_seq(a: int, b: int) -> int:
    return a if le(a, b) else b


def acceptable(rcv_nxt: int, wnd: int, seq: int, seg_len: int) -> bool:
    """RFC 9293 3.10.7.4, first check: does a segment of ``seg_len`` (text,
    SYN and FIN counted) at ``seq`` fall in the receive window of ``wnd``
    bytes from ``rcv_nxt``?  The four cases of the RFC's table."""
    if wnd < 0:
        wnd = 0
    if seg_len == 0:
        if wnd == 0:
            return seq == rcv_nxt
        return between(rcv_nxt, seq, add(rcv_nxt, wnd))
    if wnd == 0:
        return False
    end = add(rcv_nxt, wnd)
    return between(rcv_nxt, seq, end) or between(rcv_nxt, add(seq, seg_len - 1), end)
