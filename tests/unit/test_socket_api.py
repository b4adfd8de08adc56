"""``ustack.socket`` between two Stacks over an in-memory link, real threads.

Each Stack runs in its own ``Runtime`` thread, as ``ustack run`` runs one;
the test thread (and helper threads) use the stdlib-compatible API on both.
Errors must be the standard library's, with the same errno values, and
``fileno()`` must poll exactly as the socket is ready.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import select
import socket as std
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from socket_net import A_IP, B_IP, Net

import ustack.socket as us
from ustack.api.socket.runtime import StackDown


def server(net: Net, port: int = 5000) -> us.Socket:
    s = us.socket(us.AF_INET, us.SOCK_STREAM, runtime=net.b)
    s.setsockopt(us.SOL_SOCKET, us.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen()
    return s


def pair(net: Net, port: int = 5000) -> tuple[us.Socket, us.Socket, us.Socket]:
    """(listener on B, client on A, accepted on B), all blocking with a timeout."""
    lst = server(net, port)
    lst.settimeout(5)
    cli = us.create_connection((B_IP, port), timeout=5, runtime=net.a)
    srv, addr = lst.accept()
    srv.settimeout(5)
    assert addr == cli.getsockname()
    return lst, cli, srv


def ready(sock: us.Socket, timeout: float = 0.0) -> tuple[bool, bool]:
    """(readable, writable) now."""
    r, w, _ = select.select([sock], [sock], [], timeout)
    return bool(r), bool(w)


def wait_readable(sock: us.Socket) -> None:
    assert select.select([sock], [], [], 5)[0] == [sock]


def wait_writable(sock: us.Socket) -> None:
    assert select.select([], [sock], [], 5)[1] == [sock]


def wait_for(cond: object, limit: float = 5.0) -> None:
    end = time.monotonic() + limit
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.005)


# -- connections and data ----------------------------------------------------


def test_echo_and_addresses(net: Net) -> None:
    lst, cli, srv = pair(net)
    with lst, cli, srv:
        assert cli.getpeername() == (B_IP, 5000)
        assert srv.getsockname() == (B_IP, 5000)
        assert srv.getpeername() == cli.getsockname()
        assert cli.family == us.AF_INET and cli.type == us.SOCK_STREAM
        for size in (1, 1448, 100_000):
            data = bytes(i % 251 for i in range(size))
            cli.sendall(data)
            got = bytearray()
            while len(got) < size:
                got += srv.recv(65536)
            assert got == data
        buf = bytearray(10)
        srv.sendall(b"0123456789")
        n = 0
        while n < 10:
            n += cli.recv_into(memoryview(buf)[n:])
        assert buf == b"0123456789"
    assert cli.fileno() == -1
    with pytest.raises(OSError) as e:
        cli.recv(1)
    assert e.value.errno == errno.EBADF


def test_bulk_both_ways_sha256(net: Net) -> None:
    lst, cli, srv = pair(net)
    data = bytes(range(256)) * 8192  # 2 MB
    got = bytearray()

    def reader() -> None:
        while chunk := srv.recv(1 << 20):
            got.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    cli.sendall(data)
    cli.shutdown(us.SHUT_WR)
    t.join(30)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    for s in (lst, cli, srv):
        s.close()


def test_makefile_lines(net: Net) -> None:
    lst, cli, srv = pair(net)
    rf = srv.makefile("rb")
    wf = srv.makefile("wb")
    cli.sendall(b"hello\nworld\n")
    assert rf.readline() == b"hello\n"
    assert rf.readline() == b"world\n"
    wf.write(b"reply\n")
    wf.flush()
    srv.close()  # the files keep the connection open, as in the stdlib
    f = cli.makefile("r", encoding="ascii")
    assert f.readline() == "reply\n"
    wf.close()
    rf.close()  # the last file: now the connection closes
    assert f.readline() == ""  # EOF
    f.close()
    cli.close()
    lst.close()


# -- errors ------------------------------------------------------------------


def test_connect_to_closed_port_is_refused(net: Net) -> None:
    s = us.socket(runtime=net.a)
    s.settimeout(5)
    with pytest.raises(ConnectionRefusedError) as e:
        s.connect((B_IP, 9))
    assert e.value.errno == errno.ECONNREFUSED
    s.close()
    s = us.socket(runtime=net.a)
    assert s.connect_ex((B_IP, 9)) == errno.ECONNREFUSED
    s.close()


def test_nonblocking_connect_select_and_so_error(net: Net) -> None:
    s = us.socket(runtime=net.a)
    s.setblocking(False)
    with pytest.raises(BlockingIOError) as e:
        s.connect((B_IP, 9))
    assert e.value.errno == errno.EINPROGRESS
    _, w, _ = select.select([], [s], [], 5)
    assert w == [s]
    assert s.getsockopt(us.SOL_SOCKET, us.SO_ERROR) == errno.ECONNREFUSED
    assert s.getsockopt(us.SOL_SOCKET, us.SO_ERROR) == 0  # reading clears it
    s.close()
    lst = server(net, 5001)
    c = us.socket(runtime=net.a)
    c.setblocking(False)
    assert c.connect_ex((B_IP, 5001)) == errno.EINPROGRESS
    select.select([], [c], [], 5)
    assert c.getsockopt(us.SOL_SOCKET, us.SO_ERROR) == 0
    assert c.getpeername() == (B_IP, 5001)
    with pytest.raises(OSError) as e2:
        c.connect((B_IP, 5001))
    assert e2.value.errno == errno.EISCONN
    c.close()
    lst.close()


def test_reset_by_peer(net: Net) -> None:
    lst, cli, srv = pair(net)
    # SO_LINGER on with zero timeout: close() sends RST (RFC 9293 3.10.5).
    srv.setsockopt(us.SOL_SOCKET, us.SO_LINGER, struct.pack("ii", 1, 0))
    assert srv.getsockopt(us.SOL_SOCKET, us.SO_LINGER, 8) == struct.pack("ii", 1, 0)
    srv.close()
    with pytest.raises(ConnectionResetError) as e:
        cli.recv(10)
    assert e.value.errno == errno.ECONNRESET
    assert cli.recv(10) == b""  # reported once, then end of stream (Linux)
    with pytest.raises(BrokenPipeError):
        cli.send(b"x")
    cli.close()
    lst.close()


def test_timeouts(net: Net) -> None:
    lst, cli, srv = pair(net)
    cli.settimeout(0.2)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as e:
        cli.recv(10)
    assert e.value.args == ("timed out",)  # socket.timeout, as the stdlib raises it
    assert isinstance(e.value, std.timeout)
    assert 0.15 <= time.monotonic() - t0 < 2.0
    lst.settimeout(0.1)
    with pytest.raises(TimeoutError):
        lst.accept()
    assert cli.gettimeout() == 0.2
    cli.setblocking(False)
    assert cli.gettimeout() == 0.0 and not cli.getblocking()
    with pytest.raises(BlockingIOError) as b:
        cli.recv(10)
    assert b.value.errno == errno.EAGAIN
    with pytest.raises(BlockingIOError):
        srv.recv(10, us.MSG_DONTWAIT)
    with pytest.raises(ValueError):
        cli.settimeout(-1)
    for s in (lst, cli, srv):
        s.close()


def test_address_in_use(net: Net) -> None:
    lst = server(net, 6000)
    other = us.socket(runtime=net.b)
    other.setsockopt(us.SOL_SOCKET, us.SO_REUSEADDR, 1)
    with pytest.raises(OSError) as e:
        other.bind(("0.0.0.0", 6000))  # a listener: in use even with SO_REUSEADDR
    assert e.value.errno == errno.EADDRINUSE
    x = us.socket(runtime=net.b)
    x.bind((B_IP, 6001))
    y = us.socket(runtime=net.b)
    with pytest.raises(OSError) as e:
        y.bind(("0.0.0.0", 6001))
    assert e.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as e:
        x.bind((B_IP, 6002))  # bound already
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        y.bind(("198.18.0.77", 6003))  # not our address
    assert e.value.errno == errno.EADDRNOTAVAIL
    y.bind(("", 0))
    assert 32768 <= y.getsockname()[1] <= 60999
    u1 = us.socket(us.AF_INET, us.SOCK_DGRAM, runtime=net.b)
    u2 = us.socket(us.AF_INET, us.SOCK_DGRAM, runtime=net.b)
    u1.bind(("0.0.0.0", 7000))
    with pytest.raises(OSError) as e:
        u2.bind(("0.0.0.0", 7000))
    assert e.value.errno == errno.EADDRINUSE
    for s in (lst, other, x, y, u1, u2):
        s.close()
    again = server(net, 6000)  # closing freed the port
    again.close()


def _raised(call: object) -> BaseException:
    try:
        call()  # type: ignore[operator]
    except Exception as e:
        return e
    raise AssertionError("no exception")


@pytest.mark.parametrize("kind", [std.SOCK_STREAM, std.SOCK_DGRAM], ids=["tcp", "udp"])
def test_bind_checks_the_address_before_the_socket_state(net: Net, kind: int) -> None:
    """A bound socket bound again to an address that is not ours: Linux's
    __inet_bind checks the address first (EADDRNOTAVAIL, not EINVAL)."""
    ours = us.socket(us.AF_INET, kind, runtime=net.b)
    kernel = std.socket(std.AF_INET, kind)
    try:
        ours.bind((B_IP, 0))
        kernel.bind(("127.0.0.1", 0))
        got = _raised(lambda: ours.bind(("198.18.0.77", 0)))
        want = _raised(lambda: kernel.bind(("203.0.113.77", 0)))  # TEST-NET-3: not ours
        assert (type(got), got.errno) == (type(want), want.errno) == (  # type: ignore[attr-defined]
            OSError, errno.EADDRNOTAVAIL)
    finally:
        ours.close()
        kernel.close()


def test_udp_sendto_errors_are_the_kernels(net: Net) -> None:
    """sendto's address errors, as the standard library's socket raises them."""
    ours = us.socket(us.AF_INET, us.SOCK_DGRAM, runtime=net.a)
    kernel = std.socket(std.AF_INET, std.SOCK_DGRAM)
    try:
        for ip_ours, ip_kernel, port in ((B_IP, "127.0.0.1", 0), ("", "", 0),
                                         (B_IP, "127.0.0.1", 70000)):
            got = _raised(lambda: ours.sendto(b"x", (ip_ours, port)))  # noqa: B023
            want = _raised(lambda: kernel.sendto(b"x", (ip_kernel, port)))  # noqa: B023
            assert type(got) is type(want), (port, got, want)
            assert getattr(got, "errno", None) == getattr(want, "errno", None), (got, want)
        assert ours.getsockname()[1] == 0  # nothing was sent, nothing bound
        ours.close()
        kernel.close()
        got = _raised(lambda: ours.sendto(b"x", (B_IP, 9)))
        want = _raised(lambda: kernel.sendto(b"x", ("127.0.0.1", 9)))
        assert (type(got), got.errno) == (type(want), want.errno)  # type: ignore[attr-defined]
    finally:
        ours.close()
        kernel.close()


def test_bound_port_is_reserved_in_the_tcp_layer(net: Net) -> None:
    """bind() reserves the port in the stack's one TCP table, so the native
    API's ephemeral ports avoid it too; close() releases it."""
    s = us.socket(runtime=net.b)
    s.bind(("0.0.0.0", 0))
    port = s.getsockname()[1]
    tcp = net.sb.tcp
    assert net.b.call(tcp.ports.in_use, b"\0\0\0\0", port)
    s.close()
    assert not net.b.call(tcp.ports.in_use, b"\0\0\0\0", port)  # runs after the close


