"""HttpServer on an in-memory link with a fake clock: raw requests in, the
bytes that come back judged by h11 (an independent HTTP/1.1 parser)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest
from test_tcp_stack import B_IP
from test_tcp_stack import Net as StackNet

from ustack.apps.http.request import Request
from ustack.apps.http.server import HttpServer, Reply, ServerLimits
from ustack.tcp.socket import TcpSocket
from ustack.tcp.states import State

h11 = pytest.importorskip("h11")
SMALL = bytes(range(256)) * 4
BIG = os.urandom(300_000)


class Net(StackNet):
    """A client stack A and a server stack B (faults on what B sends), stepped
    with a fake clock."""

    def __init__(self, fault: str | None = None) -> None:
        super().__init__(fault, fault_on="b")

    def connect(self) -> TcpSocket:
        s = self.a.tcp_connect((B_IP, 80))
        for _ in range(2000):
            if s.state is not State.SYN_SENT:
                break
            self.step()
        return s

    def exchange(self, s: TcpSocket, data: bytes, *, until_eof: bool = True,
                 limit: float = 60.0, want: int = 0) -> bytes:
        """Send ``data``; read until EOF (or ``want`` bytes) within ``limit`` s."""
        off = 0
        got = bytearray()
        end = self.now + limit
        while self.now < end:
            if off < len(data):
                with contextlib.suppress(BlockingIOError):
                    off += s.send(data[off:])
            try:
                chunk = s.recv(1 << 20)
                if chunk == b"":
                    return bytes(got)
                got += chunk
                if want and len(got) >= want and not until_eof:
                    return bytes(got)
            except BlockingIOError:
                pass
            except OSError:
                return bytes(got)
            self.step()
        if until_eof:
            raise AssertionError(f"no EOF; got {bytes(got[:200])!r}")
        return bytes(got)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "small.bin").write_bytes(SMALL)
    (tmp_path / "big.bin").write_bytes(BIG)
    (tmp_path / "index.html").write_bytes(b"<p>hi\n")
    return tmp_path


def responses(raw: bytes, methods: list[str]) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Parse ``raw`` as the answers to requests of ``methods``, with h11."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(raw)
    out = []
    for m in methods:
        if client.our_state is h11.DONE:
            client.start_next_cycle()
        client.send(h11.Request(method=m, target="/", headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        status, headers, body = 0, {}, b""
        while True:
            ev = client.next_event()
            assert ev is not h11.NEED_DATA, f"incomplete response: {raw[-200:]!r}"
            if isinstance(ev, h11.Response):
                status, headers = ev.status_code, dict(ev.headers)
            elif isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                break
        out.append((status, headers, body))
    return out


def get(path: str, extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return b"GET %s HTTP/%s\r\nHost: x\r\n%s\r\n" % (path.encode(), version, extra)


def test_get_takes_the_specialised_path_and_is_exact(root: Path) -> None:
    net = Net()
    srv = HttpServer(net.b, str(root), 80)
    raw = net.exchange(net.connect(), get("/small.bin", b"Connection: close\r\n"))
    [(status, headers, body)] = responses(raw, ["GET"])
    assert (status, body) == (200, SMALL)
    assert headers[b"connection"] == b"close"
    for name in (b"date", b"etag", b"last-modified", b"content-type"):
        assert name in headers
    assert srv.counters.HttpResponsesSpecialised == 1
    assert srv.counters.HttpResponsesGeneral == 0
    assert net.b.counters.TcpPresegmentedOut >= 1


def test_big_file_over_a_lossy_link_is_exact(root: Path) -> None:
    net = Net("loss=3%,reorder=2%,dup=1%,seed=3")
    srv = HttpServer(net.b, str(root), 80)
    raw = net.exchange(net.connect(), get("/big.bin", b"Connection: close\r\n"), limit=300)
    [(status, _, body)] = responses(raw, ["GET"])
    assert status == 200 and body == BIG
    assert srv.counters.HttpResponsesSpecialised == 1


def test_keep_alive_and_pipelining_answer_in_order(root: Path) -> None:
    net = Net()
    HttpServer(net.b, str(root), 80)
    s = net.connect()
    reqs = get("/small.bin") + get("/") + get("/nope") + \
        b"HEAD /small.bin HTTP/1.1\r\nHost: x\r\n\r\n" + get("/big.bin", b"Connection: close\r\n")
    raw = net.exchange(s, reqs)
    got = responses(raw, ["GET", "GET", "GET", "HEAD", "GET"])
    assert [(st, b) for st, _, b in got] == [
        (200, SMALL), (200, b"<p>hi\n"), (404, got[2][2]), (200, b""), (200, BIG)]
    assert got[3][1][b"content-length"] == b"1024"  # HEAD: the GET's headers


def test_http10_keep_alive_is_said_back(root: Path) -> None:
    net = Net()
    HttpServer(net.b, str(root), 80)
    s = net.connect()
    raw = net.exchange(s, get("/small.bin", b"Connection: keep-alive\r\n", b"1.0"),
                       until_eof=False, want=len(SMALL) + 100, limit=2)
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nConnection: keep-alive\r\n" in raw
    assert s.state is State.ESTABLISHED
    raw = net.exchange(s, get("/small.bin", b"", b"1.0"))  # no keep-alive: closed after
    assert raw.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close\r\n" in raw


def test_errors_keep_or_close_the_connection_as_they_say(root: Path) -> None:
    net = Net()
    HttpServer(net.b, str(root), 80)
    s = net.connect()
    raw = net.exchange(s, b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n" + get("/small.bin")
                       + b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 405 ")
    assert b"\r\nAllow: GET, HEAD\r\n" in raw
    assert b"HTTP/1.1 200 " in raw and b"HTTP/1.1 505 " in raw  # then closed


def test_max_conns_resets_the_one_beyond(root: Path) -> None:
    net = Net()
    srv = HttpServer(net.b, str(root), 80, limits=ServerLimits(max_conns=2))
    socks = [net.connect() for _ in range(3)]
    net.step(50)
    assert srv.counters.HttpConnsRefused == 1
    assert sum(s.state is State.CLOSED for s in socks) == 1
    assert len(srv.conns) == 2


def test_idle_and_slow_connections_are_closed(root: Path) -> None:
    net = Net()
    srv = HttpServer(net.b, str(root), 80,
                     limits=ServerLimits(idle_timeout=3.0, header_timeout=2.0))
    idle = net.connect()
    slow = net.connect()
    with contextlib.suppress(BlockingIOError):
        slow.send(b"GET / HTTP/1.1\r\n")
    net.step(500, 0.01)  # 5 s
    assert srv.counters.HttpConnsSlow == 1
    assert srv.counters.HttpConnsClosedIdle == 1
    assert srv.counters.HttpResponses4xx == 1  # the 408
    assert len(srv.conns) == 0
    del idle


def test_a_handler_answers_first_and_goes_the_general_way(root: Path) -> None:
    def handler(req: Request) -> Reply | None:
        if req.path == "/dyn":
            return Reply(200, b"dynamic " + req.method.encode(),
                         [("Content-Type", "text/plain")])
        return None

    net = Net()
    srv = HttpServer(net.b, str(root), 80, handler=handler)
    raw = net.exchange(net.connect(), get("/dyn") + get("/small.bin", b"Connection: close\r\n"))
    got = responses(raw, ["GET", "GET"])
    assert [(st, b) for st, _, b in got] == [(200, b"dynamic GET"), (200, SMALL)]
    assert srv.counters.HttpResponsesGeneral == 1
    assert srv.counters.HttpResponsesSpecialised == 1


def test_a_changed_file_is_served_fresh(root: Path) -> None:
    net = Net()
    HttpServer(net.b, str(root), 80)
    raw = net.exchange(net.connect(), get("/small.bin", b"Connection: close\r\n"))
    assert responses(raw, ["GET"])[0][2] == SMALL
    (root / "small.bin").write_bytes(b"new contents\n")
    st = os.stat(root / "small.bin")
    os.utime(root / "small.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    net.step(150, 0.01)  # past the revalidation interval
    time.sleep(0.01)
    raw = net.exchange(net.connect(), get("/small.bin", b"Connection: close\r\n"))
    assert responses(raw, ["GET"])[0][2] == b"new contents\n"
