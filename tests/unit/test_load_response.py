"""The client-side response parser (ustack.apps.load.response): framing by
RFC 9112 6.3, responses split anywhere or pipelined together, every kind of
malformed response named, h11 (an independent HTTP/1.1 implementation) as
the judge of well-formed ones, and arbitrary bytes classified, never raised."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ustack.apps.load.response import (
    EOF_COMPLETE,
    EOF_NOTHING,
    EOF_TRUNCATED,
    HEAD_CACHE,
    MAX_HEAD,
    HeadCache,
    ResponseParser,
)

h11 = pytest.importorskip("h11")


def parse(data: bytes, cuts: list[int] | None = None, head_only: bool = False,
          cache: HeadCache | None = None) -> tuple[ResponseParser, int]:
    """Feed ``data`` in pieces cut at ``cuts``; the parser and where the
    response ended (the bytes it took)."""
    p = ResponseParser(head_only, cache=cache)
    bounds = sorted({c for c in (cuts or []) if 0 < c < len(data)})
    taken = 0
    for a, b in zip([0, *bounds], [*bounds, len(data)], strict=True):
        piece = data[a:b]
        end = p.feed(piece, 0)
        assert 0 <= end <= len(piece)
        taken += end
        if p.done or p.error:
            break
    return p, taken


def test_content_length_body_then_the_next_response_starts() -> None:
    one = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello"
    two = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
    p = ResponseParser()
    data = one + two
    end = p.feed(data, 0)
    assert end == len(one)
    assert (p.done, p.status, p.keep_alive, p.body_bytes, p.received) == (
        True, 200, True, 5, len(one))
    p.reset()
    assert p.feed(data, end) == len(data)
    assert (p.done, p.status, p.body_bytes) == (True, 404, 0)


def test_chunked_with_extensions_and_trailers_byte_by_byte() -> None:
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n10 \r\n" + b"x" * 16 + b"\r\n0\r\nX-T: 1\r\n\r\n")
    p, taken = parse(data, list(range(len(data))))
    assert (p.done, p.error, p.body_bytes, taken) == (True, "", 21, len(data))
    whole, _ = parse(data)
    assert (whole.done, whole.body_bytes) == (True, 21)


@pytest.mark.parametrize("status, head_only", [(204, False), (304, False), (200, True)])
def test_no_body_whatever_the_fields_say(status: int, head_only: bool) -> None:
    """RFC 9112 6.3 rule 1: HEAD, 204 and 304 end with their head."""
    head = b"HTTP/1.1 %d X\r\nContent-Length: 1000\r\n\r\n" % status
    p = ResponseParser(head_only)
    assert p.feed(head + b"HTTP/1.1", 0) == len(head)
    assert p.done and p.body_bytes == 0


def test_interim_responses_are_read_past() -> None:
    data = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    p, taken = parse(data, [3, 30, 60])
    assert (p.done, p.status, p.interim, p.body_bytes, taken) == (True, 201, 2, 2, len(data))


@pytest.mark.parametrize("head, keep", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nConnection: foo, Close\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", True),
])
def test_connection_persistence(head: bytes, keep: bool) -> None:
    """RFC 9112 9.3: persistent by default in 1.1, not in 1.0 unless keep-alive."""
    p, _ = parse(head)
    assert p.done and p.keep_alive is keep


def test_body_until_close() -> None:
    """RFC 9112 6.3 rule 8 (no length) and rule 4 (a transfer coding
    without chunked last): read until the server closes."""
    for head in (b"HTTP/1.1 200 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"):
        p, _ = parse(head + b"abc")
        assert not p.done and not p.error
        assert p.eof() == EOF_COMPLETE
        assert p.done and p.body_bytes == 3 and not p.keep_alive


def test_eof_says_truncated_or_nothing() -> None:
    p, _ = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert p.eof() == EOF_TRUNCATED
    p, _ = parse(b"HTTP/1.1 20")
    assert p.eof() == EOF_TRUNCATED
    p, _ = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert p.eof() == EOF_TRUNCATED
    assert ResponseParser().eof() == EOF_NOTHING


@pytest.mark.parametrize("data, reason", [
    (b"HTTP/1.1 abc\r\n\r\n", "http_bad_status_line"),
    (b"HTTP/1.1 99 X\r\n\r\n", "http_bad_status_line"),
    (b"HTTP/1.1 600 X\r\n\r\n", "http_bad_status_line"),
    (b"HTTP/1.1  200 OK\r\n\r\n", "http_bad_status_line"),
    (b"HTTP/2.0 200 OK\r\n\r\n", "http_bad_version"),
    (b"ICY 200 OK\r\n\r\n", "http_bad_status_line"),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "http_unexpected_101"),
    (b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", "http_bad_line_ending"),
    (b"HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n", "http_bad_line_ending"),
    (b"HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n", "http_bad_field"),
    (b"HTTP/1.1 200 OK\r\n folded\r\n\r\n", "http_bad_field"),
    (b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n", "http_bad_field"),
    (b"HTTP/1.1 200 OK\r\nA: b\x00c\r\n\r\n", "http_bad_field"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "http_bad_content_length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "http_bad_content_length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", "http_bad_content_length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
     "http_bad_content_length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
     "http_conflicting_framing"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
     "http_bad_transfer_encoding"),
    (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "http_bad_transfer_encoding"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "http_bad_chunk"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXY", "http_bad_chunk"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\na\r\n", "http_bad_line_ending"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 17 + b"\r\n",
     "http_bad_chunk"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n",
     "http_bad_field"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n", "http_head_too_large"),
    (b"HTTP/1.1 200 OK\r\n" + b"A: b\r\n" * 300 + b"\r\n", "http_too_many_fields"),
])
def test_malformed_responses_are_named(data: bytes, reason: str) -> None:
    for cuts in ([], [len(data) // 2], list(range(0, len(data), 7))):
        p, _ = parse(data, cuts)
        assert p.error == reason, (cuts, p.error)
        assert not p.done
        assert p.feed(b"more", 0) == 4  # nothing more is taken as a response


def test_an_endless_head_without_crlf_is_refused_as_it_grows() -> None:
    p = ResponseParser()
    for _ in range(MAX_HEAD // 1000 + 1):
        p.feed(b"a" * 1000, 0)
    assert p.error == "http_head_too_large"


def test_obs_fold_after_a_field_is_joined() -> None:
    """RFC 9112 5.2: a user agent replaces obs-fold with SP."""
    p, _ = parse(b"HTTP/1.1 200 OK\r\nX-A: one\r\n  two\r\nContent-Length: 1\r\n\r\nz")
    assert p.done and p.body_bytes == 1


def test_a_head_seen_before_is_remembered_not_parsed() -> None:
    cache = HeadCache()
    one = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
    for _ in range(3):
        p, _ = parse(one, cache=cache)
        assert (p.done, p.status, p.body_bytes) == (True, 200, 3)
    assert cache.hits == 2 and len(cache.heads) == 1
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nxy"
    for _ in range(2):
        p, _ = parse(close, cache=cache)
        assert not p.done and not p.keep_alive
        assert p.eof() == EOF_COMPLETE and p.body_bytes == 2
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    parse(interim + one, cache=cache)
    assert interim not in cache.heads  # only final heads
    for i in range(HEAD_CACHE + 5):
        parse(b"HTTP/1.1 200 OK\r\nX: %d\r\nContent-Length: 0\r\n\r\n" % i, cache=cache)
    assert len(cache.heads) <= HEAD_CACHE


# -- h11 as the judge ---------------------------------------------------------

_FIELD = st.tuples(st.sampled_from(["X-A", "Server", "Cache-Control", "ETag", "Vary"]),
                   st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                           max_size=20))


@given(status=st.sampled_from([200, 201, 204, 301, 304, 404, 500, 503]),
       fields=st.lists(_FIELD, max_size=5),
       chunks=st.lists(st.binary(min_size=1, max_size=300), max_size=5),
       chunked=st.booleans(), close=st.booleans(), head=st.booleans(),
       cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=6))
@settings(max_examples=300, deadline=None)
def test_what_h11_writes_is_read_alike(status: int, fields: list[tuple[str, str]],
                                        chunks: list[bytes], chunked: bool, close: bool,
                                        head: bool, cuts: list[int]) -> None:
    server = h11.Connection(h11.SERVER)
    server.receive_data(b"%s / HTTP/1.1\r\nHost: x\r\n\r\n" % (b"HEAD" if head else b"GET"))
    assert isinstance(server.next_event(), h11.Request)
    server.next_event()
    body = b"" if status in (204, 304) else b"".join(chunks)
    headers = list(fields)
    if chunked and status not in (204, 304):
        headers.append(("Transfer-Encoding", "chunked"))
    else:
        headers.append(("Content-Length", str(len(body))))
        chunks = [body] if body else []
    if close:
        headers.append(("Connection", "close"))
    raw = server.send(h11.Response(status_code=status, headers=headers)) or b""
    if not head and status not in (204, 304):
        for c in chunks:
            raw += server.send(h11.Data(data=c)) or b""
    raw += server.send(h11.EndOfMessage()) or b""
    p, taken = parse(raw + b"HTTP/1.1 200 OK\r\n", cuts, head_only=head)
    assert p.error == ""
    assert p.done and taken == len(raw)
    assert p.status == status
    assert p.body_bytes == (0 if head else len(body))
    assert p.keep_alive is not close


# -- anything at all -----------------------------------------------------------

_PIECES = st.sampled_from([
    b"HTTP/1.1 200 OK\r\n", b"HTTP/1.0 404 X\r\n", b"HTTP/1.1 100 C\r\n", b"\r\n", b"\n",
    b"\r", b"Content-Length: 3\r\n", b"Content-Length: 99999999999999999999\r\n",
    b"Transfer-Encoding: chunked\r\n", b"Connection: close\r\n", b"0\r\n", b"5\r\n",
    b"abc", b"x:y\r\n", b" fold\r\n", b":\r\n", b"HTTP/1.1 204 N\r\n", b"\x00", b"\xff",
])


_SHARED = {False: HeadCache(), True: HeadCache()}


def _outcome(p: ResponseParser) -> tuple[bool, bool, int, int]:
    return p.done, bool(p.error), p.status if p.done else 0, p.body_bytes if p.done else 0


@given(data=st.one_of(st.binary(max_size=400),
                      st.lists(_PIECES, max_size=30).map(b"".join)),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
       head_only=st.booleans())
@settings(max_examples=1000, deadline=None)
def test_arbitrary_bytes_are_classified_never_raised(data: bytes, cuts: list[int],
                                                      head_only: bool) -> None:
    """Whatever comes, feed returns (a response, an error, or a wish for
    more), where it is cut makes no difference to which, and eof answers."""
    whole, taken = parse(data, head_only=head_only)
    split, taken_split = parse(data, cuts, head_only=head_only)
    assert _outcome(whole) == _outcome(split)
    # A cache filled by every example so far says what parsing says.
    remembered, _ = parse(data, cuts, head_only=head_only,
                          cache=_SHARED[head_only])
    assert _outcome(remembered) == _outcome(split)
    if whole.done:
        assert taken == taken_split
    assert whole.eof() in (EOF_COMPLETE, EOF_TRUNCATED, EOF_NOTHING)
