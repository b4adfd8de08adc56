"""The load generator on a Stack: ``LoadGenerator`` (``ustack load``).

It runs inside the stack's poll loop on the native TCP API (``TcpSocket``
callbacks: no socket layer, no thread), with the stack's clock: every time
is ``stack.now``, so a test steps it with a fake clock.

- **Sources**: each new connection takes the next of the interface's
  addresses (``LoadConfig.sources``), round-robin, and an ephemeral port
  free for its 4-tuple: a connection per request never runs out of ports
  or waits for TIME-WAIT while there are addresses to spread over.
- **Closed loop** (no ``rate``): ``connections`` connections, each with
  ``pipeline`` requests outstanding; a whole response sends the next
  request on its connection.  With ``close`` each connection carries one
  request (``Connection: close``) and is replaced when it is answered.
- **Open loop** (``rate``): requests are due at ``rate`` per second
  (``schedule.OpenLoop``); each is sent on an established connection with
  room (fewer than ``pipeline`` outstanding), or, with none, a connection
  is opened for it (up to ``connections``).  Its times are taken from when
  it was due, so a stalled server shows in the percentiles instead of
  being omitted; what could not be sent on time is counted (late, never sent).
- **Bounded**: the run ends at ``duration`` or after ``requests`` requests
  (a connection that failed before carrying one counts as one), and each
  request has ``timeout`` seconds to be answered (a connection the same to
  be established): then its connection is reset and the request counted.
- The first connection is opened alone: once it is established (our ARP
  entry for the server is made) the others follow, instead of a burst of
  SYNs overflowing the ARP queue and waiting a retransmission timeout.

``LoadStats`` (``results``) holds what was counted; ``report`` prints it.
"""

from __future__ import annotations

import errno
import math
from collections import deque
from collections.abc import Callable
from typing import Final

from ustack.apps.load.outcomes import (
    CLOSED,
    CONNECT_FAILED,
    MALFORMED,
    NO_PORT,
    RESET_IDLE,
    SYN_TIMEOUT,
    TIMEOUT,
    TRUNCATED,
    connect_error,
    established_error,
)
from ustack.apps.load.response import EOF_COMPLETE, EOF_TRUNCATED, HeadCache, ResponseParser
from ustack.apps.load.results import LoadStats
from ustack.apps.load.schedule import OpenLoop
from ustack.stack import Stack
from ustack.tcp.segment import Event
from ustack.tcp.socket import POLLIN, TcpSocket
from ustack.tcp.states import State
from ustack.timers import Timer

INF: Final = math.inf
RECV_MAX: Final = 262144
# A connect our own stack refused (no free port, no route) is tried again
# this much later, not at once: a loop of synchronous failures would spin.
RETRY_DELAY: Final = 0.01


def us(seconds: float) -> int:
    """Seconds as whole microseconds (rounded)."""
    return int(seconds * 1_000_000 + 0.5)


class LoadConfig:
    """What to run; checked when made (ValueError, one line naming the option)."""

    __slots__ = ("close", "connections", "duration", "head_only", "ip", "pipeline", "port",
                 "rate", "request", "requests", "sources", "timeout")

    def __init__(self, ip: str, port: int, request: bytes, sources: list[str], *,
                 head_only: bool = False, connections: int = 10,
                 duration: float | None = None, requests: int | None = None,
                 rate: float | None = None, close: bool = False, pipeline: int = 1,
                 timeout: float = 10.0) -> None:
        if connections < 1:
            raise ValueError(f"-c {connections}: at least one connection")
        if duration is None and requests is None:
            raise ValueError("a run is bounded: give -d SECS or -n REQUESTS")
        if duration is not None and not (0.0 < duration < INF):
            raise ValueError(f"-d {duration}: a positive number of seconds")
        if requests is not None and requests < 1:
            raise ValueError(f"-n {requests}: at least one request")
        if rate is not None and not (0.0 < rate < INF):
            raise ValueError(f"--rate {rate}: a positive number of requests per second")
        if pipeline < 1:
            raise ValueError(f"--pipeline {pipeline}: at least 1")
        if close and pipeline > 1:
            raise ValueError("--close carries one request per connection: no --pipeline")
        if not (0.0 < timeout < INF):
            raise ValueError(f"--timeout {timeout}: a positive number of seconds")
        if not sources:
            raise ValueError("no source address")
        self.ip = ip
        self.port = port
        self.request = request
        self.sources = sources
        self.head_only = head_only
        self.connections = connections
        self.duration = duration
        self.requests = requests
        self.rate = rate
        self.close = close
        self.pipeline = pipeline
        self.timeout = timeout


