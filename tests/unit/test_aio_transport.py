"""ustack.aio Protocol/Transport: two Stacks over an in-memory link in one loop."""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Any

import pytest
from aio_net import A_IP, B_IP, PORT, run

from ustack import aio
from ustack.stack import Stack


class Echo(asyncio.Protocol):
    """Echoes; closes when the peer has finished sending."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False  # asyncio: the transport closes itself


class Collector(asyncio.Protocol):
    """Records everything that happens to it."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.events: list[str] = []
        self.lost: asyncio.Future[BaseException | None] = (
            asyncio.get_running_loop().create_future())
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.events.append("eof")
        return True

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)



async def collecting_server(b: Stack) -> tuple[asyncio.AbstractServer, list[Collector]]:
    """A server on B whose connections each get a Collector, listed as accepted."""
    accepted: list[Collector] = []

    def factory() -> Collector:
        p = Collector()
        accepted.append(p)
        return p

    return await aio.create_server(factory, B_IP, PORT, stack=b), accepted


async def first_accepted(accepted: list[Collector]) -> Collector:
    while not accepted or accepted[0].transport is None:
        await asyncio.sleep(0.001)
    return accepted[0]


def test_protocol_echo_and_half_close(stacks: tuple[Stack, Stack]) -> None:
    a, b = stacks
    data = random.Random(1).randbytes(3 << 20)

    async def main() -> None:
        server = await aio.create_server(Echo, B_IP, PORT, stack=b)
        transport, proto = await aio.create_connection(Collector, B_IP, PORT, stack=a)
        assert isinstance(proto, Collector)
        assert isinstance(transport, aio.TcpTransport)
        assert transport.get_extra_info("peername") == (B_IP, PORT)
        assert transport.get_extra_info("sockname")[0] == A_IP
        assert transport.get_extra_info("nonexistent", 5) == 5
        assert transport.can_write_eof()
        view = memoryview(data)
        transport.writelines([view[:1000], view[1000:200_000]])
        transport.write(view[200_000:])
        transport.write_eof()
        while "eof" not in proto.events:  # the server closes after our EOF
            await asyncio.sleep(0.001)
        assert not proto.lost.done()  # asyncio: lost only after close()
        transport.close()
        assert await proto.lost is None
        assert proto.events[0] == "made" and proto.events[-1] == "lost"
        assert "eof" in proto.events
        assert hashlib.sha256(proto.data).digest() == hashlib.sha256(data).digest()
        assert transport.is_closing()
        server.close()
        await server.wait_closed()

    run(stacks, main)


def test_write_buffer_limits_pause_and_resume_writing(stacks: tuple[Stack, Stack]) -> None:
    a, b = stacks
    data = random.Random(2).randbytes(1 << 20)

    async def main() -> None:
        server = await aio.create_server(Echo, B_IP, PORT, stack=b)
        transport, proto = await aio.create_connection(Collector, B_IP, PORT, stack=a,
                                                       sndbuf=32 * 1024)
        assert isinstance(proto, Collector)
        transport.set_write_buffer_limits(high=100_000)
        assert transport.get_write_buffer_limits() == (25_000, 100_000)
        transport.write(data)  # the TCP send buffer takes 32 KB, we keep the rest
        assert transport.get_write_buffer_size() == len(data) - 32 * 1024
        assert proto.events == ["made", "pause"]
        while len(proto.data) < len(data):
            await asyncio.sleep(0.01)
        assert proto.events == ["made", "pause", "resume"]
        assert transport.get_write_buffer_size() == 0
        assert bytes(proto.data) == data
        with pytest.raises(ValueError):
            transport.set_write_buffer_limits(high=1, low=2)
        transport.close()
        assert await proto.lost is None
        server.close()

    run(stacks, main)


def test_pause_reading_holds_data_in_tcp_until_resumed(stacks: tuple[Stack, Stack]) -> None:
    a, b = stacks

    async def main() -> None:
        server, accepted = await collecting_server(b)
        transport, _ = await aio.create_connection(Collector, B_IP, PORT, stack=a)
        peer = await first_accepted(accepted)
        peer.transport.pause_reading()
        assert not peer.transport.is_reading()
        transport.write(b"x" * 50_000)
        await asyncio.sleep(0.1)
        assert peer.data == b""  # held in the TCP receive buffer
        assert next(iter(b.tcp.conns.values())).conn.readable_bytes == 50_000
        peer.transport.resume_reading()
        peer.transport.resume_reading()  # idempotent
        while len(peer.data) < 50_000:
            await asyncio.sleep(0.001)
        assert peer.data == b"x" * 50_000
        transport.close()
        while "eof" not in peer.events:
            await asyncio.sleep(0.001)
        peer.transport.close()
        assert await peer.lost is None
        server.close()

    run(stacks, main)


def test_abort_resets_the_peer(stacks: tuple[Stack, Stack]) -> None:
    a, b = stacks

    async def main() -> None:
        server, accepted = await collecting_server(b)
        transport, proto = await aio.create_connection(Collector, B_IP, PORT, stack=a)
        assert isinstance(proto, Collector)
        peer = await first_accepted(accepted)
        transport.write(b"data that will be thrown away" * 1000)
        transport.abort()
        assert transport.is_closing()
        assert await proto.lost is None
        assert isinstance(await peer.lost, ConnectionResetError)
        server.close()

    run(stacks, main)


def test_protocol_exception_aborts_only_its_connection(stacks: tuple[Stack, Stack]) -> None:
    a, b = stacks
    reported: list[dict[str, Any]] = []

    class Broken(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            raise RuntimeError("application bug")

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _l, ctx: reported.append(ctx))
        server = await aio.create_server(Broken, B_IP, PORT, stack=b)
        transport, proto = await aio.create_connection(Collector, B_IP, PORT, stack=a)
        assert isinstance(proto, Collector)
        transport.write(b"boom")
        assert isinstance(await proto.lost, ConnectionResetError)
        assert isinstance(reported[0]["exception"], RuntimeError)
        # The stack is unharmed: a new connection to an echo server works.
        server.close()
        server2 = await aio.create_server(Echo, B_IP, PORT + 1, stack=b)
        t2, p2 = await aio.create_connection(Collector, B_IP, PORT + 1, stack=a)
        assert isinstance(p2, Collector)
        t2.write(b"ok")
        t2.write_eof()
        while "eof" not in p2.events:
            await asyncio.sleep(0.001)
        assert p2.data == b"ok"
        server2.close()

    run(stacks, main)


def test_write_after_write_eof_is_an_error(stacks: tuple[Stack, Stack]) -> None:
    a, b = stacks

    async def main() -> None:
        server = await aio.create_server(Echo, B_IP, PORT, stack=b)
        transport, proto = await aio.create_connection(Collector, B_IP, PORT, stack=a)
        assert isinstance(proto, Collector)
        transport.write_eof()
        with pytest.raises(RuntimeError):
            transport.write(b"late")
        transport.close()
        await proto.lost
        server.close()

    run(stacks, main)
