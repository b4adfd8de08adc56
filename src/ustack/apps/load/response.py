"""HTTP/1.1 responses from bytes, on the client's side (RFC 9112), sans I/O.

``ResponseParser.feed(data, pos)`` parses one response at a time from the
bytes a connection received, as they come (a response may arrive one byte
at a time, or several pipelined ones in one read), and stops at the end of
the response so the caller can take the next one from the same bytes.  It
keeps no body: a load generator counts bytes, it does not store them.

Framing (RFC 9112 6.3): no body for HEAD, 1xx, 204 and 304; else
``Transfer-Encoding`` with chunked last is chunked (decoded here, chunk
extensions and trailer fields read past); a ``Transfer-Encoding`` without
it is read until the server closes; else ``Content-Length``; else until
close.  Interim 1xx responses (100 Continue, 103 Early Hints) are read past
(RFC 9110 15.2); ``Connection: close`` or an HTTP/1.0 response without
``keep-alive`` ends the connection after the response (RFC 9112 9.3, 9.6).

Strict: anything that is not a well-formed response ends in ``error``, a
short name (``http_bad_status_line`` ...) a report can count, and never in
an exception.  What is refused, each with its name:

- a status line that is not ``HTTP/1.x NNN [reason]`` with NNN in
  100..599, another major version, a 101 nobody asked for;
- a line ending in a bare CR or LF, whitespace before a header's colon,
  a field name that is no token, control characters in a field value, a
  continuation line (obs-fold) before any field;
- ``Content-Length`` that is not digits, or lists different values
  (RFC 9110 8.6); both ``Content-Length`` and ``Transfer-Encoding`` (RFC
  9112 6.3 rule 3: "ought to be handled as an error"); ``Transfer-Encoding``
  in an HTTP/1.0 response (RFC 9112 6.1), chunked applied twice;
- a bad chunk-size line or chunk-data not followed by CRLF;
- a head larger than ``max_head``, more than ``MAX_FIELDS`` fields, a
  chunk-size line or trailer section beyond its bound.

A continuation line (obs-fold) after a field is joined to it with a space,
as RFC 9112 5.2 requires of a user agent.
"""

from __future__ import annotations

import re
from typing import Final

# feed's states.
_HEAD: Final = 0
_LENGTH: Final = 1
_CHUNK_SIZE: Final = 2
_CHUNK_DATA: Final = 3
_CHUNK_END: Final = 4
_TRAILER: Final = 5
_UNTIL_CLOSE: Final = 6
_DONE: Final = 7
_ERROR: Final = 8

# What ``eof`` says of the response in progress when the server closed.
EOF_COMPLETE: Final = 0  # its body ran to the close: it is whole
EOF_TRUNCATED: Final = 1  # part of it came, not all
EOF_NOTHING: Final = 2  # not one byte of it came

MAX_HEAD: Final = 65536  # the status line and the header section
MAX_FIELDS: Final = 256
MAX_CHUNK_LINE: Final = 4096  # a chunk-size line with its extensions
MAX_TRAILER: Final = 65536
# Heads remembered (``HeadCache``): a server answers one request with the
# same head every time but for its Date, so a load run sees a handful.
HEAD_CACHE: Final = 256

# RFC 9112 4: status-line = HTTP-version SP status-code SP [ reason-phrase ];
# the second SP is taken as optional (as most clients take it).
# reason-phrase = *( HTAB / SP / VCHAR / obs-text ).
_STATUS_RE: Final = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: [\t\x20-\x7e\x80-\xff]*)?")
# RFC 9110 5.6.2: tchar, what a field name is made of.
_TCHAR: Final = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# RFC 9110 5.5: what a field line holds (HTAB, SP, VCHAR, obs-text), with
# the CR and LF of the line ends: deleted from a header section, nothing
# may be left.  (bytes.translate and count run in C over the whole head; a
# regex per line cost a third of a keep-alive request, and ``b"\r" in line``
# is worse: CPython 3.11 first tries the bytes as an integer and formats
# the TypeError it then discards, every time.)
_FIELD_BYTES: Final = b"\t\r\n" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
# The trailer section's field lines, checked the slow way (they are rare).
_FIELD_RE: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*")
_DIGITS_RE: Final = re.compile(rb"[0-9]{1,18}")
# RFC 9112 7.1: chunk-size [ chunk-ext ] CRLF; the extensions are skipped,
# but hold no control characters.
_CHUNK_RE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[\t\x20-\x7e\x80-\xff]*)?")


