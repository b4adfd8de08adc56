"""The application-facing APIs on top of the Stack.

- ``socket``: the standard library's ``socket`` module for AF_INET, with the
  Stack in a background thread (public face: ``ustack.socket``).
- ``aio``: asyncio transports, servers and streams, with the Stack inside the
  event loop (public face: ``ustack.aio``).

Both read readiness from the native sockets' ``poll()`` (one rule, Linux's
``tcp_poll``/``udp_poll``) and hand time to the Stack only through its
``advance``/``flush``/``poll`` methods.
"""
