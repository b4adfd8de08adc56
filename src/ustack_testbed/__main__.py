"""``python -m ustack_testbed {list,reap,relay}`` (``make clean-net`` runs ``reap``;
``relay`` is ``ustack_testbed.relay``'s process)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ustack_testbed.reap import iter_ours, reap_stale


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["relay"]:
        from ustack_testbed.relay import main as relay_main

        return relay_main(args[1:])
    if args == ["list"]:
        for name in iter_ours():
            print(name)
        return 0
    if args == ["reap"]:
        for name in reap_stale():
            print(f"deleted {name}")
        return 0
    print("usage: python -m ustack_testbed {list|reap|relay ...}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
