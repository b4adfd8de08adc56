"""SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012).

The keyed hash Linux uses for SYN cookies (``net/ipv4/syncookies.c``:
``siphash_4u32`` over the addresses, the ports and the minute counter), here
for the same use (``syncookies.py``).  A 128-bit key as two 64-bit words
(the key's bytes 0-7 and 8-15, little-endian, as the paper's reference
code reads them); the message's bytes are taken as little-endian 64-bit
words, the last one padded with zeros and carrying the length in its top
byte; 2 compression rounds per word, 4 finalisation rounds.  The test
vectors are the paper's (key 00..0f, messages 00..n-1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    # C int64_t locals in the compiled build (see wire/checksum.py).
    from mypy_extensions import i64

_M64: Final = 0xFFFFFFFFFFFFFFFF


def _rounds(v0: int, v1: int, v2: int, v3: int, n: int) -> tuple[int, int, int, int]:
    """``n`` SipRounds (the paper's figure 2.2: add, rotate, xor)."""
    for _ in range(n):
        v0 = (v0 + v1) & _M64
        v1 = ((v1 << 13) | (v1 >> 51)) & _M64
        v1 ^= v0
        v0 = ((v0 << 32) | (v0 >> 32)) & _M64
        v2 = (v2 + v3) & _M64
        v3 = ((v3 << 16) | (v3 >> 48)) & _M64
        v3 ^= v2
        v0 = (v0 + v3) & _M64
        v3 = ((v3 << 21) | (v3 >> 43)) & _M64
        v3 ^= v0
        v2 = (v2 + v1) & _M64
        v1 = ((v1 << 17) | (v1 >> 47)) & _M64
        v1 ^= v2
        v2 = ((v2 << 32) | (v2 >> 32)) & _M64
    return v0, v1, v2, v3


def siphash24(k0: int, k1: int, data: bytes) -> int:
    """SipHash-2-4 of ``data`` under the key (``k0``, ``k1``): a 64-bit int."""
    # Initialisation: the key xored into "somepseudorandomlygeneratedbytes".
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573
    n = len(data)
    end = n - n % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v3 ^= m
        v0, v1, v2, v3 = _rounds(v0, v1, v2, v3, 2)
        v0 ^= m
    # The last word: the remaining bytes and the length (mod 256) on top.
    m = int.from_bytes(data[end:], "little") | ((n & 0xFF) << 56)
    v3 ^= m
    v0, v1, v2, v3 = _rounds(v0, v1, v2, v3, 2)
    v0 ^= m
    v2 ^= 0xFF
    v0, v1, v2, v3 = _rounds(v0, v1, v2, v3, 4)
    return v0 ^ v1 ^ v2 ^ v3


def siphash_4u32(k0: int, k1: int, a: int, b: int, c: int, d: int) -> int:
    """Linux's ``siphash_4u32``: the four 32-bit words as one 16-byte
    message (each little-endian, in order), the hash cut to 32 bits as the
    kernel's u32 return value does."""
    return siphash_4u32_halves(k0 >> 32, k0 & _M32, k1 >> 32, k1 & _M32, a, b, c, d)


# -- the same on 32-bit halves, for the SYN cookies' hot path ---------------
#
# A 64-bit word above 2**62 is a boxed integer in the compiled build (mypyc's
# unboxed int holds 63 bits), and every operation on it allocates: the form
# above took 15 us a hash.  Here each word is two 32-bit halves in C int64
# locals (``i64``), so no value ever exceeds 2**33 before it is masked and
# nothing is allocated; the tuples of ``_rounds32`` are C structs.

_M32: Final = 0xFFFFFFFF


def _rounds32(v0h: i64, v0l: i64, v1h: i64, v1l: i64, v2h: i64, v2l: i64, v3h: i64,
              v3l: i64, n: i64) -> tuple[i64, i64, i64, i64, i64, i64, i64, i64]:
    """``n`` SipRounds, as ``_rounds``, on (high, low) halves: an addition
    carries from the low half into the high; a rotation by r < 32 moves the
    top r bits of each half into the other; by 32 it swaps the halves."""
    for _ in range(n):
        # v0 += v1; v1 <<<= 13; v1 ^= v0; v0 <<<= 32
        t: i64 = v0l + v1l
        v0h = (v0h + v1h + (t >> 32)) & _M32
        v0l = t & _M32
        t = ((v1h << 13) | (v1l >> 19)) & _M32
        v1l = ((v1l << 13) | (v1h >> 19)) & _M32
        v1h = t ^ v0h
        v1l ^= v0l
        t = v0h
        v0h = v0l
        v0l = t
        # v2 += v3; v3 <<<= 16; v3 ^= v2
        t = v2l + v3l
        v2h = (v2h + v3h + (t >> 32)) & _M32
        v2l = t & _M32
        t = ((v3h << 16) | (v3l >> 16)) & _M32
        v3l = ((v3l << 16) | (v3h >> 16)) & _M32
        v3h = t ^ v2h
        v3l ^= v2l
        # v0 += v3; v3 <<<= 21; v3 ^= v0
        t = v0l + v3l
        v0h = (v0h + v3h + (t >> 32)) & _M32
        v0l = t & _M32
        t = ((v3h << 21) | (v3l >> 11)) & _M32
        v3l = ((v3l << 21) | (v3h >> 11)) & _M32
        v3h = t ^ v0h
        v3l ^= v0l
        # v2 += v1; v1 <<<= 17; v1 ^= v2; v2 <<<= 32
        t = v2l + v1l
        v2h = (v2h + v1h + (t >> 32)) & _M32
        v2l = t & _M32
        t = ((v1h << 17) | (v1l >> 15)) & _M32
        v1l = ((v1l << 17) | (v1h >> 15)) & _M32
        v1h = t ^ v2h
        v1l ^= v2l
        t = v2h
        v2h = v2l
        v2l = t
    return v0h, v0l, v1h, v1l, v2h, v2l, v3h, v3l


def siphash_4u32_halves(k0h: i64, k0l: i64, k1h: i64, k1l: i64, a: i64, b: i64, c: i64,
                        d: i64) -> int:
    """``siphash_4u32`` with the key as four 32-bit halves (k0 high, k0 low,
    k1 high, k1 low): the message words (b, a), (d, c), then the length
    word (16 in the top byte), 2 rounds each, 4 to finish."""
    v0h: i64 = k0h ^ 0x736F6D65
    v0l: i64 = k0l ^ 0x70736575
    v1h: i64 = k1h ^ 0x646F7261
    v1l: i64 = k1l ^ 0x6E646F6D
    v2h: i64 = k0h ^ 0x6C796765
    v2l: i64 = k0l ^ 0x6E657261
    v3h: i64 = k1h ^ 0x74656462
    v3l: i64 = k1l ^ 0x79746573
    v3h ^= b
    v3l ^= a
    v0h, v0l, v1h, v1l, v2h, v2l, v3h, v3l = _rounds32(v0h, v0l, v1h, v1l, v2h, v2l, v3h, v3l, 2)
    v0h ^= b
    v0l ^= a
    v3h ^= d
    v3l ^= c
    v0h, v0l, v1h, v1l, v2h, v2l, v3h, v3l = _rounds32(v0h, v0l, v1h, v1l, v2h, v2l, v3h, v3l, 2)
    v0h ^= d
    v0l ^= c
    v3h ^= 16 << 24  # the length word: 16 bytes, in the top byte
    v0h, v0l, v1h, v1l, v2h, v2l, v3h, v3l = _rounds32(v0h, v0l, v1h, v1l, v2h, v2l, v3h, v3l, 2)
    v0h ^= 16 << 24
    v2l ^= 0xFF
    v0h, v0l, v1h, v1l, v2h, v2l, v3h, v3l = _rounds32(v0h, v0l, v1h, v1l, v2h, v2l, v3h, v3l, 4)
    return v0l ^ v1l ^ v2l ^ v3l
