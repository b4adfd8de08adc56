"""Every segment the connection drops is counted under a name.

Linux's TcpExt names where Linux has one (PAWSEstab, TCPAbortOnData,
TCPZeroWindowDrop, TCPOFODrop, and TCPHPHits/TCPHPAcks for what header
prediction took), ``Drop<Reason>`` otherwise; each shows in the counters
``ustack stats`` prints (``Counters.snapshot``).  One situation per test,
played by the scripted peer of ``tcp_peer``.
"""

from __future__ import annotations

from tcp_peer import Flow, Peer, peer, seq_add, state

from ustack.tcp.states import State


def _established(p: Peer) -> Flow:
    f = p.accept()
    assert state(f.s) is State.ESTABLISHED
    return f


def _counted(p: Peer) -> dict[str, int]:
    return p.stack.counters.snapshot(nonzero=True)


def test_paws_reject_counts_paws_estab() -> None:
    """RFC 7323 5.3: a TSval older than TS.Recent is dropped (and ACKed)."""
    with peer() as p:
        f = _established(p)
        f.send("PA", b"fresh")
        f.take()
        f.send("PA", b"stale", tsval=(f.tsval() - 1000) & 0xFFFFFFFF)
        [ack] = f.take()
        assert ack.flags == "A"
        assert _counted(p).get("TcpExtPAWSEstab") == 1


def test_unacceptable_segment_counts_invalid_sequence() -> None:
    """RFC 9293 3.10.7.4 first check: outside the window, ACKed and dropped."""
    with peer() as p:
        f = _established(p)
        f.send("PA", b"far", seq=seq_add(f.snd_nxt, 10_000_000))
        [ack] = f.take()
        assert ack.flags == "A" and ack.ack == f.snd_nxt
        assert _counted(p).get("DropTcpInvalidSequence") == 1


def test_challenged_rst_and_syn_are_counted() -> None:
    """RFC 5961 3.2 and 4.2: challenge ACKs; the segments themselves are dropped."""
    with peer() as p:
        f = _established(p)
        f.send("R", seq=seq_add(f.snd_nxt, 5))
        f.send("S", seq=f.snd_nxt)
        f.take()
        c = _counted(p)
        assert c.get("DropTcpRstChallenged") == 1
        assert c.get("DropTcpSynChallenged") == 1
        assert c.get("TcpExtTCPChallengeACK") == 2


def test_segment_without_ack_is_counted() -> None:
    """RFC 9293 3.10.7.4 fifth check: "if the ACK bit is off, drop the segment"."""
    with peer() as p:
        f = _established(p)
        f.send("P", b"no ack bit")
        assert f.s.conn.readable_bytes == 0  # nothing delivered
        assert _counted(p).get("DropTcpNoAck") == 1


def test_ack_of_unsent_data_is_counted() -> None:
    """RFC 5961 5.2: an ACK beyond SND.NXT earns a challenge ACK and is dropped."""
    with peer() as p:
        f = _established(p)
        f.send("A", ack=seq_add(f.rcv_nxt, 5000))
        f.take()
        assert _counted(p).get("DropTcpAckUnsentData") == 1


def test_data_for_a_closed_application_counts_abort_on_data() -> None:
    """RFC 2525 2.17: data for an application that closed is answered with RST."""
    with peer() as p:
        f = _established(p)
        f.s.close()
        p.flush()
        f.take()  # our FIN
        f.send("PA", b"too late")
        assert any("R" in s.flags for s in f.take())
        assert _counted(p).get("TcpExtTCPAbortOnData") == 1


def test_text_beyond_a_zero_window_counts_zero_window_drop() -> None:
    """RFC 9293 3.10.7.4: with the window shut, text is dropped, the ACK taken."""
    with peer() as p:
        p.cfg.rcvbuf = 4096
        f = _established(p)
        while True:  # fill the window without reading
            f.send("PA", b"x" * 1000)
            segs = f.take()
            if segs and f.window(segs[-1]) == 0:
                break
        f.send("PA", b"y" * 10)
        f.take()
        assert _counted(p).get("TcpExtTCPZeroWindowDrop", 0) >= 1


def test_text_after_the_peers_fin_is_counted() -> None:
    """RFC 9293 3.10.7.4 seventh: in CLOSE-WAIT the text is ignored, and counted."""
    with peer() as p:
        f = _established(p)
        f.send("FA")
        f.take()
        assert state(f.s) is State.CLOSE_WAIT
        f.send("PA", b"after the FIN", seq=f.snd_nxt)
        assert f.s.conn.readable_bytes == 0
        assert _counted(p).get("DropTcpDataAfterFin") == 1


def test_text_past_the_window_is_counted() -> None:
    """RFC 9293 3.10.7.4 seventh: the tail of a segment beyond the window we
    advertised is cut off (the peer sends it again), and counted."""
    with peer() as p:
        p.cfg.rcvbuf = 4096
        p.cfg.rcvbuf_max = 0  # (a fixed buffer: no window scale, no rounding)
        f = _established(p)
        for _ in range(3):  # 4200 bytes into a 4096-byte window, none read
            f.send("PA", b"b" * 1400)
            f.take()
        assert _counted(p).get("DropTcpOverwindow") == 1
        assert f.s.conn.readable_bytes == 4096


def test_header_prediction_counts_hits_and_acks() -> None:
    """In-order data and pure ACKs of new data take the predicted path."""
    with peer() as p:
        f = _established(p)
        f.send("PA", b"data")
        f.take()
        f.app_send(b"reply")
        f.take()
        f.send("A")  # ACKs the reply: a pure ACK of new data
        c = _counted(p)
        assert c.get("TcpExtTCPHPHits") == 1
        assert c.get("TcpExtTCPHPAcks") == 1


def test_every_drop_reason_the_connection_reports_has_a_counter() -> None:
    """The names ``TcpConnection.receive`` returns are counters or drop reasons."""
    import ast

    from srcscan import SRC

    from ustack.counters import Counters

    # The source file, not inspect.getsource: a compiled module has none.
    tree = ast.parse((SRC / "ustack" / "tcp" / "connection.py").read_text())
    returned = {n.value.value for n in ast.walk(tree)
                if isinstance(n, ast.Return) and isinstance(n.value, ast.Constant)
                and isinstance(n.value.value, str) and n.value.value}
    assert returned, "found no drop reasons"
    for name in returned:
        if name[:1].isupper():  # Linux's TcpExt name
            assert "TcpExt" + name in Counters.__annotations__, name
        else:
            assert name.startswith("tcp_") and name.islower(), name
