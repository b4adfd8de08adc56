"""The load generator (ustack.apps.load.generator) on an in-memory link with
a fake clock: against HttpServer, the counts are exact (requests, pipelining,
connections per source); against scripted servers that refuse, never
answer the SYN, reset, cut short, stall, close or speak no HTTP, each
failure is counted as what it was; in the open loop a server stall shows in
the latencies (taken from when each request was due), where the closed
loop hides it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from test_tcp_stack import A_IP, B_IP
from test_tcp_stack import Net as StackNet

from ustack.apps.http.server import HttpServer
from ustack.apps.load.generator import LoadConfig, LoadGenerator
from ustack.apps.load.histogram import SLOTS, Histogram, lowest_of
from ustack.apps.load.outcomes import ERRORS, REQUEST_ERRORS
from ustack.apps.load.results import LoadStats
from ustack.apps.load.target import build_request, parse_url
from ustack.net.ports import EphemeralPorts
from ustack.stack import Stack
from ustack.tcp.segment import Event
from ustack.tcp.socket import TcpListener, TcpSocket

BODY = os.urandom(3000)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Net(StackNet):
    """The generator on stack A (with ``sources`` addresses), servers on B
    (faults on what B sends)."""

    def __init__(self, sources: int = 1, fault: str | None = None) -> None:
        super().__init__(fault, fault_on="b")
        self.sources = [A_IP] + [f"198.18.0.{10 + i}" for i in range(sources - 1)]
        for ip in self.sources[1:]:
            self.a.add_address(self.a.interfaces[0], ip)

    def load(self, path: str = "/f", *, port: int = 80, limit: float = 120.0,
             method: str = "GET", **kw: object) -> LoadStats:
        """Run a generator to its end; the counts, checked to add up."""
        target = parse_url(f"http://{B_IP}:{port}{path}")
        request = build_request(target, method, close=bool(kw.get("close", False)))
        cfg = LoadConfig(target.ip, target.port, request, self.sources,
                         head_only=method == "HEAD", **kw)  # type: ignore[arg-type]
        gen = LoadGenerator(self.a, cfg)
        self.step()
        gen.start()
        self.run_until(lambda: gen.done, limit)
        st = gen.stats
        assert st.sent == st.completed + st.failed + st.unfinished
        assert sum(st.src_completed) == st.completed
        assert sum(st.src_errors) == sum(st.errors.values())
        assert sum(st.src_conns) == st.opened
        assert st.ttlb.count == st.ttfb.count == st.completed
        assert st.connect.count == st.established
        assert sum(st.status.values()) == st.completed
        self.gen = gen
        return st


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "f").write_bytes(BODY)
    return tmp_path


def errors(st: LoadStats) -> dict[str, int]:
    return {k: v for k, v in st.errors.items() if v}


def at_least(h: Histogram, value_us: int) -> int:
    """How many values recorded are at least ``value_us`` (to a sub-bucket)."""
    return sum(h.counts[i] for i in range(SLOTS) if lowest_of(i) >= value_us)


# -- against HttpServer: exact counts -------------------------------------------


def test_closed_loop_keep_alive_count_is_exact(root: Path) -> None:
    net = Net()
    srv = HttpServer(net.b, str(root), 80)
    st = net.load(requests=100, connections=4)
    assert (st.sent, st.completed, st.status["2xx"]) == (100, 100, 100)
    assert srv.counters.HttpRequests == 100
    assert (st.opened, st.established, st.held_max) == (4, 4, 4)
    assert srv.counters.HttpConnsAccepted == 4
    assert not errors(st) and st.unfinished == 0
    assert st.bytes_in == 100 * (len(BODY) + st.bytes_in // 100 - len(BODY))
    assert st.syn.count == 4 and st.syn_retransmits == 0
    # Closed at the end with FIN: not settled until the server's FIN is answered.
    assert not net.gen.settled()
    net.run_until(net.gen.settled, 5)
    assert srv.conns == {}


def test_pipelining_keeps_k_outstanding() -> None:
    """A server that answers only once it holds 4 requests: with
    --pipeline 4 every request is answered; with 1, none is (timeouts)."""
    net = Net()
    held: dict[TcpSocket, int] = {}

    def four_at_a_time(sock: TcpSocket, n: int, now: float) -> None:
        held[sock] = held.get(sock, 0) + 1
        if held[sock] == 4:
            held[sock] = 0
            sock.send(OK * 4)

    srv = Scripted(net.b, four_at_a_time)
    st = net.load(requests=40, connections=2, pipeline=4)
    assert (st.sent, st.completed) == (40, 40) and not errors(st)
    assert srv.requests == 40
    st = net.load(requests=4, connections=2, pipeline=1, timeout=0.5)
    assert st.completed == 0 and errors(st) == {"timeout": 4}  # two rounds of two


def test_close_mode_spreads_connections_over_the_sources(root: Path) -> None:
    net = Net(sources=10)
    srv = HttpServer(net.b, str(root), 80)
    st = net.load(requests=50, connections=5, close=True)
    assert (st.sent, st.completed, st.opened) == (50, 50, 50)
    assert st.src_conns == [5] * 10 and st.src_completed == [5] * 10
    assert srv.counters.HttpConnsAccepted == 50
    assert not errors(st) and st.server_closes == 0


def test_head_requests_have_no_body(root: Path) -> None:
    net = Net()
    HttpServer(net.b, str(root), 80)
    st = net.load(method="HEAD", requests=10, connections=2)
    assert st.completed == 10 and not errors(st)
    assert st.bytes_in < 10 * 500  # heads only


def test_status_classes_are_counted(root: Path) -> None:
    net = Net()
    HttpServer(net.b, str(root), 80)
    st = net.load("/nothing", requests=10, connections=2)
    assert st.status == {"2xx": 0, "3xx": 0, "4xx": 10, "5xx": 0}
    assert st.succeeded == 0 and not errors(st)


def test_a_run_is_bounded_by_its_duration(root: Path) -> None:
    net = Net()
    HttpServer(net.b, str(root), 80)
    st = net.load(duration=0.5, connections=3)
    assert 0.5 <= st.elapsed < 0.502
    assert st.completed > 100 and not errors(st)
    assert st.unfinished <= 3


def test_no_free_port_is_counted_and_the_budget_still_ends(root: Path) -> None:
    """Two ephemeral ports for three connections: the third cannot be
    opened (no_port), each try counts against -n, and the run ends."""
    net = Net()
    net.a.tcp.ephemeral = EphemeralPorts(40000, 40001)
    HttpServer(net.b, str(root), 80)
    st = net.load(requests=200, connections=3)
    assert st.errors["no_port"] >= 1
    assert st.completed + st.errors["no_port"] == 200
    assert st.opened == 2


# -- scripted servers: each failure named ------------------------------------


class Scripted:
    """A server on B's native API: each request (up to its blank line) is
    handed to ``answer(sock, n, now)``, n counting from 1."""

    def __init__(self, stack: Stack, answer: Callable[[TcpSocket, int, float], None],
                 port: int = 80) -> None:
        self.stack = stack
        self.answer = answer
        self.requests = 0
        self.accepted = 0
        self.bufs: dict[TcpSocket, bytes] = {}
        self.listener = stack.tcp_listen(("0.0.0.0", port), 1024, nodelay=True)
        self.listener.on_accept = self._accept

    def _accept(self, lst: TcpListener) -> None:
        while lst.accept_queue:
            s = lst.accept()
            self.accepted += 1
            self.bufs[s] = b""
            s.on_event = self._event

    def _event(self, sock: TcpSocket, ev: Event) -> None:
        if ev is not Event.READABLE:
            return
        while sock in self.bufs:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf = self.bufs[sock] + data
            while b"\r\n\r\n" in buf and sock in self.bufs and not sock.closed:
                _, buf = buf.split(b"\r\n\r\n", 1)
                self.requests += 1
                self.answer(sock, self.requests, self.stack.now)
            if sock in self.bufs:
                self.bufs[sock] = buf

    def later(self, dt: float, fn: Callable[[], None]) -> None:
        self.stack.call_at(self.stack.now + dt, lambda now: fn())


def test_refused() -> None:
    net = Net()
    st = net.load(requests=5, connections=2)
    assert errors(st) == {"refused": 5}
    assert st.sent == 0 and st.opened == 5 and st.established == 0


def test_syn_timeout_counts_the_retransmissions() -> None:
    """Nothing B sends arrives (A knows B's MAC without asking): no
    SYN-ACK; --timeout 2.5 s leaves each SYN one retransmission, at 1 s
    (RFC 6298 2.1: the initial RTO)."""
    net = Net(fault="loss=100%")
    b = net.b.interfaces[0]
    net.a.interfaces[0].arp.add_static(b.ip, b.mac)
    Scripted(net.b, lambda s, n, now: None)
    st = net.load(requests=3, connections=3, timeout=2.5)
    assert errors(st) == {"syn_timeout": 3}
    assert st.syn_retransmits == 3  # one each, at 1 s
    assert st.sent == 0


def test_reset_mid_response() -> None:
    net = Net()
    srv: Scripted

    def half_then_rst(sock: TcpSocket, n: int, now: float) -> None:
        sock.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
        srv.later(0.01, sock.abort)

    srv = Scripted(net.b, half_then_rst)
    st = net.load(requests=4, connections=2)
    assert errors(st) == {"reset": 4}
    assert st.completed == 0 and st.established == 4


def test_truncated_then_closed_behind_it() -> None:
    """Half the Content-Length, then FIN: the request in progress is
    truncated; the one pipelined behind it was never answered (closed)."""
    net = Net()

    def half_then_fin(sock: TcpSocket, n: int, now: float) -> None:
        sock.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 50)
        sock.close()

    Scripted(net.b, half_then_fin)
    st = net.load(requests=2, connections=1, pipeline=2)
    assert errors(st) == {"truncated": 1, "closed": 1}


def test_stalled_server_times_out() -> None:
    net = Net()
    Scripted(net.b, lambda s, n, now: None)
    st = net.load(requests=3, connections=3, timeout=0.3)
    assert errors(st) == {"timeout": 3}
    assert 0.3 <= st.elapsed < 0.35


def test_malformed_is_named_and_the_connection_reset() -> None:
    net = Net()
    Scripted(net.b, lambda s, n, now: s.send(b"HTTP/1.1 abc\r\n\r\n"))
    st = net.load(requests=3, connections=1)
    assert errors(st) == {"malformed": 3}
    assert st.malformed == {"http_bad_status_line": 3}
    assert st.opened == 3  # each reset and replaced


def test_closed_without_an_answer() -> None:
    net = Net()
    Scripted(net.b, lambda s, n, now: s.close())
    st = net.load(requests=3, connections=1)
    assert errors(st) == {"closed": 3}


def test_server_close_in_keep_alive_is_no_error() -> None:
    """Connection: close on a response: the generator opens another."""
    net = Net()
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"

    def every_third_closes(sock: TcpSocket, n: int, now: float) -> None:
        sock.send(close if n % 3 == 0 else OK)
        if n % 3 == 0:
            sock.close()

    Scripted(net.b, every_third_closes)
    st = net.load(requests=30, connections=1)
    assert st.completed == 30 and not errors(st)
    assert st.server_closes == 10 and st.opened == 10


def test_unsolicited_bytes_are_malformed() -> None:
    """Bytes after a whole response with no request outstanding (open loop,
    10/s: the next is not due yet): nothing is lost, the connection is reset."""
    net = Net()
    Scripted(net.b, lambda s, n, now: s.send(OK + b"surprise" if n == 1 else OK))
    st = net.load(rate=10.0, duration=0.5, connections=1)
    assert st.completed == 5 and st.malformed == {"http_unsolicited": 1}
    assert st.failed == 0 and st.opened == 2


# -- the open loop: coordinated omission --------------------------------------


def stalling(net: Net, t_stall: float, t_resume: float) -> Scripted:
    """A server that answers at once, except from ``t_stall`` to
    ``t_resume`` (absolute, the Net's clock): those answers wait."""
    srv: Scripted

    def answer(sock: TcpSocket, n: int, now: float) -> None:
        if t_stall <= now < t_resume:
            srv.later(t_resume - now, lambda: sock.send(OK))
        else:
            sock.send(OK)

    srv = Scripted(net.b, answer)
    return srv


def test_open_loop_counts_every_due_request(root: Path) -> None:
    net = Net()
    HttpServer(net.b, str(root), 80)
    st = net.load(rate=200.0, duration=1.0, connections=4)
    assert st.scheduled == st.sent == st.completed == 200
    assert st.late == 0 and st.never_sent == 0
    assert st.ttlb.max < 10_000  # 1 ms steps: a few of them at most


def test_open_loop_shows_the_stall_the_closed_loop_hides() -> None:
    """100 requests/s for 3 s on one connection; the server stalls for the
    second second.  From when each request was due, about half of the 100
    due in the stall waited 0.5 s or more, and p99 is near the whole 1 s;
    the closed loop, timing from each send, has exactly one slow request."""
    net = Net()
    t0 = net.now
    stalling(net, t0 + 1.0, t0 + 2.0)
    st = net.load(rate=100.0, duration=3.0, connections=1)
    assert st.completed == st.sent == 300
    assert at_least(st.ttlb, 500_000) >= 45
    assert st.ttlb.value_at_percentile(99) >= 900_000
    assert st.ttlb.value_at_percentile(50) < 10_000
    assert st.late >= 95  # every request due in the stall left late

    closed = Net()
    t0 = closed.now
    stalling(closed, t0 + 1.0, t0 + 2.0)
    st = closed.load(duration=3.0, connections=1)
    assert at_least(st.ttlb, 500_000) == 1
    assert st.ttlb.value_at_percentile(99) < 10_000


def test_open_loop_close_mode_opens_a_connection_per_request(root: Path) -> None:
    net = Net(sources=4)
    srv = HttpServer(net.b, str(root), 80)
    st = net.load(rate=100.0, duration=1.0, connections=8, close=True)
    assert st.completed == 100 and st.opened == 100
    assert srv.counters.HttpConnsAccepted == 100
    assert st.src_conns == [25] * 4
    assert not errors(st)


def test_open_loop_never_sent_when_the_server_refuses() -> None:
    net = Net()
    st = net.load(rate=100.0, duration=0.5, connections=2)
    assert st.sent == 0 and st.errors["refused"] >= 2
    assert st.never_sent == st.scheduled == 50


def test_every_error_kind_is_one_of_the_listed() -> None:
    assert set(LoadStats(1).errors) == set(ERRORS)
    assert set(REQUEST_ERRORS) <= set(ERRORS)
