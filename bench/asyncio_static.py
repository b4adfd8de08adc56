"""A minimal static HTTP/1.1 server on asyncio and the kernel's sockets.

The reference bench_http.py measures ``ustack serve`` against: the fastest
a plain Python server on the kernel gets.  Every file directly under DIR is
read once at start into complete responses (status line, headers, body: one
buffer per variant), so serving a request is one ``transport.write`` of a
ready buffer.  It parses just enough: the end of each request (the blank
line, and a Content-Length body, which is skipped), the method, the path
and the Connection header.  Persistent connections as RFC 9112 9.3 has
them (1.1 unless ``Connection: close``; 1.0 only with ``keep-alive``), and
``Connection: close`` sent whenever it will close; pipelined requests are
answered in order, and reading stops while the transport's buffer is full
(a pipeline of large responses does not pile up in memory).  No Date header
(responses are pre-built).  stdlib asyncio only (no uvloop).

    python3 bench/asyncio_static.py DIR --bind IP --port PORT

Prints ``ready: http://IP:PORT/`` once listening; on SIGINT/SIGTERM prints
``served=N connections=N`` and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import signal
import sys
from pathlib import Path

# Request heads above this are refused (431, RFC 6585 5), as ustack serve does.
MAX_HEAD = 16 * 1024
# A request body (which a static server ignores) above this is refused (413).
MAX_BODY = 64 * 1024
KEEP, CLOSE, KEEP10 = 0, 1, 2  # response variants: 1.1 persistent, closing, 1.0 keep-alive
_CONNECTION = {KEEP: b"", CLOSE: b"Connection: close\r\n", KEEP10: b"Connection: keep-alive\r\n"}


def response(status: bytes, ctype: bytes, body: bytes, variant: int, *, head: bool = False,
             extra: bytes = b"") -> bytes:
    """One complete response; ``head``: the same headers without the body."""
    return (b"HTTP/1.1 " + status + b"\r\nServer: asyncio-static\r\nContent-Type: " + ctype
            + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n" + extra
            + _CONNECTION[variant] + b"\r\n" + (b"" if head else body))


Variants = tuple[bytes, bytes, bytes]  # by KEEP, CLOSE, KEEP10


def variants(status: bytes, ctype: bytes, body: bytes, *, head: bool = False,
             extra: bytes = b"") -> Variants:
    """The response in its three variants."""
    keep, close, keep10 = (response(status, ctype, body, v, head=head, extra=extra)
                           for v in (KEEP, CLOSE, KEEP10))
    return keep, close, keep10


class Responses:
    """Every response this server can give, built once: by (method, path) and variant."""

    def __init__(self, root: Path) -> None:
        self.table: dict[tuple[bytes, bytes], Variants] = {}
        for path in sorted(root.iterdir()):
            if not path.is_file():
                continue
            body = path.read_bytes()
            ctype = (mimetypes.guess_type(path.name)[0] or "application/octet-stream").encode()
            names = [b"/" + path.name.encode()]
            if path.name == "index.html":
                names.append(b"/")
            for name in names:
                for method, head in ((b"GET", False), (b"HEAD", True)):
                    self.table[method, name] = variants(b"200 OK", ctype, body, head=head)
        text = b"text/plain"
        self.not_found = variants(b"404 Not Found", text, b"not found\n")
        self.not_allowed = variants(b"405 Method Not Allowed", text, b"GET, HEAD\n",
                                    extra=b"Allow: GET, HEAD\r\n")
        self.bad = response(b"400 Bad Request", text, b"bad request\n", CLOSE)
        self.too_large = response(b"431 Request Header Fields Too Large", text, b"too large\n",
                                  CLOSE)
        self.body_too_large = response(b"413 Content Too Large", text, b"too large\n", CLOSE)

    def lookup(self, method: bytes, target: bytes) -> Variants | None:
        path = target.split(b"?", 1)[0]
        return self.table.get((method, path))


class Stats:
    served = 0
    connections = 0


class StaticProtocol(asyncio.Protocol):
    def __init__(self, responses: Responses, stats: Stats) -> None:
        self.responses = responses
        self.stats = stats
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.paused = False  # the transport's write buffer is above its high mark
        self.closing = False
        self.skip = 0  # bytes of a request body still to discard

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.stats.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.process()

    def pause_writing(self) -> None:
        self.paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()
            self.process()

    def reply(self, data: bytes, close: bool) -> None:
        assert self.transport is not None
        self.transport.write(data)
        self.stats.served += 1
        if close:
            self.closing = True
            self.transport.close()  # after the buffered response is sent

    def process(self) -> None:
        """Answer every complete request in the buffer, in order (pipelining)."""
        buf = self.buf
        while not self.closing and not self.paused:
            if self.skip:
                n = min(self.skip, len(buf))
                del buf[:n]
                self.skip -= n
                if self.skip:
                    return
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self.reply(self.responses.too_large, True)
                return
            if end > MAX_HEAD:
                self.reply(self.responses.too_large, True)
                return
            head = bytes(buf[:end])
            del buf[:end + 4]
            self.answer(head)

    def answer(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self.reply(self.responses.bad, True)
            return
        method, target, version = parts
        tokens: set[bytes] = set()
        length = 0
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or name != name.strip():
                self.reply(self.responses.bad, True)
                return
            lname = name.lower()
            if lname == b"connection":
                tokens.update(t.strip().lower() for t in value.split(b","))
            elif lname == b"content-length":
                if not value.strip().isdigit():
                    self.reply(self.responses.bad, True)
                    return
                length = int(value)
            elif lname == b"transfer-encoding":
                # A chunked body's end cannot be found without decoding it;
                # refuse and close (RFC 9112 6.1 allows a server to).
                self.reply(self.responses.bad, True)
                return
        if length > MAX_BODY:
            self.reply(self.responses.body_too_large, True)
            return
        self.skip = length
        if version == b"HTTP/1.1":
            close = b"close" in tokens
            variant = CLOSE if close else KEEP
        else:
            close = b"keep-alive" not in tokens
            variant = CLOSE if close else KEEP10
        found = self.responses.lookup(method, target)
        if found is None:
            if method in (b"GET", b"HEAD"):
                found = self.responses.not_found
            else:
                found = self.responses.not_allowed
        self.reply(found[variant], close)


async def serve(root: Path, ip: str, port: int) -> Stats:
    loop = asyncio.get_running_loop()
    responses = Responses(root)
    stats = Stats()
    server = await loop.create_server(lambda: StaticProtocol(responses, stats), ip, port,
                                      backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready: http://{ip}:{port}/ ({len(responses.table) // 2} paths)", flush=True)
    async with server:
        await stop.wait()
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root", type=Path, help="directory whose files are served")
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    a = p.parse_args(argv)
    stats = asyncio.run(serve(a.root, a.bind, a.port))
    print(f"served={stats.served} connections={stats.connections}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
