"""SYN cookies as Linux makes them (``net/ipv4/syncookies.c``; RFC 4987 3.6).

A listener answers a SYN with a SYN-ACK whose sequence number is a cookie,
and keeps nothing; the ACK that completes the handshake brings the cookie
back (its ACK field less one) and with it what the server needs.  The
layout is Linux's, so that what a capture shows is what the kernel's
cookies look like:

    cookie = H(k0; saddr, daddr, sport, dport, 0) + sseq + (count << 24)
             + ((H(k1; saddr, daddr, sport, dport, count) + mssind) mod 2**24)

all modulo 2**32, where H is SipHash-2-4 cut to 32 bits (``siphash_4u32``
over the client's address, ours, the ports as the kernel packs them, and a
counter), ``sseq`` the client's initial sequence number, ``count`` the
minute counter (the stack's clock / 60) and ``mssind`` the index of the
client's MSS, rounded down, in Linux's table (536, 1300, 1440, 1460).  A
cookie is good for two minutes (``MAX_AGE``): the check strips the first
hash and ``sseq``, reads the minute the cookie was made from the top 8 bits,
and recomputes the second hash for that minute.  ``k1`` is rotated every
``ROTATE`` minutes (``SynCookieSecret.key``); Linux keeps one for the
kernel's life.

The options a cookie cannot carry ride in our TSval when the client sent
timestamps (``ts_encode``): the low 6 bits hold its window scale (15: none),
SACK-permitted and ECN; it comes back as the ACK's TSecr (``ts_decode``).
Without timestamps a cookie connection has no window scaling and no SACK,
as on Linux.

The hashing is sans-I/O; the layer supplies the secret and the time.
"""

from __future__ import annotations

import os
from typing import Final

from ustack.tcp.siphash import siphash24, siphash_4u32_halves

MSS_TABLE: Final = (536, 1300, 1440, 1460)  # Linux's msstab (1440, 1452: PPPoE)
COOKIE_BITS: Final = 24  # the minute counter sits above them
COOKIE_MASK: Final = (1 << COOKIE_BITS) - 1
MAX_AGE: Final = 2  # minutes (Linux's MAX_SYNCOOKIE_AGE)
PERIOD: Final = 60.0  # seconds per counter step (TCP_SYNCOOKIE_PERIOD)
_M32: Final = 0xFFFFFFFF

# Our TSval's low bits in a cookie SYN-ACK (Linux's TSBITS and TS_OPT_*).
TS_BITS: Final = 6
TS_OPT_WSCALE_MASK: Final = 0x0F  # 15: the client offered no window scale
TS_OPT_SACK: Final = 0x10
TS_OPT_ECN: Final = 0x20


ROTATE: Final = 64  # minutes per key generation of the time-dependent hash


class SynCookieSecret:
    """The keys of the cookies (Linux's ``syncookie_secret[2]``, and its
    ``ts_secret`` for the timestamp offset).

    32 random bytes, ``raw``, are all of it: what worker processes share so
    that any of them can check a cookie another made (``from raw``).  The
    first 16 are the key of the time-independent hash; the keys of the
    time-dependent hash and of the timestamp offset are derived from the
    other 16.  The time-dependent key is rotated: each ``ROTATE`` minutes of
    the counter have their own, derived from the generation's number, so
    processes sharing ``raw`` rotate together without talking, and a cookie
    names its generation by the minute it carries."""

    __slots__ = ("_keys", "_master", "k0", "raw", "ts_key")

    def __init__(self, raw: bytes | None = None) -> None:
        if raw is None:
            raw = os.urandom(32)
        if len(raw) != 32:
            raise ValueError("a SYN cookie secret is 32 bytes")
        self.raw = raw
        self.k0 = _halves(int.from_bytes(raw[0:8], "little"), int.from_bytes(raw[8:16], "little"))
        self._master = (int.from_bytes(raw[16:24], "little"), int.from_bytes(raw[24:32], "little"))
        self.ts_key = self._derive(b"timestamp offset")
        self._keys: dict[int, tuple[int, int, int, int]] = {}

    def _derive(self, label: bytes) -> tuple[int, int, int, int]:
        m0, m1 = self._master
        return _halves(siphash24(m0, m1, label + b"\x00"), siphash24(m0, m1, label + b"\x01"))

    def key(self, count: int) -> tuple[int, int, int, int]:
        """The time-dependent hash's key for minute ``count``."""
        gen = count // ROTATE
        key = self._keys.get(gen)
        if key is None:
            # Derived once per generation; the last three are kept (a cookie
            # made just before a rotation is checked for two minutes after).
            key = self._keys[gen] = self._derive(b"generation %d" % gen)
            if len(self._keys) > 3:
                del self._keys[min(self._keys)]
        return key


def _halves(k0: int, k1: int) -> tuple[int, int, int, int]:
    return k0 >> 32, k0 & _M32, k1 >> 32, k1 & _M32


