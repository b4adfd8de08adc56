"""Stateless HTTP (apps/http/stateless.py) against the scripted peer.

The peer plays a client: cookie handshake, request, and what comes back
is checked on the wire -- the whole response with FIN and no connection
anywhere in the stack -- then the situations the design names: the
request in the handshake's ACK or after it, a retransmitted request, the
client's ACK and FIN, a response too large for the initial window or the
client's window, a request split over two segments, a forged cookie, and
the RST after the FIN.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import h11
import pytest
from tcp_peer import PEER_ISN, Flow, Peer, seq_add

from ustack.apps.http.server import HttpServer
from ustack.apps.http.stateless import StatelessFront

SMALL = bytes(range(256)) * 4  # 1 KB
LARGE = bytes(range(256)) * 80  # 20 KB: beyond 10 segments


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Peer, HttpServer, StatelessFront]]:
    (tmp_path / "small.bin").write_bytes(SMALL)
    (tmp_path / "large.bin").write_bytes(LARGE)
    p = Peer()
    server = HttpServer(p.stack, str(tmp_path), 80)
    front = StatelessFront(p.stack, server)
    front.install()
    try:
        yield p, server, front
    finally:
        server.close()
        p.close()


def handshake(p: Peer, *, ts: bool = True, win: int = 65535) -> Flow:
    f = Flow(p, p.new_port(), 80, PEER_ISN)
    f.send_syn(mss=1460, sack=True, ts=ts, wscale=7, win=win)
    sa = f.expect1("SA")
    f.adopt_syn(sa, offered_ts=ts, offered_ws=7)
    f.synack = sa
    return f


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n".encode()


def parse(data: bytes) -> tuple[int, bytes]:
    """(status, body) as h11 reads the response."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.receive_data(data)
    status = 0
    body = b""
    while True:
        ev = conn.next_event()
        if isinstance(ev, h11.Response):
            status = ev.status_code
        elif isinstance(ev, h11.Data):
            body += ev.data
        elif ev is h11.NEED_DATA or isinstance(ev, h11.EndOfMessage):
            break
    return status, body


def test_a_small_file_is_served_with_no_connection(
        site: tuple[Peer, HttpServer, StatelessFront]) -> None:
    p, server, _ = site
    f = handshake(p)
    f.send("A")
    assert not f.take() and not p.stack.tcp.conns
    f.send("PA", get("/small.bin"))
    segs = f.take()
    assert segs and segs[-1].flags == "FPA" and all("A" in s.flags for s in segs[:-1])
    assert segs[0].seq == seq_add(f.irs, 1)
    assert all(s.ack == f.snd_nxt for s in segs)
    assert all(s.tsval is not None for s in segs)  # the cookie's timestamps, continued
    status, body = parse(b"".join(s.payload for s in segs))
    assert status == 200 and body == SMALL
    assert not p.stack.tcp.conns and not server.conns
    c = server.counters
    assert c.HttpStatelessResponses == 1 and c.HttpStatelessAcks == 1
    assert c.HttpStatelessFallbacks == 0 and c.HttpConnsAccepted == 0


def test_the_request_in_the_handshakes_ack_and_its_retransmission(
        site: tuple[Peer, HttpServer, StatelessFront]) -> None:
    """The ACK carrying the request completes nothing and stores nothing;
    the same request again gets the same response again."""
    p, server, _ = site
    f = handshake(p)
    req = get("/small.bin")
    f.send("PA", req)
    first = [bytes(s.payload) for s in f.take()]
    # The client's retransmission: the same segment (it had not seen the
    # response, so it acknowledges what it did then).
    f.send("PA", req, seq=seq_add(f.snd_nxt, -len(req)), ack=seq_add(f.irs, 1))
    second = [bytes(s.payload) for s in f.take()]
    assert first and len(first) == len(second)
    assert parse(b"".join(first))[1] == parse(b"".join(second))[1] == SMALL
    assert server.counters.HttpStatelessResponses == 2 and not p.stack.tcp.conns


