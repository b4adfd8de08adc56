"""Built-in services for ``ustack up --service NAME:PORT``.

Each service is installed on a Stack and runs inside its poll loop, called
straight from the receive path (no queue, no thread).
"""

from __future__ import annotations

from collections.abc import Callable

from ustack.stack import Stack
from ustack.tcp.connection import Event
from ustack.tcp.socket import TcpListener, TcpSocket


def udp_echo(stack: Stack, port: int) -> None:
    """RFC 862 echo over UDP: send every datagram back to its sender."""
    sock = stack.udp_socket()
    sock.bind(("0.0.0.0", port))

    def echo(data: bytes, ip: bytes, sport: int, data_sum: int) -> None:
        # Same bytes back: reuse the payload sum taken when verifying them.
        # (A method of the native socket: compiled, a direct call.)
        sock.send_raw(data, ip, sport, data_sum)

    sock.on_datagram = echo


def udp_discard(stack: Stack, port: int) -> None:
    """RFC 863 discard over UDP: accept and drop every datagram."""
    sock = stack.udp_socket()
    sock.bind(("0.0.0.0", port))
    sock.on_datagram = lambda data, ip, sport, data_sum: None


def _serve_tcp(stack: Stack, port: int, handler: Callable[[TcpSocket, Event], None],
               on_connect: Callable[[TcpSocket], None] | None = None) -> None:
    listener = stack.tcp_listen(("0.0.0.0", port))

    def accept(lst: TcpListener) -> None:
        while lst.accept_queue:
            sock = lst.accept()
            sock.on_event = handler
            if on_connect is not None:
                on_connect(sock)
            handler(sock, Event.READABLE)

    listener.on_accept = accept


def _drain(sock: TcpSocket) -> bytes | None:
    """Everything readable now; None at end of stream or on error."""
    try:
        return sock.recv(1 << 20)
    except BlockingIOError:
        return b""
    except OSError:
        return None


def tcp_echo(stack: Stack, port: int) -> None:
    """RFC 862 echo over TCP.  Data waits in our buffer while the send queue
    is full (flow control reaches the sender through our receive window)."""
    pending: dict[TcpSocket, bytearray] = {}

    def on_event(sock: TcpSocket, ev: Event) -> None:
        if ev is Event.CLOSED:
            pending.pop(sock, None)
            return
        buf = pending.setdefault(sock, bytearray())
        while True:
            if buf:
                try:
                    n = sock.send(buf)
                except BlockingIOError:
                    return  # resumed by Event.WRITABLE
                except OSError:
                    pending.pop(sock, None)
                    sock.close()
                    return
                del buf[:n]
                if buf:
                    return
            data = _drain(sock)
            if data is None or (not data and sock.conn.at_eof):
                # Everything read has been queued for sending: close after it.
                pending.pop(sock, None)
                sock.close()
                return
            if not data:
                return
            buf += data

    _serve_tcp(stack, port, on_event)


def tcp_discard(stack: Stack, port: int) -> None:
    """RFC 863 discard over TCP."""

    def on_event(sock: TcpSocket, ev: Event) -> None:
        while True:
            data = _drain(sock)
            if data is None or (not data and sock.conn.at_eof):
                sock.close()
                return
            if not data:
                return

    _serve_tcp(stack, port, on_event)


CHARGEN_LINE = bytes(range(32, 127))


def tcp_chargen(stack: Stack, port: int) -> None:
    """RFC 864 character generator over TCP: send until the peer closes."""
    pattern = b"".join([CHARGEN_LINE[i:] + CHARGEN_LINE[:i] + b"\r\n" for i in range(95)]) * 4

    def on_event(sock: TcpSocket, ev: Event) -> None:
        if ev is Event.CLOSED or sock.closed:
            return
        data = _drain(sock)
        if data is None or sock.conn.at_eof:
            sock.close()
            return
        try:
            while sock.send(pattern):
                pass
        except OSError:
            return

    _serve_tcp(stack, port, on_event)


SERVICES: dict[str, Callable[[Stack, int], None]] = {
    "udp-echo": udp_echo,
    "udp-discard": udp_discard,
    "tcp-echo": tcp_echo,
    "tcp-discard": tcp_discard,
    "tcp-chargen": tcp_chargen,
}


def parse_service(spec: str) -> tuple[str, int]:
    """``"udp-echo:7"`` -> ``("udp-echo", 7)``; ValueError with a clear message."""
    name, sep, port_text = spec.partition(":")
    if name not in SERVICES:
        known = ", ".join(sorted(SERVICES))
        raise ValueError(f"unknown service {name!r} (known: {known})")
    if not sep or not port_text.isdecimal() or not 0 < int(port_text) < 65536:
        raise ValueError(f"service {spec!r}: expected {name}:PORT with PORT in 1..65535")
    return name, int(port_text)


def install(stack: Stack, spec: str) -> str:
    name, port = parse_service(spec)
    SERVICES[name](stack, port)
    return f"{name}:{port}"
