"""SYN cookies in Linux's layout (tcp/syncookies.py) and SipHash-2-4 (tcp/siphash.py).

SipHash against the paper's vectors (key 00..0f, message 00..n-1, n < 24,
from the reference implementation's table); the cookie against its
definition, written out here a second way; round trips for every MSS,
counter and 4-tuple hypothesis picks; and what must fail: another 4-tuple,
another client ISN, another secret, a cookie older than two minutes, any
flipped bit that reaches the hash.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.tcp import syncookies as sc
from ustack.tcp.siphash import siphash24, siphash_4u32

# SipHash-2-4, key 00 01 .. 0f, message 00 01 .. n-1 (the paper; vectors.h).
VECTORS = [
    0x726FDB47DD0E0E31, 0x74F839C593DC67FD, 0x0D6C8009D9A94F5A, 0x85676696D7FB7E2D,
    0xCF2794E0277187B7, 0x18765564CD99A68D, 0xCBC9466E58FEE3CE, 0xAB0200F58B01D137,
    0x93F5F5799A932462, 0x9E0082DF0BA9E4B0, 0x7A5DBBC594DDB9F3, 0xF4B32F46226BADA7,
    0x751E8FBC860EE5FB, 0x14EA5627C0843D90, 0xF723CA908E7AF2EE, 0xA129CA6149BE45E5,
    0x3F2ACC7F57C29BDB, 0x699AE9F52CBE4794, 0x4BC1B3F0968DD39C, 0xBB6DC91DA77961BD,
    0xBED65CF21AA2EE98, 0xD0F2CBB02E3B67C7, 0x93536795E3A33E88, 0xA80C038CCD5CCEC8,
]
K0, K1 = struct.unpack("<QQ", bytes(range(16)))


@pytest.mark.parametrize("n", range(len(VECTORS)))
def test_siphash_matches_the_paper(n: int) -> None:
    assert siphash24(K0, K1, bytes(range(n))) == VECTORS[n]


def test_siphash_4u32_is_the_hash_of_its_words_little_endian() -> None:
    """Linux's siphash_4u32(a, b, c, d) hashes the 16 bytes of the four
    words in order, little-endian, and returns the low 32 bits."""
    words = (0x03020100, 0x07060504, 0x0B0A0908, 0x0F0E0D0C)
    assert siphash_4u32(K0, K1, *words) == VECTORS[16] & 0xFFFFFFFF


ADDR = st.binary(min_size=4, max_size=4)
PORT = st.integers(0, 65535)
U32 = st.integers(0, 0xFFFFFFFF)


def _k64(key: tuple[int, int, int, int]) -> tuple[int, int]:
    """A key held as four 32-bit halves as the two 64-bit words."""
    return (key[0] << 32) | key[1], (key[2] << 32) | key[3]


def _h(key: tuple[int, int, int, int], saddr: bytes, daddr: bytes, sport: int, dport: int,
       count: int) -> int:
    # The kernel's arguments as memory: saddr, daddr as on the wire, then
    # the u32 (sport_be << 16 | dport_be) and the count, little-endian.
    ports = struct.unpack("<H", struct.pack(">H", sport))[0] << 16 | struct.unpack(
        "<H", struct.pack(">H", dport))[0]
    msg = saddr + daddr + struct.pack("<II", ports, count)
    k0, k1 = _k64(key)
    return siphash24(k0, k1, msg) & 0xFFFFFFFF


@settings(max_examples=200)
@given(saddr=ADDR, daddr=ADDR, sport=PORT, dport=PORT, sseq=U32, mss=st.integers(0, 9000),
       count=U32)
def test_a_cookie_is_linuxs_formula_and_comes_back(saddr: bytes, daddr: bytes, sport: int,
                                                   dport: int, sseq: int, mss: int,
                                                   count: int) -> None:
    secret = sc.SynCookieSecret()
    ind = sc.mss_index(mss)
    assert sc.MSS_TABLE[ind] <= max(mss, 536) and (
        ind == 3 or mss < sc.MSS_TABLE[ind + 1])
    cookie = sc.make_cookie(secret, saddr, daddr, sport, dport, sseq, ind, count)
    want = (_h(secret.k0, saddr, daddr, sport, dport, 0) + sseq + (count << 24)
            + ((_h(secret.key(count), saddr, daddr, sport, dport, count) + ind) & 0xFFFFFF))
    assert cookie == want & 0xFFFFFFFF
    # Good this minute and the next; not in the one after (MAX_AGE = 2).
    for later, ok in ((0, True), (1, True), (2, False), (200, False)):
        got = sc.check_cookie(secret, cookie, saddr, daddr, sport, dport, sseq,
                              (count + later) & 0xFFFFFFFF)
        assert got == (ind if ok else -1), later


@settings(max_examples=200)
@given(saddr=ADDR, daddr=ADDR, sport=PORT, dport=PORT, sseq=U32, count=U32,
       what=st.sampled_from(["saddr", "daddr", "sport", "dport", "sseq", "secret", "bit"]),
       bit=st.integers(0, 31))
def test_a_cookie_is_refused_for_anything_else(saddr: bytes, daddr: bytes, sport: int,
                                               dport: int, sseq: int, count: int, what: str,
                                               bit: int) -> None:
    secret = sc.SynCookieSecret()
    cookie = sc.make_cookie(secret, saddr, daddr, sport, dport, sseq, 3, count)
    args = {"saddr": saddr, "daddr": daddr, "sport": sport, "dport": dport, "sseq": sseq}
    if what == "saddr":
        args["saddr"] = bytes([saddr[0] ^ 1]) + saddr[1:]
    elif what == "daddr":
        args["daddr"] = daddr[:3] + bytes([daddr[3] ^ 0x80])
    elif what in ("sport", "dport"):
        args[what] = args[what] ^ (1 << (bit % 16))  # type: ignore[operator]
    elif what == "sseq":
        # (sseq enters linearly, as in Linux: one less than the real ISN
        # reads as the next MSS index down, so a nearby ISN is no test.)
        args["sseq"] = (sseq + 4 + bit * 1000) & 0xFFFFFFFF
    elif what == "secret":
        secret = sc.SynCookieSecret()
    else:
        # (Bits 0 and 1 are the MSS index's own: flipped, they name
        # another index, in Linux's cookies too.)
        cookie ^= 1 << max(bit, 2)
    got = sc.check_cookie(secret, cookie, count=count, **args)  # type: ignore[arg-type]
    # A forgery passes only by chance: the 24-bit hash must come out as one
    # of 4 MSS indexes, after the age check (about 4 in 2**24 x 2/256).
    assert got == -1


def test_the_secret_is_shared_through_its_bytes() -> None:
    a = sc.SynCookieSecret()
    b = sc.SynCookieSecret(a.raw)
    cookie = sc.make_cookie(a, b"\xc6\x12\x00\x02", b"\xc6\x12\x00\x01", 40000, 80, 12345, 2, 7)
    assert sc.check_cookie(b, cookie, b"\xc6\x12\x00\x02", b"\xc6\x12\x00\x01", 40000, 80,
                           12345, 8) == 2
    with pytest.raises(ValueError):
        sc.SynCookieSecret(b"short")


@settings(max_examples=300)
@given(k0=st.integers(0, 2**64 - 1), k1=st.integers(0, 2**64 - 1),
       words=st.tuples(U32, U32, U32, U32))
def test_siphash_on_halves_is_siphash(k0: int, k1: int,
                                      words: tuple[int, int, int, int]) -> None:
    """The 32-bit-halves form the cookies use is the byte form, for any key."""
    msg = struct.pack("<IIII", *words)
    assert siphash_4u32(k0, k1, *words) == siphash24(k0, k1, msg) & 0xFFFFFFFF


def test_the_time_dependent_key_rotates_and_old_cookies_still_check() -> None:
    """Each ROTATE minutes have their own key, the same in every process
    that shares the secret; a cookie made in a generation's last minute
    checks in the next generation's first."""
    secret = sc.SynCookieSecret()
    g = sc.ROTATE
    assert secret.key(g - 1) == secret.key(0) != secret.key(g) != secret.key(2 * g)
    assert sc.SynCookieSecret(secret.raw).key(5 * g) == secret.key(5 * g)
    a, b = b"\xc6\x12\x00\x02", b"\xc6\x12\x00\x01"
    cookie = sc.make_cookie(secret, a, b, 40000, 80, 777, 1, g - 1)
    assert sc.check_cookie(secret, cookie, a, b, 40000, 80, 777, g) == 1
    for m in range(3 * g, 8 * g, g):  # other generations come and go; the keys stay few
        secret.key(m)
    assert len(secret._keys) <= 3
    assert sc.check_cookie(secret, cookie, a, b, 40000, 80, 777, g) == 1


