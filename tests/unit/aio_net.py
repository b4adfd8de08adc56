"""Two ustack Stacks on one in-memory link, driven by one asyncio loop.

Shared by the ``test_aio_*`` files: ``run`` attaches both stacks (the
``stacks`` fixture in conftest.py) to a fresh event loop and runs a
coroutine with a time bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ustack import aio
from ustack.stack import Stack

A_IP, B_IP = "198.18.0.1", "198.18.0.2"
PORT = 7


def run(stacks: tuple[Stack, Stack], coro_fn: Callable[[], Awaitable[None]],
        limit: float = 30.0) -> None:
    async def bounded() -> None:
        attached = [aio.AioStack(s).start() for s in stacks]
        try:
            await asyncio.wait_for(coro_fn(), limit)
        finally:
            for x in attached:
                x.close()

    asyncio.run(bounded())
