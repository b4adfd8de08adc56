"""Edges of the TCP connection that a refactoring can move without a test
noticing otherwise: bytes counted as bytes, sequence numbers at the wrap,
and header prediction at exactly 2**31 (sans-I/O, a fake clock)."""

from __future__ import annotations

from array import array

from test_tcp_predicted import _opts, established

from ustack.tcp.connection import Segment, TcpConfig, TcpConnection
from ustack.tcp.states import State
from ustack.wire import tcp as wtcp
from ustack.wire.tcp import ACK, SYN

MASK = 0xFFFFFFFF
A = (b"\x0a\x00\x00\x01", 40000)
B = (b"\x0a\x00\x00\x02", 80)


def _carry(segs: list, to: TcpConnection | None, now: float) -> TcpConnection:
    """Hand ``segs`` to ``to`` (a new passive connection for the first SYN)."""
    for s in segs:
        opts = wtcp.parse_options(s.options) if s.options else wtcp.NO_OPTIONS
        seg = Segment(s.seq, s.ack, s.flags, s.window, bytes(s.payload), opts)
        if to is None:
            to = TcpConnection(B, A, 5000, TcpConfig(), now)
            to.accept_syn(seg, now)
        else:
            to.receive(seg, now)
    assert to is not None
    return to


def test_a_memoryview_of_wide_items_is_sent_byte_for_byte() -> None:
    """send() of a memoryview with 2-byte items queues and sends all its bytes
    (the send queue counts bytes, not the view's items), then the FIN."""
    a = TcpConnection(A, B, 1000, TcpConfig(), 1.0)
    a.connect(1.0)
    data = memoryview(array("H", range(1000)))
    b: TcpConnection | None = None
    got = bytearray()
    now = 1.0
    for i in range(100):
        now += 0.05
        if i == 3:
            assert a.send(data, now) == data.nbytes
            a.close(now)
        b = _carry(a.segments_to_send(now), b, now)
        got += b.recv(1 << 20)
        _carry(b.segments_to_send(now), a, now)
        for c in (a, b):
            deadline = c.next_timer()
            if deadline is not None and deadline <= now:
                c.handle_timer(now)
    assert b is not None
    assert bytes(got) == data.tobytes() and b.peer_fin
    assert a.unsent_bytes == 0 and a.state is State.FIN_WAIT_2


def test_data_on_a_syn_ack_at_the_wrap_is_in_order() -> None:
    """A SYN,ACK at SEQ 0xFFFFFFFF carries its data at 0: in order, readable."""
    c = TcpConnection(A, B, 1000, TcpConfig(), 1.0)
    c.connect(1.0)
    c.segments_to_send(1.0)
    c.receive(Segment(0xFFFFFFFF, 1001, SYN | ACK, 65535, b"x" * 500, _opts(None, mss=1460)),
              1.1)
    assert c.state is State.ESTABLISHED
    assert c.rcv_nxt == 500 and c.readable_bytes == 500


def test_prediction_refuses_a_window_the_general_path_would_not_take() -> None:
    """SEG.SEQ exactly 2**31 past SND.WL1: neither path takes the window."""
    conn = established(ts=False, wscale=False)
    fast = established(ts=False, wscale=False)  # a twin (a compiled one cannot be copied)
    seq = conn.rcv_nxt
    conn.snd_wl1 = fast.snd_wl1 = (seq - 0x80000000) & MASK
    assert not fast.receive_predicted(seq, conn.snd_una, 777, b"x" * 10, -1, 0, 100.5)
    conn.receive(Segment(seq, conn.snd_una, ACK, 777, b"x" * 10, _opts(None)), 100.5)
    assert conn.snd_wnd != 777


def test_a_fin_sent_by_the_sws_override_is_counted_once() -> None:
    """The persist timer's SWS override (RFC 9293 3.8.6.2.1) sends through
    the output's one new-data path: when its segment carries the FIN,
    SND.NXT moves past the FIN and the FIN is not sent a second time."""
    conn = established(ts=False, wscale=False)
    now = 100.02
    seq = conn.rcv_nxt
    conn.receive(Segment(seq, conn.snd_una, ACK, 65535, b"", _opts(None)), now)
    conn.receive(Segment(seq, conn.snd_una, ACK, 100, b"", _opts(None)), now)
    conn.send(b"x" * 150, now)
    conn.close(now)
    assert conn.segments_to_send(now) == []  # sender SWS holds 100 of 150 bytes
    deadline = conn.timers.persist
    assert deadline is not None
    # The window the timer meets is wide enough for the rest and the FIN
    # (set directly: what the override must do whatever led there).
    conn.snd_wnd = 200
    conn.handle_timer(deadline)
    [seg] = conn.segments_to_send(deadline)
    assert len(seg.payload) == 150 and seg.flags & wtcp.FIN
    assert conn.snd_nxt == (conn.sendq.end + 1) & MASK
    assert conn.segments_to_send(deadline) == []


def test_send_of_wide_items_counts_bytes_against_the_send_buffer() -> None:
    """send() of an array of 4-byte ints takes what the send buffer holds,
    in bytes (socket.send returns bytes): 10 of the 20, not all 5 items."""
    conn = established(ts=False, wscale=False)
    conn.cfg.sndbuf = 10
    data = array("i", range(5))
    assert conn.send(data, 100.5) == 10  # type: ignore[arg-type]
    q = conn.sendq
    assert bytes(q.buf) == data.tobytes()[:10]
    assert (q.end - q.seq) & MASK == 10
    assert conn.send(data, 100.5) == 0  # type: ignore[arg-type]