def test_the_clients_ack_and_fin_are_answered_from_their_numbers(
        site: tuple[Peer, HttpServer, StatelessFront]) -> None:
    p, server, _ = site
    f = handshake(p)
    f.send("PA", get("/small.bin"))
    f.take()  # the response; the flow's rcv_nxt now covers it and the FIN
    f.rcv_nxt = seq_add(f.rcv_nxt, 1)
    f.send("A")
    assert not f.take()
    f.send("FA")
    [ack] = f.take()
    assert ack.flags == "A" and ack.seq == f.rcv_nxt and ack.ack == f.snd_nxt
    assert server.counters.HttpStatelessFins == 1 and not p.stack.tcp.conns


@pytest.mark.parametrize("case", ["large", "small window", "split request", "POST"])
def test_what_does_not_qualify_gets_a_connection(
        site: tuple[Peer, HttpServer, StatelessFront], case: str) -> None:
    p, server, _ = site
    f = handshake(p)
    if case == "small window":  # 2 << 7: 256 bytes, short of the 1 KB response
        f.send("PA", get("/small.bin"), win=2)
    elif case == "split request":
        req = get("/small.bin")
        f.send("PA", req[:10])
        f.send("PA", req[10:])
    elif case == "POST":
        f.send("PA", b"POST /small.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    else:
        f.send("PA", get("/large.bin"))
    assert p.stack.tcp.conns, "a connection serves it"
    c = server.counters
    assert c.HttpStatelessFallbacks == 1 and c.HttpConnsAccepted == 1
    assert c.HttpStatelessResponses == 0
    # Counted once, by the connection that serves it (not also when the
    # stateless path looked at it).
    assert c.HttpRequests <= 1


def test_a_large_file_arrives_whole_over_the_fallback_connection(
        site: tuple[Peer, HttpServer, StatelessFront]) -> None:
    p, _, _ = site
    f = handshake(p)
    f.send("PA", get("/large.bin"))
    got = b""
    for _ in range(50):
        segs = f.take()
        got += b"".join(bytes(s.payload) for s in segs)
        if any("F" in s.flags for s in segs) or not segs:
            if not segs:
                p.advance(0.05)
            else:
                break
        f.send("A")
    assert parse(got) == (200, LARGE)


def test_a_fin_with_no_request_gets_a_connection(
        site: tuple[Peer, HttpServer, StatelessFront]) -> None:
    """A client that connects and closes without asking anything: its FIN
    acknowledges only the cookie, so a connection takes it (acknowledging
    the FIN statelessly would say nothing came before it), and closes."""
    p, server, _ = site
    f = handshake(p)
    f.send("FA")
    assert server.counters.HttpStatelessFins == 0
    assert server.counters.HttpStatelessFallbacks == 1
    segs = f.take()
    assert segs and segs[0].ack == f.snd_nxt  # its FIN acknowledged, by the connection
    assert any("F" in s.flags for s in segs)  # which the server closes in turn


def test_a_forged_cookie_is_reset_and_counted(
        site: tuple[Peer, HttpServer, StatelessFront]) -> None:
    p, server, _ = site
    f = handshake(p)
    f.send("PA", get("/small.bin"), ack=seq_add(f.rcv_nxt, 12345))
    [rst] = f.take()
    assert rst.flags == "R"
    assert p.stack.counters.TcpExtSyncookiesFailed == 1
    assert server.counters.HttpRequests == 0 and not p.stack.tcp.conns


def test_rst_after_fin_when_asked(site: tuple[Peer, HttpServer, StatelessFront]) -> None:
    p, _, front = site
    front.rst = True
    f = handshake(p)
    f.send("PA", get("/small.bin"))
    segs = f.take()
    assert segs[-2].flags == "FPA" and segs[-1].flags == "R"
    assert segs[-1].seq == segs[-2].end  # just past the FIN


def test_without_timestamps_the_response_has_none(
        site: tuple[Peer, HttpServer, StatelessFront]) -> None:
    p, _, _ = site
    f = handshake(p, ts=False)
    f.send("PA", get("/small.bin"))
    segs = f.take()
    assert segs and all(s.tsval is None for s in segs)
    assert parse(b"".join(bytes(s.payload) for s in segs)) == (200, SMALL)
