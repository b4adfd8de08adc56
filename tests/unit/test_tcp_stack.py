"""TCP between two ustack Stacks over the in-memory link, with a fake clock.

One test per situation of RFC 9293 (and the states it leaves implicit, tcp/states.py);
the peer is another ustack, so these check behaviour end to end, while the
interop tests check it against the Linux kernel.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import random
from collections import deque

import pytest

from ustack.link.fault import FaultInjector, FaultSpec
from ustack.link.pipe import pipe_pair
from ustack.stack import Stack
from ustack.tcp.connection import Event
from ustack.tcp.socket import TcpListener, TcpSocket
from ustack.tcp.states import SYNCHRONIZED, TRANSITIONS, Ev, State

A_IP, B_IP = "198.18.0.1", "198.18.0.2"


class Net:
    """Two stacks A and B on one link, stepped with a fake clock."""

    def __init__(self, fault: str | None = None, mtu: int = 1500, *,
                 fault_on: str = "a") -> None:
        """``fault``: a FaultSpec applied to what ``fault_on`` ("a" or "b") sends."""
        a_dev, b_dev = pipe_pair(mtu, queue_len=100_000)
        spec = FaultSpec.parse(fault) if fault else None
        dev_a = FaultInjector(a_dev, spec) if spec and fault_on == "a" else a_dev
        dev_b = FaultInjector(b_dev, spec) if spec and fault_on == "b" else b_dev
        self.a, self.b = Stack(), Stack()
        self.a.add_interface(dev_a, f"{A_IP}/24")
        self.b.add_interface(dev_b, f"{B_IP}/24")
        self.now = 0.0

    def step(self, n: int = 1, dt: float = 0.001) -> None:
        for _ in range(n):
            self.now += dt
            self.a.poll(self.now)
            self.b.poll(self.now)

    def run_until(self, cond: object, limit: float = 120.0, dt: float = 0.001) -> None:
        end = self.now + limit
        while not cond() and self.now < end:  # type: ignore[operator]
            self.step(1, dt)
        assert cond(), "condition not reached in simulated time"  # type: ignore[operator]

    def accept(self, listener: TcpListener) -> TcpSocket:
        self.run_until(lambda: bool(listener.accept_queue), 10)
        return listener.accept()


def transfer(net: Net, src: TcpSocket, dst: TcpSocket, data: bytes,
             limit: float = 300.0) -> bytes:
    """Send ``data`` from src, close src's side, read dst to EOF."""
    got = bytearray()
    off = 0
    shut = False
    end = net.now + limit
    while net.now < end:
        if off < len(data):
            with contextlib.suppress(BlockingIOError):
                off += src.send(data[off:off + 65536])
        elif not shut:
            src.shutdown_write()
            shut = True
        try:
            chunk = dst.recv(1 << 20)
            if chunk == b"":
                return bytes(got)
            got += chunk
        except BlockingIOError:
            pass
        net.step(1)
    raise AssertionError(f"transfer stalled at {len(got)} of {len(data)} bytes")


def pair(net: Net, port: int = 5000) -> tuple[TcpSocket, TcpSocket]:
    listener = net.b.tcp_listen(("0.0.0.0", port))
    client = net.a.tcp_connect((B_IP, port))
    server = net.accept(listener)
    net.run_until(lambda: client.state is State.ESTABLISHED, 5)
    return client, server


def test_three_way_handshake_negotiates_options() -> None:
    """RFC 9293 3.5; RFC 7323 (window scale, timestamps); RFC 2018 SACK-permitted."""
    net = Net()
    client, server = pair(net)
    for s in (client, server):
        st = s.stats()
        assert st["state"] == "ESTABLISHED"
        assert st["sack"] and st["timestamps"]
        assert st["mss"] == 1460 - 12  # RFC 6691: less the timestamp option
    assert client.getpeername() == (B_IP, 5000)
    assert server.getpeername() == client.getsockname()


