"""The flood's SYNs: a template per target, patched per packet.

Every SYN of a flood to one target is the same frame but for seven
fields: the IPv4 identification, source address and header checksum, the
TCP source port, sequence number and checksum, and the timestamp value.
So the frame is one ``struct.Struct`` whose constant parts (the slot
prefix of the TX ring, the Ethernet header, every field that does not
change) are fixed arguments worked out once per target, and both
checksums are a precomputed sum of the constant words plus the words that
change (RFC 1071 2(B): the sum does not depend on grouping; RFC 1624's
incremental update with the template's sum as the old one).  ``write``
is one ``pack_into`` into a TX ring slot (``link.rings.SlotWriter``) or a
frame buffer.

The options are the ones Linux's ``tcp_connect`` puts on a SYN
(``tcp_options_write``): MSS, SACK-permitted and timestamps packed in 12
bytes, NOP and window scale 7, with the window Linux opens with (64240 =
44 * 1460); or none (``options=False``).

Sequence numbers are SYN-cookie-like (RFC 4987 3.6; Linux's
``secure_tcp_seq``): ``isn = H(source, ports, target key) + P(k)`` where
``k`` is the SYN's serial number in the flood, ``H`` a keyed hash and ``P``
a permutation of 32-bit numbers (a multiplication by an odd constant,
``scramble``), so an answer (a SYN-ACK or a RST acknowledging ``isn + 1``)
gives back ``k`` with no table at all (``serial_of``): the receiver
(``answers``) checks it and counts each SYN once.  ``P`` spreads
neighbours apart: an acknowledgment a few off a valid one names a serial
number far beyond the SYNs sent, not the next SYN.  ``H`` is a 32-bit
integer mix (two rounds of xorshift-multiply, constants below 2**31 so
every product stays within a 63-bit integer, compiled or not) under a
random key: not a cryptographic MAC (the only party answering is the
target being measured), but a forged or stray segment matches a sent SYN
with probability sent / 2**32.

Source ports and the other random fields come from xorshift32 (Marsaglia
2003), seeded from ``os.urandom`` or a given seed (tests): two steps per
SYN.  Source addresses are the stack's own, ``first`` to ``first + count
- 1``: in turn, or at random with ``rand_source``.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ustack.link.rings import SlotWriter
from ustack.wire import ethernet as weth
from ustack.wire import tcp as wtcp

if TYPE_CHECKING:
    # Compiled to C int64_t locals by mypyc (only the checker and mypyc
    # read the annotation; see wire/checksum.py).
    from mypy_extensions import i64

M32: Final = 0xFFFFFFFF
TTL: Final = 64
WINDOW: Final = 64240  # Linux's initial window: 44 * 1460 (tcp_select_initial_window)
WSCALE: Final = 7  # what Linux offers with the default tcp_rmem
PORT_FIRST: Final = 1024  # source ports: 1024..65535, as any unprivileged client may use
PORT_SPAN: Final = 65536 - PORT_FIRST
_MIX: Final = 0x45D9F3B  # a 32-bit integer hash multiplier (odd, below 2**31)
_FF_TTL_PROTO: Final = (0x4000 << 16) | (TTL << 8) | wtcp.PROTO_TCP  # DF, TTL, protocol
_FF_TTL_PROTO_BYTES: Final = _FF_TTL_PROTO.to_bytes(4, "big")
OPTIONS_LEN: Final = 20  # MSS 4 + SACK-permitted/timestamps 12 + NOP/window scale 4


def options_head(mss: int) -> bytes:
    """The option bytes before TSval: MSS, then SACK-permitted and the
    timestamps option's kind and length (Linux's packed layout)."""
    return bytes((wtcp.OPT_MSS, 4, mss >> 8, mss & 0xFF,
                  wtcp.OPT_SACK_PERMITTED, 2, wtcp.OPT_TIMESTAMPS, 10))


# The option bytes after TSecr: NOP, window scale 7.
OPTIONS_TAIL: Final = bytes((wtcp.OPT_NOP, wtcp.OPT_WSCALE, 3, WSCALE))


def frame_len(options: bool) -> int:
    """Bytes in one SYN frame: Ethernet, IPv4 and TCP headers (no padding:
    the device pads a frame below the Ethernet minimum)."""
    return weth.HEADER_LEN + 20 + 20 + (OPTIONS_LEN if options else 0)


def mix(h: i64) -> i64:
    """One round of the 32-bit hash: xorshift then multiply, kept to 32 bits."""
    h = (h ^ (h >> 16)) * _MIX & M32
    return h ^ (h >> 16)


def isn_base(src: int, ports: int, key: int) -> int:
    """``H``: the keyed hash of (source address, source port << 16 | dest
    port) for a target whose key is ``key`` (32 bits each)."""
    a: i64 = src
    b: i64 = ports
    k: i64 = key
    return mix(mix(a ^ k) ^ b)


# P: multiplication by an odd number is a permutation modulo 2**32; its
# inverse is the multiplication by the inverse modulo 2**32 (which may be
# above 2**31: ``unscramble`` multiplies by its two halves).
_SCRAMBLE: Final = 0x2545F491
_UNSCRAMBLE: Final = pow(_SCRAMBLE, -1, 1 << 32)
_UNSCRAMBLE_LO: Final = _UNSCRAMBLE & 0xFFFF
_UNSCRAMBLE_HI: Final = _UNSCRAMBLE >> 16


def scramble(k: i64) -> i64:
    """``P(k)``: the serial number spread over 32 bits."""
    return (k * _SCRAMBLE) & M32


def unscramble(x: i64) -> i64:
    """``P``'s inverse (products below 2**49)."""
    return ((x * _UNSCRAMBLE_LO) + (((x * _UNSCRAMBLE_HI) & 0xFFFF) << 16)) & M32


