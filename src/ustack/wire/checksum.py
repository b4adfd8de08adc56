"""The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

The one's-complement sum of 16-bit big-endian words is, up to the 0/0xFFFF
ambiguity, the value of the data read as one big-endian integer modulo
0xFFFF, because 2**16 == 1 (mod 0xFFFF) (RFC 1071 section 2(B): the sum is
independent of grouping).  CPython does ``int.from_bytes`` in C; the
remainder by 0xFFFF costs a hardware division per 30-bit digit, so large
buffers are first folded in halves with shifts and masks (``sum_bigint``).

bench/bench_checksum.py, best of 5, microseconds per call on the 2-core dev
VM (noisy; ratios are the stable part):

    bytes   ones_sum  from_bytes%0xFFFF  pow2 fold  adler32  cast('I')+sum  word loop
       20      0.22        0.25            0.29       0.81       0.61         1.05
       64      0.34        0.41            0.42       1.19       1.22         2.69
      576      1.21        1.30            1.63       1.48       3.44        31.1
     1460      2.36        4.30            3.44       2.76       9.55        99.3
     9000     12.2        23.6            18.3       14.7       47.2        366
    65535     60.2       143               69.9       72.2      340         2726

(numpy, not allowed in the core, is 3.3 / 3.2 / 14.5 us at 1460 / 9000 /
65535 bytes.)

Compiled (mypyc), the big integer is the slow part instead: building it
and dividing it are generic long-integer calls, while a loop over the bytes
with C ``int64_t`` accumulators runs at C speed.  So the compiled build sums
with the loop (``sum_loop``) and the pure build with the big integer
(``sum_bigint``), where the same loop would be ~100x slower.  ``sum_mod``
compiled, best of 7, ns per call on bytes (bytearray or memoryview: copied
to bytes first, +60 to +110 ns, still well ahead of the big integer):

    bytes    big integer   loop    (2-core dev VM, loaded: ratios are the stable part)
       20        145         44
     1024       2800        266
     1460       2800        350

Conventions: a *sum* is an int in [0, 0xFFFF] (the folded one's-complement
sum, never complemented); a *checksum* is the complement of a sum, the value
written in a header.  A received header or segment whose checksum field is
included verifies when its sum is 0xFFFF, which with the modulo form shows as
``sum_mod(data) == 0`` for any non-zero data.
"""

from __future__ import annotations

import importlib.machinery
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    # mypyc compiles locals annotated ``i64`` to C int64_t.  Only the type
    # checker and mypyc need the name: annotations of locals are never
    # evaluated, so mypy_extensions is not needed at run time (the core
    # imports only the standard library).
    from mypy_extensions import i64

# True when this module is the mypyc-built C extension, False when Python
# runs this file (USTACK_PURE=1, or not compiled).  Told by the file the
# import system loaded: an extension module's name ends with one of the
# platform's extension suffixes (".cpython-311-x86_64-linux-gnu.so", ".pyd"),
# a source or bytecode file with ".py" / ".pyc".  Only the speed depends on
# it: both sums give the same result in either build.
COMPILED: Final = __file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))

# Folding starts at this many bytes; below it one remainder is cheaper than
# the extra Python operations of a fold.
_FOLD_MIN: Final = 256
# The folds for a buffer of a given size, (k, (1 << k) - 1) pairs: worked
# out once per size and kept.  Bounded: both tables are cleared when either
# is full, so a stream of distinct sizes (a peer choosing datagram lengths)
# cannot grow them without limit: at most 256 masks of up to 32 KiB each
# (sizes a few bytes apart share them), and 1024 plans of a few small tuples.
_plans: Final[dict[int, tuple[tuple[int, int], ...]]] = {}
_masks: Final[dict[int, int]] = {}
_PLANS_MAX: Final = 1024
_MASKS_MAX: Final = 256


def _fold_plan(size: int) -> tuple[tuple[int, int], ...]:
    """The folds ``sum_mod`` applies to a ``size``-byte buffer: each halves
    the bits at a 16-bit-aligned position, down to about 1024 bits."""
    if len(_plans) >= _PLANS_MAX or len(_masks) >= _MASKS_MAX:
        _plans.clear()
        _masks.clear()
    steps = []
    k = (size >> 2) << 4  # half the bits, rounded down to a multiple of 16
    while k >= 1024:
        m = _masks.get(k)
        if m is None:
            m = _masks[k] = (1 << k) - 1
        steps.append((k, m))
        k = (k >> 5) << 4
    plan = _plans[size] = tuple(steps)
    return plan


