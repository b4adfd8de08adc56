"""ustack.wire.checksum against a naive RFC 1071 reference and RFC 1624."""

from __future__ import annotations

import random

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ustack import purepy
from ustack.wire import checksum as ck

SETTINGS = settings(max_examples=200, deadline=None)


def naive_sum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 section 4.1, word by word with end-around carry."""
    if len(data) & 1:
        data += b"\x00"
    s = initial
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


# Sizes around the folding threshold (256 bytes) and its halving steps.
sizes = st.one_of(
    st.integers(0, 40),
    st.integers(250, 270),
    st.sampled_from([511, 512, 513, 1459, 1460, 1461, 2048, 9000, 9001, 65535]),
    st.integers(0, 4000),
)


@st.composite
def payloads(draw: st.DrawFn, sizes: st.SearchStrategy[int] = sizes) -> bytes:
    size = draw(sizes)
    kind = draw(st.sampled_from(["random", "zero", "ones", "mixed"]))
    if kind == "zero":
        return bytes(size)
    if kind == "ones":
        return b"\xff" * size
    rnd = random.Random(draw(st.integers(0, 2**32)))
    data = bytearray(rnd.randbytes(size))
    if kind == "mixed" and size:
        # Long runs of 0x00/0xFF make partial sums hit 0xFFFF / carry edges.
        for _ in range(rnd.randrange(1, 8)):
            a = rnd.randrange(size)
            b = min(size, a + rnd.randrange(1, 600))
            data[a:b] = (b"\xff" if rnd.random() < 0.5 else b"\x00") * (b - a)
    return bytes(data)


@SETTINGS
@given(payloads(), st.integers(0, 0x3FFFF))
@example(b"", 0)
@example(b"\x00" * 9, 0)
@example(b"\xff\xff", 0)
@example(b"\xff", 0xFF)
def test_ones_sum_matches_reference(data: bytes, initial: int) -> None:
    ref = naive_sum(data, initial)
    assert ck.ones_sum(data, initial) == ref
    assert ck.ones_sum(bytearray(data), initial) == ref
    assert ck.ones_sum(memoryview(data), initial) == ref
    assert ck.checksum(data, initial) == ~ref & 0xFFFF
    assert ck.sum_mod(data) == naive_sum(data) % 0xFFFF


@SETTINGS
@given(payloads(), st.integers(0, 0x3FFFF))
def test_checksum_inserted_verifies(data: bytes, initial: int) -> None:
    # Append the checksum as a trailing word on an even boundary.
    if len(data) & 1:
        data += b"\x00"
    c = ck.checksum(data, initial)
    whole = data + c.to_bytes(2, "big")
    assert ck.verify(whole, initial)
    assert naive_sum(whole, initial) == 0xFFFF
    if whole.strip(b"\x00") or initial:
        bad = bytearray(whole)
        bad[-1] ^= 0x01
        assert not ck.verify(bytes(bad), initial)


def test_verify_rejects_all_zero() -> None:
    # The one's-complement sum of zeros is +0, not all ones.
    assert not ck.verify(bytes(20))
    assert not ck.verify(b"")
    assert ck.verify(b"\xff\xff")


@SETTINGS
@given(
    st.binary(min_size=4, max_size=4),
    st.binary(min_size=4, max_size=4),
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
)
def test_pseudo_header_sum(src: bytes, dst: bytes, proto: int, length: int) -> None:
    ref = naive_sum(src + dst + bytes([0, proto]) + length.to_bytes(2, "big"))
    assert ck.fold(ck.pseudo_header_sum(src, dst, proto, length)) % 0xFFFF == ref % 0xFFFF


def test_rfc1624_example() -> None:
    # RFC 1624 section 4: HC = 0xDD2F, m = 0x5555, m' = 0x3285.  Eqn. 3
    # gives 0x0000 where the flawed RFC 1141 eqn. 2 gives 0xFFFF.
    assert ck.update16(0xDD2F, 0x5555, 0x3285) == 0x0000
    assert ck.update_bytes(0xDD2F, b"\x55\x55", b"\x32\x85") in (0x0000, 0xFFFF)


@SETTINGS
@given(payloads(), st.data())
def test_incremental_update_equals_recompute(data: bytes, draw: st.DataObject) -> None:
    if len(data) < 2:
        data = data + b"\x12\x34"
    if len(data) & 1:
        data += b"\x00"
    words = len(data) // 2
    i = draw.draw(st.integers(0, words - 1)) * 2
    width = 2 * draw.draw(st.integers(1, max(1, min(4, words - i // 2))))
    new_field = draw.draw(st.binary(min_size=width, max_size=width))
    old = ck.checksum(data)
    new_data = data[:i] + new_field + data[i + width :]
    recomputed = ck.checksum(new_data)
    if width == 2:
        upd = ck.update16(
            old, int.from_bytes(data[i : i + 2], "big"), int.from_bytes(new_field, "big")
        )
    else:
        upd = ck.update_bytes(old, data[i : i + width], new_field)
    # Equal up to the two one's-complement zeros: RFC 1624 eqn. 3 cannot tell
    # data that became all zero (checksum 0xFFFF) from a sum of 0xFFFF.
    assert upd == recomputed or {upd, recomputed} == {0, 0xFFFF}
    if any(new_data):
        assert ck.verify(new_data + upd.to_bytes(2, "big"))


def test_update_bytes_rejects_odd() -> None:
    try:
        ck.update_bytes(0, b"\x01", b"\x02")
    except ValueError:
        return
    raise AssertionError("odd-length update accepted")


def test_fold() -> None:
    assert ck.fold(0) == 0
    assert ck.fold(0xFFFF) == 0xFFFF
    assert ck.fold(0x1FFFE) == 0xFFFF
    assert ck.fold(0x10000) == 1


@SETTINGS
@given(payloads(st.integers(0, 2000)))
@example(b"")
@example(b"\xff")
@example(b"\xff" * 1999)
@example(b"\x00" * 7 + b"\x01")
def test_loop_and_bigint_agree(data: bytes) -> None:
    """The compiled build's loop and the pure build's big integer, each
    called directly whatever build runs (sum_mod picks one of them)."""
    ref = naive_sum(data) % 0xFFFF
    assert ck.sum_loop(data) == ref
    for buf in (data, bytearray(data), memoryview(data)):
        assert ck.sum_bigint(buf) == ref
        assert ck.sum_mod(buf) == ref


def test_compiled_flag_names_the_build() -> None:
    assert ck.COMPILED is (purepy.build() == "compiled")
