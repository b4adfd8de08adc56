"""UDP (RFC 768, RFC 1122 4.1): the layer and its native sockets.

Native sockets are non-blocking objects owned by the Stack's thread.  An
application either sets ``on_datagram`` (called straight from the receive
path with the payload and the sender: the fast path the built-in services
use) or lets datagrams queue (bounded by ``rcvbuf`` bytes, like SO_RCVBUF)
and takes them with ``recvfrom``.  Errors are the ones the standard
``socket`` module raises, with the same errno values.
"""

from __future__ import annotations

import errno
import os
import select
from collections import deque
from collections.abc import Callable
from typing import Final

from ustack.net.host import RX_CSUM_OK, Host
from ustack.net.interface import HEADROOM, Interface
from ustack.net.ipv4 import DEFAULT_TTL, Ipv4Layer, ProtocolHandler
from ustack.net.ports import EphemeralPorts
from ustack.net.route import NextHop
from ustack.net.sockaddr import ANY, Address, AddressArg
from ustack.net.sockaddr import parse as _addr
from ustack.wire import icmp as wicmp
from ustack.wire import ipv4 as wip
from ustack.wire import udp as wudp
from ustack.wire.errors import ParseError

# Zeros where Ethernet, IPv4 and UDP headers go; ``+ data`` copies it.
_HEADERS_ROOM: Final = bytearray(HEADROOM + 8)

MAX_PAYLOAD: Final = 65535 - 20 - 8
DEFAULT_RCVBUF: Final = 212992  # Linux net.core.rmem_default
_BUF_OVERHEAD: Final = 256  # charged per queued datagram, like the kernel's skb truesize

# (payload, source ip, source port, payload sum).  The payload sum is the
# payload read as one integer modulo 0xFFFF (``wire.checksum.sum_mod``), a
# by-product of verifying the checksum, or -1 when the sender sent none.  An
# application that sends the same bytes back passes it to ``send_raw`` and
# the payload is never summed twice (docs/architecture.md, principle 5).
DatagramCallback = Callable[[bytes, bytes, int, int], None]


