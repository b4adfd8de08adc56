"""Send buffer autotuning (TcpConfig.sndbuf_max; Linux's tcp_sndbuf_expand)."""

from __future__ import annotations

from tcp_peer import peer

MSS = 1448


def test_the_send_buffer_grows_to_twice_the_window_up_to_the_ceiling() -> None:
    """An ACK of new data makes room for twice the congestion window, so a
    path that holds more than the default 1 MB is not left waiting on the
    application: with cwnd at 1.5 MB the buffer becomes 3 MB; with 3 MB it
    stops at sndbuf_max (4 MB)."""
    with peer() as p:
        f = p.connect(80)
        conn = f.s.conn
        assert conn.cfg.sndbuf == 1 << 20
        conn.cc.cwnd = 1536 * 1024
        f.app_send(bytes(4 * MSS))
        f.take()
        f.send("A", ack=f.s.conn.snd_nxt)
        assert conn.cfg.sndbuf == 3 << 20
        conn.cc.cwnd = 3 << 20
        f.app_send(bytes(4 * MSS))
        f.take()
        f.send("A", ack=f.s.conn.snd_nxt)
        assert conn.cfg.sndbuf == 4 << 20


def test_a_send_buffer_the_application_set_stays_fixed() -> None:
    """A buffer set as an option (SO_SNDBUF) is locked, as Linux's
    SOCK_SNDBUF_LOCK: the same ACK leaves it where it was."""
    with peer() as p:
        f = p.connect(80, sndbuf=256 * 1024)
        conn = f.s.conn
        conn.cc.cwnd = 1536 * 1024
        f.app_send(bytes(4 * MSS))
        f.take()
        f.send("A", ack=f.s.conn.snd_nxt)
        assert conn.cfg.sndbuf == 256 * 1024
