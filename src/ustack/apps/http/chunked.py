"""The chunked transfer coding of a request body (RFC 9112 7.1), decoded
as bytes arrive.

Chunk extensions are ignored and trailer fields discarded (RFC 9112 7.1.1,
7.1.2: a recipient may ignore both); the decoded body is bounded by
``max_body`` (413) and the trailer section by ``max_trailer`` (431), each
checked before the bytes that would exceed it are kept.
"""

from __future__ import annotations

import re
from typing import Final

from ustack.apps.http.errors import HttpError

# chunk-size [ chunk-ext ]: 1*HEXDIG, then BWS ";" ... (the extension's
# syntax is not checked: it is ignored).
_SIZE_RE: Final = re.compile(rb"([0-9A-Fa-f]+)[ \t]*(?:;[^\r\n]*)?")
# A chunk-size line longer than this is no honest client's (16 hex digits
# and room for an extension).
MAX_SIZE_LINE: Final = 4096

_SIZE: Final = 0
_DATA: Final = 1
_DATA_END: Final = 2
_TRAILER: Final = 3
_DONE: Final = 4


def _line_end(buf: bytearray, start: int, limit: int, what: str, status: int) -> int:
    """Index of the LF ending the line at ``start``, -1 if it has not
    arrived; a line longer than ``limit`` is refused either way."""
    nl = buf.find(b"\n", start, start + limit + 2)
    if nl < 0 and len(buf) - start > limit + 1:
        raise HttpError(status, f"{what} too long", name="http_chunk_line_too_long")
    return nl


class ChunkedDecoder:
    __slots__ = ("_remaining", "_state", "_trailer", "body", "max_body", "max_trailer")

    def __init__(self, max_body: int, max_trailer: int) -> None:
        self.body = bytearray()
        self.max_body = max_body
        self.max_trailer = max_trailer
        self._remaining = 0
        self._state = _SIZE
        self._trailer = 0

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def decode(self, buf: bytearray) -> bool:
        """Consume what can be decoded from the front of ``buf``; True once
        the whole body (and its trailer section) has been read."""
        while True:
            state = self._state
            if state == _SIZE:
                nl = _line_end(buf, 0, MAX_SIZE_LINE, "chunk-size line", 400)
                if nl < 0:
                    return False
                line = bytes(buf[:nl]).removesuffix(b"\r")
                m = _SIZE_RE.fullmatch(line)
                if m is None:
                    raise HttpError(400, "invalid chunk-size line", name="http_bad_chunk")
                digits = m.group(1).lstrip(b"0")
                room = self.max_body - len(self.body)
                if len(digits) > 16 or int(digits or b"0", 16) > room:
                    raise HttpError(413, "request body too large", name="http_body_too_large")
                del buf[:nl + 1]
                self._remaining = int(digits or b"0", 16)
                self._state = _DATA if self._remaining else _TRAILER
            elif state == _DATA:
                if not buf:
                    return False
                take = min(self._remaining, len(buf))
                self.body += buf[:take]
                del buf[:take]
                self._remaining -= take
                if self._remaining:
                    return False
                self._state = _DATA_END
            elif state == _DATA_END:
                # CRLF after chunk-data (a bare LF accepted, RFC 9112 2.2).
                if buf[:2] == b"\r\n":
                    del buf[:2]
                elif buf[:1] == b"\n":
                    del buf[:1]
                elif buf == b"\r" or not buf:
                    return False
                else:
                    raise HttpError(400, "chunk-data not followed by CRLF", name="http_bad_chunk")
                self._state = _SIZE
            elif state == _TRAILER:
                # trailer-section CRLF: field lines, discarded, then an empty line.
                room = max(0, self.max_trailer - self._trailer)
                nl = _line_end(buf, 0, room, "trailer section", 431)
                if nl < 0:
                    return False
                line = bytes(buf[:nl]).removesuffix(b"\r")
                del buf[:nl + 1]
                if not line:
                    self._state = _DONE
                    return True
                if b"\r" in line or b":" not in line:
                    raise HttpError(400, "invalid trailer field", name="http_bad_chunk")
                self._trailer += nl + 1
                if self._trailer > self.max_trailer:
                    raise HttpError(431, "trailer section too large", name="http_header_too_large")
            else:
                return True
