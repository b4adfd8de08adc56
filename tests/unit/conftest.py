"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aio_net import A_IP, B_IP
from socket_net import Net

from ustack.link.pipe import pipe_pair
from ustack.stack import Stack


@pytest.fixture
def stacks() -> Iterator[tuple[Stack, Stack]]:
    """Two stacks on one in-memory link (the aio tests drive them from a loop)."""
    da, db = pipe_pair(queue_len=4096)
    a, b = Stack(), Stack()
    a.add_interface(da, f"{A_IP}/24")
    b.add_interface(db, f"{B_IP}/24")
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@pytest.fixture
def net() -> Iterator[Net]:
    """Two Stacks in Runtime threads for the ``ustack.socket`` tests."""
    n = Net()
    try:
        yield n
    finally:
        n.close()
