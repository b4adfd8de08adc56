"""What the background thread of ``ustack.socket`` costs: echo round trips/s.

No root, no network: two Stacks in this process over an in-memory link.
The client sends 64 bytes and waits for them to come back, over and over,
for ``--seconds``; the server echoes.

- native: both stacks polled by one thread, native TcpSocket client,
  echo in the server's event callback (no threads at all);
- socket->native: the client uses ``ustack.socket`` (its stack in a Runtime
  thread), the server is the native callback echo in the other Runtime;
- socket->socket: both ends ``ustack.socket``, the server a blocking
  recv/sendall thread (four threads share the GIL);
- kernel: the same two programs on the kernel's loopback, for orientation.

The stacks run in this process, so its build is the one measured: the
compiled one, or with ``--build pure`` the pure-Python one (the script then
starts again with ``USTACK_PURE=1``); a ``build:`` line says which.  Without
the compiled build (not installed) it stops with status 1 unless given
``--build pure``.

    python3 bench/bench_socket_thread.py [--seconds 2] [--quick] [--build compiled|pure]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading
import time

import harness  # bench/harness.py: run as a script, bench/ is on sys.path

import ustack.socket as us
from ustack.api.socket.runtime import Runtime
from ustack.link.threadpipe import thread_pipe_pair
from ustack.stack import Stack
from ustack.tcp.connection import Event
from ustack.tcp.socket import TcpListener, TcpSocket

A_IP, B_IP, PORT = "198.18.0.1", "198.18.0.2", 7
MSG = b"x" * 64


def stacks() -> tuple[Stack, Stack]:
    a_dev, b_dev = thread_pipe_pair()
    a, b = Stack(), Stack()
    a.add_interface(a_dev, f"{A_IP}/24")
    b.add_interface(b_dev, f"{B_IP}/24")
    return a, b


def native_echo_server(stack: Stack) -> TcpListener:
    def on_event(sock: TcpSocket, ev: Event) -> None:
        with contextlib.suppress(OSError):
            data = sock.recv()
            if data:
                sock.send(data)

    def on_accept(li: TcpListener) -> None:
        while li.accept_queue:
            s = li.accept()
            s.on_event = on_event

    li = stack.tcp_listen(("0.0.0.0", PORT))
    li.on_accept = on_accept
    return li


def bench_native(seconds: float) -> float:
    a, b = stacks()
    native_echo_server(b)
    c = a.tcp_connect((B_IP, PORT), nodelay=True)
    clock = time.monotonic

    def poll() -> None:
        now = clock()
        a.poll(now)
        b.poll(now)

    while c.conn.state.name != "ESTABLISHED":
        poll()
    n = 0
    end = clock() + seconds
    while clock() < end:
        c.send(MSG)
        got = 0
        while got < len(MSG):
            poll()
            with contextlib.suppress(BlockingIOError):
                got += len(c.recv())
        n += 1
    return n / seconds


def client_loop(s: us.Socket | socket.socket, seconds: float) -> float:
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        s.sendall(MSG)
        got = 0
        while got < len(MSG):
            got += len(s.recv(65536))
        n += 1
    return n / seconds


def echo_thread(srv: us.Socket | socket.socket) -> threading.Thread:
    def run() -> None:
        with contextlib.suppress(OSError):
            conn, _ = srv.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := conn.recv(65536):
                conn.sendall(data)
            conn.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def bench_socket(seconds: float, native_server: bool) -> float:
    a, b = stacks()
    ra, rb = Runtime(a).start(), Runtime(b).start()
    try:
        if native_server:
            rb.call(native_echo_server, b)
        else:
            srv = us.socket(runtime=rb)
            srv.bind(("0.0.0.0", PORT))
            srv.listen()
            echo_thread(srv)
        c = us.socket(runtime=ra)
        c.setsockopt(us.IPPROTO_TCP, us.TCP_NODELAY, 1)
        c.connect((B_IP, PORT))
        rate = client_loop(c, seconds)
        c.close()
        return rate
    finally:
        ra.close()
        rb.close()


def bench_kernel(seconds: float) -> float:
    srv = socket.create_server(("127.0.0.1", 0))
    echo_thread(srv)
    c = socket.create_connection(srv.getsockname())
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rate = client_loop(c, seconds)
    c.close()
    srv.close()
    return rate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--quick", action="store_true", help="0.3 s per figure")
    harness.add_build_option(p)
    args = p.parse_args(argv)
    try:
        build = harness.process_build(args.build, __file__)
    except harness.BuildUnavailable as exc:
        print(f"bench_socket_thread: {exc}", file=sys.stderr)
        return 1
    secs = 0.3 if args.quick else args.seconds
    rows = [
        ("native (one thread, no ustack.socket)", bench_native(secs)),
        ("ustack.socket client -> native server", bench_socket(secs, True)),
        ("ustack.socket client -> ustack.socket server", bench_socket(secs, False)),
        ("kernel loopback, stdlib socket, same threads", bench_kernel(secs)),
    ]
    base = rows[0][1]
    print(f"64-byte TCP echo round trips/s, {secs:g} s each")
    print(harness.build_line(build))
    for name, rate in rows:
        print(f"  {name:46s} {rate:10.0f}   {rate / base:5.2f}x native")
    return 0


if __name__ == "__main__":
    sys.exit(main())
