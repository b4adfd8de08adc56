"""``ustack.claim.probe``: RFC 5227 address probes on an in-memory link,
against a real ustack Stack holding the address (its ARP layer answers
probes), and two probers wanting one address at once (each must see the
other's probe, RFC 5227 2.1.1)."""

from __future__ import annotations

import threading
import time

import pytest

from ustack.claim import (
    AddressConflict,
    KernelOwnsAddress,
    check_kernel_addresses,
    kernel_addresses,
    probe,
)
from ustack.link.threadpipe import thread_pipe_pair
from ustack.net import arp
from ustack.stack import Stack
from ustack.wire import ethernet, ipv4

OUR_MAC = bytes.fromhex("020000000005")
OTHER_MAC = bytes.fromhex("020000000009")


def test_an_address_a_stack_holds_is_refused_a_free_one_taken() -> None:
    ours, theirs = thread_pipe_pair()
    owner = Stack()
    owner.add_interface(theirs, "198.18.0.5/24")
    stop = threading.Event()
    t = threading.Thread(target=lambda: owner.run(until=stop.is_set, max_wait=0.01))
    t.start()
    try:
        with pytest.raises(AddressConflict) as e:
            probe(ours, OUR_MAC, [ipv4.addr_from_str("198.18.0.5")])
        assert e.value.ip == "198.18.0.5"
        assert e.value.mac == ethernet.mac_to_str(owner.interfaces[0].mac)
        assert str(e.value).startswith("198.18.0.5 is already in use on the link by ")
        started = time.monotonic()
        probe(ours, OUR_MAC, [ipv4.addr_from_str(a) for a in ("198.18.0.6", "198.18.0.7")])
        took = time.monotonic() - started
        least = 2 * arp.PROBE_MIN + arp.ANNOUNCE_WAIT
        assert least <= took < least + 0.5, took
    finally:
        stop.set()
        t.join()
        owner.close()
    # The first probe for the held address (answered at once: no more),
    # then PROBE_NUM for each free one.
    assert owner.counters.ArpInRequests == 1 + arp.PROBE_NUM * 2


def test_two_probers_for_one_address_both_back_off() -> None:
    a, b = thread_pipe_pair()
    want = [ipv4.addr_from_str("198.18.0.8")]
    seen: list[BaseException] = []

    def other() -> None:
        try:
            probe(b, OTHER_MAC, want)
        except AddressConflict as e:
            seen.append(e)

    t = threading.Thread(target=other)
    t.start()
    with pytest.raises(AddressConflict) as e:
        probe(a, OUR_MAC, want)
    t.join()
    assert "is wanted by another host: 02:00:00:00:00:09 probes for it" in str(e.value)
    assert len(seen) == 1 and "02:00:00:00:00:05 probes for it" in str(seen[0])


def test_the_kernels_own_addresses_are_refused_before_any_probe() -> None:
    """The kernel never sees our probes (they leave on the device): its
    own addresses, lo's included, come from one rtnetlink dump."""
    held = kernel_addresses()
    loopback = ipv4.addr_from_str("127.0.0.1")
    assert held[loopback] == ("lo", 8)
    with pytest.raises(KernelOwnsAddress) as e:
        check_kernel_addresses([ipv4.addr_from_str("198.18.0.9"), loopback])
    assert str(e.value).startswith("127.0.0.1 is the kernel's own address here, on lo: ")
    assert "(ip addr del 127.0.0.1/8 dev lo)" in str(e.value)
    assert isinstance(e.value, AddressConflict)  # the command's exit status 1
    many = [(0xC6130000 + i).to_bytes(4, "big") for i in range(65536)]  # 198.19.0.0/16
    started = time.monotonic()
    check_kernel_addresses(many)  # none of them the kernel's: one dump, set lookups
    assert time.monotonic() - started < 0.5
