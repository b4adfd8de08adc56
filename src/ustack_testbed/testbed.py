"""The Testbed: makes namespaces, veth pairs, TAPs and stacks, and deletes them again."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import IO, Any

from ustack_testbed.commands import run, terminate
from ustack_testbed.errors import TestbedError, warn
from ustack_testbed.names import check_test_address, current_namer
from ustack_testbed.netns import Netns
from ustack_testbed.process import UstackProcess, stack_name

_live: weakref.WeakSet[Testbed] = weakref.WeakSet()
_handlers_installed = False


class Testbed:
    """Creates namespaces, veth pairs and TAPs, and deletes all of them again.

    Use as a context manager.  ``close()`` is idempotent and also runs at
    interpreter exit and on SIGTERM/SIGHUP for every testbed still open.
    Cleanup order matters: processes first (a process inside a namespace
    keeps it alive after ``ip netns del``), then links, then namespaces.
    """

    __test__ = False

    def __init__(self) -> None:
        self._namer = current_namer()
        self._procs: list[subprocess.Popen[Any]] = []
        self._stacks: list[UstackProcess] = []
        self._stderr_files: list[IO[str]] = []
        self._links: list[tuple[Netns | None, str]] = []
        self._netns: list[Netns] = []
        self.closed = False
        _live.add(self)
        _install_handlers()

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- names ------------------------------------------------------------

    def ifname(self, kind: str = "t", ns: Netns | None = None) -> str:
        """A fresh interface name, recorded so it is deleted at close even if
        someone else (``ustack up --link tap:NAME``) creates the device."""
        name = self._namer.iface(kind)
        self._links.append((ns, name))
        return name

    # -- objects ----------------------------------------------------------

    def netns(self, role: str = "ns") -> Netns:
        """A new namespace with ``lo`` up and IPv6 off (no stray RS/MLD/DAD)."""
        self._check_open()
        ns = Netns(self._namer.netns(role), self)
        run(["ip", "netns", "add", ns.name])
        self._netns.append(ns)
        ns.ip("link", "set", "lo", "up")
        # default.* applies to interfaces created later (veth moved in, the
        # stack's TAP); all.* to the ones present.  A kernel without IPv6
        # has no such keys: tolerate, there is nothing to silence then.
        proc = ns.run(
            [
                "sysctl",
                "-q",
                "-w",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
            check=False,
        )
        if proc.returncode != 0:
            warn(f"could not disable IPv6 in {ns.name}: {proc.stderr.strip()}")
        return ns

    def veth(
        self,
        ns_a: Netns,
        ns_b: Netns,
        ip_a: str | None = None,
        ip_b: str | None = None,
        *,
        offloads_off: bool = True,
        mtu: int | None = None,
    ) -> tuple[str, str]:
        """A veth pair with one end in each namespace, both up.

        Returns the two interface names.  Addresses (optional) must be in
        198.18.0.0/15; no route beyond the connected subnet is added.
        """
        self._check_open()
        for cidr in (ip_a, ip_b):
            if cidr is not None:
                check_test_address(cidr)
        name_a = self.ifname("a", ns_a)
        name_b = self.ifname("b", ns_b)
        cmd = ["ip", "link", "add", name_a, "netns", ns_a.name]
        if mtu is not None:
            cmd += ["mtu", str(mtu)]
        cmd += ["type", "veth", "peer", "name", name_b, "netns", ns_b.name]
        if mtu is not None:
            cmd += ["mtu", str(mtu)]
        run(cmd)
        for ns, name, cidr in ((ns_a, name_a, ip_a), (ns_b, name_b, ip_b)):
            if offloads_off:
                ns.disable_offloads(name)
            if cidr is not None:
                ns.add_address(name, cidr)
            ns.link_up(name)
        # Carrier comes up asynchronously (linkwatch); a test that sends at
        # once could race it.  Usually already up at the first look.
        _wait_state_up(ns_b, name_b)
        return name_a, name_b

    def tap(self, ns: Netns, ip: str | None = None) -> str:
        """A persistent TAP device in ``ns`` (for code that attaches to an
        existing TAP; ``ustack up --link tap:NAME`` makes its own)."""
        self._check_open()
        if ip is not None:
            check_test_address(ip)
        name = self.ifname("t", ns)
        ns.ip("tuntap", "add", "dev", name, "mode", "tap")
        if ip is not None:
            ns.add_address(name, ip)
        ns.link_up(name)
        return name

    def start_ustack(
        self,
        ns: Netns,
        args: Sequence[str],
        timeout: float = 10.0,
        env: Mapping[str, str] | None = None,
    ) -> UstackProcess:
        """Run ``python -m ustack.cli <args>`` in ``ns`` and wait for ``ready:``.

        ``args`` start with the subcommand (``["up", "--link", ...]``).
        ``env``: the process's whole environment (default: this process's);
        e.g. with ``USTACK_PURE=1`` it runs the pure-Python build.  The
        stack is stopped at close if the caller has not stopped it.
        """
        self._check_open()
        name = stack_name(args)
        # A file, not a pipe: a chatty stack must never block on a full
        # stderr pipe nobody reads.  Closed in close().
        errfile = tempfile.TemporaryFile(mode="w+", prefix="ustack-stderr-")  # noqa: SIM115
        popen = ns.popen(
            [sys.executable, "-m", "ustack.cli", *args],
            stdout=subprocess.PIPE,
            stderr=errfile,
            text=True,
            env=None if env is None else dict(env),
        )
        self._stderr_files.append(errfile)
        stack = UstackProcess(ns, popen, name, errfile)
        self._stacks.append(stack)
        stack.wait_ready(timeout)
        return stack

    def adopt(self, proc: subprocess.Popen[Any]) -> None:
        """Stop ``proc`` (by pid) at close; :meth:`Netns.popen` adopts what it starts."""
        self._procs.append(proc)

    # -- cleanup ----------------------------------------------------------

    def close(self) -> list[str]:
        """Delete everything; returns (and warns about) steps that failed."""
        if self.closed:
            return []
        self.closed = True
        errors: list[str] = []
        for stack in self._stacks:
            try:
                stack.kill()
            except Exception as exc:
                errors.append(f"stop ustack {stack.pid}: {exc}")
        for child in self._procs:
            try:
                terminate(child)
            except Exception as exc:
                errors.append(f"stop pid {child.pid}: {exc}")
        for ns, link in reversed(self._links):
            cmd = ["ip", "link", "del", link]
            if ns is not None:
                cmd[1:1] = ["-n", ns.name]
            proc = run(cmd, check=False)
            # Deleting one veth end deletes the other; a TAP the stack made
            # vanishes with it; both show up here as "Cannot find device".
            if proc.returncode != 0 and "Cannot find device" not in proc.stderr:
                errors.append(f"{' '.join(cmd)}: {proc.stderr.strip()}")
        for ns in reversed(self._netns):
            proc = run(["ip", "netns", "del", ns.name], check=False)
            if proc.returncode != 0 and os.path.exists(ns.path):
                errors.append(f"ip netns del {ns.name}: {proc.stderr.strip()}")
        for errfile in self._stderr_files:
            errfile.close()
        _live.discard(self)
        if errors:
            warn("testbed cleanup incomplete:\n  " + "\n  ".join(errors))
        return errors

    def _check_open(self) -> None:
        if self.closed:
            raise TestbedError("testbed is closed")


def _wait_state_up(ns: Netns, iface: str, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while "state UP" not in ns.ip("-o", "link", "show", iface).stdout:
        if time.monotonic() > deadline:
            raise TestbedError(f"{iface} in {ns.name} not UP after {timeout}s")
        time.sleep(0.01)


def cleanup_all() -> None:
    """Close every testbed of this process (atexit and signal path)."""
    for tb in list(_live):
        with contextlib.suppress(Exception):
            tb.close()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    cleanup_all()
    # Die of the same signal, so the parent sees the real cause.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    """atexit always; SIGTERM/SIGHUP only where nobody else handles them and
    only from the main thread (signal.signal's rule)."""
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(cleanup_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _on_signal)
