"""asyncio Protocol/Transport on ustack TCP: ``create_server``, ``create_connection``.

A ``TcpTransport`` wraps a native ``TcpSocket`` and is driven by its events
(``ustack.tcp.connection.Event``) from inside the Stack's poll, the way the
loop's own socket transports are driven by readiness callbacks:

- READABLE: everything in the receive buffer goes to ``data_received`` at
  once, unless reading is paused.  Paused, the bytes stay in the TCP receive
  buffer, so a slow reader closes the advertised window (RFC 9293 3.8.6)
  instead of growing a queue in user space.  Whether there is data or the
  end of the stream to deliver is the socket's readiness (``poll()``,
  Linux's rule): POLLIN means a read returns at once, with bytes or with
  b"" for end of stream, as a selector transport reads a kernel socket.
- WRITABLE: bytes the TCP send buffer could not take wait in the
  transport's buffer; ``pause_writing`` fires when that buffer exceeds the
  high-water mark and ``resume_writing`` when it falls to the low one.  The
  TCP send buffer (SO_SNDBUF, ``sndbuf``) is in front of it, as the kernel's
  is in front of an asyncio socket transport.
- CLOSED: ``connection_lost`` with the connection's error as the standard
  exception (ConnectionResetError, TimeoutError ...), or None.

Protocol callbacks run from the poll loop; one that raises aborts its own
connection and is reported to the loop's exception handler, never to the
Stack.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from typing import Any

from ustack.api.aio.loop import AioStack, attach
from ustack.stack import Stack
from ustack.tcp.connection import Event
from ustack.tcp.socket import POLLIN, TcpListener, TcpSocket, os_error
from ustack.tcp.states import State

_READABLE = Event.READABLE
_WRITABLE = Event.WRITABLE
_CLOSED = Event.CLOSED
_CONNECTED = Event.CONNECTED

DEFAULT_HIGH_WATER = 64 * 1024  # asyncio's default transport limits
READ_CHUNK = 1 << 20


class TcpTransport(asyncio.Transport):
    """An ``asyncio.Transport`` over one ustack TCP connection."""

    def __init__(self, aio: AioStack, sock: TcpSocket, protocol: asyncio.BaseProtocol,
                 server: Server | None = None) -> None:
        super().__init__({"peername": sock.getpeername(), "sockname": sock.getsockname(),
                          "socket": None, "ustack_socket": sock})
        self._aio = aio
        self._loop = aio.loop
        self._sock = sock
        self._protocol: Any = protocol
        self._server = server
        self._buf = bytearray()
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_HIGH_WATER // 4
        self._ready = False  # connection_made has run
        self._reading = True
        self._eof_seen = False
        self._write_paused = False  # we called pause_writing
        self._eof = False  # write_eof() was called
        self._eof_pending = False  # write_eof waits for the buffer to drain
        self._closing = False
        self._close_pending = False  # close() waits for the buffer to drain
        self._lost = False
        if server is not None:
            server._attach()
        sock.on_event = self._on_event

    def __repr__(self) -> str:
        return (f"<TcpTransport {self.get_extra_info('sockname')} -> "
                f"{self.get_extra_info('peername')}>")

    # -- start ----------------------------------------------------------------

    def _start(self) -> None:
        """connection_made, then whatever arrived meanwhile (runs via call_soon)."""
        if self._lost:
            return
        try:
            self._protocol.connection_made(self)
        except Exception as exc:
            self._callback_failed(exc, "connection_made")
            return
        self._ready = True
        self._read_ready()
        self._aio.kick()
        if self._sock.state is State.CLOSED and not self._closing:
            self._stack_closed()

    # -- events from the Stack --------------------------------------------------

    def _on_event(self, sock: TcpSocket, ev: Event) -> None:
        if ev is _READABLE:
            if self._ready and self._reading:
                self._read_ready()
        elif ev is _WRITABLE:
            if self._buf:
                self._write_ready()
        elif ev is _CLOSED and self._ready:
            self._stack_closed()

    def _read_ready(self) -> None:
        """Deliver what the socket is readable for: bytes while there are
        any, then the end of the stream once.  A failed connection's error
        is not delivered here: CLOSED ends the transport with it.

        Bytes in the receive buffer are POLLIN in every state a transport
        lives in (established or later; ``TcpSocket.poll``), so ``poll()``,
        the rule, is asked only once the buffer is empty: whether a read
        now returns the end of the stream.  (A length is one field read;
        ``poll()`` is a call through the whole rule, on every event.)"""
        sock = self._sock
        conn = sock.conn
        protocol = self._protocol
        try:
            while self._reading and not self._lost:
                if not conn.readable_bytes and not sock.poll() & POLLIN:
                    return
                try:
                    data = sock.recv(READ_CHUNK)
                except OSError:
                    return  # the connection failed (see _stack_closed)
                if data:
                    protocol.data_received(data)
                    continue
                if not self._eof_seen:
                    self._eof_seen = True
                    if not protocol.eof_received():
                        self.close()
                return
        except Exception as exc:
            self._callback_failed(exc, "data_received/eof_received")

    def _write_ready(self) -> None:
        buf = self._buf
        try:
            n = self._sock.send(buf)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fatal(exc)
            return
        del buf[:n]
        self._aio.kick()
        if self._write_paused and len(buf) <= self._low:
            self._write_paused = False
            try:
                self._protocol.resume_writing()
            except Exception as exc:
                self._callback_failed(exc, "resume_writing")
                return
        if not buf:
            if self._close_pending:
                self._close_now()
            elif self._eof_pending:
                self._eof_pending = False
                self._sock.shutdown_write()

    def _stack_closed(self) -> None:
        """The connection reached CLOSED without our close().

        A failure (reset, timeout) ends the transport with its exception.
        A normal end (both FINs exchanged after write_eof) does not: as on
        asyncio's own transports, connection_lost waits for close().
        """
        if self._lost:
            return
        self._read_ready()  # bytes that arrived before the end are still data
        err = self._sock.error
        if not err:
            return
        self._buf.clear()
        self._closing = True
        self._sock.close()
        self._lose(os_error(err))

    # -- asyncio.WriteTransport ----------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data or self._lost:
            return
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        buf = self._buf
        if not buf:
            try:
                n = self._sock.send(data)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                self._fatal(exc)
                return
            aio = self._aio
            # Inside the Stack's poll (an echo from data_received) a flush is
            # already due: skip the call (kick() checks the same flag).
            if not aio._flush_pending:
                aio.kick()
            if n == len(data):
                return
            buf += memoryview(data)[n:]
        else:
            buf += data
        if not self._write_paused and len(buf) > self._high:
            self._write_paused = True
            try:
                self._protocol.pause_writing()
            except Exception as exc:
                self._callback_failed(exc, "pause_writing")

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """shutdown(SHUT_WR): our FIN follows what is buffered."""
        if self._closing or self._eof or self._lost:
            return
        self._eof = True
        if self._buf:
            self._eof_pending = True
            return
        try:
            self._sock.shutdown_write()
        except OSError as exc:
            self._fatal(exc)
            return
        self._aio.kick()

    def get_write_buffer_size(self) -> int:
        """Bytes the transport holds beyond the TCP send buffer."""
        return len(self._buf)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        if not self._write_paused and len(self._buf) > high:
            self._write_paused = True
            self._protocol.pause_writing()
        elif self._write_paused and len(self._buf) <= low:
            self._write_paused = False
            self._protocol.resume_writing()

    # -- asyncio.ReadTransport ------------------------------------------------------

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def pause_reading(self) -> None:
        """Stop delivering; the TCP receive buffer fills and the window closes."""
        self._reading = False

    def resume_reading(self) -> None:
        if self._reading or self._closing:
            return
        self._reading = True
        if self._ready:
            self._loop.call_soon(self._resume)

    def _resume(self) -> None:
        if self._reading and not self._lost:
            self._read_ready()
            if self._sock.state is State.CLOSED and not self._closing:
                self._stack_closed()
            self._aio.kick()  # reading opened the window: the update goes now

    # -- closing ---------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def get_protocol(self) -> asyncio.BaseProtocol:
        protocol: asyncio.BaseProtocol = self._protocol
        return protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def close(self) -> None:
        """Graceful close: buffered bytes go first, then our FIN."""
        if self._closing:
            return
        self._closing = True
        self._reading = False
        if self._buf:
            self._close_pending = True
        else:
            self._close_now()

    def _close_now(self) -> None:
        self._close_pending = False
        self._sock.close()
        self._aio.kick()
        self._lose(None)

    def abort(self) -> None:
        """Reset the connection at once; buffered bytes are dropped."""
        if self._lost:
            return
        self._closing = True
        self._buf.clear()
        self._sock.abort()
        self._aio.kick()
        self._lose(None)

    def _fatal(self, exc: BaseException) -> None:
        if self._lost:
            return
        self._closing = True
        self._buf.clear()
        if not self._sock.closed:
            self._sock.abort()
            self._aio.kick()
        self._lose(exc)

    def _callback_failed(self, exc: Exception, where: str) -> None:
        self._loop.call_exception_handler({
            "message": f"ustack.aio: protocol {where}() raised; connection aborted",
            "exception": exc, "transport": self, "protocol": self._protocol})
        self._fatal(exc)

    def _lose(self, exc: BaseException | None) -> None:
        """Schedule connection_lost once (asyncio calls it via call_soon too)."""
        if self._lost:
            return
        self._lost = True
        self._reading = False
        if self._ready:
            self._loop.call_soon(self._call_connection_lost, exc)
        else:
            self._detach_server()

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._detach_server()

    def _detach_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server._detach()


# -- servers ------------------------------------------------------------------------


class Server(asyncio.AbstractServer):
    """What ``create_server``/``start_server`` return; like ``asyncio.Server``."""

    def __init__(self, aio: AioStack, listener: TcpListener,
                 protocol_factory: Callable[[], asyncio.BaseProtocol],
                 make_transport: Callable[..., TcpTransport] = TcpTransport) -> None:
        self._aio = aio
        self._listener: TcpListener | None = listener
        self._factory = protocol_factory
        self._make_transport = make_transport
        self._active = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._serving_forever: asyncio.Future[None] | None = None
        self._serving = False

    def __repr__(self) -> str:
        return f"<ustack.aio.Server {self.sockets!r}>"

    @property
    def sockets(self) -> tuple[tuple[str, int], ...]:
        """The listening addresses (there are no kernel sockets to give)."""
        return () if self._listener is None else (self._listener.getsockname(),)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._aio.loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        self._start_serving()

    def _start_serving(self) -> None:
        if self._serving or self._listener is None:
            return
        self._serving = True
        self._listener.on_accept = self._on_accept
        self._on_accept(self._listener)  # connections that completed meanwhile

    def _on_accept(self, listener: TcpListener) -> None:
        loop = self._aio.loop
        while True:
            # Accept until it would block, as asyncio's own servers do.
            try:
                sock = listener.accept()
            except OSError:
                return
            try:
                protocol = self._factory()
            except Exception as exc:
                loop.call_exception_handler({
                    "message": "ustack.aio: protocol factory raised; connection reset",
                    "exception": exc})
                sock.abort()
                continue
            transport = self._make_transport(self._aio, sock, protocol, self)
            loop.call_soon(transport._start)

    def close(self) -> None:
        """Stop listening; established connections stay (asyncio semantics)."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.close()
        self._aio.kick()
        self._serving = False
        if self._serving_forever is not None and not self._serving_forever.done():
            self._serving_forever.cancel()
        if self._active == 0:
            self._wakeup()

    async def wait_closed(self) -> None:
        """Wait for close() and then for every connection it accepted to be lost."""
        if self._listener is None:
            return  # already closed: like asyncio 3.11, do not wait for connections
        fut: asyncio.Future[None] = self._aio.loop.create_future()
        self._waiters.append(fut)
        await fut

    async def serve_forever(self) -> None:
        if self._serving_forever is not None:
            raise RuntimeError("serve_forever() is already running")
        if self._listener is None:
            raise RuntimeError("server is closed")
        self._start_serving()
        self._serving_forever = self._aio.loop.create_future()
        try:
            await self._serving_forever
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever = None

    def _attach(self) -> None:
        self._active += 1

    def _detach(self) -> None:
        self._active -= 1
        if self._active == 0 and self._listener is None:
            self._wakeup()

    def _wakeup(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)


