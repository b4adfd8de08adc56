"""ICMP errors as ``ustack.socket`` reports them: the standard library's errno.

Stack B answers A's SYNs with an ICMP destination unreachable instead of
TCP (its TCP handler replaced by one that sends the error, or removed, so
its IPv4 layer sends protocol unreachable).  As on Linux: protocol and
port unreachable fail connect() at once (RFC 9293 3.9.2.2 SHLD-26, RFC
5461 4) with ENOPROTOOPT or ECONNREFUSED; net and host unreachable are soft
(MUST-56): the SYN is retried, and the open, when it times out, fails with
that error rather than ETIMEDOUT.
"""

from __future__ import annotations

import errno
import select
import time

import pytest
from socket_net import B_IP, Net

import ustack.socket as us
from ustack.net.interface import Interface
from ustack.net.ipv4 import CallbackProtocol
from ustack.wire import ipv4 as wip


def answer_tcp_with_unreachable(net: Net, code: int) -> None:
    sb = net.sb

    def unreachable(iface: Interface, src: bytes, dst: bytes, payload: bytes, pkt: bytes,
                    rx: int) -> None:
        sb.ipv4.icmp_error(3, code, pkt, rx)

    sb.ipv4.protocols[wip.PROTO_TCP] = CallbackProtocol(unreachable)


def test_connect_to_a_host_without_tcp_fails_with_enoprotoopt(net: Net) -> None:
    del net.sb.ipv4.protocols[wip.PROTO_TCP]  # B's IPv4 answers protocol unreachable
    s = us.socket(runtime=net.a)
    s.settimeout(5)
    t0 = time.monotonic()
    with pytest.raises(OSError) as e:
        s.connect((B_IP, 80))
    assert e.value.errno == errno.ENOPROTOOPT
    assert time.monotonic() - t0 < 0.9  # at once: before the SYN's first retransmission
    s.close()


def test_port_unreachable_refuses_connect(net: Net) -> None:
    answer_tcp_with_unreachable(net, 3)
    s = us.socket(runtime=net.a)
    s.settimeout(5)
    with pytest.raises(ConnectionRefusedError) as e:
        s.connect((B_IP, 80))
    assert e.value.errno == errno.ECONNREFUSED
    s.close()
    s = us.socket(runtime=net.a)
    s.setblocking(False)
    assert s.connect_ex((B_IP, 80)) == errno.EINPROGRESS
    select.select([], [s], [], 5)
    assert s.getsockopt(us.SOL_SOCKET, us.SO_ERROR) == errno.ECONNREFUSED
    s.close()


@pytest.mark.parametrize(("code", "err"), [(0, errno.ENETUNREACH), (1, errno.EHOSTUNREACH)],
                         ids=["net", "host"])
def test_soft_error_is_what_connect_fails_with_at_timeout(net: Net, code: int,
                                                          err: int) -> None:
    answer_tcp_with_unreachable(net, code)
    net.sa.tcp.config.syn_retries = 0  # time out after the first RTO (1 s)
    s = us.socket(runtime=net.a)
    s.settimeout(5)
    with pytest.raises(OSError) as e:
        s.connect((B_IP, 80))
    assert e.value.errno == err
    s.close()
