"""A real descriptor that polls readable/writable exactly when a ustack socket is.

``select``, ``selectors`` and asyncio only understand descriptors, and a
ustack socket is a Python object.  Each one therefore owns a Unix socket
pair: the application end (``fileno()``) and a private end.  Only the stack
thread changes it, and only when the ustack socket's readiness changes.
What is ready is not decided here: the native socket's ``poll()`` mask
(Linux's rule) is shown the way select(2) shows a mask (``show``):

- readable: one byte sent from the private end sits unread on the
  application end; clearing it reads it back.
- not writable: the application end's send buffer (shrunk to the kernel's
  minimum, 4.5 KB) is filled with bytes to the private end; draining them
  makes it writable again.  Linux reports a Unix stream socket writable
  while a quarter of its send buffer is free (``unix_writable``), so after a
  full drain it is.

A transition costs one or two system calls; a socket whose readiness does
not change costs none.  The application never reads or writes the pair.
"""

from __future__ import annotations

import _socket
import contextlib
from select import POLLERR, POLLHUP, POLLIN, POLLOUT

_FILL = bytes(4096)

# What select(2) counts as readable and writable (Linux fs/select.c
# POLLIN_SET / POLLOUT_SET): a hang-up or an error wakes a reader, an
# error wakes a writer, so the call that follows returns at once.
SELECT_READABLE = POLLIN | POLLHUP | POLLERR
SELECT_WRITABLE = POLLOUT | POLLERR


class Mirror:
    __slots__ = ("_app", "_peer", "readable", "writable")

    def __init__(self) -> None:
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        a.setblocking(False)
        b.setblocking(False)
        a.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF, 1)  # the kernel's minimum
        self._app = a
        self._peer = b
        self.readable = False
        self.writable = True

    def fileno(self) -> int:
        return self._app.fileno()

    def show(self, mask: int) -> None:
        """Make the descriptor poll as a socket with the poll(2) ``mask``
        selects (stack thread)."""
        self.set(bool(mask & SELECT_READABLE), bool(mask & SELECT_WRITABLE))

    def set(self, readable: bool, writable: bool) -> None:
        """Make the descriptor's readiness ``readable``/``writable`` (stack thread)."""
        if readable is not self.readable:
            self.readable = readable
            if readable:
                self._peer.send(b"\x01")
            else:
                with contextlib.suppress(BlockingIOError):
                    while self._app.recv(64):
                        pass
        if writable is not self.writable:
            self.writable = writable
            if writable:
                with contextlib.suppress(BlockingIOError):
                    while self._peer.recv(65536):
                        pass
            else:
                with contextlib.suppress(BlockingIOError):
                    while True:
                        self._app.send(_FILL)

    def close(self) -> None:
        """Wake anything polling the descriptor (readable and writable), then
        release both ends."""
        with contextlib.suppress(OSError):
            self._peer.shutdown(_socket.SHUT_RDWR)
        self._app.close()
        self._peer.close()