class _Head:
    """What a final response's head said of its framing."""

    __slots__ = ("keep_alive", "length", "state", "status")

    def __init__(self, status: int, keep_alive: bool, state: int, length: int) -> None:
        self.status = status
        self.keep_alive = keep_alive
        self.state = state
        self.length = length


class HeadCache:
    """Heads already parsed, by their bytes, for the parsers of one run
    (all alike in ``head_only``): a head identical to one seen is not
    parsed again.  Parsing is a function of the bytes, so what is
    remembered is exactly what parsing would say; bounded (``HEAD_CACHE``,
    cleared when full).  A keep-alive request's head took a third of the
    generator's time to parse (7 fields, field by field)."""

    __slots__ = ("heads", "hits")

    def __init__(self) -> None:
        self.heads: dict[bytes, _Head] = {}
        self.hits = 0


class ResponseParser:
    """One connection's responses, one at a time.

    ``head_only``: the requests are HEAD (their responses have no body).
    After ``feed`` either the response is ``done`` (``status``,
    ``keep_alive``), or ``error`` names what was wrong with it, or more
    bytes are needed.  ``reset`` readies it for the next response.
    """

    __slots__ = ("_buf", "_cache", "_crlf", "_remaining", "_trailer", "body_bytes", "error",
                 "head_only", "interim", "keep_alive", "max_head", "received", "state", "status")

    def __init__(self, head_only: bool = False, max_head: int = MAX_HEAD,
                 cache: HeadCache | None = None) -> None:
        self.head_only = head_only
        self._cache = cache if cache is not None else HeadCache()
        self.max_head = max_head
        self._buf = bytearray()  # a head, chunk-size line or trailer line not yet whole
        self.state = _HEAD
        self.status = 0
        self.keep_alive = True
        self.error = ""
        self.received = 0  # bytes of this response taken so far (interim ones too)
        self.body_bytes = 0  # its body's bytes (decoded, for chunked)
        self.interim = 0  # 1xx responses read past
        self._remaining = 0
        self._crlf = 0
        self._trailer = 0

    @property
    def done(self) -> bool:
        return self.state == _DONE

    def reset(self) -> None:
        """Ready for the next response on the same connection."""
        self.state = _HEAD
        self.status = 0
        self.keep_alive = True
        self.error = ""
        self.received = 0
        self.body_bytes = 0
        self.interim = 0
        self._buf.clear()

    def _fail(self, name: str) -> int:
        self.state = _ERROR
        self.error = name
        return -1

    def feed(self, data: bytes, pos: int = 0) -> int:
        """Parse ``data[pos:]`` into the response in progress; returns where
        it stopped: ``len(data)`` (all taken; the response may be done with
        the last byte), or the index just past the response's end (``done``;
        what follows belongs to the next response).  Malformed: ``error``
        is set and the bytes are not taken further (returns ``len(data)``).
        """
        n = len(data)
        if pos >= n or self.state >= _DONE:
            return n if self.state == _ERROR else pos
        start = pos
        while pos < n:
            state = self.state
            if state == _HEAD:
                pos = self._feed_head(data, pos)
            elif state == _LENGTH:
                take = min(self._remaining, n - pos)
                pos += take
                self.body_bytes += take
                self._remaining -= take
                if not self._remaining:
                    self.state = _DONE
            elif state == _UNTIL_CLOSE:
                self.body_bytes += n - pos
                pos = n
            elif state == _CHUNK_DATA:
                take = min(self._remaining, n - pos)
                pos += take
                self.body_bytes += take
                self._remaining -= take
                if not self._remaining:
                    self.state = _CHUNK_END
                    self._crlf = 0
            elif state == _CHUNK_END:
                # chunk-data CRLF (RFC 9112 7.1), possibly split between reads.
                if data[pos] != b"\r\n"[self._crlf]:
                    pos = self._fail("http_bad_chunk")
                else:
                    pos += 1
                    self._crlf += 1
                    if self._crlf == 2:
                        self.state = _CHUNK_SIZE
            elif state == _CHUNK_SIZE:
                pos = self._feed_chunk_size(data, pos)
            elif state == _TRAILER:
                pos = self._feed_trailer(data, pos)
            if pos < 0:
                self.received += n - start
                return n
            if self.state == _DONE:
                break
        self.received += pos - start
        return pos

    # -- the head --------------------------------------------------------

    def _feed_head(self, data: bytes, pos: int) -> int:
        buf = self._buf
        if not buf:
            end = data.find(b"\r\n\r\n", pos)
            if end >= 0:  # the common case: a whole head in one read, no copy
                end += 4
                if end - pos > self.max_head:
                    return self._fail("http_head_too_large")
                return end if self._head(data[pos:end]) else -1
            buf += data[pos:]
            if len(buf) > self.max_head:
                return self._fail("http_head_too_large")
            return len(data) if self._head_so_far_ok() else -1
        old = len(buf)
        buf += data[pos:]
        end = buf.find(b"\r\n\r\n", max(0, old - 3))
        if end < 0:
            if len(buf) > self.max_head:
                return self._fail("http_head_too_large")
            return len(data) if self._head_so_far_ok() else -1
        end += 4
        if end > self.max_head:
            return self._fail("http_head_too_large")
        head = bytes(buf[:end])
        buf.clear()
        return pos + (end - old) if self._head(head) else -1

    def _head_so_far_ok(self) -> bool:
        """A head not yet whole: refuse at once what can never become one
        (a bare LF: its end would never be found, it would only time out)."""
        buf = self._buf
        i = buf.find(b"\n")
        while i >= 0:
            if i == 0 or buf[i - 1] != 13:
                self._fail("http_bad_line_ending")
                return False
            i = buf.find(b"\n", i + 1)
        return True

    def _head(self, head: bytes) -> bool:
        """Take a whole head (ending in CRLF CRLF): remembered, or parsed
        (and remembered if final); False with ``error`` set."""
        cache = self._cache
        known = cache.heads.get(head)
        if known is not None:
            cache.hits += 1
            self.status = known.status
            self.keep_alive = known.keep_alive
            self.state = known.state
            self._remaining = known.length
            return True
        if not self._parse_head(head):
            return False
        if self.state != _HEAD:  # a final response's (an interim one leaves _HEAD)
            heads = cache.heads
            if len(heads) >= HEAD_CACHE:
                heads.clear()
            heads[head] = _Head(self.status, self.keep_alive, self.state, self._remaining)
        return True

    def _parse_head(self, head: bytes) -> bool:
        """Parse a whole head; False with ``error`` set."""
        inner = head[:-4]
        crlf = inner.count(b"\r\n")
        if inner.count(b"\r") != crlf or inner.count(b"\n") != crlf:
            self._fail("http_bad_line_ending")  # a bare CR or LF (RFC 9112 2.2)
            return False
        lines = inner.split(b"\r\n")
        m = _STATUS_RE.fullmatch(lines[0])
        if m is None:
            self._fail("http_bad_status_line")
            return False
        if m.group(1) != b"1":
            self._fail("http_bad_version")
            return False
        status = int(m.group(3))
        if not 100 <= status <= 599:
            self._fail("http_bad_status_line")
            return False
        if len(lines) - 1 > MAX_FIELDS:
            self._fail("http_too_many_fields")
            return False
        http10 = m.group(2) == b"0"
        names: list[bytes] = []
        values: list[bytes] = []
        for k in range(1, len(lines)):
            line = lines[k]
            first = line[:1]
            if first == b" " or first == b"\t":
                # obs-fold (RFC 9112 5.2): a user agent joins it with SP;
                # before any field there is nothing to join it to (2.2).
                if not names:
                    self._fail("http_bad_field")
                    return False
                values[-1] = values[-1] + b" " + line.strip(b" \t")
                continue
            colon = line.find(b":")
            # No whitespace before the colon, a name of tchars (RFC 9112 5.1).
            if colon <= 0 or line[:colon].translate(None, _TCHAR):
                self._fail("http_bad_field")
                return False
            names.append(line[:colon].lower())
            values.append(line[colon + 1:].strip(b" \t"))
        if names and inner[len(lines[0]):].translate(None, _FIELD_BYTES):
            self._fail("http_bad_field")  # a control character in a value
            return False
        length = -1
        chunked = False
        te = False
        keep_alive = not http10
        for i in range(len(names)):
            name = names[i]
            value = values[i]
            if name == b"content-length":
                # RFC 9110 8.6: a list of one repeated value may be taken as it.
                for item in value.split(b","):
                    item = item.strip(b" \t")
                    if _DIGITS_RE.fullmatch(item) is None:
                        self._fail("http_bad_content_length")
                        return False
                    v = int(item)
                    if length >= 0 and v != length:
                        self._fail("http_bad_content_length")
                        return False
                    length = v
            elif name == b"transfer-encoding":
                te = True
                for item in value.split(b","):
                    coding = item.strip(b" \t").lower()
                    if not coding:
                        continue
                    if chunked:  # chunked must be last, and applied once (RFC 9112 6.1)
                        if coding == b"chunked":
                            self._fail("http_bad_transfer_encoding")
                            return False
                        chunked = False
                    if coding == b"chunked":
                        chunked = True
            elif name == b"connection":
                for item in value.split(b","):
                    token = item.strip(b" \t").lower()
                    if token == b"close":
                        keep_alive = False
                    elif token == b"keep-alive" and http10:
                        keep_alive = True
        if status < 200:
            if status == 101:  # no upgrade was asked for (RFC 9110 15.2.2)
                self._fail("http_unexpected_101")
                return False
            # An interim response: the final one follows (RFC 9110 15.2).
            self.interim += 1
            return True
        self.status = status
        self.keep_alive = keep_alive
        if te and http10:
            self._fail("http_bad_transfer_encoding")  # RFC 9112 6.1: faulty framing
            return False
        if self.head_only or status == 204 or status == 304:
            self.state = _DONE  # RFC 9112 6.3 rule 1, whatever the fields say
        elif te and length >= 0:
            self._fail("http_conflicting_framing")
            return False
        elif te:
            if chunked:
                self.state = _CHUNK_SIZE
            else:
                self.state = _UNTIL_CLOSE  # RFC 9112 6.3 rule 4
                self.keep_alive = False
        elif length > 0:
            self.state = _LENGTH
            self._remaining = length
        elif length == 0:
            self.state = _DONE
        else:
            self.state = _UNTIL_CLOSE  # RFC 9112 6.3 rule 8
            self.keep_alive = False
        return True

    # -- chunked ---------------------------------------------------------

    def _line(self, data: bytes, pos: int, limit: int, name: str) -> tuple[int, bytes | None]:
        """The line at ``pos`` without its CRLF and the index past it, or
        (len(data), None) when it is not whole yet (kept in the buffer)."""
        buf = self._buf
        nl = data.find(b"\n", pos, pos + limit + 2 - len(buf))
        if nl < 0:
            buf += data[pos:]
            if len(buf) > limit + 1:
                self._fail(name)
                return -1, None
            return len(data), None
        if buf:
            buf += data[pos:nl + 1]
            line = bytes(buf)
            buf.clear()
        else:
            line = data[pos:nl + 1]
        if len(line) < 2 or line[-2] != 13:
            self._fail("http_bad_line_ending")
            return -1, None
        return nl + 1, line[:-2]

    def _feed_chunk_size(self, data: bytes, pos: int) -> int:
        pos, line = self._line(data, pos, MAX_CHUNK_LINE, "http_bad_chunk")
        if line is None:
            return pos
        m = _CHUNK_RE.fullmatch(line)
        if m is None:
            return self._fail("http_bad_chunk")
        size = int(m.group(1), 16)
        if size:
            self._remaining = size
            self.state = _CHUNK_DATA
        else:
            self._trailer = 0
            self.state = _TRAILER
        return pos

    def _feed_trailer(self, data: bytes, pos: int) -> int:
        start = pos
        pos, line = self._line(data, pos, MAX_TRAILER - self._trailer, "http_head_too_large")
        if line is None:
            return pos
        if not line:
            self.state = _DONE  # the empty line ending the trailer section
            return pos
        self._trailer += pos - start
        if self._trailer > MAX_TRAILER:
            return self._fail("http_head_too_large")
        if _FIELD_RE.fullmatch(line) is None:
            return self._fail("http_bad_field")
        return pos

    # -- the end of the stream --------------------------------------------

    def eof(self) -> int:
        """The server closed: what that makes of the response in progress
        (``EOF_COMPLETE``: a body delimited by the close ended, ``done``;
        ``EOF_TRUNCATED``; ``EOF_NOTHING``: none of it came)."""
        if self.state == _UNTIL_CLOSE:
            self.state = _DONE
            return EOF_COMPLETE
        if self.state == _DONE:
            return EOF_COMPLETE
        return EOF_TRUNCATED if self.received else EOF_NOTHING