def counter(now: float) -> int:
    """The minute counter at ``now`` (Linux's ``tcp_cookie_time``)."""
    return int(now // PERIOD) & _M32


def words(saddr: bytes, daddr: bytes, sport: int, dport: int) -> tuple[int, int, int]:
    """The 4-tuple as the kernel hands it to ``siphash_4u32`` on a
    little-endian machine: the addresses' bytes as they are on the wire read
    as little-endian u32s, and each port's two wire bytes read as a
    little-endian u16, the client's port in the top half."""
    sp = ((sport & 0xFF) << 8) | (sport >> 8)
    dp = ((dport & 0xFF) << 8) | (dport >> 8)
    return int.from_bytes(saddr, "little"), int.from_bytes(daddr, "little"), (sp << 16) | dp


def _hash(key: tuple[int, int, int, int], w: tuple[int, int, int], count: int) -> int:
    return siphash_4u32_halves(key[0], key[1], key[2], key[3], w[0], w[1], w[2], count)


def ts_offset(secret: SynCookieSecret, saddr: bytes, daddr: bytes, sport: int,
              dport: int) -> int:
    """The offset of a cookie connection's timestamp clock (Linux's
    ``secure_tcp_ts_off``): random-looking per 4-tuple (RFC 7323 7.1), and
    the same when the ACK comes back, so the connection's TSvals continue
    from the one the cookie SYN-ACK sent."""
    return ts_offset_w(secret, words(saddr, daddr, sport, dport))


def ts_offset_w(secret: SynCookieSecret, w: tuple[int, int, int]) -> int:
    """``ts_offset`` of the 4-tuple's ``words``."""
    return _hash(secret.ts_key, w, 0)


def mss_index(mss: int) -> int:
    """The index of the largest table MSS not above ``mss`` (0 for less
    than 1300: the table's 536)."""
    i = len(MSS_TABLE) - 1
    while i and mss < MSS_TABLE[i]:
        i -= 1
    return i


def make_cookie(secret: SynCookieSecret, saddr: bytes, daddr: bytes, sport: int, dport: int,
                sseq: int, mssind: int, count: int) -> int:
    """The ISS of a cookie SYN-ACK to the SYN from ``saddr:sport`` (ISN
    ``sseq``) to ``daddr:dport`` (Linux's ``secure_tcp_syn_cookie``)."""
    return make_cookie_w(secret, words(saddr, daddr, sport, dport), sseq, mssind, count)


def make_cookie_w(secret: SynCookieSecret, w: tuple[int, int, int], sseq: int, mssind: int,
                  count: int) -> int:
    """``make_cookie`` of the 4-tuple's ``words``."""
    h0 = _hash(secret.k0, w, 0)
    h1 = _hash(secret.key(count), w, count)
    return (h0 + sseq + (count << COOKIE_BITS) + ((h1 + mssind) & COOKIE_MASK)) & _M32


def check_cookie(secret: SynCookieSecret, cookie: int, saddr: bytes, daddr: bytes, sport: int,
                 dport: int, sseq: int, count: int) -> int:
    """The MSS index a cookie carries, or -1 when it is not one of ours or
    is older than ``MAX_AGE`` minutes (Linux's ``check_tcp_syn_cookie``:
    ``cookie`` is the ACK's acknowledgement number less one, ``sseq`` its
    sequence number less one)."""
    w = words(saddr, daddr, sport, dport)
    c = (cookie - _hash(secret.k0, w, 0) - sseq) & _M32
    diff = (count - (c >> COOKIE_BITS)) & (_M32 >> COOKIE_BITS)
    if diff >= MAX_AGE:
        return -1
    made = (count - diff) & _M32
    h1 = _hash(secret.key(made), w, made)
    mssind = (c - h1) & COOKIE_MASK
    return mssind if mssind < len(MSS_TABLE) else -1


def ts_encode(ts_now: int, wscale: int | None, sack: bool, ecn: bool) -> int:
    """Our TSval for a cookie SYN-ACK: not above ``ts_now`` (later
    timestamps must not go backwards), its low ``TS_BITS`` holding the
    client's options (Linux's ``cookie_init_timestamp``)."""
    options = TS_OPT_WSCALE_MASK if wscale is None else wscale & TS_OPT_WSCALE_MASK
    if sack:
        options |= TS_OPT_SACK
    if ecn:
        options |= TS_OPT_ECN
    ts = ((ts_now >> TS_BITS) << TS_BITS) | options
    if ts > ts_now:
        ts -= 1 << TS_BITS
    return ts & _M32


def ts_decode(tsecr: int) -> tuple[int | None, bool, bool]:
    """(window scale or None, SACK-permitted, ECN) from the TSecr of the ACK
    that returns a cookie (Linux's ``cookie_timestamp_decode``)."""
    wscale = tsecr & TS_OPT_WSCALE_MASK
    return (None if wscale == TS_OPT_WSCALE_MASK else wscale, bool(tsecr & TS_OPT_SACK),
            bool(tsecr & TS_OPT_ECN))
