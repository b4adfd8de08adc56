"""Ending a ``Socket``: shutdown, close, SO_LINGER, and the finaliser.

close() needs no answer from the stack thread, so it is posted there and
returns at once (a connection the application closed goes on alone, as a
kernel's does), except with SO_LINGER and a timeout, which waits for the
FIN to be acknowledged.  A socket dropped without close() is closed by its
finaliser, with a ResourceWarning as the standard library gives.
"""

from __future__ import annotations

import _socket
import contextlib
import errno
import select
import time
import warnings
import weakref
from functools import partial
from typing import Self

from ustack.api.socket.base import (
    FIN_UNACKED,
    OPEN,
    SYNCHRONIZING,
    SocketBase,
    live_sockets,
    weak_sync,
)
from ustack.api.socket.errors import err
from ustack.tcp.states import State

# The ACK of a FIN that carries no data raises no connection event, so a
# lingering close() also looks this often (seconds, in the stack thread).
_LINGER_RECHECK = 0.005


class Closing(SocketBase):
    """shutdown/close, SO_LINGER, the context manager and the finaliser."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_dead", True) or not hasattr(self, "_rt"):
            return
        if not self._closed:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)
        self._dead = True
        self._rt.post(self._s_close)

    # -- shutdown -------------------------------------------------------------------

    def shutdown(self, how: int) -> None:
        if how not in (_socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR):
            raise err(errno.EINVAL)
        t = self._tcp
        rt = self._rt
        if t is not None and not self._dead and t.conn.state in OPEN and not rt.in_thread():
            # Connected: it cannot fail, so it need not wait (see DataPath._post_send).
            if how != _socket.SHUT_RD:
                self._posted_shut_wr = True  # later sends take the waiting path
            if rt.post(partial(self._s_shutdown_posted, how)):
                return
        self._call(self._s_shutdown, how)

    def _s_shutdown_posted(self, how: int) -> None:
        # Without _check: a close() that came after the shutdown was posted
        # marks the socket dead, and the shutdown must still happen first,
        # as it did for the application.
        with contextlib.suppress(OSError):
            self._s_shutdown_now(how)

    def _s_shutdown(self, how: int) -> None:
        self._check()
        self._s_shutdown_now(how)

    def _s_shutdown_now(self, how: int) -> None:
        t = self._tcp
        rd = how in (_socket.SHUT_RD, _socket.SHUT_RDWR)
        wr = how in (_socket.SHUT_WR, _socket.SHUT_RDWR)
        if t is not None:
            if t.conn.state in SYNCHRONIZING or (t.conn.state is State.CLOSED
                                                  and not t.conn.error):
                raise err(errno.ENOTCONN)
            if rd:
                t.shutdown_read()
            if wr and t.conn.state is not State.CLOSED:
                t.shutdown_write()
            self._s_sync()
            return
        if self._listener is not None and rd:
            # Linux: shutting a listener down stops it and wakes accept().
            self._listener.close()
            self._s_sync()
            return
        if self._udp is not None and self._udp.remote_ip is not None:
            return  # accepted, as Linux does; datagrams still arrive
        raise err(errno.ENOTCONN)

    # -- close --------------------------------------------------------------------

    def close(self) -> None:
        """Close; with makefile() objects still open, when the last one closes."""
        if self._closed:
            return
        self._closed = True
        if self._io_refs <= 0:
            self._real_close()

    def _real_close(self) -> None:
        self._dead = True
        rt = self._rt
        if rt.alive:
            try:
                on, secs = self._opts.linger
                if on and secs > 0 and self._stream and not rt.in_thread():
                    self._linger(secs)
                    rt.call(self._s_close)
                    return
                # Nothing to report and nothing to wait for: no round trip
                # (in the stack thread itself it runs at once, in order).
                if rt.in_thread():
                    self._s_close()
                    return
                if rt.post(self._s_close):
                    return
            except OSError:
                pass
        m, self._mirror = self._mirror, None
        if m is not None:
            m.close()

    def _linger(self, secs: int) -> None:
        """SO_LINGER with a timeout (socket(7)): close() returns once everything
        sent, FIN included, is acknowledged, or after ``secs`` seconds.  Then,
        as on Linux (tcp_close, sk_stream_wait_close), the connection goes on
        without the application: no reset, data and FIN still retransmitted.
        Linux lingers for a non-blocking socket too, and so does this."""
        deadline = time.monotonic() + secs
        if not self._rt.call(self._s_linger_start):
            return
        p = select.poll()
        p.register(self._fd, select.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or p.poll(max(1, int(left * 1000 + 0.999))):
                return

    def _s_linger_start(self) -> bool:
        """Close the connection, keeping the descriptor to wait on; False when
        there is nothing to wait for (not connected, reset, FIN acked)."""
        t = self._tcp
        if t is None or self._mirror is None:
            return False
        t.close()  # the FIN queues behind the data (a RST if data was left unread)
        if t.conn.state not in FIN_UNACKED:
            return False
        self._lingering = True
        t.on_event = weak_sync(weakref.ref(self))  # TcpSocket.close dropped it
        self._s_sync()
        stack = self._rt.stack
        self._linger_timer = stack.call_at(stack.now + _LINGER_RECHECK, self._s_linger_tick)
        return True

    def _s_linger_tick(self, now: float) -> None:
        self._linger_timer = None
        if not self._lingering:
            return
        self._s_sync()
        m = self._mirror
        if m is not None and not m.readable:
            self._linger_timer = self._rt.stack.call_at(now + _LINGER_RECHECK,
                                                        self._s_linger_tick)

    def _s_close(self) -> None:
        self._lingering = False
        timer, self._linger_timer = self._linger_timer, None
        if timer is not None:
            timer.cancel()
        t, li, u = self._tcp, self._listener, self._udp
        if t is not None:
            t.on_event = None
            if self._opts.linger_abort():
                t.abort()  # SO_LINGER with a zero timeout: RST (RFC 9293 3.10.5 ABORT)
            else:
                t.close()
        if li is not None:
            li.on_accept = None
            li.close()
        if u is not None:
            u.on_readable = None
            u.close()
        self._s_unbind()
        self._tcp = self._listener = self._udp = None
        m, self._mirror = self._mirror, None
        if m is not None:
            m.close()
        live_sockets(self._rt).discard(self)
