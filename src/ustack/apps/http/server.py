"""The HTTP/1.1 server on a Stack: ``HttpServer`` (``ustack serve``).

It runs inside the stack's poll loop on the native TCP API (``TcpListener``
and ``TcpSocket`` callbacks: no socket layer, no thread).  What it does per
connection:

- bytes in go to a ``RequestParser`` (``request.py``); each complete request
  is answered in order (pipelining, RFC 9112 9.3.2) before the next one is
  taken, so at most one response per connection waits for send room;
- a static file answered in full (200, GET) takes the **specialised path**:
  its response (head and body) was cut once per MSS into segments whose
  payload sums were computed once (``ustack.tcp.presegment``); the send
  queue holds references to them and the output only writes each segment's
  header and folds the stored sum into its checksum.  Only the first
  segment, which holds the head and so the Date, is made again, once a
  second.  Everything else (HEAD, 304, 206, errors, a dynamic handler's
  replies) takes the general path: ``TcpSocket.send`` of the bytes;
- limits protect the server (every one a ``ServerLimits`` field): a
  request must be complete within ``header_timeout`` seconds of its first
  byte and arrive at ``min_rate`` bytes/s at least (slowloris), an idle
  keep-alive connection is closed after ``idle_timeout``, and at most
  ``max_conns`` connections are served: one more is reset at once and
  counted.  A sweep once a second applies the timeouts.

``HttpCounters`` are the server's figures (``ustack serve`` prints them at
exit): requests by status class, bytes, connections, which path served
each response.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, TextIO

from ustack.apps.http.files import FileEntry, Plan, StaticFiles
from ustack.apps.http.request import HttpError, Limits, Request, RequestParser
from ustack.apps.http.response import DateCache, build_head, error_response
from ustack.stack import Stack
from ustack.tcp.presegment import Presegmented, presegment, with_head
from ustack.tcp.segment import Event
from ustack.tcp.socket import POLLIN, TcpListener, TcpSocket

#: How much a connection reads ahead of the response it is sending (bytes):
#: beyond it, the bytes wait in TCP's receive buffer and its window closes.
READ_AHEAD = 65536

#: How often the sweep applies the timeouts (seconds).
SWEEP_INTERVAL = 1.0


class ServerLimits:
    """The limits that protect the server; every one a ``ustack serve`` option."""

    __slots__ = ("header_timeout", "idle_timeout", "max_conns", "min_rate", "request")

    def __init__(self, *, header_timeout: float = 10.0, idle_timeout: float = 15.0,
                 min_rate: float = 64.0, max_conns: int = 10000,
                 request: Limits | None = None) -> None:
        if header_timeout <= 0 or idle_timeout <= 0 or min_rate < 0 or max_conns < 1:
            raise ValueError("timeouts must be positive, min_rate >= 0, max_conns >= 1")
        self.header_timeout = header_timeout  # first byte of a request to its end
        self.idle_timeout = idle_timeout  # keep-alive: no request in progress
        self.min_rate = min_rate  # bytes/s a request must arrive at, after the first second
        self.max_conns = max_conns
        self.request = request if request is not None else Limits()


class Reply:
    """A dynamic handler's answer: it goes out through the general path."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes = b"",
                 headers: list[tuple[str, str]] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else []


#: A dynamic handler: a Reply for the requests it takes, None for the rest
#: (which the static files answer, when the server has a root).
Handler = Callable[[Request], "Reply | None"]


#: The server's counters, in the order ``ustack serve`` prints them.
HTTP_COUNTERS: Final = (
    "HttpConnsAccepted", "HttpConnsRefused", "HttpConnsClosedIdle", "HttpConnsSlow",
    "HttpRequests", "HttpResponses1xx", "HttpResponses2xx", "HttpResponses3xx",
    "HttpResponses4xx", "HttpResponses5xx", "HttpResponsesSpecialised", "HttpResponsesGeneral",
    "HttpBytesOut", "HttpStatelessResponses", "HttpStatelessFallbacks", "HttpStatelessAcks",
    "HttpStatelessFins",
)


