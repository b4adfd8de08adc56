"""The request fields of conditional and range requests, parsed
(RFC 9110 8.8.3 entity-tags, 13.1 preconditions, 14 ranges).

Each parser returns None for a field it cannot read: the caller then
ignores the field, as RFC 9110 14.2 says of an invalid Range.
"""

from __future__ import annotations

import re
from typing import Final

from ustack.apps.http.response import parse_http_date

# RFC 9110 14.1.1: one int-range or suffix-range (several are not served).
_RANGE_RE: Final = re.compile(rb"[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*")
_UNIT_RE: Final = re.compile(rb"(?i)bytes=")
UNSATISFIABLE: Final = (-1, -1)


def parse_etags(value: bytes) -> list[tuple[bool, bytes]] | None:
    """``If-None-Match`` / ``If-Match``: a list of (weak, opaque-tag with its
    quotes), [] for "*"; None if malformed.  etagc allows ",", so the list
    is scanned rather than split."""
    v = value.strip(b" \t")
    if v == b"*":
        return []
    tags: list[tuple[bool, bytes]] = []
    i, n = 0, len(v)
    while i < n:
        c = v[i]
        if c in b" \t,":
            i += 1
            continue
        weak = v.startswith(b"W/", i)
        if weak:
            i += 2
        if i >= n or v[i] != 0x22:  # '"'
            return None
        end = v.find(b'"', i + 1)
        if end < 0:
            return None
        tags.append((weak, v[i:end + 1]))
        i = end + 1
        if i < n and v[i] not in b" \t,":
            return None
    return tags if tags else None


def etag_matches(value: bytes, etag: str, *, weak: bool) -> bool | None:
    """Does ``value`` (an If-None-Match / If-Match field) match ``etag``?
    RFC 9110 8.8.3.2: weak comparison ignores W/, strong comparison needs
    both tags strong.  None if the field is malformed."""
    tags = parse_etags(value)
    if tags is None:
        return None
    if not tags:  # "*": any current representation
        return True
    ours = etag.encode("ascii")
    return any(tag == ours and (weak or not is_weak) for is_weak, tag in tags)


def parse_range(value: bytes, size: int) -> tuple[int, int] | None:
    """``Range`` for a representation of ``size`` bytes: (first, last) of a
    single satisfiable byte range; ``UNSATISFIABLE`` (416); None
    if it is to be ignored (invalid, another unit, several ranges: served
    whole, which RFC 9110 14.2 allows)."""
    m = _UNIT_RE.match(value)
    if m is None:
        return None
    spec = value[m.end():]
    if b"," in spec:
        # Several ranges: served whole (a multipart/byteranges answer
        # is optional; most clients ask for one range).
        return None
    r = _RANGE_RE.fullmatch(spec)
    if r is None:
        return None
    first, last = r.group(1), r.group(2)
    if not first and not last:
        return None
    if len(first) > 18 or len(last) > 18:
        # Beyond any file: read as the largest values (no int() of huge strings).
        first = first and (b"9" * 18 if len(first) > 18 else first)
        last = last and (b"9" * 18 if len(last) > 18 else last)
    if not first:
        # suffix-range: the last n bytes; RFC 9110 14.1.1: n = 0 is unsatisfiable.
        n = int(last)
        if n == 0 or size == 0:
            return UNSATISFIABLE
        return max(0, size - n), size - 1
    a = int(first)
    if last and int(last) < a:
        return None  # an invalid int-range: ignored
    if a >= size:
        return UNSATISFIABLE
    return a, min(int(last), size - 1) if last else size - 1


def if_range_matches(value: bytes, etag: str, mtime: float) -> bool:
    """RFC 9110 13.1.5: the Range applies only if ``If-Range`` names the
    current representation: an entity-tag by strong comparison (a weak one
    never matches), or a date exactly equal to its Last-Modified."""
    v = value.strip(b" \t")
    if v.startswith((b'"', b"W/")):
        return v == etag.encode("ascii")
    date = parse_http_date(v)
    return date is not None and date == float(int(mtime))