def test_connect_to_closed_port_is_refused() -> None:
    """RFC 9293 3.10.7.1: a SYN to a closed port is answered with RST,ACK."""
    net = Net()
    s = net.a.tcp_connect((B_IP, 9999))
    events: list[Event] = []
    s.on_event = lambda sock, ev: events.append(ev)
    net.step(5)
    assert s.state is State.CLOSED
    assert Event.RESET in events
    with pytest.raises(ConnectionRefusedError):
        s.recv()
    assert net.b.counters.TcpOutRsts == 1


@pytest.mark.parametrize("size", [1, 1447, 1448, 1449, 100_000, 3_000_000])
def test_bulk_transfer_is_exact(size: int) -> None:
    """Reliability: every byte arrives once and in order (RFC 9293 3.8)."""
    net = Net()
    client, server = pair(net)
    data = random.Random(size).randbytes(size)
    assert transfer(net, client, server, data) == data


def test_jumbo_segments_take_the_predicted_path_through_a_view() -> None:
    """With a 9000-byte MTU every data segment is above the size the layer
    reads through a memoryview; the stream must still be exact and the
    segments predicted (one READABLE per batch, data copied once)."""
    net = Net(mtu=9000)
    for st in (net.a, net.b):
        st.tcp.config.mss = 9000 - 40  # the default MSS is for 1500-byte links
    client, server = pair(net)
    assert client.stats()["mss"] == 9000 - 40 - 12
    data = random.Random(9).randbytes(2_000_000)
    hits = net.b.counters.TcpExtTCPHPHits  # the server's: data segments predicted
    assert transfer(net, client, server, data) == data
    assert net.b.counters.TcpExtTCPHPHits - hits > len(data) // 9000 // 2


@pytest.mark.parametrize("fault", ["loss=1%,seed=1", "loss=5%,seed=2", "loss=10%,seed=3",
                                   "reorder=2%,dup=2%,seed=4", "corrupt=1%,seed=5"])
def test_transfer_survives_faults(fault: str) -> None:
    """Retransmission, SACK recovery and reassembly under seeded faults."""
    net = Net(fault)
    client, server = pair(net)
    data = random.Random(7).randbytes(400_000)
    got = transfer(net, client, server, data, limit=600)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    if "loss" in fault:
        assert client.stats()["retransmits"] > 0


def test_transfer_toward_the_lossy_side_too() -> None:
    net = Net("loss=5%,seed=11")
    client, server = pair(net)
    data = random.Random(9).randbytes(300_000)
    assert transfer(net, server, client, data, limit=600) == data


def test_active_close_ends_in_time_wait_then_closed() -> None:
    """RFC 9293 figure 12: FIN-WAIT-1 -> FIN-WAIT-2 -> TIME-WAIT, 2 MSL."""
    net = Net()
    client, server = pair(net)
    client.close()
    net.step(10)
    assert client.state is State.FIN_WAIT_2
    assert server.state is State.CLOSE_WAIT
    assert server.recv() == b""  # EOF
    server.close()
    net.step(10)
    assert server.state is State.CLOSED
    # Closed by the application: the layer keeps TIME-WAIT as a record of
    # the 4-tuple (tcp/timewait.py), for 2 MSL.
    assert not net.a.tcp.conns and len(net.a.tcp.tw) == 1 and net.a.tcp.time_wait == 1
    net.step(59, dt=1.0)  # (2 MSL = 60 s from the FIN)
    assert len(net.a.tcp.tw) == 1
    net.run_until(lambda: not net.a.tcp.tw, 2, dt=0.5)
    assert net.a.tcp.time_wait == 0 and not net.b.tcp.conns


def test_simultaneous_close() -> None:
    """RFC 9293 figure 13: both send FIN, both pass CLOSING to TIME-WAIT."""
    net = Net()
    client, server = pair(net)
    client.close()
    server.close()
    net.step(10)
    assert client.state is State.TIME_WAIT
    assert server.state is State.TIME_WAIT


