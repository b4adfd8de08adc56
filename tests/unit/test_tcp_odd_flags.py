"""Flag combinations no real TCP opens a connection with.

SYN+FIN (with PSH, URG: the "Christmas" probes of port scanners) to a
listening port is dropped, as Linux drops it in LISTEN (drop reason
TCP_FLAGS), instead of being answered with a SYN-ACK that tells the scanner
the port is open.  SYN+RST is a RST for RFC 9293 3.10.7.2 (LISTEN, first
check): ignored.  Each drop has its counter.
"""

from __future__ import annotations

import pytest
from tcp_peer import PEER_ISN, Flow, peer, state

from ustack.tcp.states import State


@pytest.mark.parametrize("flags", ["SF", "SFP", "SFPU", "SFU"])
def test_syn_fin_to_a_listener_is_dropped(flags: str) -> None:
    with peer() as p:
        lst = p.listen(80)
        f = Flow(p, p.new_port(), 80, PEER_ISN)
        f.send(flags)
        assert f.take() == []
        assert lst.syn_received == 0 and not p.stack.tcp.connections()
        assert p.stack.counters.snapshot().get("DropTcpListenSynFin") == 1
        # The listener still opens for a SYN.
        f2 = p.accept(listener=lst)
        assert state(f2.s) is State.ESTABLISHED


@pytest.mark.parametrize("flags", ["SR", "SRF", "SRA"])
def test_syn_rst_to_a_listener_is_dropped(flags: str) -> None:
    with peer() as p:
        lst = p.listen(80)
        f = Flow(p, p.new_port(), 80, PEER_ISN)
        f.send(flags, ack=1)
        assert f.take() == []
        assert lst.syn_received == 0 and not p.stack.tcp.connections()
        assert p.stack.counters.snapshot().get("DropTcpListenRst") == 1
        assert p.stack.counters.TcpOutRsts == 0


def test_syn_fin_to_a_closed_port_is_reset_as_any_segment() -> None:
    """RFC 9293 3.10.7.1: nothing listens, so the reset says the port is
    closed, as for any segment without ACK (SEG.LEN counts SYN and FIN)."""
    with peer() as p:
        f = Flow(p, p.new_port(), 81, PEER_ISN)
        f.send("SF")
        rst = f.expect1("RA")
        assert rst.ack == (PEER_ISN + 2) & 0xFFFFFFFF


def test_syn_fin_does_not_reopen_a_time_wait_connection() -> None:
    """A SYN+FIN does not take the RFC 6191 path out of TIME-WAIT: the old
    connection stays, and no new one is opened."""
    with peer() as p:
        lst = p.listen(80)
        f = p.accept(listener=lst)
        f.s.close()
        p.flush()
        f.take()
        f.send("FA")
        f.take()
        assert state(f.s) is State.TIME_WAIT
        p.advance(1.0)  # a newer timestamp: a SYN would reopen it
        f.send("SF", seq=(f.snd_nxt + 100_000) & 0xFFFFFFFF)
        assert all("S" not in s.flags for s in f.take())
        assert state(f.s) is State.TIME_WAIT
        assert lst.syn_received == 0
