"""asyncio streams on ustack: ``start_server`` and ``open_connection``.

The standard library's StreamReader, StreamWriter and StreamReaderProtocol
run unchanged on a ``TcpTransport``: the reader pauses the transport above
twice its ``limit`` (so the TCP window closes), and ``drain()`` waits on
``pause_writing``/``resume_writing`` (so a writer waits for the peer's ACKs
once the TCP send buffer and the transport's buffer are full).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ustack.api.aio.loop import AioStack, attach
from ustack.api.aio.tcp import Server, create_connection, create_server
from ustack.stack import Stack

DEFAULT_LIMIT = 2 ** 16  # asyncio.streams' default

ClientConnected = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None]


async def start_server(client_connected_cb: ClientConnected, host: str | None = None,
                       port: int = 0, *, stack: Stack | AioStack, limit: int = DEFAULT_LIMIT,
                       backlog: int = 128) -> Server:
    """Like ``asyncio.start_server``: ``client_connected_cb(reader, writer)`` per
    connection (a coroutine function runs as a task)."""
    aio = attach(stack)
    loop = aio.loop

    def factory() -> asyncio.StreamReaderProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return await create_server(factory, host, port, stack=aio, backlog=backlog)


async def open_connection(host: str, port: int, *, stack: Stack | AioStack,
                          limit: int = DEFAULT_LIMIT, **tcp_options: Any
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Like ``asyncio.open_connection``; ``tcp_options`` are ``TcpConfig`` fields.

    A closed port raises ConnectionRefusedError.
    """
    aio = attach(stack)
    loop = aio.loop
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await create_connection(lambda: protocol, host, port, stack=aio,
                                           **tcp_options)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer
