"""open_link/wrap, and LinkError messages a user can act on."""

from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
import sys

import pytest

import ustack
from ustack.link import FaultInjector, LinkError, PcapTee, open_link, pipe_pair, wrap
from ustack.link.errors import from_os_error
from ustack.link.netif import configure_host_side, interface_index, interface_mac
from ustack.link.open import parse_link


@pytest.mark.parametrize("spec", ["x", "tap", "tap:", "veth:eth0", ":eth0", "packet: "])
def test_bad_link_spec(spec: str) -> None:
    with pytest.raises(LinkError) as info:
        open_link(spec)
    assert str(info.value) == f"link: expected tap:NAME or packet:IFACE, got {spec!r}"


@pytest.mark.parametrize(("spec", "parsed"), [
    ("tap:u0", ("tap", "u0")), ("TAP:u0", ("tap", "u0")), ("tap: u0 ", ("tap", "u0")),
    ("Packet:veth0", ("packet", "veth0")),
])
def test_parse_link(spec: str, parsed: tuple[str, str]) -> None:
    assert parse_link(spec) == parsed
    with pytest.raises(LinkError, match=r"^--link: expected tap:NAME or packet:IFACE, got 'x'$"):
        parse_link("x", "--link")


def test_unknown_option_is_a_link_error() -> None:
    with pytest.raises(LinkError, match="unexpected keyword argument 'bogus'"):
        open_link("tap:u0", bogus=1)


def test_missing_interface() -> None:
    with pytest.raises(LinkError) as info:
        open_link("packet:nosuch0")
    assert str(info.value) == "packet: no such interface nosuch0"
    with pytest.raises(LinkError, match=r"^interface: no such interface nosuch0$"):
        interface_index("nosuch0")
    with pytest.raises(LinkError, match="no such interface nosuch0"):
        interface_mac("nosuch0")


@pytest.mark.parametrize("name", ["", "a" * 16, "a/b"])
def test_bad_interface_names(name: str) -> None:
    with pytest.raises(LinkError, match="bad interface name"):
        interface_index(name)


def test_bad_host_address() -> None:
    with pytest.raises(LinkError, match="bad address"):
        configure_host_side("lo", "198.18.0.1/99")


def test_os_errors_become_one_line() -> None:
    e = from_os_error("tap u0", OSError(errno.EBUSY, "Device or resource busy"))
    assert str(e) == "tap u0: busy" and e.errno == errno.EBUSY
    e = from_os_error("tap: /dev/net/tun", PermissionError(errno.EACCES, "Permission denied"))
    assert str(e) == "tap: /dev/net/tun: permission denied (run as root)"
    e = from_os_error("x", OSError(errno.ETIMEDOUT, "Connection timed out"))
    assert str(e) == "x: connection timed out"
    assert "\n" not in str(e)


def test_wrap_composes() -> None:
    a, _ = pipe_pair()
    assert wrap(a) is a
    assert wrap(a, fault="seed=3") is a  # nothing to inject
    dev = wrap(a, pcap=io.BytesIO(), fault="loss=1%,seed=1")
    assert isinstance(dev, PcapTee) and isinstance(dev.inner, FaultInjector)
    assert dev.inner.inner is a
    with pytest.raises(ValueError, match="fault spec: unknown key"):
        wrap(a, fault="lsos=1")


_AS_NOBODY = """
import sys
from ustack.link import LinkError, TapDevice, PacketDevice
for make in (lambda: TapDevice("usnobody0"), lambda: PacketDevice("lo")):
    try:
        make()
    except LinkError as e:
        print(e)
"""


def test_unprivileged_open_says_run_as_root() -> None:
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("needs setpriv to drop root")
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
    else:
        cmd = []
    # The core is standard library only, so any python of this version can
    # run it from the source tree, even where root's site-packages are hidden.
    src = os.path.dirname(os.path.dirname(ustack.__file__))
    proc = subprocess.run(
        [*cmd, sys.executable, "-c", _AS_NOBODY],
        env={**os.environ, "PYTHONPATH": src},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot run python unprivileged here: {proc.stderr.strip()[-200:]}")
    out = proc.stdout.splitlines()
    assert len(out) == 2, out
    assert out[0] in (
        "tap usnobody0: permission denied (run as root)",
        "tap: /dev/net/tun: permission denied (run as root)",
        "tap: /dev/net/tun: no such file",
    )
    assert out[1] == "packet lo: permission denied (run as root)"