class HttpCounters:
    """What the server did (``ustack serve`` prints the nonzero ones)."""

    __slots__ = ("HttpBytesOut", "HttpConnsAccepted", "HttpConnsClosedIdle",
                 "HttpConnsRefused", "HttpConnsSlow", "HttpRequests", "HttpResponses1xx",
                 "HttpResponses2xx", "HttpResponses3xx", "HttpResponses4xx",
                 "HttpResponses5xx", "HttpResponsesGeneral", "HttpResponsesSpecialised",
                 "HttpStatelessAcks", "HttpStatelessFallbacks", "HttpStatelessFins",
                 "HttpStatelessResponses")

    def __init__(self) -> None:
        self.HttpConnsAccepted = 0
        self.HttpConnsRefused = 0  # beyond max_conns: reset at once
        self.HttpConnsClosedIdle = 0  # keep-alive idle timeout
        self.HttpConnsSlow = 0  # header timeout or below the minimum rate (408)
        self.HttpRequests = 0
        self.HttpResponses1xx = 0
        self.HttpResponses2xx = 0
        self.HttpResponses3xx = 0
        self.HttpResponses4xx = 0
        self.HttpResponses5xx = 0
        self.HttpResponsesSpecialised = 0  # from pre-built, pre-segmented buffers
        self.HttpResponsesGeneral = 0  # through TcpSocket.send
        self.HttpBytesOut = 0  # response bytes queued (heads and bodies)
        # ``ustack serve --stateless`` (apps/http/stateless.py): responses sent
        # with no connection; requests handed to a connection instead (too
        # large a response, not one whole request in the segment); ACKs
        # absorbed; client FINs answered.
        self.HttpStatelessResponses = 0
        self.HttpStatelessFallbacks = 0
        self.HttpStatelessAcks = 0
        self.HttpStatelessFins = 0

    def snapshot(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in HTTP_COUNTERS}

    def count_status(self, status: int) -> None:
        klass = status // 100
        if klass == 2:
            self.HttpResponses2xx += 1
        elif klass == 3:
            self.HttpResponses3xx += 1
        elif klass == 4:
            self.HttpResponses4xx += 1
        elif klass == 5:
            self.HttpResponses5xx += 1
        else:
            self.HttpResponses1xx += 1


class _Static:
    """One file's pre-segmented 200 response for one MSS and connection
    variant: rebuilt when the file changes, its first segment (the head,
    with the Date) once a second."""

    __slots__ = ("p", "second", "version")

    def __init__(self, p: Presegmented, version: tuple[int, int, int], second: int) -> None:
        self.p = p
        self.version = version
        self.second = second


class _Conn:
    """One client connection's HTTP state."""

    __slots__ = ("close_after", "last", "out", "out_more", "out_next", "parser",
                 "peer", "req_bytes", "req_start", "sock")

    def __init__(self, sock: TcpSocket, parser: RequestParser, now: float) -> None:
        self.sock = sock
        self.parser = parser
        self.peer = ""
        self.last = now  # last activity (a request answered, or accepted)
        self.req_start = 0.0  # when the first byte of the request in progress came
        self.req_bytes = 0  # its bytes so far (the minimum-rate rule)
        self.close_after = False  # close once what is queued is sent
        # The response being queued: general bytes (a memoryview) or a
        # Presegmented with the index of its next segment.
        self.out: memoryview | Presegmented | None = None
        self.out_next = 0
        self.out_more: memoryview | None = None  # a large body after its head