def _second_bind(make: Callable[[], Any], addr: tuple[str, int], first_reuse: bool,
                 second_reuse: bool) -> int:
    """Bind a first socket to ``addr``, set SO_REUSEADDR on it *after* the
    bind when ``first_reuse``, then bind a second one (SO_REUSEADDR before
    its bind when ``second_reuse``) to the first's address: 0 or its errno."""
    first, second = make(), make()
    try:
        first.bind(addr)
        if first_reuse:
            first.setsockopt(std.SOL_SOCKET, std.SO_REUSEADDR, 1)
        if second_reuse:
            second.setsockopt(std.SOL_SOCKET, std.SO_REUSEADDR, 1)
        try:
            second.bind(first.getsockname())
        except OSError as e:
            return e.errno or -1
        return 0
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize(
    ("first_reuse", "second_reuse", "expected"),
    [
        (True, True, 0),
        (False, True, errno.EADDRINUSE),  # the negative control
        (True, False, errno.EADDRINUSE),
    ],
    ids=["both", "not-the-first", "not-the-second"],
)
def test_reuseaddr_set_after_bind_still_shares_the_port(
    net: Net, first_reuse: bool, second_reuse: bool, expected: int
) -> None:
    """Linux reads SO_REUSEADDR when the next socket binds, not when this one
    did: set after bind(), it still lets a second reusing socket bind; without
    it on either socket the second bind fails, EADDRINUSE.  The kernel's
    answer (on loopback) and ustack's must agree."""
    kernel = _second_bind(std.socket, ("127.0.0.1", 0), first_reuse, second_reuse)
    ours = _second_bind(lambda: us.socket(runtime=net.b), ("0.0.0.0", 6100),
                        first_reuse, second_reuse)
    assert kernel == expected, errno.errorcode.get(kernel, kernel)
    assert ours == kernel, errno.errorcode.get(ours, ours)