def serial_of(ack: int, src: int, ports: int, key: int) -> int:
    """The serial number ``k`` of the SYN an answer acknowledging ``ack``
    answers (``P^-1(ack - 1 - H)``, modulo 2**32)."""
    return unscramble((ack - 1 - isn_base(src, ports, key)) & M32)


def _fold(s: i64) -> i64:
    s = (s & 0xFFFF) + (s >> 16)
    return (s & 0xFFFF) + (s >> 16)


def _words(data: bytes) -> int:
    """The sum of the big-endian 16-bit words of ``data`` (even length)."""
    return sum((data[i] << 8) | data[i + 1] for i in range(0, len(data), 2))


class FloodTarget:
    """One destination of the flood: its frame's constant parts and the
    answers counted for it (``answers.FloodAnswers``)."""

    __slots__ = ("answered", "dup", "eth", "first_answer", "head", "index", "ip", "ip32",
                 "ip_sum", "key", "last_answer", "other", "port", "rst", "sent", "synack",
                 "tcp_sum", "unmatched")

    def __init__(self, index: int, ip: bytes, port: int, eth: bytes, key: int) -> None:
        self.index = index
        self.ip = ip
        self.ip32 = int.from_bytes(ip, "big")
        self.port = port
        self.eth = eth  # the Ethernet header: its MAC, ours, IPv4
        self.key = key & M32
        self.head = b""  # set by SynWriter: slot prefix + eth + the IPv4 header's first word
        self.ip_sum = 0
        self.tcp_sum = 0
        # Counted: SYNs sent to it, SYNs answered by a SYN-ACK / a RST (each
        # SYN once), answers to a SYN already answered (the target's SYN-ACK
        # retransmissions), segments from it that answer no SYN of ours
        # (``unmatched``) or are no answer to a SYN (``other``: an ACK, a FIN).
        self.sent = 0
        self.synack = 0
        self.rst = 0
        self.dup = 0
        self.unmatched = 0
        self.other = 0
        self.answered = 0
        self.first_answer = -1.0
        self.last_answer = -1.0

    @property
    def unanswered(self) -> int:
        return self.sent - self.synack - self.rst

    def name(self) -> str:
        return f"{self.ip[0]}.{self.ip[1]}.{self.ip[2]}.{self.ip[3]}:{self.port}"


