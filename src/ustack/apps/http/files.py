"""Static files: request paths to files under a root, and the response
plan for a GET or HEAD of one.

Nothing outside the root is ever read: the path (already normalised by
``target``) is joined to the root, every symlink resolved
(``os.path.realpath``) and the result must be the root or under it; the file
is then opened with ``O_NOFOLLOW`` and checked again with ``fstat``, so a
symlink or a FIFO swapped in after the check is not followed or waited on.
Only regular files are served; a directory gives its index file (with or
without a trailing slash: no redirect) or 404, never a listing.  Hidden
files are served like any other.

Entries are cached by path and re-validated with ``stat`` at most once per
``revalidate`` seconds: a changed file is served fresh within that time.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from typing import Final

from ustack.apps.http.conditional import (
    UNSATISFIABLE,
    etag_matches,
    if_range_matches,
    parse_range,
)
from ustack.apps.http.request import Request
from ustack.apps.http.response import http_date, parse_http_date

_OPEN_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEXT_PLAIN: Final = "text/plain; charset=utf-8"
_NOT_FOUND: Final = b"404 Not Found\n"
_UNSATISFIABLE: Final = b"416 Range Not Satisfiable\n"


def content_type(path: str) -> str:
    """From the file name (``mimetypes``); text/* is declared UTF-8."""
    kind = mimetypes.guess_type(path, strict=False)[0]
    if kind is None:
        return "application/octet-stream"
    return f"{kind}; charset=utf-8" if kind.startswith("text/") else kind


class FileEntry:
    """One regular file as served: its contents, read once, and its
    validators.  ``version`` (inode, size, mtime_ns) changes when the file
    does; the server rebuilds what it made from the entry then."""

    __slots__ = ("body", "content_type", "etag", "full_plan", "last_modified", "mtime", "path",
                 "size", "version")

    def __init__(self, path: str, st: os.stat_result, body: bytes) -> None:
        self.path = path
        self.size = len(body)
        self.mtime = st.st_mtime
        self.version = (st.st_ino, self.size, st.st_mtime_ns)
        # A strong validator (RFC 9110 8.8.3): it changes with the bytes,
        # as far as inode, size and nanosecond mtime tell.
        self.etag = f'"{st.st_ino:x}-{self.size:x}-{st.st_mtime_ns:x}"'
        self.content_type = content_type(path)
        self.last_modified = http_date(st.st_mtime)
        self.body = body
        # The plain 200 to a GET (no conditions, no Range), made once:
        # what a keep-alive client asks again and again.
        self.full_plan: Plan | None = None


class Plan:
    """What to answer: ``status``, ``headers`` (without Server, Date and
    Connection: ``response.build_head`` adds them) and ``body``.
    ``head_only``: a HEAD request, the headers of the GET and no body.
    ``full``: a 200 with the whole file to a GET, which the server may send
    from its pre-built buffers; everything else goes the general path."""

    __slots__ = ("body", "entry", "full", "head_only", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes | memoryview,
                 entry: FileEntry | None, *, full: bool = False,
                 head_only: bool = False) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.entry = entry
        self.full = full
        self.head_only = head_only


def _read(path: str) -> FileEntry | None:
    """The regular file at ``path`` (already resolved), or None."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:  # gone, a symlink swapped in (ELOOP), no permission
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, max(1 << 20, st.st_size + 1))
            if not chunk:
                break
            chunks.append(chunk)
        return FileEntry(path, st, b"".join(chunks))
    except OSError:
        return None
    finally:
        os.close(fd)


class StaticFiles:
    """The files under ``root``.  ``max_entries`` bounds the cache (the
    oldest entry goes first); every file is read whole and kept."""

    __slots__ = ("_cache", "index", "max_entries", "revalidate", "root")

    def __init__(self, root: str, *, index: str = "index.html", revalidate: float = 1.0,
                 max_entries: int = 10000) -> None:
        real = os.path.realpath(os.path.abspath(root))
        if not os.path.isdir(real):
            raise ValueError(f"document root {root!r} is not a directory")
        self.root = real
        self.index = index
        self.revalidate = revalidate
        self.max_entries = max_entries
        # path -> (entry, time of the last stat)
        self._cache: dict[str, tuple[FileEntry, float]] = {}

    def _inside(self, real: str) -> bool:
        return os.path.commonpath([self.root, real]) == self.root

    def resolve(self, path: str) -> tuple[str, os.stat_result] | None:
        """The real path and stat of the regular file ``path`` names under
        the root (a directory's index file), or None."""
        try:
            real = os.path.realpath(os.path.join(self.root, path.lstrip("/")))
            if not self._inside(real):
                return None
            st = os.stat(real)
            if stat.S_ISDIR(st.st_mode):
                real = os.path.realpath(os.path.join(real, self.index))
                if not self._inside(real):
                    return None
                st = os.stat(real)
            elif path.endswith("/"):
                return None  # "file/" names no file (ENOTDIR)
        except (OSError, ValueError):  # ValueError: a NUL in the path
            return None
        # stat before open: a FIFO or a device is never opened.
        if not stat.S_ISREG(st.st_mode):
            return None
        return real, st

    def lookup(self, path: str, now: float) -> FileEntry | None:
        """The file for the normalised request ``path``, None for a 404."""
        cached = self._cache.get(path)
        if cached is not None and now - cached[1] < self.revalidate:
            return cached[0]
        found = self.resolve(path)
        if found is None:
            self._cache.pop(path, None)
            return None
        real, st = found
        if cached is not None:
            old = cached[0]
            if old.path == real and old.version == (st.st_ino, st.st_size, st.st_mtime_ns):
                self._cache[path] = (old, now)
                return old
        entry = _read(real)
        if entry is None:
            self._cache.pop(path, None)
            return None
        if path not in self._cache and len(self._cache) >= self.max_entries:
            del self._cache[next(iter(self._cache))]
        self._cache[path] = (entry, now)
        return entry

    def respond(self, req: Request, entry: FileEntry | None, now_wall: float) -> Plan:
        """The answer to a GET or HEAD of ``entry`` (None: 404)."""
        head_only = req.method == "HEAD"
        if entry is None:
            return Plan(404, [("Content-Type", _TEXT_PLAIN),
                              ("Content-Length", str(len(_NOT_FOUND)))],
                        b"" if head_only else _NOT_FOUND, None, head_only=head_only)
        validators = [("Last-Modified", entry.last_modified), ("ETag", entry.etag)]
        # RFC 9110 13.2.2: If-None-Match first; If-Modified-Since only
        # without it (13.1.3).  Weak comparison for If-None-Match (13.1.2).
        inm = req.header(b"if-none-match")
        if inm is not None:
            if etag_matches(inm, entry.etag, weak=True):
                return Plan(304, validators, b"", entry, head_only=head_only)
        else:
            ims = req.header(b"if-modified-since")
            since = parse_http_date(ims) if ims is not None else None
            # A date in the future is no date the client got from us.
            if since is not None and since <= now_wall and float(int(entry.mtime)) <= since:
                return Plan(304, validators, b"", entry, head_only=head_only)
        size = entry.size
        rng = req.header(b"range")
        # RFC 9110 14.2: Range is defined for GET only; If-Range that does
        # not name the current representation means "send it whole".
        if rng is not None and req.method == "GET":
            if_range = req.header(b"if-range")
            if if_range is None or if_range_matches(if_range, entry.etag, entry.mtime):
                span = parse_range(rng, size)
                if span == UNSATISFIABLE:
                    return Plan(416, [("Content-Type", _TEXT_PLAIN),
                                      ("Content-Length", str(len(_UNSATISFIABLE))),
                                      ("Content-Range", f"bytes */{size}")],
                                _UNSATISFIABLE, entry)
                if span is not None:
                    first, last = span
                    return Plan(206, [("Content-Type", entry.content_type),
                                      ("Content-Length", str(last - first + 1)),
                                      ("Content-Range", f"bytes {first}-{last}/{size}"),
                                      *validators, ("Accept-Ranges", "bytes")],
                                memoryview(entry.body)[first:last + 1], entry)
        if not head_only and entry.full_plan is not None:
            return entry.full_plan
        headers = [("Content-Type", entry.content_type), ("Content-Length", str(size)),
                   *validators, ("Accept-Ranges", "bytes")]
        if head_only:
            return Plan(200, headers, b"", entry, head_only=True)
        entry.full_plan = plan = Plan(200, headers, entry.body, entry, full=True)
        return plan