def sum_mod(data: bytes | bytearray | memoryview) -> int:
    """``data`` as one big-endian integer (odd length zero-padded) mod 0xFFFF.

    The hot-path primitive: it is congruent to the one's-complement sum of
    the 16-bit words, in 0..0xFFFE (so 0 stands for both 0 and 0xFFFF).
    Compiled, a loop over the bytes (``sum_loop``; a bytearray or
    memoryview is copied to bytes first, which costs less than the big
    integer); pure Python, the big-integer form (``sum_bigint``).
    """
    if COMPILED:
        return sum_loop(data if isinstance(data, bytes) else bytes(data))
    return sum_bigint(data)


def sum_span(data: bytes, start: int, end: int) -> int:
    """``sum_mod(data[start:end])`` without copying the span out (``start``
    and ``end`` within ``data``): what the receive path sums in place, such
    as the IPv4 header at the start of a datagram."""
    if COMPILED:
        return _sum_loop_span(data, start, end)
    return sum_bigint(data if start == 0 and end == len(data) else data[start:end])


def sum_pair(a: bytes, b: bytes) -> int:
    """``sum_mod(a + b)`` for two even-length fields, such as the source and
    destination addresses of a pseudo-header (RFC 768, RFC 9293 3.1): summed
    in place compiled (no concatenation), as one integer in pure Python."""
    if COMPILED:
        return (_sum_loop_span(a, 0, len(a)) + _sum_loop_span(b, 0, len(b))) % 0xFFFF
    return sum_bigint(a + b)


def sum_loop(data: bytes) -> int:
    """``sum_mod`` as a loop over the bytes, for the compiled build."""
    return _sum_loop_span(data, 0, len(data))


def _sum_loop_span(data: bytes, start: i64, stop: i64) -> int:
    """``sum_loop`` over ``data[start:stop]``.

    The sum of the 16-bit big-endian words is 256 * (sum of the bytes at
    even offsets) + (sum of the bytes at odd offsets): two byte sums, no
    shift per word.  An odd last byte is a high byte (RFC 1071: padded with
    one zero octet).  int64 cannot overflow below 2**55 bytes.  Measured
    compiled: a word per step (``(data[i] << 8) | data[i + 1]``) is 2-3x
    slower at 1 KB; unrolling four words per step gains nothing.
    """
    end: i64 = start + ((stop - start) & ~1)
    hi: i64 = 0
    lo: i64 = 0
    i: i64 = start
    while i < end:
        hi += data[i]
        lo += data[i + 1]
        i += 2
    if end < stop:
        hi += data[end]
    return ((hi << 8) + lo) % 0xFFFF


def sum_bigint(data: bytes | bytearray | memoryview) -> int:
    """``sum_mod`` with the data read as one integer, for the pure build.

    CPython does ``int.from_bytes`` in C.  Large inputs are first folded in
    halves at 16-bit-aligned bit positions (2**(16j) == 1 mod 0xFFFF),
    because a shift, a mask and an add cost CPython less per digit than the
    remainder's hardware division.
    """
    size = len(data)
    n = int.from_bytes(data, "big")
    if size >= _FOLD_MIN:
        plan = _plans.get(size) or _fold_plan(size)
        for k, m in plan:
            n = (n >> k) + (n & m)
    if size & 1:
        # RFC 1071: an odd byte count is padded with one zero octet.
        return (n << 8) % 0xFFFF
    return n % 0xFFFF


def ones_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """One's-complement sum of ``data`` plus ``initial``, folded into 16 bits.

    An odd-length buffer is padded with a zero byte at the end (RFC 1071).
    The result is 0 for all zero data and otherwise in 1..0xFFFF with 0xFFFF
    standing for "negative zero"; both represent the same one's-complement
    value.
    """
    s = (sum_mod(data) + initial) % 0xFFFF
    # The modulo maps the one's-complement "negative zero" 0xFFFF to 0; keep
    # 0 only for the true empty/zero sum so composition stays exact.
    if s == 0 and (initial or int.from_bytes(data, "big")):
        return 0xFFFF
    return s


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The value to put in a checksum field: complement of ``ones_sum``."""
    return ~ones_sum(data, initial) & 0xFFFF


def verify(data: bytes | bytearray | memoryview, initial: int = 0) -> bool:
    """True when data (checksum field included) sums to all ones."""
    if (sum_mod(data) + initial) % 0xFFFF:
        return False
    # Congruent to 0: all ones unless everything is really zero.
    return bool(initial) or int.from_bytes(data, "big") != 0


def pseudo_header_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Unfolded sum of the IPv4 pseudo-header (RFC 768, RFC 9293 3.1).

    Returned unfolded so it can be passed as ``initial`` to ``ones_sum``,
    ``checksum`` or ``verify`` at no extra cost.
    """
    return int.from_bytes(src + dst, "big") + proto + length


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
        + (-int.from_bytes(old, "big")) % 0xFFFF
        + int.from_bytes(new, "big")
    )
    return ~fold(s) & 0xFFFF
