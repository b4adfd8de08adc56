"""asyncio on ustack without a thread: the Stack runs inside the event loop.

``AioStack(stack).start()`` (or ``attach(stack)``, which every entry point
below calls for a bare Stack) registers the stack's devices with the
running loop; after that the usual asyncio shapes work on ustack:

- ``start_server`` / ``open_connection``: StreamReader/StreamWriter (streams.py);
- ``create_server`` / ``create_connection``: Protocol + ``TcpTransport`` (tcp.py);
- ``create_datagram_endpoint``: DatagramProtocol + ``UdpTransport`` (datagram.py);
- ``running(link, ip, ...)``: open a link, bring a Stack up on it, attach (loop.py).
"""

from ustack.aio.datagram import UdpTransport, create_datagram_endpoint
from ustack.aio.loop import AioStack, attach, running
from ustack.aio.streams import open_connection, start_server
from ustack.aio.tcp import Server, TcpTransport, create_connection, create_server

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
