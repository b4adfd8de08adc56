"""The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

The one's-complement sum of 16-bit big-endian words is, up to the 0/0xFFFF
ambiguity, the value of the data read as one big-endian integer modulo
0xFFFF, because 2**16 == 1 (mod 0xFFFF) (RFC 1071 section 2(B): the sum is
independent of grouping).  CPython does ``int.from_bytes`` and a remainder by
a one-digit divisor in C, so this beats any per-word Python loop by 3x.  See
bench/bench_checksum.py for the implementations compared and their timings.

Conventions: a *sum* is an int in [0, 0xFFFF] (the folded one's-complement
sum, never complemented); a *checksum* is the complement of a sum, the value
written in a header.  A received header or segment whose checksum field is
included verifies when its sum is 0xFFFF, which with the modulo form shows as
``sum_of(data) == 0`` for any non-zero data.
"""

from __future__ import annotations

_from_bytes = int.from_bytes


def ones_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """One's-complement sum of ``data`` plus ``initial``, folded into 16 bits.

    An odd-length buffer is padded with a zero byte at the end (RFC 1071);
    multiplying by 256 is the same as that padding.  The result is 0 for all
    zero data and otherwise in 1..0xFFFF with 0xFFFF standing for "negative
    zero"; both represent the same one's-complement value.
    """
    n = _from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    s = (n + initial) % 0xFFFF
    # The modulo maps the one's-complement "negative zero" 0xFFFF to 0; keep
    # 0 only for the true empty/zero sum so composition stays exact.
    if s == 0 and (n or initial):
        return 0xFFFF
    return s


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The value to put in a checksum field: complement of ``ones_sum``."""
    return ~ones_sum(data, initial) & 0xFFFF


def verify(data: bytes | bytearray | memoryview, initial: int = 0) -> bool:
    """True when data (checksum field included) sums to all ones."""
    n = _from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    return (n + initial) % 0xFFFF == 0 and (n + initial) != 0


def pseudo_header_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Unfolded sum of the IPv4 pseudo-header (RFC 768, RFC 9293 3.1).

    Returned unfolded so it can be passed as ``initial`` to ``ones_sum``,
    ``checksum`` or ``verify`` at no extra cost.
    """
    return _from_bytes(src + dst, "big") + proto + length


def fold(s: int) -> int:
    """Fold an arbitrary non-negative partial sum into 16 bits."""
    r = s % 0xFFFF
    if r == 0 and s:
        return 0xFFFF
    return r


def update16(old_checksum: int, old_word: int, new_word: int) -> int:
    """New checksum after one 16-bit word changes, RFC 1624 eqn. 3.

    HC' = ~(~HC + ~m + m').  Using eqn. 3 (not eqn. 2 of RFC 1141) keeps the
    result right when the sum is "negative zero" (RFC 1624 section 3).
    """
    s = (~old_checksum & 0xFFFF) + (~old_word & 0xFFFF) + new_word
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def update_bytes(old_checksum: int, old: bytes, new: bytes) -> int:
    """New checksum after an even-length, 16-bit aligned field changes."""
    if len(old) != len(new) or len(old) & 1:
        raise ValueError("update_bytes needs equal, even-length fields")
    s = (
        (~old_checksum & 0xFFFF)
        # One's-complement negation of a value is its negation mod 0xFFFF.
        + (-_from_bytes(old, "big")) % 0xFFFF
        + _from_bytes(new, "big")
    )
    return ~fold(s) & 0xFFFF
