"""Interop fixtures: one running ``ustack up`` per link kind, shared by tests.

Starting a stack costs a Python start-up plus setup (~0.3 s), so the tests
that only talk to a stack share one per link kind for the whole session
(``stack``/``stack_topo``: TAP, AF_PACKET on a veth with offloads off, and
with the kernel's default offloads on); tests about the stack's own life cycle start
their own via the ``topo`` fixture of tests/conftest.py.  The shared stack
runs udp-echo on port 7; port 9999 is closed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ustack_testbed import Testbed, Topology, UstackProcess, topology

ECHO_PORT = 7
CLOSED_PORT = 9999


@pytest.fixture(scope="session", params=["tap", "packet", "packet-offload"])
def _running(
    request: pytest.FixtureRequest, root_ok: None
) -> Iterator[tuple[Topology, UstackProcess]]:
    kind: str = request.param
    with Testbed() as tb:
        topo = topology(tb, kind)
        proc = topo.start_ustack("--service", f"udp-echo:{ECHO_PORT}", timeout=20)
        yield topo, proc


@pytest.fixture
def stack(_running: tuple[Topology, UstackProcess]) -> UstackProcess:
    """The shared stack; a test finding it dead fails at once, with its stderr."""
    proc = _running[1]
    if not proc.alive():
        pytest.fail(f"shared ustack died (exit {proc.popen.poll()}):\n{proc.stderr_text()}")
    return proc


@pytest.fixture
def stack_topo(_running: tuple[Topology, UstackProcess], stack: UstackProcess) -> Topology:
    return _running[0]
