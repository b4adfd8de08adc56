"""ustack.aio against the Linux kernel (issue 5, item 2), over TAP and AF_PACKET.

One event loop, one thread: an asyncio echo server on ustack (its link
opened inside the test namespace) and an asyncio client on a kernel socket
in the peer namespace, exchanging 10 MB with equal SHA-256; then the other
way round, a ustack.aio client and a kernel asyncio server.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
from collections.abc import Awaitable, Callable

import pytest

from ustack import aio
from ustack.bringup import LinkedStack, LinkOptions
from ustack.stack import Stack
from ustack_testbed import Testbed, Topology, tap_topology

pytestmark = pytest.mark.root

SIZE = 10 * 1024 * 1024
PORT = 7
DEADLINE = 60.0


def ustack_on(topo: Topology) -> LinkedStack:
    """A Stack on the topology's link, brought up inside its namespace."""
    host_ip = topo.peer_cidr if topo.kind == "tap" else None
    options = LinkOptions(topo.link, topo.stack_cidr, host_ip=host_ip)
    return topo.stack_ns.call(LinkedStack(options).open)


def run_bounded(stack: Stack, body: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        attached = aio.AioStack(stack).start()
        try:
            await asyncio.wait_for(body(), DEADLINE)
        finally:
            attached.close()

    asyncio.run(main())


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   data: bytes) -> bytes:
    """Send ``data`` then EOF while reading everything that comes back."""

    async def send() -> None:
        view = memoryview(data)
        for off in range(0, len(data), 65536):
            writer.write(view[off:off + 65536])
            await writer.drain()
        writer.write_eof()

    sender = asyncio.create_task(send())
    got = bytearray()
    while chunk := await reader.read(1 << 20):
        got += chunk
    await sender
    writer.close()
    return bytes(got)


def test_kernel_client_to_ustack_aio_server(topo: Topology) -> None:
    up = ustack_on(topo)
    stack = up.stack
    data = random.Random(51).randbytes(SIZE)
    try:
        async def go() -> None:
            server = await aio.start_server(echo, topo.stack_ip, PORT, stack=stack)
            ksock = topo.peer_ns.socket(socket.AF_INET, socket.SOCK_STREAM)
            ksock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(ksock, (topo.stack_ip, PORT))
            reader, writer = await asyncio.open_connection(sock=ksock)
            got = await exchange(reader, writer, data)
            assert len(got) == SIZE
            assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
            server.close()

        run_bounded(stack, go)
    finally:
        up.close()


def test_ustack_aio_client_to_kernel_server(topo: Topology) -> None:
    up = ustack_on(topo)
    stack = up.stack
    data = random.Random(52).randbytes(SIZE)
    try:
        async def go() -> None:
            lsock = topo.peer_ns.socket(socket.AF_INET, socket.SOCK_STREAM)
            lsock.bind((topo.peer_ip, 0))
            lsock.listen()
            server = await asyncio.start_server(echo, sock=lsock)
            port = lsock.getsockname()[1]
            reader, writer = await aio.open_connection(topo.peer_ip, port, stack=stack)
            got = await exchange(reader, writer, data)
            assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
            server.close()

        run_bounded(stack, go)
    finally:
        up.close()


def test_running_brings_a_stack_up_on_a_tap(testbed: Testbed) -> None:
    """``aio.running`` opens the TAP, addresses the kernel side, and tears it
    all down: the whole loop runs in a thread inside the namespace."""
    topo = tap_topology(testbed)

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.DatagramTransport)
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(data[::-1], addr)

    async def main() -> list[bytes]:
        async with aio.running(topo.link, topo.stack_cidr, host_ip=topo.peer_cidr) as st:
            await aio.create_datagram_endpoint(Echo, local_addr=(topo.stack_ip, PORT), stack=st)
            loop = asyncio.get_running_loop()
            ksock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # in the namespace
            ksock.setblocking(False)
            try:
                await loop.sock_connect(ksock, (topo.stack_ip, PORT))
                replies = []
                for i in range(20):
                    await loop.sock_sendall(ksock, b"abc%d" % i)
                    replies.append(await asyncio.wait_for(loop.sock_recv(ksock, 100), 5))
                return replies
            finally:
                ksock.close()

    replies = topo.stack_ns.call(lambda: asyncio.run(main()))
    assert replies == [(b"abc%d" % i)[::-1] for i in range(20)]
    # The TAP went away with the stack.
    assert topo.stack_if not in topo.stack_ns.ip("-br", "link").stdout