def test_send_after_shutdown_is_broken_pipe(net: Net) -> None:
    lst, cli, srv = pair(net)
    cli.shutdown(us.SHUT_WR)
    with pytest.raises(BrokenPipeError) as e:
        cli.send(b"late")
    assert e.value.errno == errno.EPIPE
    with pytest.raises(BrokenPipeError):
        cli.sendall(b"late")
    assert srv.recv(10) == b""  # the peer sees our FIN
    srv.sendall(b"still open the other way")
    assert cli.recv(100) == b"still open the other way"
    for s in (lst, cli, srv):
        s.close()


def test_unconnected_and_misused_sockets(net: Net) -> None:
    s = us.socket(runtime=net.a)
    assert s.getsockname() == ("0.0.0.0", 0)
    with pytest.raises(OSError) as e:
        s.getpeername()
    assert e.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as e:
        s.recv(1)
    assert e.value.errno == errno.ENOTCONN
    with pytest.raises(BrokenPipeError):
        s.send(b"x")
    with pytest.raises(OSError) as e:
        s.shutdown(us.SHUT_WR)
    assert e.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as e:
        s.shutdown(7)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(TypeError):
        s.connect("198.18.0.2:80")  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        s.bind(("0.0.0.0", 70000))
    with pytest.raises(std.gaierror) as g:
        s.connect(("no-such-host.invalid", 80))
    assert g.value.errno == std.EAI_NONAME
    u = us.socket(us.AF_INET, us.SOCK_DGRAM, runtime=net.a)
    with pytest.raises(OSError) as e:
        u.listen()
    assert e.value.errno == errno.EOPNOTSUPP
    s.close()
    s.close()  # idempotent
    u.close()


