"""tcp/info.py's counts as Linux's tcp_info keeps them, and ``ss -i``'s
line in iproute2's words: 64-bit byte counts past 4 GiB, segment counts
for unacked/sacked/lost, ``send``/``delivery_rate`` with a space."""

from __future__ import annotations

from contextlib import suppress

from test_tcp_stack import B_IP, Net

from ustack.cli import ss as ss_cli
from ustack.tcp import info as tcp_info
from ustack.tcp import seq as sq
from ustack.tcp.socket import TcpSocket

GIB = 1 << 30


def _pair() -> tuple[Net, TcpSocket, TcpSocket]:
    net = Net()
    listener = net.b.tcp_listen(("0.0.0.0", 81))
    a = net.a.tcp_connect((B_IP, 81))
    b = net.accept(listener)
    a.send(b"z" * 5000)
    got = bytearray()
    while len(got) < 5000:
        with suppress(BlockingIOError):
            got += b.recv(1 << 20)
        net.step()
    net.run_until(lambda: a.conn.snd_una == a.conn.snd_nxt, 5)
    return net, a, b


def _as_if_sent_before(a: TcpSocket, earlier: int) -> None:
    """Make the connection look as though ``earlier`` more bytes had been
    sent and acknowledged before: the 64-bit count grows, and the 32-bit
    sequence numbers are where they would be, the ISS that far back."""
    conn = a.conn
    conn.bytes_out += earlier
    conn.iss = sq.sub(conn.iss, earlier & sq.MASK) & sq.MASK


def test_bytes_sent_counts_past_2_and_4_gib() -> None:
    for earlier in (2 * GIB + 10, 4 * GIB, 5 * GIB, 5 * GIB - 5000 + 1):
        net, a, _b = _pair()
        _as_if_sent_before(a, earlier)
        info = tcp_info.connection_info(a.conn, net.now)
        assert info["bytes_acked"] == earlier + 5000
        assert info["bytes_sent"] == earlier + 5000, earlier


def test_bytes_sent_counts_data_in_flight() -> None:
    net, a, _b = _pair()
    _as_if_sent_before(a, 5 * GIB)
    a.send(b"q" * 3000)
    net.a.flush(net.now)  # sent, not yet acknowledged: B is not polled
    info = tcp_info.connection_info(a.conn, net.now)
    assert info["bytes_acked"] == 5 * GIB + 5000
    out = sq.sub(a.conn.snd_nxt, a.conn.snd_una)
    assert 2 * a.conn.mss <= out <= 3000  # (Nagle may hold the last small piece)
    assert info["bytes_sent"] == 5 * GIB + 5000 + out
    assert info["unacked"] == -(-out // a.conn.mss)  # segments, as Linux's ss counts them
    assert info["unacked_bytes"] == out


def test_unacked_sacked_lost_are_segments() -> None:
    assert tcp_info.segments(0, 1448) == 0
    assert tcp_info.segments(1, 1448) == 1
    assert tcp_info.segments(1448, 1448) == 1
    assert tcp_info.segments(1449, 1448) == 2
    assert tcp_info.segments(14480, 1448) == 10


def _row(**info: object) -> dict[str, object]:
    base: dict[str, object] = {
        "timestamps": True, "sack": True, "cc": "cubic", "wscale": [7, 7], "rto": 204.0,
        "backoff": 0, "rtt": 1.5, "rttvar": 0.75, "minrtt": 0.5, "mss": 1448, "cwnd": 10,
        "cwnd_bytes": 14480, "ssthresh": None, "bytes_sent": 3000, "bytes_retrans": 0,
        "bytes_acked": 3000, "bytes_received": 0, "segs_out": 5, "segs_in": 4,
        "delivery_rate": 1_234_567, "lastsnd": 8, "lastrcv": 0, "retrans": [0, 0],
        "unacked": 2, "sacked": 1, "lost": 0, "recovery": False, "snd_wnd": 65536,
        "rcv_wnd": 0}
    base.update(info)
    return {"state": "ESTAB", "info": base, "timers": []}


def test_info_line_in_iproute2_words() -> None:
    line = ss_cli.info_line(_row())
    assert line == ("ts sack cubic wscale:7,7 rto:204 rtt:1.5/0.75 mss:1448 cwnd:10 "
                    "bytes_sent:3000 bytes_acked:3000 segs_out:5 segs_in:4 send 77.2Mbps "
                    "lastsnd:8 delivery_rate 1.23Mbps unacked:2 sacked:1 minrtt:0.5 "
                    "snd_wnd:65536")
    numeric = ss_cli.info_line(_row(), numeric=True)
    assert "send 77226667bps" in numeric and "delivery_rate 1234567bps" in numeric
    assert "delivery_rate:" not in line + numeric


def test_info_line_of_a_live_connection_parses_as_ss_output() -> None:
    net, a, _b = _pair()
    with suppress(BlockingIOError):
        a.send(b"r" * 20000)
    net.a.flush(net.now)
    row = {"state": "ESTAB", "info": tcp_info.connection_info(a.conn, net.now),
           "timers": tcp_info.timers(a.conn, net.now)}
    words = ss_cli.info_line(row).split()
    # Every word is a flag, name:value, or one of ss's "name value" pairs.
    i = 0
    while i < len(words):
        w = words[i]
        if w in ("send", "delivery_rate", "pacing_rate"):
            assert words[i + 1].endswith("bps"), words
            i += 2
            continue
        assert w in ("ts", "sack", "cubic", "reno", "recovery") or ":" in w, w
        i += 1
    conn = a.conn
    in_flight = sq.sub(conn.snd_nxt, conn.snd_una)
    assert in_flight > conn.mss  # several segments out
    assert f"unacked:{-(-in_flight // conn.mss)}" in words
