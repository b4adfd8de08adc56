"""Static files (ustack.apps.http.files): lookups that never leave the
root, the cache, and the response plans of GET and HEAD (conditional
requests, ranges), each plan checked by h11 as a client reads it."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import h11
import pytest

from ustack.apps.http.files import FileEntry, Plan, StaticFiles
from ustack.apps.http.request import HttpError, Request, RequestParser
from ustack.apps.http.response import DateCache, build_head, http_date

NOW = 2_000_000_000.0
DATE = DateCache().get(NOW)
TEXT = b"0123456789"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "www").mkdir()
    www = tmp_path / "www"
    (www / "a.txt").write_bytes(TEXT)
    (www / "index.html").write_bytes(b"<h1>hi</h1>")
    (www / "sub").mkdir()
    (www / "sub" / "index.html").write_bytes(b"sub index")
    (www / "empty").mkdir()
    (www / ".hidden").write_bytes(b"secret-ish")
    (www / "data.bin").write_bytes(b"\x00\x01")
    (www / "pic.png").write_bytes(b"png")
    (www / "zero.txt").write_bytes(b"")
    (tmp_path / "outside.txt").write_bytes(b"outside")
    (tmp_path / "outdir").mkdir()
    (tmp_path / "outdir" / "f.txt").write_bytes(b"outside dir")
    os.utime(www / "a.txt", (NOW - 100, NOW - 100))
    return www


def request(path: str, *fields: str, method: str = "GET") -> Request:
    p = RequestParser()
    p.feed(f"{method} {path} HTTP/1.1\r\nHost: h\r\n".encode()
           + b"".join(f.encode() + b"\r\n" for f in fields) + b"\r\n")
    r = p.next_request()
    assert r is not None
    return r


def judge(plan: Plan, method: str = "GET") -> tuple[h11.Response, bytes]:
    """The plan as bytes (build_head + body), parsed by h11's client."""
    data = build_head(plan.status, plan.headers, DATE, connection=None) + bytes(plan.body)
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "h")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    resp = conn.next_event()
    assert isinstance(resp, h11.Response)
    body = b""
    while not isinstance(event := conn.next_event(), h11.EndOfMessage):
        assert isinstance(event, h11.Data), event
        body += event.data
    assert conn.next_event() is h11.PAUSED or conn.their_state is h11.DONE
    return resp, body


def fields(resp: h11.Response) -> dict[bytes, bytes]:
    return {bytes(n): bytes(v) for n, v in resp.headers}


def get(files: StaticFiles, path: str, *hdrs: str, method: str = "GET") -> Plan:
    req = request(path, *hdrs, method=method)
    return files.respond(req, files.lookup(req.path, NOW), NOW)


# ------------------------------------------------------------ lookups


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        StaticFiles(str(tmp_path / "nope"))
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(ValueError, match="not a directory"):
        StaticFiles(str(tmp_path / "f"))