class SynWriter(SlotWriter):
    """Writes the flood's SYNs, each into the buffer and offset given
    (``write``): a TX ring slot, or a frame of ``length`` bytes when the
    ``prefix`` is empty.  ``sent`` counts the SYNs written so far and is
    the next one's serial number."""

    __slots__ = ("count", "first", "length", "next_source", "nt", "off_flags_win", "opt_head",
                 "options", "pack", "prefix", "rand_source", "sent", "state", "targets")

    def __init__(self, targets: list[FloodTarget], first: int, count: int, *,
                 rand_source: bool = False, options: bool = True, mss: int = 1460,
                 prefix: bytes = b"", seed: int | None = None) -> None:
        if not targets:
            raise ValueError("a flood needs a target")
        if not 1 <= count <= 65536:
            raise ValueError(f"source addresses: 1 to 65536, not {count}")
        if first <= 0 or first + count - 1 > M32:
            raise ValueError("source addresses out of range")
        self.targets = targets
        self.nt = len(targets)
        self.first = first
        self.count = count
        self.rand_source = rand_source
        self.options = options
        self.prefix = prefix
        self.length = frame_len(options)
        self.sent = 0
        self.next_source = 0
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "big")
        # xorshift32 must never hold 0.
        self.state = (seed & M32) or 0x9E3779B9
        hl = 20 + (OPTIONS_LEN if options else 0)
        total = 20 + hl
        opt_head = options_head(mss) if options else b""
        # The constant fields: prefix, Ethernet header and the IPv4 header's
        # first word and length (``head``, per target); flags, TTL and
        # protocol; TCP data offset, flags and window; the options.
        # (Constants go in as bytes: an int argument is a Python int made
        # for every call, compiled or not.)
        fmt = f"!{len(prefix) + weth.HEADER_LEN + 4}sH4sHI4sII4x4sH2x"
        if options:
            fmt += "8sI4x4s"
        packer = struct.Struct(fmt)
        if packer.size != len(prefix) + self.length:
            raise AssertionError(f"SYN layout {packer.size} != {len(prefix) + self.length}")
        self.pack: Callable[..., None] = packer.pack_into
        self.opt_head = opt_head
        off_flags_win: int = (((hl >> 2) << 12) | wtcp.SYN) << 16 | WINDOW
        for t in targets:
            t.head = prefix + t.eth + bytes((0x45, 0, total >> 8, total & 0xFF))
            dst = t.ip32
            # The IPv4 header's constant words: version/IHL/TOS, length,
            # flags, TTL/protocol, destination (RFC 791 3.1).
            t.ip_sum = (0x4500 + total + (_FF_TTL_PROTO >> 16) + (_FF_TTL_PROTO & 0xFFFF)
                        + (dst >> 16) + (dst & 0xFFFF))
            # TCP: the pseudo-header's destination, protocol and length (RFC
            # 9293 3.1), the destination port, data offset/flags, window
            # and the options' constant bytes.
            t.tcp_sum = ((dst >> 16) + (dst & 0xFFFF) + wtcp.PROTO_TCP + hl + t.port
                         + (off_flags_win >> 16) + (off_flags_win & 0xFFFF)
                         + _words(opt_head + OPTIONS_TAIL if options else b""))
        self.off_flags_win = off_flags_win.to_bytes(4, "big")

    def next_random(self) -> int:
        """The next xorshift32 value (Marsaglia 2003, shifts 13, 17, 5)."""
        x: i64 = self.state
        x ^= (x << 13) & M32
        x ^= x >> 17
        x ^= (x << 5) & M32
        self.state = x
        return x

    def write(self, buf: mmap.mmap | bytearray, offset: int) -> None:
        """Write the next SYN (serial number ``sent``) at ``buf[offset:]``."""
        k: i64 = self.sent
        nt: i64 = self.nt
        t = self.targets[k % nt] if nt > 1 else self.targets[0]
        # Two xorshift32 steps: the port and (at random) the source from
        # the first, the identification and TSval from the second.
        x: i64 = self.state
        x ^= (x << 13) & M32
        x ^= x >> 17
        x ^= (x << 5) & M32
        r1 = x
        x ^= (x << 13) & M32
        x ^= x >> 17
        x ^= (x << 5) & M32
        self.state = x
        # Ranges by multiply-shift, not division (Lemire 2019).
        sport: i64 = PORT_FIRST + (((r1 & 0xFFFF) * PORT_SPAN) >> 16)
        n: i64 = self.count
        if self.rand_source:
            src: i64 = self.first + (((r1 >> 16) * n) >> 16)
        else:
            i: i64 = self.next_source
            src = self.first + i
            i += 1
            self.next_source = i if i < n else 0
        ident: i64 = x >> 16
        ports: i64 = (sport << 16) | t.port
        seq: i64 = (isn_base(src, ports, t.key) + scramble(k & M32)) & M32
        ip_csum = _fold(t.ip_sum + ident + (src >> 16) + (src & 0xFFFF)) ^ 0xFFFF
        s: i64 = t.tcp_sum + (src >> 16) + (src & 0xFFFF) + sport + (seq >> 16) + (seq & 0xFFFF)
        if self.options:
            s += (x >> 16) + (x & 0xFFFF)  # TSval
            self.pack(buf, offset, t.head, ident, _FF_TTL_PROTO_BYTES, ip_csum, src, t.ip, ports,
                      seq, self.off_flags_win, _fold(s) ^ 0xFFFF, self.opt_head, x,
                      OPTIONS_TAIL)
        else:
            self.pack(buf, offset, t.head, ident, _FF_TTL_PROTO_BYTES, ip_csum, src, t.ip, ports,
                      seq, self.off_flags_win, _fold(s) ^ 0xFFFF)
        t.sent += 1
        self.sent = k + 1

    def frames(self, n: int) -> list[bytearray]:
        """The next ``n`` SYNs as frames of their own (``prefix`` must be
        empty): for a device without a TX ring (``send_batch``)."""
        if self.prefix:
            raise ValueError("frames() writes whole frames: the writer has a slot prefix")
        out = []
        for _ in range(n):
            f = bytearray(self.length)
            self.write(f, 0)
            out.append(f)
        return out