def test_not_covered_calls_name_themselves(net: Net) -> None:
    s = us.socket(runtime=net.a)
    with pytest.raises(us.NotCoveredError, match=r"socket\.sendmsg\(\)") as e:
        s.sendmsg([b"x"])  # type: ignore[attr-defined]
    assert e.value.errno == errno.EOPNOTSUPP
    with pytest.raises(us.NotCoveredError, match="detach"):
        s.detach()  # type: ignore[attr-defined]
    with pytest.raises(us.NotCoveredError, match="flags"):
        s.recv(1, std.MSG_PEEK)
    with pytest.raises(OSError) as e:
        s.setsockopt(std.IPPROTO_IP, std.IP_MULTICAST_TTL, 5)
    assert e.value.errno == errno.ENOPROTOOPT and "IP_MULTICAST_TTL" not in str(e.value)
    with pytest.raises(us.NotCoveredError, match="family"):
        us.socket(std.AF_INET6, runtime=net.a)
    with pytest.raises(us.NotCoveredError, match="fileno"):
        us.socket(fileno=0, runtime=net.a)
    s.close()


def test_options(net: Net) -> None:
    s = us.socket(runtime=net.a)
    assert s.getsockopt(us.SOL_SOCKET, us.SO_REUSEADDR) == 0
    s.setsockopt(us.SOL_SOCKET, us.SO_REUSEADDR, 5)
    assert s.getsockopt(us.SOL_SOCKET, us.SO_REUSEADDR) == 1
    s.setsockopt(us.SOL_SOCKET, us.SO_RCVBUF, 65536)
    assert s.getsockopt(us.SOL_SOCKET, us.SO_RCVBUF) == 131072  # doubled, as Linux
    s.setsockopt(us.IPPROTO_TCP, us.TCP_NODELAY, True)
    assert s.getsockopt(us.IPPROTO_TCP, us.TCP_NODELAY) == 1
    s.setsockopt(us.SOL_SOCKET, us.SO_KEEPALIVE, 1)
    assert s.getsockopt(us.SOL_SOCKET, us.SO_TYPE) == us.SOCK_STREAM
    assert s.getsockopt(us.SOL_SOCKET, us.SO_KEEPALIVE, 4) == struct.pack("i", 1)
    lst = server(net, 5002)
    s.settimeout(5)
    s.connect((B_IP, 5002))
    st = net.a.call(lambda: s._tcp.stats() if s._tcp else {})  # type: ignore[union-attr]
    assert st["state"] == "ESTABLISHED"
    cfg = net.a.call(lambda: s._tcp.conn.cfg)  # type: ignore[union-attr]
    assert cfg.nodelay and cfg.keepalive and cfg.rcvbuf == 65536
    s.close()
    lst.close()


