"""ustack.aio datagram endpoints: UDP between two Stacks in one event loop."""

from __future__ import annotations

import asyncio
import errno
from typing import Any

import pytest
from aio_net import A_IP, B_IP, PORT, run

from ustack import aio
from ustack.stack import Stack


class EchoUdp(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


class Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[tuple[bytes, tuple[str, int]]] = []
        self.errors: list[Exception] = []
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.wake = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.append((data, addr))
        self.wake.set()

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)
        self.wake.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


def test_udp_echo(stacks: tuple[Stack, Stack]) -> None:
    a, b = stacks

    async def main() -> None:
        server, _ = await aio.create_datagram_endpoint(EchoUdp, local_addr=(B_IP, PORT), stack=b)
        assert server.get_extra_info("sockname") == (B_IP, PORT)
        transport, proto = await aio.create_datagram_endpoint(
            Client, remote_addr=(B_IP, PORT), stack=a)
        assert isinstance(proto, Client)
        assert transport.get_extra_info("peername") == (B_IP, PORT)
        sent = [bytes([i]) * (i * 7 + 1) for i in range(200)]
        for d in sent:
            transport.sendto(d)
        while len(proto.got) < len(sent):
            proto.wake.clear()
            await proto.wake.wait()
        assert [d for d, _ in proto.got] == sent  # the pipe neither loses nor reorders
        assert {addr for _, addr in proto.got} == {(B_IP, PORT)}
        # An unconnected endpoint names the destination per datagram.
        t2, p2 = await aio.create_datagram_endpoint(Client, stack=a)
        assert isinstance(p2, Client)
        t2.sendto(b"x" * 1400, (B_IP, PORT))
        await p2.wake.wait()
        assert p2.got == [(b"x" * 1400, (B_IP, PORT))]
        transport.close()
        assert transport.is_closing()
        assert await proto.lost is None
        t2.close()
        server.close()

    run(stacks, main)


def test_port_unreachable_goes_to_error_received(stacks: tuple[Stack, Stack]) -> None:
    a, _ = stacks

    async def main() -> None:
        transport, proto = await aio.create_datagram_endpoint(
            Client, remote_addr=(B_IP, 9999), stack=a)
        assert isinstance(proto, Client)
        transport.sendto(b"anyone?")
        await proto.wake.wait()
        assert isinstance(proto.errors[0], ConnectionRefusedError)
        assert proto.got == []
        transport.close()

    run(stacks, main)


def test_bind_errors_are_the_standard_ones(stacks: tuple[Stack, Stack]) -> None:
    a, _ = stacks

    async def main() -> None:
        t1, _ = await aio.create_datagram_endpoint(EchoUdp, local_addr=(A_IP, PORT), stack=a)
        with pytest.raises(OSError) as e:
            await aio.create_datagram_endpoint(EchoUdp, local_addr=(A_IP, PORT), stack=a)
        assert e.value.errno == errno.EADDRINUSE
        with pytest.raises(OSError) as e:
            await aio.create_datagram_endpoint(EchoUdp, local_addr=("198.18.5.5", 0), stack=a)
        assert e.value.errno == errno.EADDRNOTAVAIL
        t1.close()
        # Closed, the port is free again.
        t3: Any
        t3, _ = await aio.create_datagram_endpoint(EchoUdp, local_addr=(A_IP, PORT), stack=a)
        t3.close()

    run(stacks, main)
