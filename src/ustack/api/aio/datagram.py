"""asyncio datagram endpoints on ustack UDP: ``create_datagram_endpoint``.

Datagrams go to ``protocol.datagram_received`` straight from the receive
path (the native socket's ``on_datagram``), so nothing queues in between;
ICMP errors for a connected endpoint (port unreachable -> ConnectionRefusedError,
as Linux reports them, RFC 1122 4.1.3.3) go to ``error_received``.
"""

from __future__ import annotations

import asyncio
from select import POLLERR
from typing import Any

from ustack.api.aio.loop import AioStack, attach
from ustack.net.sockaddr import Address
from ustack.stack import Stack
from ustack.udp.socket import UdpSocket
from ustack.wire import ipv4 as wip


class UdpTransport(asyncio.DatagramTransport):
    def __init__(self, aio: AioStack, sock: UdpSocket, protocol: asyncio.DatagramProtocol) -> None:
        extra: dict[str, Any] = {"sockname": sock.getsockname(), "socket": None,
                                 "ustack_socket": sock}
        if sock.remote_ip is not None:
            extra["peername"] = sock.getpeername()
        super().__init__(extra)
        self._aio = aio
        self._sock = sock
        self._protocol: Any = protocol
        self._closing = False
        self._addr_cache: dict[bytes, str] = {}
        sock.on_datagram = self._on_datagram
        sock.on_readable = self._on_error

    def _on_datagram(self, data: bytes, ip: bytes, port: int, _sum: int) -> None:
        cache = self._addr_cache
        host = cache.get(ip)
        if host is None:
            if len(cache) > 1024:
                cache.clear()
            host = cache[ip] = wip.addr_to_str(ip)
        try:
            self._protocol.datagram_received(data, (host, port))
        except Exception as exc:
            self._aio.loop.call_exception_handler({
                "message": "ustack.aio: protocol datagram_received() raised",
                "exception": exc, "transport": self, "protocol": self._protocol})

    def _on_error(self) -> None:
        # Datagrams never queue here (on_datagram takes them), so the socket
        # is only ever readable for an error: POLLERR, taken by recvfrom.
        if not self._sock.poll() & POLLERR:
            return
        try:
            self._sock.recvfrom()
        except BlockingIOError:
            return
        except OSError as exc:
            self._protocol.error_received(exc)

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if self._closing:
            return  # asyncio only warns after a few of these; we drop them
        try:
            if addr is None:
                self._sock.send(data)
            else:
                self._sock.sendto(data, addr)
        except OSError as exc:
            self._protocol.error_received(exc)
            return
        self._aio.kick()

    def get_write_buffer_size(self) -> int:
        return 0  # a datagram goes straight into a frame

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._sock.close()
        self._aio.loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_protocol(self) -> asyncio.BaseProtocol:
        protocol: asyncio.BaseProtocol = self._protocol
        return protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol


async def create_datagram_endpoint(protocol_factory: Any, local_addr: Address | None = None,
                                   remote_addr: Address | None = None, *,
                                   stack: Stack | AioStack) -> tuple[UdpTransport, Any]:
    """Like ``loop.create_datagram_endpoint`` for AF_INET on ``stack``.

    Binding errors are the standard ones (OSError EADDRINUSE, EADDRNOTAVAIL).
    """
    aio = attach(stack)
    sock = aio.stack.udp_socket()
    try:
        if local_addr is not None:
            sock.bind(local_addr)
        if remote_addr is not None:
            sock.connect(remote_addr)
        elif local_addr is None:
            sock.bind(("0.0.0.0", 0))
    except BaseException:
        sock.close()
        raise
    protocol = protocol_factory()
    transport = UdpTransport(aio, sock, protocol)
    protocol.connection_made(transport)
    return transport, protocol
