"""Project-wide pytest setup: the ``root`` marker and the testbed fixtures.

Tests marked ``@pytest.mark.root`` need euid 0, /dev/net/tun, the ``ip``
command and the right to make network namespaces.  Without them they are
skipped with the reason -- except under CI (``CI=true``), where a missing
prerequisite fails the test: a CI run that silently skipped every network
test would look green while testing nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest

from ustack_testbed import Testbed, Topology, reap_stale, topology

_IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
_root_problem_cache: list[str | None] = []


def _probe_root() -> str | None:
    """Why root tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root (euid 0) for network namespaces and TAP devices"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun (TUN/TAP driver)"
    if shutil.which("ip") is None:
        return "needs the `ip` command (iproute2; run scripts/install-system-deps.sh)"
    name = f"us{os.getpid()}-probe"
    add = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if add.returncode != 0:
        return f"cannot create a network namespace: {add.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def root_problem() -> str | None:
    if not _root_problem_cache:
        _root_problem_cache.append(_probe_root())
    return _root_problem_cache[0]


def skip_or_fail(reason: str) -> None:
    """Skip locally, fail under CI (see module docstring)."""
    if _IN_CI:
        pytest.fail(f"CI=true and a prerequisite is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def require_root() -> None:
    problem = root_problem()
    if problem is not None:
        skip_or_fail(problem)


def pytest_sessionstart(session: pytest.Session) -> None:
    # Namespaces left by an earlier run that was SIGKILLed (its pid is gone);
    # live runs' names are left alone.
    if os.geteuid() == 0 and shutil.which("ip") is not None:
        reap_stale()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None:
        require_root()


@pytest.fixture
def need_tool() -> Callable[[str], str]:
    """``need_tool("nmap")`` -> path, or skip (fail under CI) if missing."""

    def need(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            skip_or_fail(f"needs `{name}` (run scripts/install-system-deps.sh)")
            raise AssertionError("unreachable")
        return path

    return need


@pytest.fixture(scope="session")
def root_ok() -> None:
    """For session-scoped fixtures that need root (markers apply per test)."""
    require_root()


@pytest.fixture
def testbed() -> Iterator[Testbed]:
    """A fresh testbed, torn down after the test whatever its outcome."""
    require_root()
    with Testbed() as tb:
        yield tb


@pytest.fixture(params=["tap", "packet"])
def topo(request: pytest.FixtureRequest, testbed: Testbed) -> Topology:
    """Each test runs once per link: TAP and AF_PACKET over veth."""
    kind: str = request.param
    return topology(testbed, kind)