class _Conn:
    """One connection of the generator: its requests outstanding, oldest
    first (``starts``: when each one's time is measured from; ``sents``:
    when it was written), and its response parser."""

    __slots__ = ("alive", "deadline", "established", "first", "in_ready", "opened", "out",
                 "parser", "sents", "sock", "src", "starts")

    def __init__(self, sock: TcpSocket, src: int, now: float, parser: ResponseParser,
                 deadline: float) -> None:
        self.sock = sock
        self.src = src  # index of its source address
        self.opened = now
        self.established = False
        self.alive = True
        self.parser = parser
        self.starts: deque[float] = deque()
        self.sents: deque[float] = deque()
        self.first = 0.0  # first byte of the response in progress
        self.out: bytes | None = None  # request bytes the send buffer has not taken yet
        self.deadline = deadline  # connect or oldest request, + timeout
        self.in_ready = False


class LoadGenerator:
    """Runs ``config`` on ``stack`` from ``start()`` until ``done``."""

    def __init__(self, stack: Stack, config: LoadConfig) -> None:
        self.stack = stack
        self.cfg = config
        self.stats = LoadStats(len(config.sources))
        self.conns: dict[TcpSocket, _Conn] = {}
        self.connecting = 0
        self.held = 0  # established now
        self.started = False
        self.stopped = False
        self.schedule: OpenLoop | None = None
        self._addr = (config.ip, config.port)
        self._sources = list(config.sources)
        self._next_src = 0
        self._gate = True  # the first connection alone (ARP), until it is settled
        self._ready: deque[_Conn] = deque()  # open loop: connections with room
        self._budget = config.requests if config.requests is not None else -1
        self._used = 0  # closed loop: requests sent + connections failed before one
        self._reserved = 0  # closed loop: connections opening, each owed one of the budget
        self._outstanding = 0  # requests sent and not yet answered or failed
        self._timers: list[Timer] = []
        self._pump_timer: Timer | None = None
        self._retry_timer: Timer | None = None
        self._sweep_every = max(0.01, min(1.0, config.timeout / 10.0))
        self._on_event_cb: Callable[[TcpSocket, Event], None] = self._on_event
        self.heads = HeadCache()  # the parsers' (response heads repeat)
        # The sockets closed last (FIN sent): ``settled`` waits for them.
        self._closing: deque[TcpSocket] = deque(maxlen=4 * config.connections + 64)

    @property
    def done(self) -> bool:
        return self.stopped

    # -- the run ---------------------------------------------------------

    def start(self) -> None:
        """Begin at ``stack.now``: the deadline, the timeout sweep, the
        schedule (open loop) and the first connection."""
        if self.started:
            raise RuntimeError("a LoadGenerator runs once")
        self.started = True
        stack = self.stack
        now = stack.now
        cfg = self.cfg
        self.stats.started = now
        if cfg.duration is not None:
            self._timers.append(stack.call_at(now + cfg.duration, self._on_deadline))
        self._timers.append(stack.call_at(now + self._sweep_every, self._on_sweep))
        if cfg.rate is not None:
            self.schedule = OpenLoop(cfg.rate, now, cfg.duration, cfg.requests)
        self._replenish(now)

    def stop(self, now: float | None = None) -> None:
        """End the run (at the deadline, when every request is settled, or
        on a signal): what is outstanding is counted as unfinished, the
        open loop's due requests never sent are counted, every connection
        is closed."""
        if self.stopped:
            return
        if now is None:
            now = self.stack.now
        self.stopped = True
        st = self.stats
        st.ended = now
        st.unfinished = self._outstanding
        sched = self.schedule
        if sched is not None:
            sched.finish(now)
            st.late = sched.late
            st.never_sent = sched.never_sent
            st.scheduled = sched.sent + sched.never_sent
        for t in self._timers:
            t.cancel()
        for t2 in (self._pump_timer, self._retry_timer):
            if t2 is not None:
                t2.cancel()
        for conn in list(self.conns.values()):
            self._remove(conn)
            conn.sock.close()
            self._closing.append(conn.sock)

    def settled(self) -> bool:
        """Every connection closed last has finished closing (gone, or in
        TIME-WAIT: our FIN acknowledged and the server's answered); the
        command waits for it a moment before it takes the link down."""
        for sock in self._closing:
            st = sock.state
            if st is not State.CLOSED and st is not State.TIME_WAIT:
                return False
        return True

    def _on_deadline(self, now: float) -> None:
        self.stop(self.stack.now)

    def _check_done(self) -> None:
        if self.stopped or self._outstanding:
            return
        sched = self.schedule
        if sched is not None:
            # With a duration the run lasts it (the rate is over all of
            # it); with only a count, it ends when the last one is settled.
            if sched.done and self.cfg.duration is None:
                self.stop()
        elif 0 <= self._budget <= self._used and not self._reserved:
            self.stop()

    def _replenish(self, now: float) -> None:
        """Open what the loop wants open (closed loop: up to ``connections``;
        open loop with keep-alive: the same, kept warm), then send what is due."""
        if self.stopped:
            return
        cfg = self.cfg
        if self.schedule is None or not cfg.close:
            limit = 1 if self._gate else cfg.connections
            while len(self.conns) < limit and self._may_open():
                if self._open(now) is None:
                    break
        if self.schedule is not None:
            self._pump(now)
        self._check_done()

    def _may_open(self) -> bool:
        sched = self.schedule
        if sched is not None:
            return not sched.done
        b = self._budget
        return b < 0 or self._used + self._reserved < b

    def _may_send(self) -> bool:
        b = self._budget
        return not self.stopped and (b < 0 or self._used < b)

    # -- connections -------------------------------------------------------

    def _open(self, now: float) -> _Conn | None:
        """A new connection from the next source address; None if our own
        stack refused it (counted; the loop tries again after RETRY_DELAY)."""
        src = self._next_src
        self._next_src = src + 1 if src + 1 < len(self._sources) else 0
        st = self.stats
        try:
            sock = self.stack.tcp_connect(self._addr, source=(self._sources[src], 0),
                                          nodelay=True)
        except OSError as e:
            kind = NO_PORT if e.errno in (errno.EADDRNOTAVAIL, errno.EADDRINUSE) \
                else CONNECT_FAILED
            st.errors[kind] += 1
            st.src_errors[src] += 1
            if self.schedule is None:
                self._used += 1
            if self._retry_timer is None:
                self._retry_timer = self.stack.call_at(now + RETRY_DELAY, self._on_retry)
            return None
        st.opened += 1
        st.src_conns[src] += 1
        conn = _Conn(sock, src, now, ResponseParser(self.cfg.head_only, cache=self.heads),
                     now + self.cfg.timeout)
        self.conns[sock] = conn
        sock.on_event = self._on_event_cb
        self.connecting += 1
        if self.schedule is None:
            self._reserved += 1
        return conn

    def _on_retry(self, now: float) -> None:
        self._retry_timer = None
        self._replenish(self.stack.now)

    def _remove(self, conn: _Conn) -> None:
        if not conn.alive:
            return
        conn.alive = False
        del self.conns[conn.sock]
        if conn.established:
            self.held -= 1
        else:
            self.connecting -= 1
            if self.schedule is None:
                self._reserved -= 1

    def _retire(self, conn: _Conn, now: float, graceful: bool) -> None:
        """Forget ``conn`` (closed with FIN, or reset) and replace it."""
        self._remove(conn)
        if graceful:
            conn.sock.close()
            self._closing.append(conn.sock)
        else:
            conn.sock.abort()
        self._replenish(now)

    def _on_event(self, sock: TcpSocket, ev: Event) -> None:
        conn = self.conns.get(sock)
        if conn is None:
            return
        if ev is Event.READABLE:
            self._readable(conn)
        elif ev is Event.WRITABLE:
            if conn.out is not None:
                self._push(conn)
        elif ev is Event.CONNECTED:
            self._connected(conn)
        elif ev is Event.CLOSED:
            self._closed(conn)
        # (RESET and TIMED_OUT come just before CLOSED: it is counted there.)

    def _connected(self, conn: _Conn) -> None:
        now = self.stack.now
        st = self.stats
        tcb = conn.sock.conn
        self.connecting -= 1
        conn.established = True
        conn.deadline = INF
        self.held += 1
        if self.held > st.held_max:
            st.held_max = self.held
        st.established += 1
        # (SYN timeouts so far: TCP's count of consecutive retransmission
        # timeouts, which the SYN-ACK does not reset.)
        rtx = tcb.retransmits
        st.syn_retransmits += rtx
        if rtx == 0:
            # TCP's own record of when the SYN left (its first RTT sample's start).
            st.syn.record(us(now - tcb.rtt_time))
        st.connect.record(us(now - conn.opened))
        gated = self._gate
        self._gate = False
        if self.schedule is None:
            self._reserved -= 1
            for _ in range(self.cfg.pipeline):
                if not conn.alive or not self._may_send():
                    break  # (a send that failed at once retired the connection)
                self._send(conn, now, now)
            if gated:
                self._replenish(now)
            else:
                self._check_done()
        else:
            self._make_ready(conn)
            self._replenish(now)

    def _conn_failed(self, conn: _Conn, kind: str, now: float) -> None:
        """A connection that never got established: counted, replaced."""
        st = self.stats
        tcb = conn.sock.conn
        # The SYNs sent again (TCP gives up at one timeout past its retries).
        st.syn_retransmits += min(tcb.retransmits, tcb.cfg.syn_retries)
        st.errors[kind] += 1
        st.src_errors[conn.src] += 1
        self._remove(conn)
        if self.schedule is None:
            self._used += 1  # it stood for a request (the bound of -n)
        self._gate = False
        self._replenish(now)

    def _closed(self, conn: _Conn) -> None:
        """CLOSED without our close: refused, timed out, reset."""
        now = self.stack.now
        code = conn.sock.conn.error
        if not conn.established:
            self._conn_failed(conn, connect_error(code), now)
            return
        if conn.starts:
            self._fail_all(conn, established_error(code))
        elif code:
            self.stats.errors[RESET_IDLE] += 1
            self.stats.src_errors[conn.src] += 1
        self._remove(conn)
        self._replenish(now)

    def _on_sweep(self, now: float) -> None:
        """The timeouts: a connection not established, or a request not
        answered, within ``timeout``: reset and counted."""
        now = self.stack.now
        for conn in list(self.conns.values()):
            if conn.deadline > now or not conn.alive:
                continue
            conn.sock.abort()
            if not conn.established:
                self._conn_failed(conn, SYN_TIMEOUT, now)
            else:
                self._fail_all(conn, TIMEOUT)
                self._remove(conn)
                self._replenish(now)
        if not self.stopped:
            self._timers.append(self.stack.call_at(now + self._sweep_every, self._on_sweep))
            if len(self._timers) > 64:
                self._timers = [t for t in self._timers if not t.cancelled]

    # -- requests ----------------------------------------------------------

    def _send(self, conn: _Conn, start: float, now: float) -> None:
        """Write a request on ``conn``; its time counts from ``start``."""
        data = self.cfg.request
        st = self.stats
        if not conn.starts:
            conn.deadline = now + self.cfg.timeout
        conn.starts.append(start)
        conn.sents.append(now)
        st.sent += 1
        st.bytes_out += len(data)
        self._outstanding += 1
        if self.schedule is None:
            self._used += 1
        if conn.out is not None:
            conn.out += data
            return
        try:
            n = conn.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError as e:
            self._lost(conn, e.errno or 0, now)
            return
        if n < len(data):
            conn.out = data[n:]

    def _push(self, conn: _Conn) -> None:
        out = conn.out
        if out is None:
            return
        try:
            n = conn.sock.send(out)
        except BlockingIOError:
            return
        except OSError as e:
            self._lost(conn, e.errno or 0, self.stack.now)
            return
        conn.out = out[n:] if n < len(out) else None

    def _lost(self, conn: _Conn, code: int, now: float) -> None:
        """A send failed at once: the connection is gone, with its requests."""
        self._fail_all(conn, established_error(code))
        self._retire(conn, now, graceful=False)

    def _fail_all(self, conn: _Conn, kind: str) -> None:
        """Every request outstanding on ``conn`` counted as ``kind``."""
        k = len(conn.starts)
        if not k:
            return
        st = self.stats
        st.errors[kind] += k
        st.src_errors[conn.src] += k
        self._outstanding -= k
        conn.starts.clear()
        conn.sents.clear()

    def _readable(self, conn: _Conn) -> None:
        sock = conn.sock
        while conn.alive:
            # (Asked first: a BlockingIOError raised in compiled code builds
            # a traceback, a tenth of a keep-alive request's cost.)
            if not sock.poll() & POLLIN:
                return
            try:
                data = sock.recv(RECV_MAX)
            except OSError:
                return  # the connection failed: its CLOSED event follows
            if not data:
                self._eof(conn)
                return
            self._data(conn, data)

    def _data(self, conn: _Conn, data: bytes) -> None:
        now = self.stack.now
        self.stats.bytes_in += len(data)
        p = conn.parser
        pos = 0
        n = len(data)
        while pos < n:
            if not conn.starts:
                self._malformed(conn, "http_unsolicited", now)
                return
            if p.received == 0:
                conn.first = now
            pos = p.feed(data, pos)
            if p.error:
                self._malformed(conn, p.error, now)
                return
            if p.done:
                self._complete(conn, now)
                if not conn.alive:
                    return

    def _complete(self, conn: _Conn, now: float) -> None:
        """The response in progress is whole: timed, counted; the next request."""
        p = conn.parser
        st = self.stats
        start = conn.starts.popleft()
        conn.sents.popleft()
        self._outstanding -= 1
        st.ttfb.record(us(conn.first - start))
        st.ttlb.record(us(now - start))
        st.completed += 1
        st.src_completed[conn.src] += 1
        st.count_status(p.status)
        keep = p.keep_alive and not self.cfg.close
        server_close = not p.keep_alive
        p.reset()
        if not keep:
            if server_close and not self.cfg.close:
                st.server_closes += 1
            self._fail_all(conn, CLOSED)  # pipelined behind a close: never answered
            self._retire(conn, now, graceful=True)
            return
        conn.deadline = conn.sents[0] + self.cfg.timeout if conn.sents else INF
        if self.schedule is None:
            if self._may_send():
                self._send(conn, now, now)
            else:
                self._check_done()
        else:
            self._make_ready(conn)
            self._pump(now)

    def _malformed(self, conn: _Conn, reason: str, now: float) -> None:
        """Not HTTP: counted by reason; the framing is lost, so the
        connection is reset with what was pipelined behind."""
        m = self.stats.malformed
        m[reason] = m.get(reason, 0) + 1
        self._fail_all(conn, MALFORMED)
        self._retire(conn, now, graceful=False)

    def _eof(self, conn: _Conn) -> None:
        """The server's FIN: it ends a response read until close, or cuts
        one short, or closes an idle connection."""
        now = self.stack.now
        if conn.starts:
            outcome = conn.parser.eof()
            if outcome == EOF_COMPLETE:
                self._complete(conn, now)  # (not kept alive: retired there)
                return
            if outcome == EOF_TRUNCATED:
                st = self.stats
                conn.starts.popleft()
                conn.sents.popleft()
                self._outstanding -= 1
                st.errors[TRUNCATED] += 1
                st.src_errors[conn.src] += 1
            self._fail_all(conn, CLOSED)
        elif not self.cfg.close:
            self.stats.server_closes += 1
        self._retire(conn, now, graceful=True)

    # -- the open loop ----------------------------------------------------

    def _make_ready(self, conn: _Conn) -> None:
        if not conn.in_ready and conn.alive and len(conn.starts) < self.cfg.pipeline:
            conn.in_ready = True
            self._ready.append(conn)

    def _take_ready(self) -> _Conn | None:
        ready = self._ready
        pipeline = self.cfg.pipeline
        while ready:
            conn = ready.popleft()
            conn.in_ready = False
            if conn.alive and conn.established and len(conn.starts) < pipeline:
                return conn
        return None

    def _pump(self, now: float) -> None:
        """Send every request due by ``now`` that a connection can take;
        open connections for the rest (up to ``connections``)."""
        sched = self.schedule
        if sched is None or self.stopped:
            return
        cfg = self.cfg
        while True:
            t = sched.next_time()
            if t is None or t > now:
                break
            conn = self._take_ready()
            if conn is None:
                want = sched.due(now) - self.connecting
                limit = 1 if self._gate else cfg.connections
                while want > 0 and len(self.conns) < limit:
                    if self._open(now) is None:
                        break
                    want -= 1
                break
            intended = sched.take(now)
            if intended is None:
                break
            self._send(conn, intended, now)
            if conn.alive and not cfg.close:
                self._make_ready(conn)
        if self._pump_timer is None and not self.stopped:
            t = sched.next_time()
            if t is not None and t > now:
                self._pump_timer = self.stack.call_at(t, self._on_pump)
        self._check_done()

    def _on_pump(self, now: float) -> None:
        self._pump_timer = None
        self._pump(self.stack.now)