def test_root_is_made_absolute_and_resolved(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    os.symlink(root, root.parent / "link")
    monkeypatch.chdir(root.parent)
    files = StaticFiles("link")
    assert files.root == str(root.resolve())
    assert files.lookup("/a.txt", NOW) is not None


def test_a_file_entry(root: Path) -> None:
    files = StaticFiles(str(root))
    e = files.lookup("/a.txt", NOW)
    assert e is not None
    st = os.stat(root / "a.txt")
    assert e.path == str(root / "a.txt")
    assert (e.size, e.body, e.mtime) == (10, TEXT, st.st_mtime)
    assert e.version == (st.st_ino, 10, st.st_mtime_ns)
    assert e.etag == f'"{st.st_ino:x}-a-{st.st_mtime_ns:x}"'
    assert e.content_type == "text/plain; charset=utf-8"
    assert e.last_modified == http_date(NOW - 100)


@pytest.mark.parametrize(("path", "kind"), [
    ("/index.html", "text/html; charset=utf-8"),
    ("/pic.png", "image/png"),
    ("/data.bin", "application/octet-stream"),
    ("/.hidden", "application/octet-stream"),
])
def test_content_types(root: Path, path: str, kind: str) -> None:
    e = StaticFiles(str(root)).lookup(path, NOW)
    assert e is not None and e.content_type == kind


@pytest.mark.parametrize(("path", "body"), [
    ("/", b"<h1>hi</h1>"),
    ("/sub/", b"sub index"),
    ("/sub", b"sub index"),     # no redirect: the index is served
    ("/.hidden", b"secret-ish"),  # hidden files are files
])
def test_directories_give_their_index(root: Path, path: str, body: bytes) -> None:
    e = StaticFiles(str(root)).lookup(path, NOW)
    assert e is not None and e.body == body


@pytest.mark.parametrize("path", ["/empty/", "/empty", "/missing", "/a.txt/", "/sub/x/"])
def test_not_found(root: Path, path: str) -> None:
    assert StaticFiles(str(root)).lookup(path, NOW) is None


def test_another_index_name(root: Path) -> None:
    (root / "empty" / "default.htm").write_bytes(b"d")
    e = StaticFiles(str(root), index="default.htm").lookup("/empty/", NOW)
    assert e is not None and e.body == b"d"


# ------------------------------------------------------------ never outside the root


@pytest.mark.parametrize("target", [
    "/../outside.txt", "/%2e%2e/outside.txt", "/a/%2e%2e/%2e%2e/x", "/sub%2f..%2f..%2foutside.txt",
    "/a.txt%00.html", "/%2E%2E/",
])
def test_traversal_is_refused_by_the_parser(target: str) -> None:
    p = RequestParser()
    p.feed(f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    with pytest.raises(HttpError) as info:
        p.next_request()
    assert info.value.status == 400


@pytest.mark.parametrize("path", ["/../outside.txt", "/../outdir/f.txt", "/sub/../../outside.txt",
                                  "/a.txt\x00", "//../outside.txt"])
def test_lookup_alone_never_leaves_the_root(root: Path, path: str) -> None:
    """Even a path the parser would refuse does not escape the lookup."""
    assert StaticFiles(str(root)).lookup(path, NOW) is None


def test_an_empty_first_segment_stays_under_the_root(root: Path) -> None:
    """``//a.txt`` is the root's a.txt, not /a.txt of the machine."""
    r = request("//a.txt")
    assert r.path == "//a.txt"
    e = StaticFiles(str(root)).lookup(r.path, NOW)
    assert e is not None and e.body == TEXT


def test_symlink_to_a_file_outside_is_404(root: Path) -> None:
    os.symlink(root.parent / "outside.txt", root / "out.txt")
    assert StaticFiles(str(root)).lookup("/out.txt", NOW) is None


def test_symlink_to_a_dir_outside_is_404(root: Path) -> None:
    os.symlink(root.parent / "outdir", root / "od")
    files = StaticFiles(str(root))
    assert files.lookup("/od/f.txt", NOW) is None
    assert files.lookup("/od/", NOW) is None


def test_relative_symlink_climbing_out_is_404(root: Path) -> None:
    os.symlink("../outside.txt", root / "sub" / "up.txt")
    assert StaticFiles(str(root)).lookup("/sub/up.txt", NOW) is None


def test_index_symlinked_outside_is_404(root: Path) -> None:
    os.symlink(root.parent / "outside.txt", root / "empty" / "index.html")
    assert StaticFiles(str(root)).lookup("/empty/", NOW) is None


def test_symlinks_inside_the_root_are_served(root: Path) -> None:
    os.symlink("a.txt", root / "alias.txt")
    os.symlink(root / "sub", root / "subalias")
    files = StaticFiles(str(root))
    e = files.lookup("/alias.txt", NOW)
    assert e is not None and e.body == TEXT
    s = files.lookup("/subalias/index.html", NOW)
    assert s is not None and s.body == b"sub index"


def test_a_fifo_is_404_without_blocking(root: Path) -> None:
    os.mkfifo(root / "pipe")
    os.mkfifo(root / "empty" / "index.html")
    files = StaticFiles(str(root))
    found: list[FileEntry | None] = []

    def look() -> None:
        found.append(files.lookup("/pipe", NOW))
        found.append(files.lookup("/empty/", NOW))

    t = threading.Thread(target=look, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():
        # Unblock the thread (a writer opens the FIFO) before failing.
        for fifo in (root / "pipe", root / "empty" / "index.html"):
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("lookup blocked on a FIFO")
    assert found == [None, None]


def test_a_device_is_404(root: Path) -> None:
    os.symlink("/dev/null", root / "null")
    assert StaticFiles(str(root)).lookup("/null", NOW) is None


# ------------------------------------------------------------ the cache


def test_a_changed_file_is_served_fresh_after_revalidate(root: Path) -> None:
    files = StaticFiles(str(root), revalidate=1.0)
    old = files.lookup("/a.txt", NOW)
    assert old is not None
    (root / "a.txt").write_bytes(b"new contents")
    assert files.lookup("/a.txt", NOW + 0.5) is old  # not re-checked yet
    new = files.lookup("/a.txt", NOW + 1.0)
    assert new is not None and new.body == b"new contents"
    assert new.version != old.version and new.etag != old.etag


def test_an_unchanged_file_keeps_its_entry(root: Path) -> None:
    files = StaticFiles(str(root))
    first = files.lookup("/a.txt", NOW)
    assert files.lookup("/a.txt", NOW + 5) is first


def test_a_deleted_file_is_404_after_revalidate(root: Path) -> None:
    files = StaticFiles(str(root))
    assert files.lookup("/a.txt", NOW) is not None
    (root / "a.txt").unlink()
    assert files.lookup("/a.txt", NOW + 0.1) is not None
    assert files.lookup("/a.txt", NOW + 1.1) is None


def test_a_symlink_swapped_outside_is_404_after_revalidate(root: Path) -> None:
    os.symlink("a.txt", root / "l.txt")
    files = StaticFiles(str(root))
    assert files.lookup("/l.txt", NOW) is not None
    (root / "l.txt").unlink()
    os.symlink(root.parent / "outside.txt", root / "l.txt")
    assert files.lookup("/l.txt", NOW + 2) is None


def test_the_cache_is_bounded(root: Path) -> None:
    for i in range(5):
        (root / f"f{i}").write_bytes(b"x")
    files = StaticFiles(str(root), max_entries=3)
    entries = [files.lookup(f"/f{i}", NOW) for i in range(5)]
    # f0 and f1 were evicted (read again: new entries), f4 was kept.
    assert files.lookup("/f0", NOW) is not entries[0]
    assert files.lookup("/f4", NOW) is entries[4]


# ------------------------------------------------------------ plans


def test_get_200_full(root: Path) -> None:
    files = StaticFiles(str(root))
    plan = get(files, "/a.txt")
    assert (plan.status, plan.full, plan.head_only) == (200, True, False)
    assert plan.entry is not None and plan.body is plan.entry.body  # no copy
    resp, body = judge(plan)
    assert resp.status_code == 200 and body == TEXT
    f = fields(resp)
    assert f[b"content-length"] == b"10"
    assert f[b"content-type"] == b"text/plain; charset=utf-8"
    assert f[b"accept-ranges"] == b"bytes"
    assert f[b"etag"].startswith(b'"') and f[b"last-modified"] == http_date(NOW - 100).encode()


def test_head_has_the_headers_of_get_and_no_body(root: Path) -> None:
    files = StaticFiles(str(root))
    g = get(files, "/a.txt")
    h = get(files, "/a.txt", method="HEAD")
    assert (h.status, h.headers, h.body, h.head_only, h.full) == (200, g.headers, b"", True, False)
    resp, body = judge(h, "HEAD")
    assert resp.status_code == 200 and body == b""


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_404_plan(root: Path, method: str) -> None:
    plan = get(StaticFiles(str(root)), "/missing", method=method)
    assert plan.status == 404 and plan.entry is None and not plan.full
    resp, body = judge(plan, method)
    assert resp.status_code == 404
    assert body == (b"" if method == "HEAD" else bytes(plan.body)) and (method == "HEAD" or body)


def test_empty_file(root: Path) -> None:
    resp, body = judge(get(StaticFiles(str(root)), "/zero.txt"))
    assert resp.status_code == 200 and body == b"" and fields(resp)[b"content-length"] == b"0"


# ------------------------------------------------------------ conditional requests


def etag(root: Path) -> str:
    e = StaticFiles(str(root)).lookup("/a.txt", NOW)
    assert e is not None
    return e.etag


@pytest.mark.parametrize("inm", [
    "{etag}", "W/{etag}", '"x", {etag}', '"a,b", {etag}', "*", ' {etag} ',
])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_if_none_match_gives_304(root: Path, inm: str, method: str) -> None:
    plan = get(StaticFiles(str(root)), "/a.txt", "If-None-Match: " + inm.format(etag=etag(root)),
               method=method)
    assert plan.status == 304 and plan.body == b"" and not plan.full
    resp, body = judge(plan, method)
    assert resp.status_code == 304 and body == b""
    f = fields(resp)
    assert f[b"etag"] == etag(root).encode() and b"content-length" not in f


@pytest.mark.parametrize("inm", ['"other"', 'W/"other"', "garbage", '"unterminated'])
def test_if_none_match_not_matching_gives_200(root: Path, inm: str) -> None:
    # If-Modified-Since is ignored when If-None-Match is there (RFC 9110 13.1.3).
    plan = get(StaticFiles(str(root)), "/a.txt", "If-None-Match: " + inm,
               "If-Modified-Since: " + http_date(NOW))
    assert plan.status == 200 and plan.full


@pytest.mark.parametrize(("since", "status"), [
    (NOW - 100, 304), (NOW - 50, 304), (NOW - 101, 200), (NOW + 1000, 200),
])
def test_if_modified_since(root: Path, since: float, status: int) -> None:
    """A date at or after Last-Modified: 304; before: 200; in the future
    (no date the server gave): ignored."""
    plan = get(StaticFiles(str(root)), "/a.txt", "If-Modified-Since: " + http_date(since))
    assert plan.status == status
    resp, _ = judge(plan)
    assert resp.status_code == status


@pytest.mark.parametrize("value", ["yesterday", "", "Sun, 06 Nov 1994 08:49:37 UTC"])
def test_unparseable_if_modified_since_is_ignored(root: Path, value: str) -> None:
    assert get(StaticFiles(str(root)), "/a.txt", "If-Modified-Since: " + value).status == 200


# ------------------------------------------------------------ ranges


@pytest.mark.parametrize(("rng", "first", "last"), [
    ("bytes=0-4", 0, 4),
    ("bytes=5-", 5, 9),
    ("bytes=-3", 7, 9),
    ("bytes=-100", 0, 9),
    ("bytes=2-1000", 2, 9),
    ("bytes=9-9", 9, 9),
    ("BYTES=1-2", 1, 2),
    ("bytes= 1 - 2 ", 1, 2),
    ("bytes=0-" + "9" * 40, 0, 9),
])
def test_a_single_range_gives_206(root: Path, rng: str, first: int, last: int) -> None:
    files = StaticFiles(str(root))
    plan = get(files, "/a.txt", "Range: " + rng)
    assert plan.status == 206 and not plan.full
    # A view of the entry's bytes, not a copy.
    assert isinstance(plan.body, memoryview) and plan.entry is not None
    assert plan.body.obj is plan.entry.body
    resp, body = judge(plan)
    assert resp.status_code == 206
    assert body == TEXT[first:last + 1]
    f = fields(resp)
    assert f[b"content-range"] == f"bytes {first}-{last}/10".encode()
    assert f[b"content-length"] == str(last - first + 1).encode()


@pytest.mark.parametrize("rng", ["bytes=10-", "bytes=10-20", "bytes=-0", "bytes=" + "9" * 30 + "-"])
def test_an_unsatisfiable_range_gives_416(root: Path, rng: str) -> None:
    plan = get(StaticFiles(str(root)), "/a.txt", "Range: " + rng)
    assert plan.status == 416
    resp, _ = judge(plan)
    assert resp.status_code == 416 and fields(resp)[b"content-range"] == b"bytes */10"


def test_any_range_of_an_empty_file_is_416(root: Path) -> None:
    assert get(StaticFiles(str(root)), "/zero.txt", "Range: bytes=0-").status == 416


@pytest.mark.parametrize("rng", [
    "bytes=0-1,3-4",     # several ranges: served whole (documented)
    "bytes=a-b", "bytes=5-2", "bytes=-", "bytes=", "items=0-1", "bytes 0-1", "0-1",
])
def test_ignored_ranges_give_200(root: Path, rng: str) -> None:
    plan = get(StaticFiles(str(root)), "/a.txt", "Range: " + rng)
    assert plan.status == 200 and plan.full


def test_range_on_head_is_ignored(root: Path) -> None:
    """RFC 9110 14.2: Range is defined for GET only."""
    assert get(StaticFiles(str(root)), "/a.txt", "Range: bytes=0-1", method="HEAD").status == 200


@pytest.mark.parametrize(("if_range", "status"), [
    ("{etag}", 206),
    ('"other"', 200),
    ("W/{etag}", 200),           # weak tags never match (strong comparison)
    ("{date}", 206),
    ("{older}", 200),
    ("not a date", 200),
])
def test_if_range(root: Path, if_range: str, status: int) -> None:
    value = if_range.format(etag=etag(root), date=http_date(NOW - 100), older=http_date(NOW - 200))
    plan = get(StaticFiles(str(root)), "/a.txt", "Range: bytes=0-1", "If-Range: " + value)
    assert plan.status == status
    judge(plan)


def test_if_none_match_comes_before_range(root: Path) -> None:
    plan = get(StaticFiles(str(root)), "/a.txt", "Range: bytes=0-1",
               "If-None-Match: " + etag(root))
    assert plan.status == 304
