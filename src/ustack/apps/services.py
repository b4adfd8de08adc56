"""Built-in services for ``ustack up --service NAME:PORT``.

Each service is installed on a Stack and runs inside its poll loop, called
straight from the receive path (no queue, no thread).
"""

from __future__ import annotations

from collections.abc import Callable

from ustack.stack import Stack


def udp_echo(stack: Stack, port: int) -> None:
    """RFC 862 echo over UDP: send every datagram back to its sender."""
    sock = stack.udp_socket()
    sock.bind(("0.0.0.0", port))
    output = stack.udp.output

    def echo(data: bytes, ip: bytes, sport: int, data_sum: int) -> None:
        # Same bytes back: reuse the payload sum taken when verifying them.
        output(sock, data, ip, sport, data_sum)

    sock.on_datagram = echo


def udp_discard(stack: Stack, port: int) -> None:
    """RFC 863 discard over UDP: accept and drop every datagram."""
    sock = stack.udp_socket()
    sock.bind(("0.0.0.0", port))
    sock.on_datagram = lambda data, ip, sport, data_sum: None


SERVICES: dict[str, Callable[[Stack, int], None]] = {
    "udp-echo": udp_echo,
    "udp-discard": udp_discard,
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
