"""The thread-safe in-memory link: the pipe's rules, plus wake-ups that are
neither lost nor left behind when the two ends run in different threads."""

from __future__ import annotations

import asyncio
import os
import random
import select
import threading

import pytest

from ustack.aio import AioStack
from ustack.link import LinkError, ThreadPipeDevice, thread_pipe_pair
from ustack.link.base import Device
from ustack.stack import Stack


def frame(i: int, size: int = 60) -> bytes:
    return i.to_bytes(4, "big") * (size // 4)


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_a_device_with_the_pipes_rules() -> None:
    a, b = thread_pipe_pair(queue_len=4)
    try:
        assert isinstance(a, Device) and isinstance(b, ThreadPipeDevice)
        assert a.caps.mtu == 1500 and a.hwaddr is None
        # Oversize and runt frames are dropped and counted; a full queue drops the rest.
        assert a.send_batch([frame(0, 1520), b"\x00" * 10], 0.0) == 0
        assert a.send_batch([frame(i) for i in range(6)], 0.0) == 4
        assert a.stats()["tx_oversize"] == 1 and a.stats()["tx_runt"] == 1
        assert a.stats()["tx_queue_full"] == 2
        assert b.recv_batch(3, 0.0) == [frame(i) for i in range(3)]
        assert b.recv_batch(0, 0.0) == []
        assert b.recv_batch(10, 0.0) == [frame(3)]
        assert b.stats()["rx_frames"] == 4
    finally:
        a.close()
        b.close()


def test_readiness_follows_the_queue() -> None:
    a, b = thread_pipe_pair()
    try:
        assert not readable(b.fileno())
        a.send_batch([frame(i) for i in range(5)], 0.0)
        assert readable(b.fileno())
        assert b.recv_batch(2, 0.0) == [frame(0), frame(1)]
        assert readable(b.fileno())  # more than one batch waited: still readable
        assert b.recv_batch(10, 0.0) == [frame(2), frame(3), frame(4)]
        assert not readable(b.fileno())
    finally:
        a.close()
        b.close()


def test_a_late_wake_up_is_read_away() -> None:
    """The sender's eventfd write can land after the receiver took its
    frames; the next (empty) receive clears it, or a poll loop would spin."""
    a, b = thread_pipe_pair()
    try:
        a.send_batch([frame(1)], 0.0)
        assert b.recv_batch(10, 0.0) == [frame(1)]
        b._waker.arm()  # the write of a frame already taken, arriving late
        assert readable(b.fileno())
        assert b.recv_batch(10, 0.0) == []
        assert not readable(b.fileno())
    finally:
        a.close()
        b.close()


def test_two_threads_lose_no_wake_up_and_keep_the_order() -> None:
    a, b = thread_pipe_pair(queue_len=100_000)
    n = 50_000
    rng = random.Random(5)
    sizes = []
    left = n
    while left:
        k = min(left, rng.randint(1, 64))
        sizes.append(k)
        left -= k

    def sender() -> None:
        i = 0
        for k in sizes:
            a.send_batch([frame(j) for j in range(i, i + k)], 0.0)
            i += k
            if rng.random() < 0.01:
                os.sched_yield()

    got: list[bytes] = []
    empty = 0
    t = threading.Thread(target=sender)
    t.start()
    try:
        fd = b.fileno()
        while len(got) < n:
            # A lost wake-up leaves frames queued behind a quiet descriptor.
            assert select.select([fd], [], [], 5.0)[0], f"lost wake-up after {len(got)}"
            batch = b.recv_batch(256, 0.0)
            if not batch:
                empty += 1
            got += batch
    finally:
        t.join(10)
    assert got == [frame(i) for i in range(n)]
    # Late wake-ups happen, but each is cleared once: no spinning.
    assert empty <= len(sizes)
    b.recv_batch(256, 0.0)
    assert not readable(b.fileno())
    a.close()
    b.close()


def test_closed_ends() -> None:
    a, b = thread_pipe_pair()
    b.close()
    assert a.send_batch([frame(1)], 0.0) == 0
    assert a.stats()["tx_peer_closed"] == 1
    b._waker.arm()  # a write racing with close() finds no descriptor: nothing happens
    with pytest.raises(LinkError):
        b.recv_batch(10, 0.0)
    a.close()


def test_aio_stack_registers_the_stacks_extra_readers() -> None:
    """``Stack.extra_readers()``: a copy AioStack registers with the loop."""
    a, b = thread_pipe_pair()
    stack = Stack()
    stack.add_interface(a, "198.18.0.1/24")
    wake = os.eventfd(0, os.EFD_NONBLOCK)
    calls: list[int] = []

    def on_wake() -> None:
        calls.append(os.eventfd_read(wake))

    stack.add_reader(wake, on_wake)
    readers = stack.extra_readers()
    assert readers == {wake: on_wake}
    readers.clear()  # a copy: the stack's own table is untouched
    assert stack.extra_readers() == {wake: on_wake}

    async def main() -> None:
        aio = AioStack(stack).start()
        try:
            os.eventfd_write(wake, 3)
            for _ in range(100):
                if calls:
                    break
                await asyncio.sleep(0.01)
        finally:
            aio.close()

    try:
        asyncio.run(main())
        assert calls == [3]
    finally:
        os.close(wake)
        stack.close()
        b.close()
