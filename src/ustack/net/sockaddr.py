"""AF_INET socket addresses as the standard ``socket`` module checks them."""

from __future__ import annotations

import errno
from typing import Final

from ustack.wire import ipv4 as wip

ANY: Final = b"\x00\x00\x00\x00"

# An address as the API gives it back: (dotted quad, port).
Address = tuple[str, int]
# An address as the API takes it: the host as text or bytes, as the socket
# module takes it.  The annotation is also the compiled build's check at the
# call; ``parse`` checks the rest and raises what the socket module raises.
AddressArg = tuple[str | bytes | bytearray, int]


def parse(address: object) -> tuple[bytes, int]:
    """``(host, port)`` -> (4-byte address, port), raising what socket raises.

    TypeError for a non-pair or a non-integer port, OverflowError for a port
    outside 0..65535, OSError(EINVAL) for a host that is not a numeric IPv4
    address ("" and "0.0.0.0" mean any address).
    """
    if not isinstance(address, tuple) or len(address) != 2:
        raise TypeError("AF_INET address must be a pair (host, port)")
    host, port = address
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"'{type(port).__name__}' object cannot be interpreted as an integer")
    if not 0 <= port <= 0xFFFF:
        raise OverflowError("bind(): port must be 0-65535.")
    if isinstance(host, (bytes, bytearray)):
        host = bytes(host).decode("ascii", "replace")
    if not isinstance(host, str):
        raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
    if host in ("", "0.0.0.0"):
        return ANY, port
    try:
        return wip.addr_from_str(host), port
    except ValueError:
        raise OSError(errno.EINVAL, f"not a numeric IPv4 address: {host!r}") from None
