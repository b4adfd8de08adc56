"""nginx on the kernel's side, for the tests that load it (``ustack load``,
its workers): one process, every path in a folder of the test's, its
access log there (a count of requests to check the generator's against)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from ustack_testbed.netns import Netns

NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000000;
    server {{
        listen {ip}:80 backlog=4096;
        root {root};
    }}
}}
"""


def start_nginx(ns: Netns, tmp: Path, ip: str, root: Path) -> subprocess.Popen[Any]:
    """nginx in ``ns`` serving ``root`` on ``ip``:80, listening when this
    returns (the namespace stops it); its files in ``tmp``."""
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, ip=ip, root=root))
    proc = ns.popen(["nginx", "-p", str(tmp), "-c", str(conf)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_listening(ns, proc, ip)
    return proc


def wait_listening(ns: Netns, proc: subprocess.Popen[Any], ip: str, port: int = 80) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
        s = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(1)
            s.connect((ip, port))
            return
        except OSError:
            time.sleep(0.05)
        finally:
            s.close()
    raise AssertionError("the server did not listen")
