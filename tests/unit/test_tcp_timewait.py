"""The TIME-WAIT table is bounded (Linux's net.ipv4.tcp_max_tw_buckets).

A server that closes first (HTTP's Connection: close) leaves every
connection in TIME-WAIT for 2 MSL; past ``TcpLayer.max_time_wait`` a
connection leaves it at once, counted as TcpExtTCPTimeWaitOverflow, and the
count of those kept goes back to zero as their 2 MSL expire.
"""

from __future__ import annotations

from test_tcp_stack import Net, pair

from ustack.tcp.states import State


def close_from_b(net: Net, n: int, base: int = 6000) -> list[State]:
    """``n`` connections A -> B that B closes first; their states at B after
    A's FIN was acknowledged."""
    socks = []
    for i in range(n):
        client, server = pair(net, base + i)
        server.close()  # B's FIN first: B goes to TIME-WAIT
        net.run_until(lambda c=client: c.state is State.CLOSE_WAIT, 5)
        client.close()
        socks.append(server)
    net.step(50)
    return [s.state for s in socks]


def test_time_wait_is_bounded_and_counted() -> None:
    net = Net()
    net.b.tcp.max_time_wait = 2
    states = close_from_b(net, 4)
    assert states == [State.TIME_WAIT, State.TIME_WAIT, State.CLOSED, State.CLOSED]
    assert net.b.tcp.time_wait == 2
    assert net.b.counters.TcpExtTCPTimeWaitOverflow == 2
    # Closed by the application: kept as records, not connections.
    assert len(net.b.tcp.tw) == 2 and not net.b.tcp.conns
    net.step(70, 1.0)  # past 2 MSL (60 s)
    assert net.b.tcp.time_wait == 0
    assert not net.b.tcp.tw
    # Room again: the next one waits its 2 MSL.
    assert close_from_b(net, 1, 7000) == [State.TIME_WAIT]
    assert net.b.tcp.time_wait == 1


def test_default_bound_keeps_time_wait() -> None:
    net = Net()
    assert net.b.tcp.max_time_wait == 32768
    assert close_from_b(net, 3) == [State.TIME_WAIT] * 3
    assert net.b.tcp.time_wait == 3
    assert net.b.counters.TcpExtTCPTimeWaitOverflow == 0
