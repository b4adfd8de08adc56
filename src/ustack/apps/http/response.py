"""Responses to bytes: status reasons, HTTP-dates, heads, error responses.

A head's layout is fixed (status line, ``Server``, ``Date``, the caller's
fields in its order, ``Connection``, blank line) and the Date is always 29
characters, so the head of one file's response has one length for each
connection variant: the server pre-segments on that.
"""

from __future__ import annotations

import calendar
import re
import time
from typing import Final

from ustack.apps.http.errors import HttpError

STATUS_REASONS: Final[dict[int, str]] = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

SERVER: Final = "ustack"
_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                  "Nov", "Dec")
_MONTH_NUMBER: Final = {m.encode(): i + 1 for i, m in enumerate(_MONTHS)}

# RFC 9110 5.6.7: IMF-fixdate, and the two obsolete forms a recipient MUST
# accept: rfc850-date and asctime-date.
_IMF_RE: Final = re.compile(
    rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{2}) ([A-Z][a-z]{2}) ([0-9]{4}) "
    rb"([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT")
_RFC850_RE: Final = re.compile(
    rb"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    rb"([0-9]{2})-([A-Z][a-z]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT")
_ASCTIME_RE: Final = re.compile(
    rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) ([0-9 ][0-9]) "
    rb"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([0-9]{4})")


def http_date(t: float) -> str:
    """IMF-fixdate (RFC 9110 5.6.7), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``:
    29 characters, English names whatever the locale."""
    tm = time.gmtime(t)
    return (f"{_DAYS[tm.tm_wday]}, {tm.tm_mday:02d} {_MONTHS[tm.tm_mon - 1]} "
            f"{tm.tm_year:04d} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} GMT")


def _rfc850_year(yy: int) -> int:
    """RFC 9110 5.6.7: a two-digit year more than 50 years in the future is
    the most recent past year with those digits."""
    this_year = time.gmtime().tm_year
    year = this_year - this_year % 100 + yy
    return year - 100 if year > this_year + 50 else year


def parse_http_date(s: bytes) -> float | None:
    """Seconds since the epoch of an HTTP-date in any of its three forms;
    None if it is none of them (or not a real date)."""
    s = s.strip(b" \t")
    m = _IMF_RE.fullmatch(s)
    if m is not None:
        day, mon, year = int(m.group(1)), m.group(2), int(m.group(3))
        hms = m.group(4), m.group(5), m.group(6)
    else:
        m = _RFC850_RE.fullmatch(s)
        if m is not None:
            day, mon, year = int(m.group(1)), m.group(2), _rfc850_year(int(m.group(3)))
            hms = m.group(4), m.group(5), m.group(6)
        else:
            m = _ASCTIME_RE.fullmatch(s)
            if m is None:
                return None
            mon, day, year = m.group(1), int(m.group(2).strip()), int(m.group(6))
            hms = m.group(3), m.group(4), m.group(5)
    month = _MONTH_NUMBER.get(mon)
    hour, minute, second = int(hms[0]), int(hms[1]), int(hms[2])
    if (month is None or not 1 <= day <= calendar.monthrange(year, month)[1]
            or hour > 23 or minute > 59 or second > 60):
        return None
    return float(calendar.timegm((year, month, day, hour, minute, min(second, 59), 0, 0, 0)))


class DateCache:
    """The ``Date`` line, rebuilt when the second changes (RFC 9110 6.6.1:
    the origin server's clock at the time of the response)."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def get(self, now_wall: float) -> bytes:
        second = int(now_wall)
        if second != self._second:
            self._second = second
            self._line = f"Date: {http_date(second)}\r\n".encode("ascii")
        return self._line


def build_head(status: int, headers: list[tuple[str, str]], date: bytes, *,
               connection: str | None) -> bytes:
    """The response head: status line, Server, ``date`` (a DateCache line),
    ``headers`` in their order, then ``Connection: <connection>`` if given,
    and the blank line."""
    reason = STATUS_REASONS.get(status, "Unknown")
    parts = [f"HTTP/1.1 {status} {reason}\r\nServer: {SERVER}\r\n".encode("ascii"), date]
    for name, value in headers:
        parts.append(f"{name}: {value}\r\n".encode("latin-1"))
    if connection is not None:
        parts.append(f"Connection: {connection}\r\n".encode("ascii"))
    parts.append(b"\r\n")
    return b"".join(parts)


def error_response(err: HttpError, date: bytes, *, head_only: bool,
                   connection: str | None) -> bytes:
    """A whole response for ``err``: a short text/plain body (none for a
    HEAD request, the same Content-Length), ``Connection: close`` whenever
    the error closes the connection."""
    body = f"{err.status} {STATUS_REASONS.get(err.status, 'Error')}: {err.reason}\n"
    data = body.encode("utf-8")
    headers = [("Content-Type", "text/plain; charset=utf-8"),
               ("Content-Length", str(len(data))), *err.headers]
    head = build_head(err.status, headers, date,
                      connection="close" if err.close else connection)
    return head if head_only else head + data