def test_close_with_unsent_data_sends_fin_after_the_data() -> None:
    """Hidden state: close() with a full send queue; FIN-WAIT-1 at once, FIN last."""
    net = Net()
    client, server = pair(net)
    data = bytes(200_000)
    n = client.send(data)
    assert n == len(data)
    client.close()
    assert client.state is State.FIN_WAIT_1  # what the application sees at once
    got = bytearray()
    net.run_until(lambda: _read_into(server, got), 30)
    assert bytes(got) == data


def _read_into(sock: TcpSocket, buf: bytearray) -> bool:
    try:
        chunk = sock.recv(1 << 20)
    except BlockingIOError:
        return False
    buf += chunk
    return chunk == b""


def test_data_after_close_is_answered_with_reset() -> None:
    """Hidden state: data for an application that closed gets RST (RFC 2525 2.17)."""
    net = Net()
    client, server = pair(net)
    client.close()
    net.step(10)
    assert client.state is State.FIN_WAIT_2
    server.send(b"too late")
    net.step(10)
    assert client.state is State.CLOSED
    assert server.state is State.CLOSED
    with pytest.raises(ConnectionResetError):
        server.recv()


def test_close_with_unread_data_resets() -> None:
    """RFC 9293 3.10.4 / RFC 2525 2.17: unread data at close() means RST, not FIN."""
    net = Net()
    client, server = pair(net)
    client.send(b"unread")
    net.step(5)
    server.close()
    net.step(5)
    assert client.state is State.CLOSED
    with pytest.raises(ConnectionResetError):
        client.recv()


def test_fin_while_ours_waits_behind_data() -> None:
    """Hidden state: the peer's FIN arrives while our FIN still waits (zero window)."""
    net = Net()
    client, server = pair(net)
    server.conn.cfg.rcvbuf = 4096  # the server stops reading: the window closes
    client.send(bytes(300_000))
    client.close()
    net.step(200)
    assert client.state is State.FIN_WAIT_1 and not client.conn.fin_acked
    server.shutdown_write()  # its FIN reaches a client whose FIN is still queued
    net.step(20)
    assert client.state is State.CLOSING


def test_zero_window_is_probed_and_recovers() -> None:
    """RFC 9293 3.8.6.1: a zero window is probed; reading reopens it."""
    net = Net()
    client, server = pair(net)
    server.conn.cfg.rcvbuf = 65536
    data = random.Random(3).randbytes(500_000)
    off = client.send(data)
    net.step(2000, dt=0.01)  # 20 s with a closed window
    assert client.stats()["snd_wnd"] == 0
    got = bytearray()
    end = net.now + 120
    while len(got) < len(data) and net.now < end:
        if off < len(data):
            with contextlib.suppress(BlockingIOError):
                off += client.send(data[off:])
        with contextlib.suppress(BlockingIOError):
            got += server.recv(1 << 20)
        net.step(1)
    assert bytes(got) == data


def test_listen_backlog_overflow_drops_syn() -> None:
    """docs/architecture.md, principle 3: a full backlog drops SYNs, counted
    as Linux does (SYN queue full: TCPReqQFullDrop and ListenDrops), without
    SYN cookies (tests/unit/test_tcp_cookies.py has them)."""
    net = Net()
    net.b.tcp_listen(("0.0.0.0", 80), backlog=2, syncookies="off")
    socks = [net.a.tcp_connect((B_IP, 80)) for _ in range(4)]
    net.step(20)
    assert sum(s.state is State.ESTABLISHED for s in socks) == 2
    c = net.b.counters
    assert c.TcpExtTCPReqQFullDrop == c.TcpExtListenDrops == 2
    assert c.TcpExtSyncookiesSent == 0


def test_send_after_shutdown_is_broken_pipe() -> None:
    net = Net()
    client, _ = pair(net)
    client.shutdown_write()
    with pytest.raises(BrokenPipeError):
        client.send(b"x")


def test_address_in_use() -> None:
    net = Net()
    net.b.tcp_listen(("0.0.0.0", 80))
    with pytest.raises(OSError) as e:
        net.b.tcp_listen((B_IP, 80))
    assert e.value.errno == errno.EADDRINUSE