# -- readiness -----------------------------------------------------------------


def test_select_readiness_follows_the_socket(net: Net) -> None:
    # Accepted connections take the server stack's defaults: a small receive
    # buffer lets the client fill the whole path below.
    net.b.stack.tcp.config.rcvbuf = 16384
    lst = server(net, 5003)
    assert ready(lst) == (False, False)
    cli = us.socket(runtime=net.a)
    cli.setsockopt(us.SOL_SOCKET, us.SO_SNDBUF, 4096)
    cli.settimeout(5)
    cli.connect((B_IP, 5003))
    wait_readable(lst)
    assert ready(lst) == (True, False)  # a connection to accept
    srv, _ = lst.accept()
    assert ready(lst) == (False, False)
    assert ready(cli) == (False, True)
    srv.sendall(b"ping")
    wait_readable(cli)
    assert ready(cli) == (True, True)
    assert cli.recv(10) == b"ping"
    assert ready(cli) == (False, True)
    # Fill the path until send would block: then not writable, until the peer reads.
    # The path is full only once the server's receive window is shut too; the
    # first BlockingIOError can come while data is still in flight, and the
    # ACKs then make the socket writable again.  So keep filling until it
    # stays unwritable (the server's buffer is small, so that is soon).
    cli.setblocking(False)
    sent = 0
    blocked = False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            sent += cli.send(b"x" * 65536)
        except BlockingIOError:
            blocked = True
            time.sleep(0.05)
            if not ready(cli)[1]:
                break
    assert blocked
    assert ready(cli) == (False, False)
    got = 0
    srv.settimeout(5)
    while got < sent:
        got += len(srv.recv(1 << 20))
    wait_writable(cli)
    assert ready(cli) == (False, True)
    # selectors work too.
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(srv, selectors.EVENT_READ)
        assert sel.select(0) == []
        cli.close()  # FIN: readable (EOF)
        events = sel.select(5)
        assert [k.fileobj for k, _ in events] == [srv]
    assert srv.recv(10) == b""
    srv.close()
    lst.close()


def test_asyncio_streams_on_ustack_sockets(net: Net) -> None:
    """asyncio's selector loop drives ustack sockets through fileno()."""
    lst = server(net, 5004)
    lst.setblocking(False)
    data = bytes(range(256)) * 4000

    async def main() -> bytes:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while chunk := await r.read(65536):
                w.write(chunk)
                await w.drain()
            w.close()

        srv = await asyncio.start_server(handle, sock=lst)  # type: ignore[arg-type]
        c = us.socket(runtime=net.a)
        c.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(c, (B_IP, 5004))  # type: ignore[arg-type]
        reader, writer = await asyncio.open_connection(sock=c)  # type: ignore[arg-type]

        async def send() -> None:
            writer.write(data)
            await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        got = await reader.read(-1)
        await sender
        writer.close()
        srv.close()
        return got

    got = asyncio.run(asyncio.wait_for(main(), 30))
    assert got == data