async def create_server(protocol_factory: Callable[[], asyncio.BaseProtocol],
                        host: str | None = None, port: int = 0, *, stack: Stack | AioStack,
                        backlog: int = 128, start_serving: bool = True) -> Server:
    """Like ``loop.create_server`` on ``stack``; ``host`` None or "" is every address."""
    aio = attach(stack)
    listener = aio.stack.tcp_listen((host or "0.0.0.0", port), backlog)
    server = Server(aio, listener, protocol_factory)
    if start_serving:
        server._start_serving()
    return server


async def connect(aio: AioStack, host: str, port: int, options: dict[str, Any]) -> TcpSocket:
    """Open a native TCP connection and wait until it is established.

    Raises the standard exceptions: ConnectionRefusedError when answered by
    a reset, TimeoutError when the SYNs go unanswered (RFC 9293 MUST-23 lets
    that take minutes; wrap in ``asyncio.timeout`` for less).
    """
    loop = aio.loop
    aio.stack.advance(loop.time())
    sock = aio.stack.tcp_connect((host, port), **options)
    done: asyncio.Future[None] = loop.create_future()

    def on_event(s: TcpSocket, ev: Event) -> None:
        if done.done():
            return
        if ev is _CONNECTED:
            done.set_result(None)
        elif ev is _CLOSED:
            done.set_exception(os_error(s.error or errno.ECONNREFUSED))

    sock.on_event = on_event
    aio.kick()
    try:
        await done
    except BaseException:
        sock.on_event = None
        if not sock.closed:
            sock.abort()
            aio.kick()
        raise
    return sock


async def create_connection(protocol_factory: Callable[[], asyncio.BaseProtocol],
                            host: str, port: int, *, stack: Stack | AioStack,
                            **tcp_options: Any) -> tuple[TcpTransport, asyncio.BaseProtocol]:
    """Like ``loop.create_connection``; ``tcp_options`` are ``TcpConfig`` fields
    for this connection (``nodelay=True``, ``sndbuf=...``, ``cc="newreno"``)."""
    aio = attach(stack)
    sock = await connect(aio, host, port, tcp_options)
    protocol = protocol_factory()
    transport = TcpTransport(aio, sock, protocol)
    transport._start()
    return transport, protocol
