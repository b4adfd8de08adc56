"""The standard ``socket`` module patched onto ustack (what ``ustack run`` does),
and the ``ustack run`` command line (no root needed for either)."""

from __future__ import annotations

import functools
import http.client
import http.server
import os
import socket
import sys
import threading
from collections.abc import Iterator

import pytest
from socket_net import B_IP, Net

from ustack import cli
from ustack.api.socket import patch
from ustack.api.socket.errors import NotCoveredError
from ustack.api.socket.sock import Socket
from ustack.cli.common import UsageError
from ustack.cli.run import Program, parse_program
from ustack.cli.run import main as run_main


@pytest.fixture(autouse=True)
def _unpatch(net: Net) -> Iterator[None]:
    # Depends on net, so it is torn down first: unpatch, then close the runtimes.
    yield
    patch.unpatch()


def test_patch_routes_af_inet_only(net: Net) -> None:
    real = socket.socket
    patch.patch(net.a)
    try:
        s = socket.socket()
        assert type(s) is Socket and isinstance(s, socket.socket)
        s.close()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        assert type(u) is Socket
        u.close()
        # AF_UNIX stays the kernel's, and so does socketpair (asyncio needs it).
        x = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        assert type(x) is real and isinstance(x, socket.socket)
        x.close()
        a, b = socket.socketpair()
        a.sendall(b"k")
        assert b.recv(1) == b"k"
        a.close()
        b.close()
        with pytest.raises(NotCoveredError, match="AF_INET6"):
            socket.socket(socket.AF_INET6)
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("no-such-host.invalid", 80)
        assert socket.getaddrinfo("198.18.0.5", 1, type=socket.SOCK_STREAM)[0][4] == (
            "198.18.0.5", 1)
    finally:
        patch.unpatch()
    assert socket.socket is real


def test_stdlib_http_server_and_client_on_ustack(net: Net) -> None:
    """http.server on stack B, http.client on stack A: both unmodified."""
    patch.patch(net.b)
    try:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                    directory=os.path.dirname(__file__))
        httpd = http.server.ThreadingHTTPServer((B_IP, 8000), handler)
    finally:
        patch.unpatch()
    assert type(httpd.socket) is Socket
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    t.start()
    patch.patch(net.a)
    try:
        here = os.path.basename(__file__)
        conn = http.client.HTTPConnection(B_IP, 8000, timeout=10)
        conn.request("GET", f"/{here}")
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
    finally:
        patch.unpatch()
        httpd.shutdown()
        httpd.server_close()
        t.join(5)
    assert resp.status == 200
    with open(__file__, "rb") as f:
        assert body == f.read()


@pytest.mark.parametrize(("words", "expected"), [
    (["python3", "-m", "http.server", "80"],
     Program("module", "http.server", ["http.server", "80"])),
    (["python3", "-u", "serve.py", "a"], Program("script", "serve.py", ["serve.py", "a"])),
    (["python", "-c", "print(1)", "x"], Program("code", "print(1)", ["-c", "x"])),
    ([sys.executable, "-m", "m"], Program("module", "m", ["m"])),
    (["tool.py", "--flag"], Program("script", "tool.py", ["tool.py", "--flag"])),
])
def test_run_parses_python_programs(words: list[str], expected: Program) -> None:
    assert parse_program(words) == expected


@pytest.mark.parametrize("argv", [
    ["--link", "tap:x", "--ip", "198.18.0.2/24"],  # no program
    ["--link", "tap:x", "--ip", "198.18.0.2/24", "--", "curl", "http://x"],  # not Python
    ["--link", "tap:x", "--ip", "198.18.0.2/24", "--", "python3", "-W", "x.py"],
    ["--ip", "198.18.0.2/24", "--", "python3", "x.py"],  # no --link
    # Programs that cannot start, found before the link is opened.
    ["--link", "tap:x", "--ip", "198.18.0.2/24", "--", "python3", "/nonexistent/x.py"],
    ["--link", "tap:x", "--ip", "198.18.0.2/24", "--", "python3", "-m", "no_such_module_x"],
])
def test_run_usage_errors_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    # Printed by ustack.cli.main, the one printer of every command's UsageError.
    with pytest.raises(UsageError):
        run_main(argv)
    assert cli.main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ustack run: ") and err.count("\n") == 1, err


def test_asyncio_by_host_and_port_when_patched(net: Net) -> None:
    """asyncio's own socket calls (getaddrinfo, socket(), connect) go to ustack."""
    import asyncio

    async def main() -> bytes:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write((await r.readline()).upper())
            await w.drain()
            w.close()

        patch.patch(net.b)
        try:
            server = await asyncio.start_server(handle, B_IP, 8001)
        finally:
            patch.unpatch()
        assert all(type(s._sock) is Socket for s in server.sockets)  # type: ignore[attr-defined]
        patch.patch(net.a)
        try:
            reader, writer = await asyncio.open_connection(B_IP, 8001)
        finally:
            patch.unpatch()
        writer.write(b"hello asyncio\n")
        line = await reader.readline()
        writer.close()
        server.close()
        return line

    assert asyncio.run(asyncio.wait_for(main(), 20)) == b"HELLO ASYNCIO\n"