class HttpServer:
    """An HTTP/1.1 server on ``stack``: static files under ``root``, and/or a
    dynamic ``handler`` (tried first); listens at once."""

    def __init__(self, stack: Stack, root: str | None = None, port: int = 80, *,
                 host: str = "0.0.0.0", handler: Handler | None = None,
                 limits: ServerLimits | None = None, access_log: TextIO | None = None,
                 backlog: int = 1024, specialise: bool = True) -> None:
        if root is None and handler is None:
            raise ValueError("HttpServer needs a root directory, a handler, or both")
        self.stack = stack
        self.files = StaticFiles(root) if root is not None else None
        self.handler = handler
        self.limits = limits if limits is not None else ServerLimits()
        self.access_log = access_log
        self.specialise = specialise
        self.counters = HttpCounters()
        self.dates = DateCache()
        self.conns: dict[TcpSocket, _Conn] = {}
        self._static: dict[tuple[str, str, int], _Static] = {}
        # Nagle off: a response's last, short segment goes at once.
        self.listener: TcpListener = stack.tcp_listen((host, port), backlog, nodelay=True)
        self.listener.on_accept = self._accept
        self.address = self.listener.getsockname()
        self._closed = False
        # Bound once for every connection (one per connection: 72 bytes each).
        self._on_event_cb: Callable[[TcpSocket, Event], None] = self._on_event
        self._sweep = stack.call_at(stack.now + SWEEP_INTERVAL, self._on_sweep)

    # -- the listener -----------------------------------------------------

    def _accept(self, lst: TcpListener) -> None:
        now = self.stack.now
        c = self.counters
        while lst.accept_queue:
            sock = lst.accept()
            if len(self.conns) >= self.limits.max_conns:
                c.HttpConnsRefused += 1
                sock.abort()
                continue
            c.HttpConnsAccepted += 1
            conn = _Conn(sock, RequestParser(self.limits.request), now)
            self.conns[sock] = conn
            sock.on_event = self._on_event_cb
            self._readable(conn)

    def close(self) -> None:
        """Stop listening and close every connection (what is queued still goes)."""
        if self._closed:
            return
        self._closed = True
        self.listener.close()
        self._sweep.cancel()
        for conn in list(self.conns.values()):
            self._close(conn)

    def stats(self) -> dict[str, int]:
        s = self.counters.snapshot()
        s["HttpConnsOpen"] = len(self.conns)
        return s

    # -- a connection -----------------------------------------------------

    def _on_event(self, sock: TcpSocket, ev: Event) -> None:
        conn = self.conns.get(sock)
        if conn is None:
            return
        if ev is Event.READABLE:
            self._readable(conn)
        elif ev is Event.WRITABLE:
            if conn.out is not None:
                self._push(conn)
                if conn.out is None:
                    self._readable(conn)
        elif ev is Event.CLOSED or ev is Event.RESET or ev is Event.TIMED_OUT:
            self._close(conn)

    def _readable(self, conn: _Conn) -> None:
        """Read (up to READ_AHEAD beyond what is parsed) and answer, until the
        response in progress waits for send room or nothing more came."""
        sock = conn.sock
        parser = conn.parser
        while conn.sock in self.conns:
            got = 0
            while parser.buffered < READ_AHEAD and not conn.close_after:
                # (Asked first: a BlockingIOError raised in compiled code
                # builds a traceback, a tenth of a keep-alive request's cost.)
                if not sock.poll() & POLLIN:
                    break
                try:
                    data = sock.recv(READ_AHEAD)
                except BlockingIOError:
                    break
                except OSError:
                    self._close(conn)
                    return
                if not data:  # the client is done sending: answer what came, then close
                    conn.close_after = True
                    break
                if not parser.in_request and conn.out is None:  # a new request begins
                    conn.req_start = self.stack.now
                    conn.req_bytes = 0
                conn.req_bytes += len(data)
                got += len(data)
                parser.feed(data)
            self._serve(conn)
            if not got or conn.out is not None:
                return

    def _serve(self, conn: _Conn) -> None:
        """Answer the requests that are complete, in order, each once the
        previous response is fully queued."""
        parser = conn.parser
        while conn.out is None and conn.sock in self.conns:
            try:
                req = parser.next_request()
            except HttpError as e:
                self._send_error(conn, e, None)
                if e.close:
                    conn.close_after = True
                    self._finish(conn)
                    return
                continue
            if req is None:
                break
            self._answer(conn, req)
        if conn.out is None:
            self._finish(conn)

    def _finish(self, conn: _Conn) -> None:
        """Close when the response said so and all of it is queued."""
        if conn.close_after and conn.out is None and conn.sock in self.conns:
            self._close(conn)

    def _answer(self, conn: _Conn, req: Request) -> None:
        c = self.counters
        c.HttpRequests += 1
        conn.last = self.stack.now
        conn.req_bytes = 0
        if not req.keep_alive:
            conn.close_after = True
        close = conn.close_after
        head_only = req.method == "HEAD"
        wall = time.time()
        date = self.dates.get(wall)
        connection = _connection_header(req, close)
        if self.handler is not None:
            reply = self.handler(req)
            if reply is not None:
                headers = [*reply.headers, ("Content-Length", str(len(reply.body)))]
                head = build_head(reply.status, headers, date, connection=connection)
                self._send_general(conn, head, b"" if head_only else reply.body)
                self._log(conn, req, reply.status, len(reply.body))
                c.count_status(reply.status)
                return
        files = self.files
        if files is None:
            self._send_error(conn, HttpError(404, "no such resource", close=False), req)
            return
        # (Other methods never get here: the parser answers them 405 or 501.)
        entry = files.lookup(req.path, self.stack.now)
        plan = files.respond(req, entry, wall)
        c.count_status(plan.status)
        if (plan.full and not head_only and self.specialise and plan.entry is not None
                and self._send_static(conn, plan, plan.entry, connection, date, wall)):
            self._log(conn, req, plan.status, len(plan.body))
            return
        head = build_head(plan.status, plan.headers, date, connection=connection)
        self._send_general(conn, head, b"" if head_only else plan.body)
        self._log(conn, req, plan.status, 0 if head_only else len(plan.body))

    def respond_once(self, data: bytes, peer: str, limit: int) -> bytes | None:
        """The whole response, ending the connection, to ``data`` when it is
        exactly one complete GET or HEAD for a static file and the response
        is at most ``limit`` bytes (stateless HTTP: apps/http/stateless.py);
        None for anything else, counted nowhere: a connection then serves
        the request as usual."""
        if self.files is None or self.handler is not None:
            return None
        parser = RequestParser(self.limits.request)
        parser.feed(data)
        try:
            req = parser.next_request()
        except HttpError:
            return None
        if req is None or parser.buffered or req.method not in ("GET", "HEAD"):
            return None
        wall = time.time()
        plan = self.files.respond(req, self.files.lookup(req.path, self.stack.now), wall)
        if len(plan.body) >= limit:
            return None  # (before anything is copied or counted)
        head = build_head(plan.status, plan.headers, self.dates.get(wall), connection="close")
        if len(head) + len(plan.body) > limit:
            return None
        c = self.counters
        c.HttpRequests += 1
        c.count_status(plan.status)
        body = bytes(plan.body)  # (empty for HEAD: the plan says so)
        c.HttpBytesOut += len(head) + len(body)
        if self.access_log is not None:
            self._write_log(peer, req, plan.status, len(body))
        return head + body

    def _send_error(self, conn: _Conn, err: HttpError, req: Request | None) -> None:
        self.counters.count_status(err.status)
        date = self.dates.get(time.time())
        connection = "close" if err.close or conn.close_after else (
            _connection_header(req, False) if req is not None else None)
        data = error_response(err, date, head_only=req is not None and req.method == "HEAD",
                              connection=connection)
        self._send_general(conn, data, b"")
        if req is not None:
            self._log(conn, req, err.status, 0)

    # -- the two paths out -----------------------------------------------

    def _send_general(self, conn: _Conn, head: bytes, body: bytes | memoryview) -> None:
        c = self.counters
        c.HttpResponsesGeneral += 1
        c.HttpBytesOut += len(head) + len(body)
        if len(body) <= 16384:
            # One buffer, so a small response leaves in one segment.
            conn.out = memoryview(head + body if body else head)
        else:
            conn.out = memoryview(head)
            conn.out_more = memoryview(body)  # (a view: no copy of a large body)
        self._push(conn)

    def _send_static(self, conn: _Conn, plan: Plan, entry: FileEntry, connection: str | None,
                     date: bytes, wall: float) -> bool:
        mss = conn.sock.mss
        variant = connection or ""
        key = (entry.path, variant, mss)
        second = int(wall)
        st = self._static.get(key)
        if st is None or st.version != entry.version:
            head = build_head(plan.status, plan.headers, date, connection=connection)
            if len(head) >= mss:
                return False  # (a head longer than a segment: the general path)
            body = memoryview(entry.body)
            first = mss - len(head)
            p = presegment(head + bytes(body[:first]), body[first:], mss)
            st = _Static(p, entry.version, second)
            if len(self._static) >= 4096:
                self._static.clear()  # (bounded; rebuilt on demand)
            self._static[key] = st
        elif st.second != second:
            head = build_head(plan.status, plan.headers, date, connection=connection)
            p0 = st.p
            st.p = with_head(p0, head + p0.head[len(head):])
            st.second = second
        c = self.counters
        c.HttpResponsesSpecialised += 1
        c.HttpBytesOut += st.p.nbytes
        conn.out = st.p
        conn.out_next = 0
        self._push(conn)
        return True

    def _push(self, conn: _Conn) -> None:
        """Queue as much of the pending response as the send buffer takes."""
        sock = conn.sock
        try:
            while True:
                out = conn.out
                if isinstance(out, Presegmented):
                    conn.out_next = sock.send_presegmented(out, conn.out_next)
                    if conn.out_next < len(out.sums):
                        return
                elif out is not None:
                    sent = sock.send(out)
                    if sent < len(out):
                        conn.out = out[sent:]
                        return
                else:
                    return
                conn.out = conn.out_more
                conn.out_more = None
        except BlockingIOError:
            return
        except OSError:
            self._close(conn)

    # -- ends -------------------------------------------------------------

    def _close(self, conn: _Conn) -> None:
        """Forget the connection and close it (once; what is queued still goes)."""
        if self.conns.pop(conn.sock, None) is not None:
            conn.sock.close()

    def _on_sweep(self, now: float) -> None:
        """Once a second: the header timeout and minimum rate of requests in
        progress (408, then close), and the keep-alive idle timeout."""
        lim = self.limits
        for conn in list(self.conns.values()):
            if conn.out is not None:
                continue  # sending: TCP's own timers watch the client
            if conn.parser.in_request:
                took = now - conn.req_start
                slow = took > 1.0 and conn.req_bytes < lim.min_rate * took
                if took > lim.header_timeout or slow:
                    self.counters.HttpConnsSlow += 1
                    conn.close_after = True
                    self._send_error(conn, HttpError(408, "request timeout"), None)
                    self._finish(conn)
            elif now - conn.last > lim.idle_timeout:
                self.counters.HttpConnsClosedIdle += 1
                self._close(conn)
        if not self._closed:
            self._sweep = self.stack.call_at(now + SWEEP_INTERVAL, self._on_sweep)

    def _log(self, conn: _Conn, req: Request, status: int, nbytes: int) -> None:
        log = self.access_log
        if log is None:
            return
        if not conn.peer:
            try:
                conn.peer = conn.sock.getpeername()[0]
            except OSError:
                conn.peer = "-"
        self._write_log(conn.peer, req, status, nbytes)

    def _write_log(self, peer: str, req: Request, status: int, nbytes: int) -> None:
        log = self.access_log
        if log is None:
            return
        # The Common Log Format (as Apache's and nginx's "common").
        t = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
        target = req.target.replace('"', "%22")
        v = f"HTTP/{req.version[0]}.{req.version[1]}"
        log.write(f'{peer} - - [{t}] "{req.method} {target} {v}" {status} {nbytes}\n')


def _connection_header(req: Request | None, close: bool) -> str | None:
    """The Connection header a response carries: ``close`` whenever the
    server will close (RFC 9112 9.6), ``keep-alive`` to an HTTP/1.0 client
    that asked for it (RFC 9112 C.2.2), else none."""
    if close:
        return "close"
    if req is not None and req.version < (1, 1):
        return "keep-alive"
    return None