def test_many_short_connections_leave_nothing_behind() -> None:
    """Connect, send a line, read it back, close; 200 times (the interop figure)."""
    net = Net()
    from ustack.apps.services import install

    install(net.b, "tcp-echo:7")
    for i in range(200):
        s = net.a.tcp_connect((B_IP, 7))
        net.run_until(lambda s=s: s.state is State.ESTABLISHED, 5)
        line = b"line %d\n" % i
        s.send(line)
        got = bytearray()
        want = len(line)
        net.run_until(lambda s=s, g=got, n=want: _read_some(s, g, n), 5)
        assert bytes(got) == line
        s.close()
    net.step(100)
    states = {s.state for s in net.a.tcp.conns.values()} | {
        s.state for s in net.b.tcp.conns.values()}
    assert states <= {State.TIME_WAIT}


def _read_some(sock: TcpSocket, buf: bytearray, n: int) -> bool:
    with contextlib.suppress(BlockingIOError):
        buf += sock.recv(n - len(buf))
    return len(buf) >= n


def test_state_table_reaches_every_state_from_closed() -> None:
    """The transition table is connected: each RFC state is reachable and
    every state but LISTEN can reach CLOSED again."""
    graph: dict[State, set[State]] = {}
    for (src, _ev), dst in TRANSITIONS.items():
        graph.setdefault(src, set()).add(dst)
    seen = {State.CLOSED}
    todo = deque([State.CLOSED])
    while todo:
        for nxt in graph.get(todo.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(State)
    for state in State:
        reach = {state}
        todo = deque([state])
        while todo:
            for nxt in graph.get(todo.popleft(), ()):
                if nxt not in reach:
                    reach.add(nxt)
                    todo.append(nxt)
        assert State.CLOSED in reach, state
    # Every synchronized state resets to CLOSED on an acceptable RST except
    # TIME-WAIT (RFC 1337), where the connection ignores it: no row, as for
    # every event answered without a state change (states.py; the behaviour
    # is test_tcp_rfc_close.test_rst_in_time_wait_is_ignored).
    for state in SYNCHRONIZED - {State.TIME_WAIT}:
        assert TRANSITIONS[(state, Ev.RCV_RST)] is State.CLOSED, state
    assert (State.TIME_WAIT, Ev.RCV_RST) not in TRANSITIONS


def test_congestion_control_is_selectable_per_connection() -> None:
    """CUBIC (RFC 9438) by default; NewReno per connection on request."""
    net = Net()
    net.b.tcp_listen(("0.0.0.0", 80))
    default = net.a.tcp_connect((B_IP, 80))
    reno = net.a.tcp_connect((B_IP, 80), cc="newreno", nodelay=True)
    assert default.stats()["cc"] == "cubic"
    assert reno.stats()["cc"] == "newreno" and reno.conn.cfg.nodelay
    with pytest.raises(TypeError, match="unknown TCP option"):
        net.a.tcp_connect((B_IP, 80), colour="blue")
    with pytest.raises(ValueError, match="unknown congestion control"):
        net.a.tcp_connect((B_IP, 80), cc="vegas")


def test_config_copy_copies_every_field() -> None:
    """``TcpConfig.copy`` (each connection's copy of the defaults) names its
    fields one by one: a field added later and not copied fails here."""
    import dataclasses

    from ustack.tcp.config import TcpConfig

    changed: dict[str, object] = {}
    for i, f in enumerate(dataclasses.fields(TcpConfig)):
        default = getattr(TcpConfig(), f.name)
        if isinstance(default, bool):
            changed[f.name] = not default
        elif isinstance(default, int):
            changed[f.name] = default + 1000 + i
        elif isinstance(default, float):
            changed[f.name] = default + 0.5 + i
        else:
            changed[f.name] = f"x{i}"
    cfg = TcpConfig(**changed)  # type: ignore[arg-type]
    copy = cfg.copy()
    assert copy is not cfg
    assert dataclasses.asdict(copy) == dataclasses.asdict(cfg) == changed
