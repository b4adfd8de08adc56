"""Names and addresses the test bed hands out: pid-tagged, short, in the test range.

Pure helpers (no root needed; unit tested in tests/unit/test_testbed.py).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import threading

from ustack_testbed.errors import TestbedError

#: The only addresses a testbed hands out (RFC 2544 / RFC 6890 benchmarking).
TEST_NET = ipaddress.IPv4Network("198.18.0.0/15")
#: Every namespace and interface name starts with this, then the owner's pid.
NAME_PREFIX = "us"
#: Linux IFNAMSIZ is 16 including the terminating NUL.
IFNAME_MAX = 15

_STALE_RE = re.compile(rf"^{NAME_PREFIX}(\d+)-[0-9a-z]+")
_ROLE_RE = re.compile(r"[^a-z0-9]+")
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    if n < 0:
        raise ValueError("negative")
    digits = []
    while True:
        n, r = divmod(n, 36)
        digits.append(_B36[r])
        if n == 0:
            return "".join(reversed(digits))


class Namer:
    """Makes names ``us<pid>-<counter base 36><suffix>``, unique per process.

    The pid makes parallel runs (and CI next to a developer) collide-free and
    lets :func:`reap_stale` tell a dead run's leftovers from a live one's; the
    counter is shared by all testbeds of a process.  Interface names must fit
    IFNAMSIZ, so the suffix is short and the length is checked, not assumed.
    """

    def __init__(self, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self._counter = itertools.count()

    def iface(self, kind: str) -> str:
        """A fresh interface name; ``kind`` is one letter or two (a, b, t, ...)."""
        if not (1 <= len(kind) <= 2 and kind.isalnum() and kind.islower()):
            raise ValueError(f"interface kind must be 1-2 lowercase chars: {kind!r}")
        name = f"{NAME_PREFIX}{self.pid}-{_base36(next(self._counter))}{kind}"
        if len(name) > IFNAME_MAX:
            raise TestbedError(f"interface name {name!r} longer than {IFNAME_MAX}")
        return name

    def netns(self, role: str) -> str:
        """A fresh namespace name; ``role`` is kept (sanitised) for humans."""
        tag = _ROLE_RE.sub("", role.lower())[:12] or "ns"
        return f"{NAME_PREFIX}{self.pid}-{_base36(next(self._counter))}-{tag}"


_namer = Namer()
_namer_lock = threading.Lock()


def current_namer() -> Namer:
    """The namer for this process (a fork gets a new pid, hence a new namer)."""
    global _namer
    with _namer_lock:
        if _namer.pid != os.getpid():
            _namer = Namer()
        return _namer


def owner_pid(name: str) -> int | None:
    """The pid embedded in a testbed-made name, or None for foreign names."""
    m = _STALE_RE.match(name)
    return int(m.group(1)) if m else None


def check_test_address(cidr: str) -> ipaddress.IPv4Interface:
    """Parse ``A.B.C.D/N`` and insist it lies inside 198.18.0.0/15.

    This is the guard that keeps tests off every real network: a typo'd
    address fails here instead of sending traffic somewhere.
    """
    try:
        iface = ipaddress.IPv4Interface(cidr)
    except ValueError as exc:
        raise TestbedError(f"not an IPv4 address/prefix: {cidr!r}") from exc
    if "/" not in cidr:
        raise TestbedError(f"address needs a prefix length: {cidr!r}")
    if iface.network.prefixlen < TEST_NET.prefixlen or not iface.network.subnet_of(TEST_NET):
        raise TestbedError(f"{cidr} is outside the test range {TEST_NET}")
    return iface
