"""Leftovers of killed runs: test bed namespaces and links whose owner is gone."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ustack_testbed.commands import run
from ustack_testbed.names import owner_pid


def reap_stale() -> list[str]:
    """Delete testbed namespaces and root-namespace links whose creating
    process is gone (a run killed with SIGKILL).  Returns what was deleted."""
    deleted: list[str] = []
    listing = run(["ip", "netns", "list"], check=False).stdout
    for line in listing.splitlines():
        name = line.split(" ", 1)[0]
        if _stale(name):
            run(["ip", "netns", "del", name], check=False)
            deleted.append(name)
    links = run(["ip", "-o", "link", "show"], check=False).stdout
    for line in links.splitlines():
        parts = line.split(":", 2)
        if len(parts) < 3:
            continue
        name = parts[1].strip().split("@", 1)[0]
        if _stale(name):
            run(["ip", "link", "del", name], check=False)
            deleted.append(name)
    return deleted


def _stale(name: str) -> bool:
    pid = owner_pid(name)
    if pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def iter_ours() -> Iterator[str]:
    """The namespaces a test bed made, live or stale (``python -m ustack_testbed list``)."""
    for line in run(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = line.split(" ", 1)[0]
        if owner_pid(name) is not None:
            yield name
