"""ustack.aio streams: two Stacks over an in-memory link, both in ONE event loop.

The pipe's descriptor is an eventfd, so the loop's selector wakes for it
like for a TAP: these run the real loop integration (add_reader, call_at,
call_soon flushes) with the real clock, no root needed.
"""

from __future__ import annotations

import asyncio
import hashlib
import random

import pytest
from aio_net import A_IP, B_IP, PORT, run

from ustack import aio
from ustack.stack import Stack
from ustack.tcp.socket import TcpSocket


def usock(writer: asyncio.StreamWriter) -> TcpSocket:
    sock: TcpSocket = writer.get_extra_info("ustack_socket")
    return sock


def usock_transport(writer: asyncio.StreamWriter) -> aio.TcpTransport:
    transport = writer.transport
    assert isinstance(transport, aio.TcpTransport)
    return transport


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


def test_echo_10mb_sha256(stacks: tuple[Stack, Stack]) -> None:
    a, b = stacks
    data = random.Random(5).randbytes(10 << 20)

    async def main() -> None:
        server = await aio.start_server(echo, B_IP, PORT, stack=b)
        reader, writer = await aio.open_connection(B_IP, PORT, stack=a)
        assert writer.get_extra_info("peername") == (B_IP, PORT)
        assert writer.get_extra_info("sockname")[0] == A_IP

        async def send() -> None:
            view = memoryview(data)
            for off in range(0, len(data), 100_000):
                writer.write(view[off:off + 100_000])
                await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        got = hashlib.sha256()
        n = 0
        while chunk := await reader.read(1 << 20):
            got.update(chunk)
            n += len(chunk)
        await sender
        assert n == len(data)
        assert got.digest() == hashlib.sha256(data).digest()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(stacks, main)


def test_connect_to_closed_port_is_refused(stacks: tuple[Stack, Stack]) -> None:
    a, _ = stacks

    async def main() -> None:
        with pytest.raises(ConnectionRefusedError):
            await aio.open_connection(B_IP, 9999, stack=a)

    run(stacks, main)


def test_peer_reset_surfaces_as_connection_reset(stacks: tuple[Stack, Stack]) -> None:
    a, b = stacks

    async def main() -> None:
        async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readexactly(5)
            writer.transport.abort()  # RST (SO_LINGER 0)

        server = await aio.start_server(rude, B_IP, PORT, stack=b)
        reader, writer = await aio.open_connection(B_IP, PORT, stack=a)
        writer.write(b"hello")
        with pytest.raises(ConnectionResetError):
            await reader.read(100)
        with pytest.raises(ConnectionResetError):
            writer.write(b"more")
            await writer.drain()
        server.close()

    run(stacks, main)


def test_slow_reader_blocks_drain_and_closes_the_window(stacks: tuple[Stack, Stack]) -> None:
    """A reader that stops reading: the server's drain() blocks, the window
    the client advertises goes to zero, and after reading resumes every byte
    arrives intact."""
    a, b = stacks
    b.tcp.config.sndbuf = 64 * 1024
    data = random.Random(6).randbytes(2 << 20)
    progress = {"written": 0}

    async def main() -> None:
        async def push(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            view = memoryview(data)
            for off in range(0, len(data), 32768):
                writer.write(view[off:off + 32768])
                await writer.drain()
                progress["written"] = off + 32768
            writer.close()
            await writer.wait_closed()

        server = await aio.start_server(push, B_IP, PORT, stack=b)
        reader, writer = await aio.open_connection(B_IP, PORT, stack=a, limit=16 * 1024,
                                                   rcvbuf=128 * 1024)
        await asyncio.sleep(0.3)  # read nothing: everything fills up
        stalled_at = progress["written"]
        await asyncio.sleep(0.2)
        assert progress["written"] == stalled_at < len(data)  # drain() is blocked
        conn = usock(writer).conn
        assert conn.readable_bytes >= 128 * 1024 - conn.mss  # the TCP buffer is full
        server_conn = next(iter(b.tcp.conns.values())).conn
        assert server_conn.snd_wnd == 0  # the peer closed its window
        assert not usock_transport(writer).is_reading()  # the StreamReader paused us

        got = bytearray()
        while chunk := await reader.read(65536):
            got += chunk
        assert bytes(got) == data
        writer.close()
        await writer.wait_closed()
        server.close()

    run(stacks, main)


def test_server_context_manager_and_serve_forever(stacks: tuple[Stack, Stack]) -> None:
    a, b = stacks

    async def main() -> None:
        server = await aio.start_server(echo, B_IP, PORT, stack=b)
        async with server:
            assert server.is_serving()
            assert server.sockets == ((B_IP, PORT),)
            task = asyncio.create_task(server.serve_forever())
            reader, writer = await aio.open_connection(B_IP, PORT, stack=a)
            writer.write(b"ping\n")
            assert await reader.readline() == b"ping\n"
            writer.close()
            await writer.wait_closed()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert not server.is_serving()
        with pytest.raises(ConnectionRefusedError):
            await aio.open_connection(B_IP, PORT, stack=a)

    run(stacks, main)
