"""The stdlib-compatible socket layer (``ustack.socket`` is its public face).

Modules:

- ``runtime``: the Stack in one background thread; ``call`` from others.
- ``readiness``: the real descriptor each socket polls as (``fileno()``).
- ``sock``: ``Socket``, the ``socket.socket`` object for AF_INET, put
  together from ``base`` (state, readiness, the two-thread plumbing),
  ``connect`` (bind/listen/accept/connect), ``data`` (recv/send),
  ``close`` (shutdown/close/SO_LINGER) and ``fileobj`` (makefile).
- ``options``: socket options and what they do to a connection.
- ``resolve``: getaddrinfo & co. from numeric addresses and /etc/hosts.
- ``functions``: module-level functions and the default runtime (attach/detach).
- ``patch``: putting all that into the standard ``socket`` module (``ustack run``).
- ``errors``: NotCoveredError and stdlib-style errors.
"""