class UdpSocket:
    __slots__ = (
        "_hop",
        "_hop_dst",
        "_hop_gen",
        "_layer",
        "_queue",
        "_queued_bytes",
        "closed",
        "error",
        "local_ip",
        "local_port",
        "on_datagram",
        "on_readable",
        "rcvbuf",
        "remote_ip",
        "remote_port",
        "tos",
        "ttl",
    )

    def __init__(self, layer: UdpLayer) -> None:
        self._layer = layer
        self.local_ip = ANY
        self.local_port = 0
        self.remote_ip: bytes | None = None
        self.remote_port = 0
        self.on_datagram: DatagramCallback | None = None
        self.on_readable: Callable[[], None] | None = None
        self._queue: deque[tuple[bytes, bytes, int]] = deque()
        self._queued_bytes = 0
        self.rcvbuf = DEFAULT_RCVBUF
        self.ttl = DEFAULT_TTL  # IP_TTL, IP_TOS of the datagrams sent (RFC 1122 3.2.1.7, 3.2.1.6)
        self.tos = 0
        self.error = 0  # pending asynchronous error, as SO_ERROR reports it
        self.closed = False
        # The next hop of the last datagram sent, for ``_hop_dst`` while the
        # routing table is at generation ``_hop_gen`` (like Linux's
        # sk_dst_cache): a reply to the same peer needs no route lookup.
        self._hop: NextHop | None = None
        self._hop_dst = ANY
        self._hop_gen = 0

    # -- configuration ----------------------------------------------------

    def bind(self, address: AddressArg) -> None:
        self._check_open()
        if self.local_port:
            raise OSError(errno.EINVAL, "Invalid argument")
        ip, port = _addr(address)
        self._layer.bind(self, ip, port)

    def connect(self, address: AddressArg) -> None:
        self._check_open()
        ip, port = _addr(address)
        if port == 0:
            raise OSError(errno.EINVAL, "Invalid argument")
        if ip == ANY:
            ip = b"\x7f\x00\x00\x01"
        if not self.local_port:
            self._layer.bind(self, ANY, 0)
        self.remote_ip, self.remote_port = ip, port

    def getsockname(self) -> Address:
        self._check_open()
        return wip.addr_to_str(self.local_ip), self.local_port

    def getpeername(self) -> Address:
        self._check_open()
        if self.remote_ip is None:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        return wip.addr_to_str(self.remote_ip), self.remote_port

    # -- data -------------------------------------------------------------

    def sendto(self, data: bytes | bytearray | memoryview, address: AddressArg) -> int:
        self._check_open()
        ip, port = _addr(address)
        if port == 0:
            raise OSError(errno.EINVAL, "Invalid argument")
        if not isinstance(data, bytes):
            data = bytes(data)  # a copy: the caller may change its buffer
        return self._layer.output(self, data, ip, port)

    def send(self, data: bytes | bytearray | memoryview) -> int:
        self._check_open()
        if self.remote_ip is None:
            raise OSError(errno.EDESTADDRREQ, "Destination address required")
        if not isinstance(data, bytes):
            data = bytes(data)  # a copy: the caller may change its buffer
        return self._layer.output(self, data, self.remote_ip, self.remote_port)

    def send_raw(self, data: bytes, ip: bytes, port: int, data_sum: int = -1) -> int:
        """``sendto`` with the address in wire form (4 bytes, int): the fast path.

        ``data_sum``, when >= 0, is ``sum_mod(data)`` already known to the caller.
        """
        self._check_open()
        return self._layer.output(self, data, ip, port, data_sum)

    def recvfrom(self, bufsize: int = 65535) -> tuple[bytes, Address]:
        """The next datagram (truncated to ``bufsize``) and its sender.

        Raises BlockingIOError when nothing is queued, or the pending error
        (e.g. ConnectionRefusedError after an ICMP port unreachable).
        """
        self._check_open()
        if not self._queue:
            self._raise_error()
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        data, ip, port = self._queue.popleft()
        self._queued_bytes -= len(data) + _BUF_OVERHEAD
        return data[:bufsize], (wip.addr_to_str(ip), port)

    def recv(self, bufsize: int = 65535) -> bytes:
        return self.recvfrom(bufsize)[0]

    def poll(self) -> int:
        """Readiness, as Linux's ``udp_poll``: POLLIN while a datagram waits,
        POLLERR while an error is pending, and always POLLOUT (a datagram
        goes straight into a frame; nothing queues on the way out)."""
        mask = select.POLLOUT
        if self._queue:
            mask |= select.POLLIN
        if self.error:
            mask |= select.POLLERR
        return mask

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._layer.unbind(self)
            self._queue.clear()
            self._queued_bytes = 0

    # -- called by the layer ----------------------------------------------

    def deliver(self, data: bytes, ip: bytes, port: int) -> bool:
        """Queue a datagram for ``recvfrom`` (the layer calls ``on_datagram``
        itself when one is set); False when the receive buffer is full."""
        size = len(data) + _BUF_OVERHEAD
        if self._queued_bytes + size > self.rcvbuf:
            return False
        self._queue.append((data, ip, port))
        self._queued_bytes += size
        if self.on_readable is not None:
            self.on_readable()
        return True

    def _raise_error(self) -> None:
        err, self.error = self.error, 0
        if err:
            raise OSError(err, os.strerror(err)) if err not in _EXC else _EXC[err](
                err, os.strerror(err))

    def _check_open(self) -> None:
        if self.closed:
            raise OSError(errno.EBADF, "Bad file descriptor")


_EXC: dict[int, type[OSError]] = {errno.ECONNREFUSED: ConnectionRefusedError}

# ICMP error -> errno for the socket (RFC 1122 4.1.3.3; Linux icmp_err_convert).
_UNREACH_ERRNO = {
    wicmp.NET_UNREACH: errno.ENETUNREACH,
    wicmp.HOST_UNREACH: errno.EHOSTUNREACH,
    wicmp.PROTO_UNREACH: errno.ENOPROTOOPT,
    wicmp.PORT_UNREACH: errno.ECONNREFUSED,
    wicmp.FRAG_NEEDED: errno.EMSGSIZE,
}