# -- UDP ---------------------------------------------------------------------


def test_udp_sendto_recvfrom(net: Net) -> None:
    b = us.socket(us.AF_INET, us.SOCK_DGRAM, runtime=net.b)
    b.bind(("0.0.0.0", 9000))
    b.settimeout(5)
    a = us.socket(us.AF_INET, us.SOCK_DGRAM, runtime=net.a)
    assert ready(b) == (False, True)
    assert a.sendto(b"hello", (B_IP, 9000)) == 5
    data, addr = b.recvfrom(100)
    assert data == b"hello" and addr == (A_IP, a.getsockname()[1])
    buf = bytearray(3)
    b.sendto(b"truncated", addr)
    a.settimeout(5)
    assert a.recvfrom_into(buf) == (3, (B_IP, 9000))
    assert buf == b"tru"
    a.setblocking(False)
    with pytest.raises(BlockingIOError):
        a.recvfrom(10)
    # Connected UDP: an ICMP port unreachable comes back as ConnectionRefusedError.
    c = us.socket(us.AF_INET, us.SOCK_DGRAM, runtime=net.a)
    c.connect((B_IP, 9999))
    c.send(b"anyone?")
    c.settimeout(5)
    with pytest.raises(ConnectionRefusedError):
        c.recv(10)
    for s in (a, b, c):
        s.close()


# -- resolution and the runtime --------------------------------------------------


def test_getaddrinfo_numeric_and_hosts() -> None:
    infos = us.getaddrinfo("198.18.0.2", 80, type=us.SOCK_STREAM)
    assert infos == [(us.AF_INET, us.SOCK_STREAM, 6, "", ("198.18.0.2", 80))]
    both = us.getaddrinfo("198.18.0.2", "80")
    assert {i[1] for i in both} == {us.SOCK_STREAM, us.SOCK_DGRAM}
    assert us.getaddrinfo(None, 8080, flags=us.AI_PASSIVE)[0][4] == ("0.0.0.0", 8080)
    assert us.gethostbyname("198.18.0.9") == "198.18.0.9"
    with pytest.raises(std.gaierror) as e:
        us.getaddrinfo("no-such-host.invalid", 80)
    assert e.value.errno == std.EAI_NONAME and "/etc/hosts" in str(e.value)
    with pytest.raises(std.gaierror) as e:
        us.getaddrinfo("::1", 80, std.AF_INET6)
    assert e.value.errno == std.EAI_FAMILY
    with open("/etc/hosts") as f:
        has_localhost = any("localhost" in line.split("#")[0].split()[1:]
                            and "." in line.split()[0] for line in f if line.strip())
    if has_localhost:
        assert us.gethostbyname("localhost") == std.gethostbyname("localhost")


def test_calls_after_the_stack_stops_fail_fast(net: Net) -> None:
    s = us.socket(runtime=net.a)
    net.a.stop()
    with pytest.raises(StackDown) as e:
        s.getsockname()
    assert e.value.errno == errno.ENETDOWN
    s.close()  # still fine: releases the descriptor locally
    assert s.fileno() == -1


def test_no_attached_stack_is_a_clear_error() -> None:
    us.detach()
    with pytest.raises(OSError, match="no stack attached"):
        us.socket()


def test_connect_after_bind_to_a_secondary_address_leaves_from_it() -> None:
    """bind() then connect(): the connection's source is the bound address,
    not the route's (RFC 1122 4.1.3.5), here one added with add_address."""
    second = "198.18.0.20"
    net = Net(a_more=(second,))
    try:
        lst = server(net)
        lst.settimeout(5)
        cli = us.create_connection((B_IP, 5000), timeout=5, source_address=(second, 0),
                                   runtime=net.a)
        srv, addr = lst.accept()
        assert addr == cli.getsockname() and addr[0] == second
        bound = us.socket(us.AF_INET, us.SOCK_STREAM, runtime=net.a)
        bound.settimeout(5)
        bound.bind((second, 0))
        port = bound.getsockname()[1]
        bound.connect((B_IP, 5000))
        assert bound.getsockname() == (second, port)
        assert lst.accept()[1] == (second, port)
        for s in (bound, cli, srv, lst):
            s.close()
    finally:
        net.close()
