"""``ustack.bringup``: the link options every front end takes, and the one
bring-up (no root needed: the device is an in-memory pipe here; the CLI and
``aio.running`` tests in interop/ open real ones)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import ustack.bringup as bringup
from ustack.bringup import LinkedStack, LinkOptions
from ustack.link.base import Device
from ustack.link.errors import LinkError
from ustack.link.pipe import pipe_pair


def test_options_name_the_link_and_device() -> None:
    o = LinkOptions("tap:u0", "198.18.0.2/24", gw="198.18.0.1", mac="02:00:00:00:00:07",
                    host_ip="198.18.0.1/24", fault="loss=1%,seed=3")
    assert (o.kind, o.device_name) == ("tap", "u0")
    assert o.mac_bytes() == bytes.fromhex("020000000007")
    assert LinkOptions("packet:veth1", "198.18.1.2/24", mac=b"\x02" * 6).mac_bytes() == b"\x02" * 6
    assert LinkOptions("packet:veth1", "198.18.1.2/24").mac_bytes() is None


@pytest.mark.parametrize(("options", "reason"), [
    ({"ip": "198.18.0.300/24"}, "not an IPv4 address"),
    ({"ip": "198.18.0.2"}, "not an address/prefix-length"),
    ({"mac": "02:00"}, "not a MAC address"),
    ({"mac": b"\x02"}, "6 bytes"),
    ({"gw": "gateway"}, "not an IPv4 address"),
    ({"host_ip": "198.18.0.1/40"}, "prefix length"),
    ({"link": "packet:veth1", "host_ip": "198.18.0.1/24"},
     "--host-ip only applies to --link tap:NAME"),
    ({"fault": "loss=lots"}, "fault spec"),
])
def test_bad_options_are_one_line_value_errors(options: dict[str, Any], reason: str) -> None:
    kw: dict[str, Any] = {"link": "tap:u0", "ip": "198.18.0.2/24", **options}
    with pytest.raises(ValueError, match=reason) as e:
        LinkOptions(**kw)
    assert "\n" not in str(e.value)


@pytest.fixture
def pipe_link(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Device]]:
    """``open_link`` hands out one end of an in-memory pipe; the list holds it."""
    opened: list[Device] = []

    def open_link(spec: str, *, vnet_hdr: bool = False) -> Device:
        dev, _peer = pipe_pair()
        opened.append(dev)
        return dev

    monkeypatch.setattr(bringup, "open_link", open_link)
    yield opened


def closed(dev: Device) -> bool:
    try:
        dev.send_batch([bytes(60)], 0.0)
    except LinkError:
        return True
    return False


def test_linked_stack_brings_up_and_closes(pipe_link: list[Device]) -> None:
    o = LinkOptions("packet:x0", "198.18.0.2/24", gw="198.18.0.1", mac="02:00:00:00:00:09")
    with LinkedStack(o) as up:
        assert up.iface.mac == bytes.fromhex("020000000009")
        assert up.stack.local_addrs == {bytes([198, 18, 0, 2])}
        assert up.stack.routes.lookup(bytes([203, 0, 113, 1])) is not None  # the gateway
        assert not closed(pipe_link[0])
    assert closed(pipe_link[0])


@pytest.mark.parametrize("fail", ["host side", "gateway"])
def test_a_failed_bring_up_closes_the_device(
        pipe_link: list[Device], monkeypatch: pytest.MonkeyPatch, fail: str) -> None:
    def refuse(name: str, cidr: str) -> None:
        raise LinkError(f"tap {name}: no such interface")

    monkeypatch.setattr(bringup, "configure_host_side", refuse)
    kw: dict[str, Any] = {"host_ip": "198.18.0.1/24"} if fail == "host side" else \
        {"gw": "198.18.7.1"}  # not on our subnet
    up = LinkedStack(LinkOptions("tap:x0", "198.18.0.2/24", **kw))
    expected: type[Exception] = LinkError if fail == "host side" else ValueError
    with pytest.raises(expected):
        up.open()
    assert closed(pipe_link[0])
    up.close()  # again: nothing left to do


def test_a_link_that_does_not_open_leaves_nothing_open() -> None:
    with pytest.raises(LinkError, match="expected tap:NAME or packet:IFACE"):
        LinkedStack(LinkOptions("bogus:x", "198.18.0.2/24")).open()
