"""`ustack run`: unmodified standard-library programs on ustack, the kernel as peer.

Each test brings up a TAP namespace (``tap_topology``), runs a Python
program under ``ustack run`` on the stack's address and talks to it with the
kernel's tools (curl, nc) or serves it from a kernel server.  Every program
is bounded in time and the testbed removes namespace and processes.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ustack_testbed import Testbed, Topology, tap_topology

pytestmark = pytest.mark.root


def start_run(topo: Topology, *program: str, cwd: str | None = None) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "ustack.cli", "run", "--link", topo.link,
           "--ip", topo.stack_cidr, "--host-ip", topo.peer_cidr, "--", *program]
    return topo.stack_ns.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=cwd)


def retry(fn: Callable[[], subprocess.CompletedProcess[str]], proc: subprocess.Popen[str],
          limit: float = 15.0) -> subprocess.CompletedProcess[str]:
    """Run ``fn`` until it succeeds (the program needs a moment to come up)."""
    end = time.monotonic() + limit
    while True:
        res = fn()
        if res.returncode == 0 or time.monotonic() > end:
            return res
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"ustack run exited {proc.returncode}:\n{out}\n{err}")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


@pytest.fixture
def topo(testbed: Testbed) -> Topology:
    return tap_topology(testbed)


def test_missing_module_is_one_line_not_a_traceback(topo: Topology) -> None:
    # Of a dotted module only the top-level package is looked for before the
    # stack is up (finding the rest imports the packages on the way, which
    # must see the patched socket module): a submodule not found is reported
    # once the program runs.  (A missing top-level package is
    # tests/interop/test_cli_errors.py's.)
    proc = start_run(topo, sys.executable, "-m", "json.no_such_sub_x")
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        stop(proc)
    assert proc.returncode == 2, (out, err)
    assert "Traceback" not in err
    assert err.splitlines()[-1] == "ustack run: No module named json.no_such_sub_x"


def test_http_server_serves_curl(topo: Topology, tmp_path: Path,
                                 need_tool: Callable[[str], str]) -> None:
    need_tool("curl")
    body = bytes(range(256)) * 4096  # 1 MB: many segments, windows, ACKs
    (tmp_path / "blob.bin").write_bytes(body)
    proc = start_run(topo, sys.executable, "-m", "http.server", "8080", cwd=str(tmp_path))
    url = f"http://{topo.stack_ip}:8080/blob.bin"
    out = tmp_path / "got.bin"

    def fetch() -> subprocess.CompletedProcess[str]:
        return topo.peer_ns.run(["curl", "-sS", "-m", "10", "-o", str(out), "-w",
                                 "%{http_code} %{remote_ip}", url], check=False, timeout=15)

    try:
        res = retry(fetch, proc)
        assert res.returncode == 0, res.stderr
        assert res.stdout == f"200 {topo.stack_ip}"
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(body).digest()
        # Several requests in a row, each its own connection.
        for _ in range(5):
            assert fetch().stdout.startswith("200"), "repeat request failed"
    finally:
        code, stdout, stderr = stop(proc)
    assert "Serving HTTP on 0.0.0.0 port 8080" in stdout, stdout + stderr
    assert '"GET /blob.bin HTTP/1.1" 200' in stderr, stderr
    assert code == 0, stderr


ECHO_SERVER = textwrap.dedent("""
    import socketserver, sys

    class Echo(socketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(line.upper())

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    with Server(("0.0.0.0", int(sys.argv[1])), Echo) as srv:
        print("listening", srv.server_address, flush=True)
        srv.serve_forever()
""")


def test_threading_tcp_server_echo_with_nc(topo: Topology, tmp_path: Path,
                                           need_tool: Callable[[str], str]) -> None:
    need_tool("nc")
    script = tmp_path / "echo.py"
    script.write_text(ECHO_SERVER)
    proc = start_run(topo, sys.executable, str(script), "7007")
    lines = "".join(f"line {i} of the echo test\n" for i in range(200))

    def talk() -> subprocess.CompletedProcess[str]:
        # -q 1: quit a second after stdin ends (OpenBSD nc; -N where supported).
        return topo.peer_ns.run(["timeout", "10", "nc", "-q", "1", topo.stack_ip, "7007"],
                                check=False, timeout=15, input=lines)

    try:
        res = retry(talk, proc)
        assert res.stdout == lines.upper()
        # Two clients at once: the threading server serves both.
        a = topo.peer_ns.popen(["timeout", "10", "nc", "-q", "1", topo.stack_ip, "7007"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        b = talk()
        out_a, _ = a.communicate("first client\n", timeout=15)
        assert out_a == "FIRST CLIENT\n"
        assert b.stdout == lines.upper()
    finally:
        _code, stdout, stderr = stop(proc)
    assert "listening ('0.0.0.0', 7007)" in stdout, stdout + stderr


def test_urllib_fetches_from_kernel_http_server(topo: Topology, tmp_path: Path) -> None:
    body = b"ustack urllib test\n" * 20000
    (tmp_path / "page.txt").write_bytes(body)
    # The kernel's server on the TAP's host side, which ustack run configures:
    # so the server starts once the link is up; the client retries meanwhile.
    script = tmp_path / "fetch.py"
    script.write_text(textwrap.dedent("""
        import hashlib, sys, time, urllib.error, urllib.request
        end = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
                    data = r.read()
                    print(r.status, len(data), hashlib.sha256(data).hexdigest())
                    break
            except (urllib.error.URLError, ConnectionError) as e:
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)
    """))
    url = f"http://{topo.peer_ip}:8081/page.txt"
    proc = start_run(topo, sys.executable, str(script), url)
    server = None
    try:
        # Wait for the TAP's host side to get its address, then serve on it.
        end = time.monotonic() + 10
        while topo.peer_ip not in topo.stack_ns.ip("-4", "addr", "show").stdout:
            assert time.monotonic() < end, "TAP never got its host address"
            time.sleep(0.1)
        server = topo.peer_ns.popen([sys.executable, "-m", "http.server", "--bind",
                                     topo.peer_ip, "8081"], cwd=str(tmp_path),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if server is not None:
            server.kill()
            server.wait()
    assert proc.returncode == 0, err
    assert out.split() == ["200", str(len(body)), hashlib.sha256(body).hexdigest()], out + err
