"""asyncio on ustack without a thread: the Stack runs inside the event loop
(``ustack.aio`` is its public face).

Modules:

- ``loop``: ``AioStack``, the Stack driven by a running event loop; ``running``.
- ``tcp``: ``TcpTransport`` and ``Server`` (``create_server``, ``create_connection``).
- ``streams``: ``start_server`` / ``open_connection`` (StreamReader/StreamWriter).
- ``datagram``: ``UdpTransport`` (``create_datagram_endpoint``).
"""