def test_the_timestamp_offset_is_keyed_per_connection() -> None:
    """Recomputed the same for the ACK as for the SYN (the connection's
    TSvals continue the SYN-ACK's); another 4-tuple or secret, another
    offset (RFC 7323 7.1: not a clock an observer can read across
    connections)."""
    s1, s2 = sc.SynCookieSecret(), sc.SynCookieSecret()
    a, b = b"\xc6\x12\x00\x02", b"\xc6\x12\x00\x01"
    off = sc.ts_offset(s1, a, b, 40000, 80)
    assert off == sc.ts_offset(sc.SynCookieSecret(s1.raw), a, b, 40000, 80)
    others = {sc.ts_offset(s1, a, b, 40001, 80), sc.ts_offset(s2, a, b, 40000, 80),
              sc.ts_offset(s1, b, a, 40000, 80)}
    assert off not in others


def test_the_minute_counter() -> None:
    assert sc.counter(0.0) == 0 and sc.counter(59.999) == 0 and sc.counter(60.0) == 1
    assert sc.counter(2.0**40) == int(2.0**40 // 60) & 0xFFFFFFFF


@given(ts_now=st.integers(64, 0xFFFFFFFF), wscale=st.one_of(st.none(), st.integers(0, 14)),
       sack=st.booleans(), ecn=st.booleans())
def test_options_ride_in_the_timestamp(ts_now: int, wscale: int | None, sack: bool,
                                       ecn: bool) -> None:
    ts = sc.ts_encode(ts_now, wscale, sack, ecn)
    assert ts_now - 64 < ts <= ts_now  # never ahead of the clock, at most 63 ms behind
    assert sc.ts_decode(ts) == (wscale, sack, ecn)
