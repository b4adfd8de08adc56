"""Two Stacks, each in its own ``Runtime`` thread, over a thread-safe in-memory
link: what the ``ustack.socket`` tests run on (collected, holds no tests;
the ``net`` fixture in conftest.py builds one per test)."""

from __future__ import annotations

from ustack.api.socket.runtime import Runtime
from ustack.link.threadpipe import thread_pipe_pair
from ustack.stack import Stack

A_IP, B_IP = "198.18.0.1", "198.18.0.2"


class Net:
    def __init__(self, a_more: tuple[str, ...] = ()) -> None:
        """``a_more``: more addresses of A (``Stack.add_address``)."""
        # link.pipe is single-threaded; each stack here has its own thread.
        a_dev, b_dev = thread_pipe_pair()
        self.sa, self.sb = Stack(), Stack()
        a_if = self.sa.add_interface(a_dev, f"{A_IP}/24")
        for ip in a_more:
            self.sa.add_address(a_if, ip)
        self.sb.add_interface(b_dev, f"{B_IP}/24")
        self.a = Runtime(self.sa, name="stack-a").start()
        self.b = Runtime(self.sb, name="stack-b").start()

    def close(self) -> None:
        self.a.close()
        self.b.close()
        self.sa.close()
        self.sb.close()