class UdpLayer(ProtocolHandler):
    __slots__ = ("counters", "ephemeral", "host", "ip", "ports")

    def __init__(self, host: Host, ip: Ipv4Layer) -> None:
        self.host = host
        # Touched by every datagram, so held directly (the host keeps it for
        # its lifetime); every method here uses this one.
        self.counters = host.counters
        self.ip = ip
        self.ports: dict[int, list[UdpSocket]] = {}
        self.ephemeral = EphemeralPorts()
        ip.protocols[wip.PROTO_UDP] = self
        ip.errors[wip.PROTO_UDP] = self.icmp_error

    def socket(self) -> UdpSocket:
        return UdpSocket(self)

    # -- binding ----------------------------------------------------------

    def bind(self, sock: UdpSocket, ip: bytes, port: int) -> None:
        if ip != ANY and ip not in self.host.local_addrs:
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        if port == 0:
            # Linux's UDP autobind fails with EAGAIN when the range is used up.
            port = self.ephemeral.pick(self.ports.__contains__, errno.EAGAIN)
        else:
            for other in self.ports.get(port, ()):
                if other.local_ip == ANY or ip == ANY or other.local_ip == ip:
                    raise OSError(errno.EADDRINUSE, "Address already in use")
        sock.local_ip, sock.local_port = ip, port
        sock._hop = None  # its source address was the old local_ip's
        self.ports.setdefault(port, []).append(sock)

    def unbind(self, sock: UdpSocket) -> None:
        socks = self.ports.get(sock.local_port)
        if socks and sock in socks:
            socks.remove(sock)
            if not socks:
                del self.ports[sock.local_port]

    # -- receive ----------------------------------------------------------

    def input(self, iface: Interface, src: bytes, dst: bytes, payload: bytes,
              pkt: bytes, rx: int) -> None:
        c = self.counters
        # RFC 768: a zero checksum field means the sender computed none; a
        # frame the kernel vouched for (RX_CSUM_OK) needs no check either.
        try:
            sport, dport, length, _, data_sum = wudp.parse_sum(payload, src, dst,
                                                               rx & RX_CSUM_OK)
        except ParseError as e:
            c.UdpInErrors += 1
            if e.reason == "udp_checksum":
                c.UdpInCsumErrors += 1
            c.drop(e.reason)
            return
        socks = self.ports.get(dport)
        sock = None
        if socks is not None:
            for s in socks:
                if (s.local_ip == ANY or s.local_ip == dst) and (
                    s.remote_ip is None or (s.remote_ip == src and s.remote_port == sport)
                ):
                    sock = s
                    break
        if sock is None:
            c.UdpNoPorts += 1
            # RFC 1122 4.1.3.1: SHOULD send port unreachable, through the
            # sender ICMP registered with IPv4 (which declines a broadcast
            # datagram by ``rx``, 3.2.2).
            self.ip.icmp_error(wicmp.DEST_UNREACH, wicmp.PORT_UNREACH, pkt, rx)
            return
        data = payload[8:length]
        cb = sock.on_datagram
        if cb is not None:
            cb(data, src, sport, data_sum)
            c.UdpInDatagrams += 1
        elif sock.deliver(data, src, sport):
            c.UdpInDatagrams += 1
        else:
            c.UdpRcvbufErrors += 1
            c.UdpInErrors += 1
            c.drop("udp_rcvbuf_full")

    def icmp_error(self, qh: wip.Ipv4Header, qdata: bytes, type_: int, code: int,
                   mtu: int) -> None:
        sport = (qdata[0] << 8) | qdata[1]
        dport = (qdata[2] << 8) | qdata[3]
        for s in self.ports.get(sport, ()):
            # Like Linux without IP_RECVERR: only connected sockets hear of
            # errors, since an unconnected one cannot tell which send failed.
            if s.remote_ip == qh.dst and s.remote_port == dport:
                if type_ == wicmp.DEST_UNREACH:
                    s.error = _UNREACH_ERRNO.get(code, errno.EHOSTUNREACH)
                else:
                    s.error = errno.EHOSTUNREACH
                if s.on_readable is not None:
                    s.on_readable()
                return
        self.counters.drop("udp_icmp_error_no_socket")

    # -- send -------------------------------------------------------------

    def output(self, sock: UdpSocket, data: bytes, ip: bytes, port: int,
               data_sum: int = -1) -> int:
        """Send ``data`` from ``sock`` to ``(ip, port)``; ``data_sum``, when
        >= 0, is ``checksum.sum_mod(data)`` known already (an echo)."""
        n = len(data)
        if n > MAX_PAYLOAD:
            raise OSError(errno.EMSGSIZE, "Message too long")
        # The hop says the source (the bound address, or the interface's if
        # unbound) and its address sum (cached per source and destination).
        hop = sock._hop
        gen = self.host.routes.generation
        if hop is None or ip != sock._hop_dst or sock._hop_gen != gen:
            hop = sock._hop = self.ip.route(ip, sock.local_ip)
            sock._hop_dst = ip
            sock._hop_gen = gen
        sport = sock.local_port or self._autobind(sock)
        # Headroom for the three headers, then the data: one allocation.
        buf = _HEADERS_ROOM + data
        # The checksum from sums of field values (RFC 1071): the data is read
        # at most once, and not at all when the caller knows its sum.
        wudp.pack_header_into(buf, HEADROOM, hop.src, ip, sport, port, data, data_sum,
                              hop.addr_sum)
        self.ip.output(hop, ip, wip.PROTO_UDP, buf, sock.ttl, sock.tos)
        self.counters.UdpOutDatagrams += 1
        return n

    def _autobind(self, sock: UdpSocket) -> int:
        self.bind(sock, ANY, 0)
        return sock.local_port
