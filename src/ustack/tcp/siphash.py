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

from typing import Final

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
    msg = (a | (b << 32) | (c << 64) | (d << 96)).to_bytes(16, "little")
    return siphash24(k0, k1, msg) & 0xFFFFFFFF
