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
from ustack.link.open import parse_link
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
    # Found when made, no longer once the link is open (or never):
    ({"gw": "198.18.7.1"}, "not on the subnet of --ip 198.18.0.2/24"),
    ({"gw": "198.18.0.2"}, "our own address"),
    ({"host_ip": "198.18.0.2/24"}, "the same address as --ip"),
    ({"mac": "01:00:5e:00:00:01"}, r"a group \(multicast\) address"),
    ({"mac": "ff:ff:ff:ff:ff:ff"}, r"a group \(multicast\) address"),
    ({"mac": b"\x00" * 6}, "all zero"),
])
def test_bad_options_are_one_line_value_errors(options: dict[str, Any], reason: str) -> None:
    kw: dict[str, Any] = {"link": "tap:u0", "ip": "198.18.0.2/24", **options}
    with pytest.raises(ValueError, match=reason) as e:
        LinkOptions(**kw)
    assert "\n" not in str(e.value)
    # The line starts with the option it is about, as the command spells it.
    (name,) = options if len(options) == 1 else options.keys() - {"link"}
    assert str(e.value).startswith("--" + name.replace("_", "-")), e.value


def test_the_same_mistake_names_its_option() -> None:
    lines = []
    for kw in ({"ip": "1.2.3"}, {"host_ip": "1.2.3"}):
        with pytest.raises(ValueError) as e:
            LinkOptions(**{"link": "tap:u0", "ip": "198.18.0.2/24", **kw})
        lines.append(str(e.value))
    assert lines == ["--ip: not an address/prefix-length: '1.2.3'",
                     "--host-ip: not an address/prefix-length: '1.2.3'"]


@pytest.mark.parametrize(("ip", "gw"), [
    ("198.18.0.2/24", "198.18.0.254"), ("10.1.2.3/8", "10.200.0.1"),
    ("198.18.0.2/0", "203.0.113.1"), ("198.18.0.2/31", "198.18.0.3"),
])
def test_a_gateway_on_the_subnet_is_taken(ip: str, gw: str) -> None:
    assert LinkOptions("tap:u0", ip, gw=gw).gw == gw


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


@pytest.mark.parametrize("fail", ["host side", "pcap file"])
def test_a_failed_bring_up_closes_the_device(
        pipe_link: list[Device], monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
        fail: str) -> None:
    def refuse(name: str, cidr: str) -> None:
        raise LinkError(f"tap {name}: no such interface")

    monkeypatch.setattr(bringup, "configure_host_side", refuse)
    # (The second failure was an off-subnet gateway, refused since by
    # LinkOptions before anything opens; the pcap file fails after the device.)
    kw: dict[str, Any] = {"host_ip": "198.18.0.1/24"} if fail == "host side" else \
        {"pcap": str(tmp_path)}  # a directory
    up = LinkedStack(LinkOptions("tap:x0", "198.18.0.2/24", **kw))
    with pytest.raises(LinkError):
        up.open()
    assert closed(pipe_link[0])
    up.close()  # again: nothing left to do


def test_a_link_that_does_not_open_leaves_nothing_open(monkeypatch: pytest.MonkeyPatch) -> None:
    # A bad spec is now refused when the options are made, before any
    # system access (was: a LinkError from open()); open_link still refuses
    # it with the same words (test_link_open.py).
    monkeypatch.setattr(bringup, "open_link", None)  # never reached
    with pytest.raises(ValueError, match="expected tap:NAME or packet:IFACE"):
        LinkedStack(LinkOptions("bogus:x", "198.18.0.2/24")).open()


@pytest.mark.parametrize(("link", "kind", "name"), [
    ("TAP:u0", "tap", "u0"),
    ("tap: u0", "tap", "u0"),
    (" Packet :veth1 ", "packet", "veth1"),
])
def test_the_link_spec_is_read_as_open_link_reads_it(link: str, kind: str, name: str) -> None:
    """One reading (link.open.parse_link): a spec open_link takes is taken
    here with the same kind and name; --host-ip follows the kind."""
    o = LinkOptions(link, "198.18.0.2/24", host_ip="198.18.0.1/24" if kind == "tap" else None)
    assert (o.kind, o.device_name) == (kind, name) == parse_link(link)


@pytest.mark.parametrize("link", ["bogus:x", "tap:", "tap", ":u0", "tap: "])
def test_a_bad_link_spec_is_refused_when_the_options_are_made(link: str) -> None:
    with pytest.raises(ValueError) as e:
        LinkOptions(link, "198.18.0.2/24")
    assert str(e.value) == f"--link: expected tap:NAME or packet:IFACE, got {link!r}"


@pytest.mark.parametrize(("where", "reason"), [
    ("missing/x.pcap", "no such directory {tmp}/missing"),
    ("", "is a directory"),
])
def test_a_pcap_file_that_cannot_be_created_is_a_link_error(
        pipe_link: list[Device], tmp_path: Any, where: str, reason: str) -> None:
    """One LinkError naming the option and the file (not a bare OSError),
    and the device opened before it is closed again."""
    path = str(tmp_path / where) if where else str(tmp_path)
    up = LinkedStack(LinkOptions("tap:x0", "198.18.0.2/24", pcap=path))
    with pytest.raises(LinkError) as e:
        up.open()
    assert str(e.value) == f"--pcap {path}: {reason.format(tmp=tmp_path)}"
    assert closed(pipe_link[0])


def test_sources_give_that_many_addresses_from_ip_up(pipe_link: list[Device]) -> None:
    o = LinkOptions("packet:x0", "198.18.4.1/22", sources=300)
    addrs = o.addresses()
    assert (len(addrs), addrs[0], addrs[1], addrs[-1]) == (
        300, "198.18.4.1", "198.18.4.2", "198.18.5.44")
    with LinkedStack(o) as up:
        assert up.stack.local_addrs == {bytes([198, 18, 4 + i // 256, i % 256])
                                        for i in range(1, 301)}
        assert next(iter(up.iface.addrs)) == bytes([198, 18, 4, 1])  # --ip's first
    assert LinkOptions("tap:u0", "198.18.0.2/24").addresses() == ["198.18.0.2"]


@pytest.mark.parametrize(("options", "reason"), [
    ({"sources": 0}, "--sources 0: between 1 and 65536 addresses"),
    ({"sources": 65537, "ip": "10.0.0.1/8"}, "--sources 65537: between 1 and 65536"),
    ({"sources": 254}, r"--sources 254: 254 addresses from 198.18.0.2 run past 198.18.0.254, "
                       r"the last of --ip 198.18.0.2/24's subnet"),
    ({"sources": 2, "ip": "198.18.0.2/32"}, "run past 198.18.0.2"),
    ({"sources": 4, "gw": "198.18.0.5"}, "--gw 198.18.0.5: that is our own address"),
    ({"sources": 4, "host_ip": "198.18.0.4/24"}, "--host-ip 198.18.0.4/24: the same address"),
])
def test_bad_sources_are_one_line_value_errors(options: dict[str, Any], reason: str) -> None:
    kw: dict[str, Any] = {"link": "tap:u0", "ip": "198.18.0.2/24", **options}
    with pytest.raises(ValueError, match=reason) as e:
        LinkOptions(**kw)
    assert "\n" not in str(e.value)


def test_the_most_sources_fit_a_16() -> None:
    o = LinkOptions("tap:u0", "10.0.0.0/8", sources=65536)
    assert o.addresses()[-1] == "10.0.255.255"
    assert LinkOptions("tap:u0", "198.18.0.253/24", sources=2).addresses()[-1] == "198.18.0.254"
