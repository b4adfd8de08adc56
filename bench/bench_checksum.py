"""Compare Internet checksum (RFC 1071) implementations in pure Python.

Every candidate computes the folded one's-complement sum of a buffer (the
value ``ustack.wire.checksum.ones_sum`` returns) and is checked against the
word-by-word reference before it is timed.  Prints one row per
(implementation, size): best-of-N microseconds per call and the ratio to the
chosen implementation (``ones_sum``; > 1 means slower than it).

    python3 bench/bench_checksum.py [--repeat 5] [--sizes 20,64,576,1460,9000,65535]

numpy, if importable, is timed for reference only: the core is stdlib-only.

``ones_sum`` is this process's build of ``ustack.wire.checksum``: the
compiled one, or with ``--build pure`` the pure-Python one (the script then
starts again with ``USTACK_PURE=1``); a ``build:`` line says which.  Without
the compiled build (not installed) it stops with status 1 unless given
``--build pure``.
"""

from __future__ import annotations

import argparse
import array
import functools
import os
import struct
import sys
import timeit
import zlib
from collections.abc import Callable

import harness  # bench/harness.py: run as a script, bench/ is on sys.path

from ustack.wire import checksum

Impl = Callable[[bytes], int]
SIZES = (20, 64, 576, 1460, 9000, 65535)


def _finish(n: int) -> int:
    """n mod 0xFFFF as a one's-complement sum: 0 only for n == 0."""
    r = n % 0xFFFF
    return 0xFFFF if r == 0 and n else r


def naive_loop(data: bytes) -> int:
    """RFC 1071 4.1 transcribed: 16-bit words, end-around carry."""
    if len(data) & 1:
        data += b"\x00"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def from_bytes_mod(data: bytes) -> int:
    """The previous ustack version: one big int, one remainder."""
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    return _finish(n)


_POW2_MASKS = [(1 << (1 << e)) - 1 for e in range(21)]


def pow2_fold(data: bytes) -> int:
    """Fold at the largest power-of-two bit position below the length."""
    n = int.from_bytes(data, "big")
    b = n.bit_length()
    while b > 1024:
        e = (b - 1).bit_length() - 1
        n = (n >> (1 << e)) + (n & _POW2_MASKS[e])
        b = n.bit_length()
    if len(data) & 1:
        n <<= 8
    return _finish(n)


def split_from_bytes(data: bytes) -> int:
    """Sum of int.from_bytes over 256-byte slices (even offsets from the end)."""
    m = memoryview(data)
    size = len(data)
    start = size & 255
    n = int.from_bytes(m[:start], "big") if start else 0
    if size & 1:
        # Align: the odd byte is the low half of the last word, not the high.
        return from_bytes_mod(data)
    fb = int.from_bytes
    n += sum(fb(m[i : i + 256], "big") for i in range(start, size, 256))
    return _finish(n)


def struct_unpack_sum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\x00"
    return _finish(sum(struct.unpack(f"!{len(data) // 2}H", data)))


def array_sum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\x00"
    a = array.array("H", data)
    if sys.byteorder == "little":
        a.byteswap()
    return _finish(sum(a))


def memoryview_cast_sum(data: bytes) -> int:
    """Native 32-bit words; the sum is byte-order independent (RFC 1071 2(B))
    up to a final byte swap of the folded result."""
    if len(data) & 1:
        data += b"\x00"
    if len(data) & 2:
        data += b"\x00\x00"
    s = sum(memoryview(data).cast("I"))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    if sys.byteorder == "little":
        s = ((s & 0xFF) << 8) | (s >> 8)
    return s


def adler32_parity(data: bytes) -> int:
    """Byte sums from zlib.adler32's A half, exact for chunks <= 256 bytes:
    sum = 256 * sum(even bytes) + sum(odd bytes)."""
    ad = zlib.adler32
    total = 0
    for part, weight in ((data[0::2], 256), (data[1::2], 1)):
        s = 0
        for i in range(0, len(part), 256):
            s += (ad(part[i : i + 256]) & 0xFFFF) - 1
        total += weight * s
    return _finish(total)


def _numpy_impl() -> Impl | None:
    try:
        import numpy as np
    except ImportError:
        return None

    def numpy_sum(data: bytes) -> int:
        if len(data) & 1:
            data += b"\x00"
        return _finish(int(np.frombuffer(data, dtype=">u2").sum(dtype=np.uint64)))

    return numpy_sum


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    harness.add_build_option(ap)
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    try:
        build = harness.process_build(args.build, __file__)
    except harness.BuildUnavailable as exc:
        print(f"bench_checksum: {exc}", file=sys.stderr)
        return 1
    print(harness.build_line(build, "ones_sum, ustack.wire.checksum"))

    chosen_name = "ones_sum (chosen)"
    impls: list[tuple[str, Impl]] = [
        (chosen_name, checksum.ones_sum),
        ("from_bytes_mod", from_bytes_mod),
        ("pow2_fold", pow2_fold),
        ("split_from_bytes", split_from_bytes),
        ("adler32_parity", adler32_parity),
        ("memoryview_cast_sum", memoryview_cast_sum),
        ("array_sum", array_sum),
        ("struct_unpack_sum", struct_unpack_sum),
        ("naive_loop", naive_loop),
    ]
    np_impl = _numpy_impl()
    if np_impl is not None:
        impls.append(("numpy (not stdlib)", np_impl))

    rng = os.urandom
    print(f"{'implementation':<22} {'bytes':>6} {'us':>10} {'ratio':>7}")
    for size in sizes:
        data = rng(size)
        ref = naive_loop(data)
        timings: dict[str, float] = {}
        for name, fn in impls:
            got = fn(data)
            if got != ref:
                raise SystemExit(f"{name} wrong for {size} bytes: {got:#x} != {ref:#x}")
            timer = timeit.Timer(functools.partial(fn, data))
            number, _ = timer.autorange()
            number = max(1, number // 4)
            best = min(timer.repeat(repeat=args.repeat, number=number)) / number
            timings[name] = best * 1e6
        base = timings[chosen_name]
        for name, _ in impls:
            t = timings[name]
            print(f"{name:<22} {size:>6} {t:>10.3f} {t / base:>7.2f}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
