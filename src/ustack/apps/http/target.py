"""The request-target (RFC 9112 3.2): its forms and the path it names.

A static server maps the path onto a directory, so the path is decoded and
normalised here once, and everything that could name a file outside the
root, or a different file than the one the bytes spell, is refused (400):
an encoded slash, a NUL, a ``..`` that climbs above ``/``.
"""

from __future__ import annotations

import re
from typing import Final

# RFC 3986 3.2.2/3.2.3: uri-host [ ":" port ], host a reg-name (unreserved,
# pct-encoded, sub-delims) or an IP-literal.  No spaces, no "/", no "@".
HOST_RE: Final = re.compile(
    rb"(?:\[[0-9A-Za-z:._~!$&'()*+,;=%-]+\]|[0-9A-Za-z._~!$&'()*+,;=%-]*)(?::[0-9]*)?"
)
_ABSOLUTE_RE: Final = re.compile(rb"(?i)https?://")
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")
# A reg-name's characters (HOST_RE's second form without a port): a Host
# made only of them is valid without the regular expression, which costs a
# match object per request.  As a table mapping them to 1, the rest to 0
# (request.py's character classes).
_REG_NAME: Final = bytes(
    1 if chr(c) in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._~!$&'()*+,;=%-"
    else 0 for c in range(256))
# Bytes tested for with ``in`` as ints: ``bytes in bytes`` first tries the
# operand as an int and formats the TypeError it clears (CPython's
# _Py_bytes_contains), a microsecond per test; an int is a memchr.
_PERCENT: Final = 0x25
_SLASH: Final = 0x2F
_NUL: Final = 0x00


class TargetError(ValueError):
    """The target is refused; the message says why (the 400's reason)."""


def valid_host(value: bytes) -> bool:
    if 0 not in value.translate(_REG_NAME):
        return True  # (the common case: a name or an IPv4 address, no port)
    return HOST_RE.fullmatch(value) is not None


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """(raw path, query) of an origin-form or absolute-form target.

    RFC 9112 3.2.2: a server MUST accept the absolute form; its authority
    replaces Host for routing, which a single-site server does not do, so
    only its syntax is checked."""
    if not target.startswith(b"/") and _ABSOLUTE_RE.match(target) is not None:
        rest = target[target.index(b"://") + 3:]
        end = len(rest)
        for sep in (b"/", b"?"):
            i = rest.find(sep)
            if 0 <= i < end:
                end = i
        if end == 0 or not valid_host(rest[:end]):
            raise TargetError("invalid authority in absolute-form target")
        target = rest[end:]
        if not target.startswith(b"/"):
            target = b"/" + target
    if not target.startswith(b"/"):
        raise TargetError("request-target is not origin-form")
    q = target.find(b"?")
    if q < 0:
        return target, b""
    return target[:q], target[q + 1:]


def _unquote(segment: bytes) -> bytes:
    """Percent-decode one path segment (RFC 3986 2.1); a "%" not followed by
    two hex digits is refused."""
    if _PERCENT not in segment:
        return segment
    out = bytearray()
    i = 0
    n = len(segment)
    while i < n:
        c = segment[i]
        if c == 0x25:  # "%"
            if i + 3 > n:
                raise TargetError("truncated percent-encoding")
            h, lo = segment[i + 1], segment[i + 2]
            if h not in _HEX or lo not in _HEX:
                raise TargetError("invalid percent-encoding")
            out.append(int(segment[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(c)
            i += 1
    return bytes(out)


def normalise_path(raw: bytes) -> str:
    """The decoded path, dot-segments removed (RFC 3986 5.2.4), always
    starting with "/".

    Dot-segments are removed after decoding, so ``%2e%2e`` is a ``..`` too:
    the file system would read it as one.  A segment that decodes to a "/"
    (``%2F``) would change where the path splits, a NUL would cut it short
    at the file system: both are refused, as is a ``..`` above the root."""
    if raw.startswith(b"/") and _PERCENT not in raw and raw.find(b"/.") < 0 \
            and raw.isascii() and _NUL not in raw:
        # Nothing to decode and no dot-segment: ``_normalise`` would give
        # the same path back (a test checks it), at a tenth of the cost.
        return raw.decode("ascii")
    return _normalise(raw)


def _normalise(raw: bytes) -> str:
    segments: list[str] = []
    parts = raw.split(b"/")
    last = len(parts) - 1
    trailing = False
    for i, part in enumerate(parts[1:], start=1):
        seg = _unquote(part)
        if _SLASH in seg:
            raise TargetError("encoded slash in path")
        if _NUL in seg:
            raise TargetError("NUL in path")
        try:
            name = seg.decode("utf-8")
        except UnicodeDecodeError:
            raise TargetError("path is not UTF-8") from None
        trailing = False
        if name == ".":
            trailing = True
        elif name == "..":
            if not segments:
                raise TargetError("path climbs above the root")
            segments.pop()
            trailing = True
        elif i == last and name == "":
            trailing = True
        else:
            segments.append(name)
    path = "/" + "/".join(segments)
    if trailing and segments:
        path += "/"
    return path
