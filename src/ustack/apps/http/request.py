"""HTTP/1.1 requests from bytes (RFC 9112), sans I/O.

``RequestParser.feed`` buffers what the connection received;
``next_request`` returns one complete ``Request`` at a time (pipelined
requests come out in order) or raises ``HttpError``.  Every limit is checked
before the bytes that would exceed it are all there: a 9000-byte request
line without its LF is a 414 as soon as the 8193rd byte arrives, so what a
connection holds is bounded by ``Limits``.

The end of the header section is searched for only from where the previous
search stopped, so a request fed one byte at a time costs linear time.
Request bodies are read and kept (a static server has no use for them, but
the next request starts after them); ``Transfer-Encoding: chunked`` is
decoded (``chunked``), any other transfer coding is refused.
"""

from __future__ import annotations

import re
from typing import Final

from ustack.apps.http.chunked import ChunkedDecoder
from ustack.apps.http.errors import HttpError
from ustack.apps.http.target import TargetError, normalise_path, split_target, valid_host

__all__ = ["HttpError", "Limits", "Request", "RequestParser"]

# RFC 9110 5.6.2: token = 1*tchar (a method that is not one of _METHODS).
TOKEN_RE: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION_RE: Final = re.compile(rb"HTTP/([0-9])\.([0-9])")
_DIGITS_RE: Final = re.compile(rb"[0-9]+")
# Character classes as translation tables that map the class's bytes to 1
# and every other byte to 0: ``0 not in data.translate(table)`` is "every
# byte is in the class", one pass over the data and a memchr, without the
# match object a regular expression makes (per request and per field).
# (``translate(None, chars)`` builds its table from ``chars`` on each call.)


def _class(chars: bytes) -> bytes:
    table = bytearray(256)
    for c in chars:
        table[c] = 1
    return bytes(table)


# RFC 9110 5.6.2 tchar (a field name is a token):
_TCHAR: Final = _class(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                       b"abcdefghijklmnopqrstuvwxyz")
# RFC 9112 3.2: the request-target is URI characters (visible ASCII).
_VCHAR: Final = _class(bytes(range(0x21, 0x7F)))
# RFC 9110 5.5: field values hold no CTL but HTAB (obs-text is allowed).
_FIELD_OK: Final = _class(b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100)))
# The methods and versions nearly every request has, as the parser returns them.
_METHODS: Final = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS",
                                          "PATCH", "TRACE", "CONNECT")}
_VERSIONS: Final = {b"HTTP/1.1": (1, 1), b"HTTP/1.0": (1, 0)}
_CR: Final = 0x0D  # tested with ``in`` as an int (target.py, _PERCENT)

