"""Ephemeral ports: the one allocator TCP, UDP and the socket layer share.

Linux hands out local ports from ``ip_local_port_range`` (32768..60999 by
default).  Each protocol keeps one ``EphemeralPorts``; it walks the range
from a random starting point, one step per port handed out, so ports are
not predictable from outside (RFC 6056 2.1 asks for that much) and a port
just released is not the next one reused.  Whether a port is free is the
caller's rule (a 4-tuple for a TCP connect, any binding for UDP, Linux's
bind rules for a socket's ``bind``), passed in as a predicate.
"""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Callable
from typing import Final

# Linux ip_local_port_range
EPHEMERAL_LOW: Final = 32768
EPHEMERAL_HIGH: Final = 60999
SPAN: Final = EPHEMERAL_HIGH - EPHEMERAL_LOW + 1


class EphemeralPorts:
    """A cursor over the ephemeral range (one per protocol and stack).

    The range is Linux's unless given (``low``..``high``, both included):
    a smaller one is a test's way to reach the end of it.
    """

    __slots__ = ("_next", "high", "low")

    def __init__(self, low: int = EPHEMERAL_LOW, high: int = EPHEMERAL_HIGH) -> None:
        if not 1 <= low <= high <= 0xFFFF:
            raise ValueError(f"ephemeral port range {low}..{high}: want 1 <= low <= high <= 65535")
        self.low = low
        self.high = high
        self._next = low + random.randrange(high - low + 1)

    def pick(self, taken: Callable[[int], bool], err: int = errno.EADDRNOTAVAIL) -> int:
        """The next port of the range for which ``taken(port)`` is False.

        Raises OSError(``err``) when every port is taken: the errno the
        kernel gives for the call that asked (EADDRNOTAVAIL for a TCP
        connect, EADDRINUSE for bind to port 0, EAGAIN for a UDP autobind).
        """
        low = self.low
        high = self.high
        for _ in range(high - low + 1):
            port = self._next
            self._next = port + 1 if port < high else low
            if not taken(port):
                return port
        raise OSError(err, f"{os.strerror(err)} (no free ephemeral port)")
