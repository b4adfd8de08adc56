"""Response heads, error responses and HTTP-dates
(ustack.apps.http.response), with h11 as the independent judge: every
response built here is parsed by h11 as a client would."""

from __future__ import annotations

import calendar
import email.utils

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ustack.apps.http.request import HttpError
from ustack.apps.http.response import (
    STATUS_REASONS,
    DateCache,
    build_head,
    error_response,
    http_date,
    parse_http_date,
)

DATE = DateCache().get(784111777.0)


def h11_parse(data: bytes, method: str = "GET") -> tuple[h11.Response, bytes, bool]:
    """(response, body, complete) of ``data`` as h11's client reads it."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "h")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    response = conn.next_event()
    assert isinstance(response, h11.Response), response
    body = b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return response, body, True
        else:
            assert event is h11.NEED_DATA
            return response, body, False


def fields(resp: h11.Response) -> dict[bytes, bytes]:
    return {bytes(n): bytes(v) for n, v in resp.headers}


# ------------------------------------------------------------ dates


def test_http_date_is_imf_fixdate() -> None:
    assert http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"


@given(st.floats(0, 253402300799, allow_nan=False))
def test_http_date_is_29_chars_and_round_trips(t: float) -> None:
    s = http_date(t)
    assert len(s) == 29
    assert s == email.utils.formatdate(int(t), usegmt=True)
    assert parse_http_date(s.encode()) == float(int(t))


@pytest.mark.parametrize("text", [
    b"Sun, 06 Nov 1994 08:49:37 GMT",   # IMF-fixdate
    b"Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
    b"Sun Nov  6 08:49:37 1994",        # obsolete asctime
    b" Sun, 06 Nov 1994 08:49:37 GMT ",
])
def test_parse_http_date_three_forms(text: bytes) -> None:
    """RFC 9110 5.6.7: recipients MUST accept all three."""
    assert parse_http_date(text) == 784111777.0


@pytest.mark.parametrize("text", [
    b"", b"yesterday", b"Sun, 06 Nov 1994 08:49:37 UTC", b"Sun, 6 Nov 1994 08:49:37 GMT",
    b"Sun, 31 Feb 1994 08:49:37 GMT", b"Sun, 06 Nov 1994 24:00:00 GMT",
    b"Sun, 06 Foo 1994 08:49:37 GMT", b"1994-11-06T08:49:37Z", b"Sun, 06 nov 1994 08:49:37 GMT",
])
def test_parse_http_date_refuses_others(text: bytes) -> None:
    assert parse_http_date(text) is None


def test_rfc850_two_digit_years() -> None:
    """RFC 9110 5.6.7: a year more than 50 years ahead is in the past century."""
    assert parse_http_date(b"Thursday, 01-Jan-70 00:00:00 GMT") == float(
        calendar.timegm((2070, 1, 1, 0, 0, 0)))
    assert parse_http_date(b"Sunday, 01-Jan-99 00:00:00 GMT") == float(
        calendar.timegm((1999, 1, 1, 0, 0, 0)))


def test_date_cache_rebuilds_only_when_the_second_changes() -> None:
    cache = DateCache()
    first = cache.get(1000.1)
    assert first == b"Date: Thu, 01 Jan 1970 00:16:40 GMT\r\n"
    assert cache.get(1000.9) is first
    assert cache.get(1001.0) == b"Date: Thu, 01 Jan 1970 00:16:41 GMT\r\n"


# ------------------------------------------------------------ heads


def test_build_head_layout() -> None:
    head = build_head(200, [("Content-Type", "text/plain"), ("Content-Length", "2")], DATE,
                      connection="keep-alive")
    assert head == (b"HTTP/1.1 200 OK\r\nServer: ustack\r\n" + DATE
                    + b"Content-Type: text/plain\r\nContent-Length: 2\r\n"
                    b"Connection: keep-alive\r\n\r\n")
    resp, body, done = h11_parse(head + b"hi")
    assert resp.status_code == 200 and body == b"hi" and done
    assert fields(resp)[b"connection"] == b"keep-alive"
    assert fields(resp)[b"server"] == b"ustack"


def test_build_head_length_does_not_depend_on_the_date() -> None:
    headers = [("Content-Length", "5")]
    for connection in (None, "close", "keep-alive"):
        lengths = {len(build_head(200, headers, DateCache().get(t), connection=connection))
                   for t in (0, 784111777, 2e9, 253402300799)}
        assert len(lengths) == 1


@pytest.mark.parametrize("connection", [None, "close", "keep-alive"])
def test_build_head_connection(connection: str | None) -> None:
    head = build_head(204, [], DATE, connection=connection)
    resp, _, done = h11_parse(head)
    assert resp.status_code == 204 and done
    assert fields(resp).get(b"connection") == (connection.encode() if connection else None)


# ------------------------------------------------------------ errors


ERRORS = [
    HttpError(400, "malformed request line"),
    HttpError(404, "no such file", close=False),
    HttpError(405, "POST is not allowed here", close=False, headers=[("Allow", "GET, HEAD")]),
    HttpError(413, "request body too large"),
    HttpError(414, "request line too long"),
    HttpError(431, "header section too large"),
    HttpError(501, "BREW is not implemented", close=False),
    HttpError(505, "only HTTP/1.x is supported"),
]


@pytest.mark.parametrize("err", ERRORS, ids=lambda e: str(e.status))
@pytest.mark.parametrize("connection", [None, "keep-alive"])
def test_error_response_parses(err: HttpError, connection: str | None) -> None:
    data = error_response(err, DATE, head_only=False, connection=connection)
    resp, body, done = h11_parse(data)
    assert done
    assert resp.status_code == err.status
    assert bytes(resp.reason) == STATUS_REASONS[err.status].encode()
    f = fields(resp)
    assert int(f[b"content-length"]) == len(body)
    assert err.reason.encode() in body
    assert f[b"content-type"].startswith(b"text/plain")
    if err.close:
        assert f[b"connection"] == b"close"
    else:
        assert f.get(b"connection") == (connection.encode() if connection else None)
    for name, value in err.headers:
        assert f[name.lower().encode()] == value.encode()


@pytest.mark.parametrize("err", ERRORS, ids=lambda e: str(e.status))
def test_error_response_to_head_has_no_body(err: HttpError) -> None:
    full = error_response(err, DATE, head_only=False, connection=None)
    head = error_response(err, DATE, head_only=True, connection=None)
    assert full.startswith(head) and head.endswith(b"\r\n\r\n")
    resp, body, done = h11_parse(head, method="HEAD")
    assert resp.status_code == err.status and body == b"" and done
    # The same Content-Length as the GET's (RFC 9110 9.3.2).
    assert fields(resp)[b"content-length"] == str(len(full) - len(head)).encode()


def test_every_status_has_a_reason_h11_accepts() -> None:
    for status, reason in STATUS_REASONS.items():
        if status < 200:
            continue
        head = build_head(status, [("Content-Length", "0")], DATE, connection=None)
        resp, _, _ = h11_parse(head)
        assert resp.status_code == status and bytes(resp.reason) == reason.encode()
