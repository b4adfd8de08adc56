"""The in-memory link: order, batching, bounds, readiness, life cycle."""

from __future__ import annotations

import select
import selectors

import pytest

from ustack.link import LinkError
from ustack.link.base import Device
from ustack.link.pipe import pipe_pair


def frame(i: int, size: int = 60) -> bytes:
    return i.to_bytes(4, "big") * (size // 4)


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_is_a_device() -> None:
    a, b = pipe_pair()
    assert isinstance(a, Device) and isinstance(b, Device)
    assert a.caps.mtu == 1500 and a.caps.max_frame == 1514
    assert a.hwaddr is None and a.next_deadline() is None


def test_frames_cross_in_order_both_ways() -> None:
    a, b = pipe_pair()
    sent = [frame(i) for i in range(100)]
    assert a.send_batch(sent, 0.0) == 100
    assert b.recv_batch(1000, 0.0) == sent
    assert b.send_batch([frame(7)], 0.0) == 1
    assert a.recv_batch(10, 0.0) == [frame(7)]
    assert a.recv_batch(10, 0.0) == [] and b.recv_batch(10, 0.0) == []


def test_mutable_buffers_are_copied() -> None:
    a, b = pipe_pair()
    buf = bytearray(frame(1))
    a.send_batch([buf, memoryview(buf)], 0.0)
    buf[0] ^= 0xFF
    got = b.recv_batch(10, 0.0)
    assert got == [frame(1), frame(1)]
    assert all(type(f) is bytes for f in got)


def test_recv_respects_max_frames() -> None:
    a, b = pipe_pair()
    a.send_batch([frame(i) for i in range(10)], 0.0)
    assert b.recv_batch(3, 0.0) == [frame(i) for i in range(3)]
    assert b.recv_batch(0, 0.0) == []
    assert b.recv_batch(4, 0.0) == [frame(i) for i in range(3, 7)]
    assert b.recv_batch(100, 0.0) == [frame(i) for i in range(7, 10)]


def test_bounded_queue_drops_and_counts() -> None:
    a, b = pipe_pair(queue_len=4)
    assert a.send_batch([frame(i) for i in range(10)], 0.0) == 4
    assert a.stats()["tx_queue_full"] == 6
    assert a.send_batch([frame(99)], 0.0) == 0
    assert a.stats()["tx_queue_full"] == 7
    assert b.recv_batch(2, 0.0) == [frame(0), frame(1)]
    assert a.send_batch([frame(10), frame(11), frame(12)], 0.0) == 2
    assert b.recv_batch(10, 0.0) == [frame(2), frame(3), frame(10), frame(11)]
    s = a.stats()
    assert (s["tx_frames"], s["tx_queue_full"]) == (6, 8)
    assert b.stats()["rx_frames"] == 6


def test_size_limits() -> None:
    a, b = pipe_pair(mtu=100)
    ok = bytes(114)
    assert a.send_batch([bytes(13), bytes(115), ok, bytes(14)], 0.0) == 2
    s = a.stats()
    assert (s["tx_runt"], s["tx_oversize"], s["tx_bytes"]) == (1, 1, 128)
    assert b.recv_batch(10, 0.0) == [ok, bytes(14)]
    assert b.stats()["rx_bytes"] == 128


def test_bad_parameters() -> None:
    with pytest.raises(LinkError):
        pipe_pair(mtu=10)
    with pytest.raises(LinkError):
        pipe_pair(queue_len=0)


def test_fileno_readable_exactly_while_frames_wait() -> None:
    a, b = pipe_pair()
    assert not readable(b.fileno())
    a.send_batch([frame(1), frame(2)], 0.0)
    assert readable(b.fileno()) and not readable(a.fileno())
    b.recv_batch(1, 0.0)
    assert readable(b.fileno())  # one frame still waits
    b.recv_batch(1, 0.0)
    assert not readable(b.fileno())
    a.send_batch([frame(3)], 0.0)
    assert readable(b.fileno())


def test_unpolled_endpoint_never_blocks() -> None:
    # Nobody ever polls or drains the descriptor: thousands of sends must
    # neither block nor raise, and one drain resets readiness.
    a, b = pipe_pair(queue_len=100_000)
    for i in range(20_000):
        a.send_batch([frame(i)], 0.0)
    assert b.queued() == 20_000
    assert len(b.recv_batch(100_000, 0.0)) == 20_000
    assert not readable(b.fileno())


def test_selector_loop_moves_frames() -> None:
    a, b = pipe_pair()
    sel = selectors.DefaultSelector()
    sel.register(b.fileno(), selectors.EVENT_READ)
    got: list[bytes] = []
    for i in range(5):
        a.send_batch([frame(i)], 0.0)
        for _key, _ in sel.select(timeout=1.0):
            got.extend(b.recv_batch(64, 0.0))
    sel.close()
    assert got == [frame(i) for i in range(5)]


def test_close() -> None:
    a, b = pipe_pair()
    a.send_batch([frame(1)], 0.0)
    b.close()
    b.close()  # idempotent
    assert a.send_batch([frame(2), frame(3)], 0.0) == 0
    assert a.stats()["tx_peer_closed"] == 2
    with pytest.raises(LinkError, match="closed"):
        b.recv_batch(1, 0.0)
    with pytest.raises(LinkError, match="closed"):
        b.send_batch([frame(1)], 0.0)
    with pytest.raises(LinkError, match="closed"):
        b.fileno()
    with a:
        pass
    with pytest.raises(LinkError):
        a.fileno()
