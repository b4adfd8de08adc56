"""``ustack.aio``: asyncio on ustack without a thread (the public face of
``ustack.api.aio``, where the implementation and its design notes live).

``AioStack(stack).start()`` (or ``attach(stack)``, which every entry point
below calls for a bare Stack) registers the stack's devices with the
running loop; after that the usual asyncio shapes work on ustack:

- ``start_server`` / ``open_connection``: StreamReader/StreamWriter;
- ``create_server`` / ``create_connection``: Protocol + ``TcpTransport``;
- ``create_datagram_endpoint``: DatagramProtocol + ``UdpTransport``;
- ``running(link, ip, ...)``: open a link, bring a Stack up on it, attach.
"""

from ustack.api.aio.datagram import UdpTransport, create_datagram_endpoint
from ustack.api.aio.loop import AioStack, attach, running
from ustack.api.aio.streams import open_connection, start_server
from ustack.api.aio.tcp import Server, TcpTransport, create_connection, create_server

__all__ = [
    "AioStack",
    "Server",
    "TcpTransport",
    "UdpTransport",
    "attach",
    "create_connection",
    "create_datagram_endpoint",
    "create_server",
    "open_connection",
    "running",
    "start_server",
]
