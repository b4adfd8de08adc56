"""The data path of ``Socket``: recv and send in their forms, sendall,
sendto, sendfile.

Reads wait for the descriptor to be readable and try again in the stack
thread; a send that surely fits the send buffer is posted to the stack
thread without waiting for it (``_post_send``), every other one waits.
"""

from __future__ import annotations

import errno
import time
from functools import partial
from typing import Any

from ustack.api.socket.base import SYNCHRONIZING, SocketBase
from ustack.api.socket.errors import err
from ustack.net.sockaddr import Address


class DataPath(SocketBase):
    """recv*/send*/sendall/sendto/sendfile."""

    # -- receiving ------------------------------------------------------------------

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        return self._io(self._s_recv, (bufsize,), False, self._flags(flags, "recv"))

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        if nbytes > len(view):
            raise ValueError("buffer too small for requested bytes")
        data = self.recv(nbytes or len(view), flags)
        view[:len(data)] = data
        return len(data)

    def _s_recv(self, n: int) -> bytes:
        self._check()
        t = self._tcp
        if t is None:
            if self._udp is not None:
                return self._s_recvfrom(n)[0]
            raise err(errno.ENOTCONN)
        if self._err_taken and t.conn.error:
            return b""
        try:
            return t.recv(n)  # end of stream after SHUT_RD (TcpSocket.shutdown_read)
        except OSError as e:
            if e.errno != errno.EAGAIN and t.conn.error:
                self._err_taken = True  # reported once, then EOF (Linux sock_error)
            raise
        finally:
            self._s_sync()

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Address | None]:
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        f = self._flags(flags, "recvfrom")
        if self._stream:
            return self._io(self._s_recv, (bufsize,), False, f), None
        return self._io(self._s_recvfrom, (bufsize,), False, f)

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0
                      ) -> tuple[int, Address | None]:
        view = memoryview(buffer).cast("B")
        if nbytes < 0:
            raise ValueError("negative buffersize in recvfrom_into")
        if nbytes > len(view):
            raise ValueError("nbytes is greater than the length of the buffer")
        data, addr = self.recvfrom(nbytes or len(view), flags)
        view[:len(data)] = data
        return len(data), addr

    def _s_recvfrom(self, n: int) -> tuple[bytes, Address]:
        self._check()
        u = self._udp
        assert u is not None
        try:
            return u.recvfrom(n)
        finally:
            self._s_sync()

    # -- sending ----------------------------------------------------------------------

    def send(self, data: Any, flags: int = 0) -> int:
        view = memoryview(data).cast("B")
        f = self._flags(flags, "send")
        if self._post_send(view):
            return len(view)
        return self._io(self._s_send, (view,), True, f)

    def _post_send(self, view: memoryview) -> bool:
        """Hand ``view`` to the stack thread without waiting for it, when the
        send buffer surely has room for all of it (application thread).

        A blocking call to the stack thread costs a round trip of two thread
        wake-ups; a send that fits the buffer cannot fail in a way the caller
        must hear from this call (the kernel, too, reports a reset that comes
        later on the next call), so it is queued like a finaliser and
        returns at once.  The calls queue is one FIFO: whatever the
        application does next runs after it.  ``TcpSocket.send_room`` says
        what the connection takes (reading its fields from this thread is
        safe under the GIL: each is one load); bytes posted but not yet
        queued count against it.
        """
        t = self._tcp
        n = len(view)
        if t is None or not n or self._dead or self._err_taken or self._posted_shut_wr:
            return False
        rt = self._rt
        if rt.in_thread():
            return False  # calls run at once in the stack thread: posting would reorder
        if n + self._posted - self._posted_done > t.send_room():
            return False
        data = bytes(view)  # the caller may reuse its buffer once we return
        self._posted += n
        if not rt.post(partial(self._s_send_posted, data)):
            self._posted -= n
            return False  # the runtime is down: the waiting path says so
        return True

    def _s_send_posted(self, data: bytes) -> None:
        self._posted_done += len(data)
        t = self._tcp
        if t is None or t.conn.error:
            return  # reset or closed meanwhile: the next call reports it
        try:
            # Room was checked; should another thread's send have taken it
            # meanwhile, the rest is queued anyway (a little over SO_SNDBUF)
            # rather than lost after we said it was sent.
            t.send(data, force=True)
        except OSError:
            pass  # the connection failed since: its error is the next call's
        finally:
            self._s_sync()

    def _s_send(self, view: memoryview) -> int:
        self._check()
        t = self._tcp
        if t is None:
            u = self._udp
            if u is not None:
                return u.send(view)
            raise err(errno.EPIPE)  # Linux: send on an unconnected TCP socket
        c = t.conn
        if c.error and self._err_taken:
            raise err(errno.EPIPE)
        if c.state in SYNCHRONIZING and not c.error:
            raise err(errno.EAGAIN)  # the kernel waits for the handshake
        try:
            return t.send(view)
        except OSError as e:
            if e.errno != errno.EAGAIN and c.error:
                self._err_taken = True
            raise
        finally:
            self._s_sync()

    def sendall(self, data: Any, flags: int = 0) -> None:
        """All of ``data`` or an exception; one deadline for the whole call."""
        view = memoryview(data).cast("B")
        f = self._flags(flags, "sendall")
        timeout = 0.0 if f else self._timeout
        deadline = None if not timeout else time.monotonic() + timeout
        total = len(view)
        if self._post_send(view):
            return
        off = 0
        call = self._rt.call
        while True:
            if self._dead:
                raise err(errno.EBADF)
            try:
                off += call(self._s_send, view[off:])
                if off >= total:
                    return
            except BlockingIOError:
                if timeout == 0.0:
                    raise
            self._wait(True, deadline)

    def sendto(self, data: Any, flags_or_address: Any, address: Any = None) -> int:
        if address is None:
            flags, address = 0, flags_or_address
        else:
            flags = flags_or_address
        f = self._flags(flags, "sendto")
        if self._stream:
            return self.send(data, f)  # Linux TCP ignores the address
        ip, port = self._address(address)
        view = memoryview(data).cast("B")
        return self._io(self._s_sendto, (view, ip, port), True, f)

    def _s_sendto(self, view: memoryview, ip: bytes, port: int) -> int:
        self._check()
        u = self._udp
        assert u is not None
        # The address is in wire form already (_address): what
        # UdpSocket.sendto would check of it is port 0 (Linux: EINVAL).
        if port == 0:
            raise err(errno.EINVAL)
        return u.send_raw(bytes(view), ip, port)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """``socket.sendfile`` by reading and ``sendall`` (its documented fallback)."""
        if not self._stream:
            raise ValueError("only SOCK_STREAM type sockets are supported")
        if offset:
            file.seek(offset)
        sent = 0
        while count is None or sent < count:
            chunk = file.read(min(65536, count - sent) if count is not None else 65536)
            if not chunk:
                break
            self.sendall(chunk)
            sent += len(chunk)
        if sent and hasattr(file, "seek"):
            file.seek(offset + sent)
        return sent