SERVED_METHODS: Final = frozenset({"GET", "HEAD"})
# RFC 9110 9.3: the other methods it defines, plus PATCH (RFC 5789): 405.
KNOWN_METHODS: Final = frozenset(
    {"POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
ALLOW: Final = [("Allow", "GET, HEAD")]

_HEAD: Final = 0
_BODY: Final = 1
_CHUNKED: Final = 2


class Limits:
    """What one request may be.  A request line longer than
    ``max_request_line`` is a 414, a header section (after the request line)
    longer than ``max_header_bytes`` or with more than ``max_headers`` fields
    a 431, a body longer than ``max_body`` a 413."""

    __slots__ = ("max_body", "max_header_bytes", "max_headers", "max_request_line")

    def __init__(self, *, max_request_line: int = 8192, max_header_bytes: int = 16384,
                 max_body: int = 65536, max_headers: int = 100) -> None:
        self.max_request_line = max_request_line
        self.max_header_bytes = max_header_bytes
        self.max_body = max_body
        self.max_headers = max_headers

    @property
    def max_buffered(self) -> int:
        """What a parser holds at most between two ``next_request`` calls
        that returned None (the tests check it)."""
        return self.max_request_line + self.max_header_bytes + self.max_body + 8192


class Request:
    """One request: ``path`` is decoded and normalised (``target``), header
    names are lowercase, values stripped of surrounding whitespace."""

    __slots__ = ("body", "headers", "keep_alive", "method", "path", "query", "target",
                 "version")

    def __init__(self, method: str, target: str, path: str, query: str,
                 version: tuple[int, int], headers: list[tuple[bytes, bytes]],
                 keep_alive: bool, body: bytes = b"") -> None:
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.body = body

    def header(self, name: bytes) -> bytes | None:
        """The first value of the field ``name`` (lowercase), None if absent."""
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def __repr__(self) -> str:
        return f"Request({self.method} {self.target} HTTP/{self.version[0]}.{self.version[1]})"


def _bad(reason: str, name: str, *, close: bool = True) -> HttpError:
    return HttpError(400, reason, close=close, name=name)


def _tokens(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """The comma-separated list elements of every ``name`` field, lowercase
    (RFC 9110 5.6.1: empty elements do not count)."""
    out: list[bytes] = []
    for n, v in headers:
        if n == name:
            out += [t.strip(b" \t").lower() for t in v.split(b",") if t.strip(b" \t")]
    return out


def _parse_request_line(line: bytes) -> tuple[str, bytes, tuple[int, int]]:
    """RFC 9112 3: method SP request-target SP HTTP-version, exactly."""
    if _CR in line:
        raise _bad("bare CR in request line", "http_bare_cr")
    parts = line.split(b" ")
    if len(parts) != 3 or not all(parts):
        raise _bad("malformed request line", "http_bad_request_line")
    method, target, version = parts
    name = _METHODS.get(method)
    if name is None:
        if TOKEN_RE.fullmatch(method) is None:
            raise _bad("invalid method", "http_bad_request_line")
        name = method.decode("ascii")
    if 0 in target.translate(_VCHAR):
        raise _bad("invalid request-target", "http_bad_request_line")
    known = _VERSIONS.get(version)
    if known is not None:
        return name, target, known
    m = _VERSION_RE.fullmatch(version)
    if m is None:
        raise _bad("invalid HTTP version", "http_bad_request_line")
    major, minor = int(m.group(1)), int(m.group(2))
    if major != 1:
        raise HttpError(505, "only HTTP/1.x is supported", name="http_bad_version")
    # RFC 9110 2.5: a 1.x with x > 1 is answered as 1.1, the highest we speak.
    return name, target, (1, min(minor, 1))


def _parse_fields(section: bytes, limits: Limits) -> list[tuple[bytes, bytes]]:
    """The field lines of a header section (each ending in LF)."""
    headers: list[tuple[bytes, bytes]] = []
    for raw in section.split(b"\n")[:-1]:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if _CR in line:
            # RFC 9112 2.2: a bare CR is invalid (a bare LF is accepted).
            raise _bad("bare CR in header section", "http_bare_cr")
        if line[:1] in (b" ", b"\t"):
            # RFC 9112 5.2: obs-fold is rejected outside message/http; also
            # whitespace before the first field (RFC 9112 2.2).
            raise _bad("obsolete line folding", "http_obs_fold")
        colon = line.find(b":")
        if colon < 0:
            raise _bad("header field without colon", "http_bad_header")
        name = line[:colon]
        if name[-1:] in (b" ", b"\t"):
            # RFC 9112 5.1: no whitespace between field name and colon, MUST 400.
            raise _bad("whitespace before colon", "http_bad_header")
        if not name or 0 in name.translate(_TCHAR):
            raise _bad("invalid field name", "http_bad_header")
        value = line[colon + 1:].strip(b" \t")
        if 0 in value.translate(_FIELD_OK):
            raise _bad("control character in field value", "http_bad_header")
        headers.append((name.lower(), value))
        if len(headers) > limits.max_headers:
            raise HttpError(431, "too many header fields", name="http_header_too_large")
    return headers


def _content_length(headers: list[tuple[bytes, bytes]], limits: Limits) -> int | None:
    """RFC 9112 6.3 item 5: 1*DIGIT; a list of identical values is one
    value, differing ones are an unrecoverable framing error."""
    values = [v for n, v in headers if n == b"content-length"]
    if not values:
        return None
    found: set[bytes] = set()
    for v in values:
        for item in v.split(b","):
            item = item.strip(b" \t")
            if _DIGITS_RE.fullmatch(item) is None:
                raise _bad("invalid Content-Length", "http_bad_content_length")
            found.add(item.lstrip(b"0") or b"0")
    if len(found) != 1:
        raise _bad("conflicting Content-Length values", "http_bad_content_length")
    digits = found.pop()
    # Checked on the digits first: int() refuses over 4300 of them.
    if len(digits) > 18 or int(digits) > limits.max_body:
        raise HttpError(413, "request body too large", name="http_body_too_large")
    return int(digits)


class RequestParser:
    """Bytes in (``feed``), requests out (``next_request``).  After an
    ``HttpError`` with ``close`` set the parser is dead: it drops what it
    held and what it is fed, and raises the same error again."""

    __slots__ = ("_buf", "_chunked", "_error", "_line", "_line_end", "_pending",
                 "_pending_error", "_remaining", "_scan", "_state", "limits")

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = Limits() if limits is None else limits
        self._buf = bytearray()
        self._scan = 0          # where the next search for a line end starts
        self._line_end = -1     # index of the request line's LF, -1: not yet
        self._line: tuple[str, bytes, tuple[int, int]] | None = None
        self._state = _HEAD
        self._pending: Request | None = None
        self._pending_error: HttpError | None = None
        self._remaining = 0
        self._chunked: ChunkedDecoder | None = None
        self._error: HttpError | None = None

    def feed(self, data: bytes) -> None:
        if self._error is None:
            self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes held: received and not yet returned as a request."""
        held = len(self._buf)
        if self._chunked is not None:
            held += len(self._chunked.body)
        return held

    @property
    def in_request(self) -> bool:
        """Part of a request has arrived and not all of it (the server's
        header timeout and minimum rate apply, not the idle timeout)."""
        return self._state != _HEAD or len(self._buf) > 0

    def next_request(self) -> Request | None:
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except HttpError as e:
            if e.close:
                self._error = e
                self._buf = bytearray()
                self._chunked = None
                self._pending = None
            raise

    # ------------------------------------------------------------------ steps

    def _next(self) -> Request | None:
        if self._state == _HEAD and not self._read_head():
            return None
        req = self._pending
        assert req is not None
        if self._state == _BODY:
            # The body stays in the buffer until all of it is there: one
            # copy, however it was split.
            buf = self._buf
            if len(buf) < self._remaining:
                return None
            if self._remaining:
                req.body = bytes(buf[:self._remaining])
                del buf[:self._remaining]
                self._remaining = 0
        elif self._state == _CHUNKED:
            decoder = self._chunked
            assert decoder is not None
            if not decoder.decode(self._buf):
                return None
            req.body = bytes(decoder.body)
            self._chunked = None
        self._state = _HEAD
        self._pending = None
        err = self._pending_error
        if err is not None:
            self._pending_error = None
            raise err
        return req

    def _read_head(self) -> bool:
        """Parse the head once it is all there; False if it is not yet."""
        buf = self._buf
        limits = self.limits
        if self._line_end < 0:
            # RFC 9112 2.2: empty lines before the request-line are ignored.
            i = 0
            n = len(buf)
            while i < n:
                if buf[i] == 0x0A:
                    i += 1
                elif buf[i] == 0x0D and i + 1 < n and buf[i + 1] == 0x0A:
                    i += 2
                else:
                    break
            if i:
                del buf[:i]
                self._scan = 0
            nl = buf.find(b"\n", self._scan)
            if nl < 0:
                if len(buf) > limits.max_request_line + 1:  # + its CR
                    raise HttpError(414, "request line too long", name="http_uri_too_long")
                self._scan = len(buf)
                return False
            length = nl - 1 if nl > 0 and buf[nl - 1] == 0x0D else nl
            if length > limits.max_request_line:
                raise HttpError(414, "request line too long", name="http_uri_too_long")
            self._line = _parse_request_line(bytes(buf[:length]))
            self._line_end = nl
            self._scan = nl
        start = self._line_end + 1
        # The blank line ending the section: an LF followed by LF or CRLF
        # (the request line's own LF counts: a request without fields).
        lf = buf.find(b"\n\n", self._scan)
        crlf = buf.find(b"\n\r\n", self._scan)
        if lf < 0 and crlf < 0:
            if len(buf) - start > limits.max_header_bytes + 2:
                raise HttpError(431, "header section too large", name="http_header_too_large")
            self._scan = max(self._line_end, len(buf) - 2)
            return False
        if crlf < 0 or 0 <= lf < crlf:
            last, end = lf, lf + 2
        else:
            last, end = crlf, crlf + 3
        if last + 1 - start > limits.max_header_bytes:
            raise HttpError(431, "header section too large", name="http_header_too_large")
        section = bytes(buf[start:last + 1])
        del buf[:end]
        line = self._line
        assert line is not None
        self._line = None
        self._line_end = -1
        self._scan = 0
        self._start_message(line, _parse_fields(section, limits))
        return True

    def _start_message(self, line: tuple[str, bytes, tuple[int, int]],
                       headers: list[tuple[bytes, bytes]]) -> None:
        """Check the head's fields, decide the framing of the body (RFC
        9112 6.3) and whether the request can be served."""
        method, target, version = line
        # One pass for the fields that decide anything here (most requests
        # have none but Host); the lists they hold are read only if present.
        host: bytes | None = None
        hosts = 0
        has_te = has_cl = has_conn = False
        for n, v in headers:
            if n == b"host":
                host = v
                hosts += 1
            elif n == b"connection":
                has_conn = True
            elif n == b"transfer-encoding":
                has_te = True
            elif n == b"content-length":
                has_cl = True
        # RFC 9112 3.2: 400 for a 1.1 request without Host, for any request
        # with more than one, or with an invalid one.
        if hosts > 1:
            raise _bad("more than one Host", "http_bad_host")
        if host is None:
            if version >= (1, 1):
                raise _bad("missing Host", "http_bad_host")
        elif not valid_host(host):
            raise _bad("invalid Host", "http_bad_host")
        length = 0
        chunked = False
        if has_te:
            codings = _tokens(headers, b"transfer-encoding")
            # RFC 9112 6.1: Transfer-Encoding with Content-Length, or in a
            # 1.0 request, is faulty framing: reject and close.  6.3 item 4:
            # chunked must be the final coding of a request.
            if has_cl:
                raise _bad("Transfer-Encoding with Content-Length", "http_bad_framing")
            if version < (1, 1):
                raise _bad("Transfer-Encoding in HTTP/1.0", "http_bad_framing")
            if not codings or codings[-1] != b"chunked":
                raise _bad("chunked is not the final transfer coding", "http_bad_framing")
            if codings != [b"chunked"]:
                raise HttpError(501, "transfer coding not implemented", name="http_bad_framing")
            chunked = True
        elif has_cl:
            length = _content_length(headers, self.limits) or 0
        conn = _tokens(headers, b"connection") if has_conn else []
        if version >= (1, 1):
            keep_alive = b"close" not in conn
        else:
            keep_alive = b"keep-alive" in conn and b"close" not in conn
        req = Request(method, target.decode("ascii"), "", "", version, headers, keep_alive)
        # The body is read either way: an error answered on a persistent
        # connection needs the next request's first byte.
        err: HttpError | None = None
        if method in SERVED_METHODS:
            try:
                raw, query = split_target(target)
                req.path = normalise_path(raw)
                req.query = query.decode("ascii")
            except TargetError as e:
                err = _bad(str(e), "http_bad_target", close=not keep_alive)
        elif target == b"*" and method != "OPTIONS":
            # RFC 9112 3.2.4: asterisk-form is for OPTIONS only.
            err = _bad("asterisk-form target is for OPTIONS only", "http_bad_target",
                       close=not keep_alive)
        elif method in KNOWN_METHODS:
            err = HttpError(405, f"{method} is not allowed here", close=not keep_alive,
                            headers=list(ALLOW), name="http_method_not_allowed")
        else:
            err = HttpError(501, f"{method} is not implemented", close=not keep_alive,
                            name="http_method_not_implemented")
        if err is not None and (chunked or length) and version >= (1, 1) \
                and b"100-continue" in _tokens(headers, b"expect"):
            # RFC 9110 10.1.1: the client waits for a 100 before sending the
            # body; answer the final status now and close instead of reading it.
            err.close = True
            raise err
        self._pending = req
        self._pending_error = err
        if chunked:
            self._chunked = ChunkedDecoder(self.limits.max_body, self.limits.max_header_bytes)
            self._state = _CHUNKED
        else:
            self._remaining = length
            self._state = _BODY
