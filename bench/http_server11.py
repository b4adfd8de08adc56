"""The standard library's http.server, speaking HTTP/1.1, for bench_http.py.

``python3 -m http.server -p HTTP/1.1`` keeps connections open, but when a
request says ``Connection: close`` it closes after the response without
saying so in it (RFC 9112 9.6: the server SHOULD send "close"), and a
client that reuses the connection (wrk) then counts a read error per
request.  This is that server with that one header added and nothing else
changed: SimpleHTTPRequestHandler, ThreadingHTTPServer, its logging to
stderr, its two sends per response (headers, then the body).

    python3 bench/http_server11.py PORT --bind IP --directory DIR

Prints ``Serving HTTP on IP port PORT`` once listening, as http.server does.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def end_headers(self) -> None:
        if self.close_connection:
            self.send_header("Connection", "close")
        super().end_headers()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("port", type=int)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--directory", default=".")
    a = p.parse_args(argv)
    handler = functools.partial(Handler, directory=a.directory)
    with ThreadingHTTPServer((a.bind, a.port), handler) as httpd:
        print(f"Serving HTTP on {a.bind} port {a.port} (http://{a.bind}:{a.port}/) ...",
              flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
