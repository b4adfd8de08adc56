"""The control socket through which ``ustack stats`` and ``ustack ss`` read
a running stack.

A Unix stream socket at ``/run/ustack/NAME.sock``.  A client sends one
request line and gets one JSON document back, then the socket is closed
(``reports.py`` says what a request is and what it answers); a client that
sends nothing for half a second gets the ``stats`` report, as every client
did before requests existed.

It is served from the Stack's own loop (``Stack.add_reader`` for the
listening socket), so reading the stack needs no lock and no thread.  So
that no client can hold that loop up, a client's socket is never blocked
on: it is read and written without blocking, each time the listening
socket is readable or a short Stack timer fires (timers rather than a
reader per client, since a driver such as ``ustack.aio`` registers the
readers once, when it starts).  A request is at most ``MAX_REQUEST``
bytes; a client has ``REQUEST_TIME`` to send it and ``REPLY_TIME`` to take
the answer, and at most ``MAX_CLIENTS`` are served at once (the next are
closed at once): a slow or silent client costs the stack a few
non-blocking calls every ``PUMP_INTERVAL``, and a dead one nothing.  An
``ss`` answer about many endpoints is made a step of ``STEP_TIME`` at a
time (reports.SsAnswer), the answers held by all clients together bounded
by ``MAX_HELD_BYTES`` (one that would pass it is cut, and says so): a
stack with 100,000 connections goes on sending ACKs while it answers.

Workers: the stack ``NAME`` run as N worker processes serves one socket
per worker, ``NAME@K.sock``; ``running_names`` lists such a group once, as
``NAME``, and ``query_all`` asks each of its members.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
from collections.abc import Callable
from typing import Any, Final

from ustack.cli import reports
from ustack.stack import Stack

RUN_DIR = os.environ.get("USTACK_RUN_DIR", "/run/ustack")

MAX_REQUEST: Final = 4096
REQUEST_TIME: Final = 2.0  # to send a whole request line
QUIET_TIME: Final = 0.5  # nothing sent by then: the stats report (the old protocol)
REPLY_TIME: Final = 5.0  # to take the whole answer
MAX_CLIENTS: Final = 16
PUMP_INTERVAL: Final = 0.005
# The answers held at once, all clients together: one that would take more
# is cut, and says so (reports.SsAnswer).
MAX_HELD_BYTES = 32 << 20
# After an accept() that failed for want of a file descriptor (EMFILE) the
# listener stays readable: it is left alone this long rather than spun on.
ACCEPT_BACKOFF: Final = 0.1

# NAME or NAME@K: worker K of the stack NAME.
_WORKER = re.compile(r"^(?P<base>[^@]+)@(?P<k>\d+)$")


class ControlError(Exception):
    """One human line: why the control socket could not be used."""


class RequestRefused(ControlError):
    """The stack answered, with an error: the request was not understood."""


def check_name(name: str) -> str:
    """``name`` if it can name a control socket (a file in ``RUN_DIR``),
    else ControlError: checked before a stack is brought up under it.  A
    worker's name is its stack's and its number, ``NAME@K``; '@' is taken
    for that."""
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise ControlError(f"--name {name!r}: a stack's name is a file name in {RUN_DIR} "
                           "(not empty, no '/')")
    if "@" in name and _WORKER.match(name) is None:
        raise ControlError(f"--name {name!r}: '@' is only for a worker's number "
                           "(NAME@K names worker K of the stack NAME)")
    return name


def group_of(name: str) -> str:
    """The stack a socket name belongs to: ``NAME`` for ``NAME@K``."""
    m = _WORKER.match(name)
    return m.group("base") if m else name


def socket_path(name: str) -> str:
    return os.path.join(RUN_DIR, f"{check_name(name)}.sock")


def report(stack: Stack) -> dict[str, Any]:
    """The ``stats`` report (kept here for its callers: reports.stats_report)."""
    return reports.stats_report(stack)


class _Client:
    """One accepted control connection: its request being read, then its
    answer being written, without blocking."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.request = b""
        self.job: reports.SsAnswer | None = None  # an ss answer being built
        self.reply: memoryview | None = None  # the piece being written ...
        self.pending: list[bytes] = []  # ... and the pieces after it
        self.started = -1.0  # the stack's time at the first timer: deadlines count from it
        self.reply_by = 0.0


class ControlServer:
    """The listening control socket of the stack ``name``; ControlError,
    one line naming the socket's path, when it cannot be made."""

    def __init__(self, stack: Stack, name: str,
                 more_counters: Callable[[], dict[str, int]] | None = None) -> None:
        self.stack = stack
        # An application's own counters (``ustack serve``'s Http*), listed
        # with the stack's.
        self.more_counters = more_counters
        self.path = socket_path(name)
        self._clients: list[_Client] = []
        self._pumping = False
        self._until = 0.0  # when this round's STEP_TIME for ss answers ends
        self._closed = False
        self._accepting = True
        self._inode = (0, 0)
        try:
            os.makedirs(RUN_DIR, exist_ok=True)
            _check_free(name)
            self.sock = self._listen(name)
        except OSError as e:
            raise ControlError(f"control socket {self.path}: {e.strerror or e}") from None
        self.sock.setblocking(False)
        stack.add_reader(self.sock.fileno(), self._accept)

    def _listen(self, name: str) -> socket.socket:
        """A listening socket at ``self.path``.  Bound and listening under a
        name of its own first, then linked into place: a client that finds
        ``path`` finds it listening (one that probed between a bind and a
        listen would take it for stale and remove it), and a stack that
        raced this one to the name keeps it (link, unlike rename, does not
        replace)."""
        tmp = os.path.join(RUN_DIR, f".{name}.{os.getpid()}.{id(self)}.tmp")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            sock.bind(tmp)
            sock.listen(8)
            st = os.stat(tmp)  # the inode the name will be a link to
            self._inode = (st.st_dev, st.st_ino)
            try:
                for _ in range(2):
                    try:
                        os.link(tmp, self.path)
                        break
                    except FileExistsError:
                        if _alive(self.path):
                            raise ControlError(f"a stack named {name!r} is already running "
                                               f"({self.path})") from None
                        _remove_stale(self.path)
                else:
                    raise ControlError(f"control socket {self.path}: taken and freed "
                                       "over and over: try again")
            finally:
                os.unlink(tmp)
        except BaseException:
            sock.close()
            raise
        return sock

    def _accept(self) -> None:
        for _ in range(MAX_CLIENTS):
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:  # no more
                break
            except OSError:
                # EMFILE, ENFILE, ENOBUFS: the connection stays queued and the
                # listener readable, so the loop would come straight back
                # here: leave it alone for a while.
                self._pause_accepting()
                break
            if len(self._clients) >= MAX_CLIENTS:
                conn.close()
                continue
            conn.setblocking(False)
            self._clients.append(_Client(conn))
        self._pump_all(None)

    def _pause_accepting(self) -> None:
        if self._accepting:
            self._accepting = False
            self.stack.remove_reader(self.sock.fileno())
            self.stack.call_at(self.stack.now + ACCEPT_BACKOFF, self._resume_accepting)

    def _resume_accepting(self, now: float) -> None:
        if not self._closed and not self._accepting:
            self._accepting = True
            self.stack.add_reader(self.sock.fileno(), self._accept)
            self._accept()

    def _pump_all(self, now: float | None) -> None:
        """Move every client on as far as it goes without blocking; while
        any is left, come back after PUMP_INTERVAL (one timer for all).
        The ss answers being built share one STEP_TIME and MAX_HELD_BYTES."""
        if self._closed:
            return
        self._until = reports.clock() + reports.STEP_TIME
        self._clients = [c for c in self._clients if not self._pump(c, now)]
        if self._clients and not self._pumping:
            self._pumping = True
            self.stack.call_at(self.stack.now + PUMP_INTERVAL, self._on_timer)

    def _on_timer(self, now: float) -> None:
        self._pumping = False
        self._pump_all(now)

    def _pump(self, c: _Client, now: float | None) -> bool:
        """One step for ``c``; True when it is done (and closed)."""
        if now is not None and c.started < 0:
            c.started = now
        try:
            if c.reply is None and c.job is None:
                done_reading = self._read(c, now)
                if not done_reading:
                    return False
            if c.job is not None:
                if now is None:
                    return False  # steps from the timer only (its ``now``: _read)
                job = c.job
                room = MAX_HELD_BYTES - sum(_held(o) for o in self._clients if o is not c)
                if not job.step(now, self._until, room):
                    return False
                c.job = None
                c.pending = job.chunks
                c.reply = memoryview(c.pending.pop(0))
            return self._write(c, now)
        except OSError:
            c.sock.close()
            return True

    def _read(self, c: _Client, now: float | None) -> bool:
        """Read what has come of the request; True once the answer is made
        (or the client given up on, closed, with no answer)."""
        eof = False
        while b"\n" not in c.request and len(c.request) < MAX_REQUEST:
            try:
                chunk = c.sock.recv(MAX_REQUEST - len(c.request))
            except BlockingIOError:
                break
            if not chunk:
                eof = True
                break
            c.request += chunk
        if now is None:
            # Answered from the timer, whose ``now`` is the clock's: the
            # reader runs after the loop's wait, when the stack's time is
            # that of the poll before it (timers and lastsnd would be off).
            return False
        line, newline, _ = c.request.partition(b"\n")
        waited = now - c.started
        if not newline and not eof and len(c.request) < MAX_REQUEST:
            if c.request and waited < REQUEST_TIME:
                return False
            if not c.request and waited < QUIET_TIME:
                return False
            if c.request:  # a partial line, never finished: given up on
                c.sock.close()
                c.reply = memoryview(b"")
                return True
        if eof and not c.request:
            c.sock.close()  # gone before asking
            c.reply = memoryview(b"")
            return True
        if len(c.request) >= MAX_REQUEST and not newline:
            doc: dict[str, Any] | reports.SsAnswer = {
                "error": f"request: longer than {MAX_REQUEST} bytes"}
        else:
            try:
                doc = reports.start(self.stack, line, self.more_counters)
            except Exception as e:  # a report that fails must not take the stack down with it
                doc = {"error": f"the stack could not answer: {type(e).__name__}: {e}"}
        if isinstance(doc, reports.SsAnswer):
            c.job = doc
        else:
            c.reply = memoryview(json.dumps(doc).encode() + b"\n")
        return True

    def _write(self, c: _Client, now: float | None) -> bool:
        reply = c.reply
        if reply is None:
            return False
        if c.sock.fileno() < 0:
            return True
        while True:
            if not reply:
                if not c.pending:
                    break
                reply = memoryview(c.pending.pop(0))
            try:
                n = c.sock.send(reply)
            except BlockingIOError:
                break
            reply = reply[n:]
        c.reply = reply
        if not reply and not c.pending:
            c.sock.close()
            return True
        if now is not None:
            if not c.reply_by:
                c.reply_by = now + REPLY_TIME
            elif now > c.reply_by:  # it does not read: cut off
                c.sock.close()
                return True
        return False

    def close(self) -> None:
        self._closed = True
        for c in self._clients:
            c.sock.close()
        self._clients = []
        if self._accepting:
            self.stack.remove_reader(self.sock.fileno())
        # The name goes before the socket closes: a client never finds it
        # refusing (and takes it for stale).  Only our own socket file: once
        # ours was taken for stale and removed, the name may be another's.
        with contextlib.suppress(OSError):
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        self.sock.close()


def _remove_stale(path: str) -> None:
    """Remove the socket file ``path`` whose stack is gone, unless it was
    replaced meanwhile (a new stack came up under the name)."""
    with contextlib.suppress(OSError):
        before = os.stat(path)
        if _alive(path):
            return
        after = os.stat(path)
        # The inode number alone does not say "the same file": a stack that
        # came up meanwhile may have been given the number the gone one
        # freed.  Its change time differs (ns): a file linked or unlinked
        # in between is left alone, to be looked at again next time.
        if ((before.st_dev, before.st_ino, before.st_ctime_ns)
                == (after.st_dev, after.st_ino, after.st_ctime_ns)):
            os.unlink(path)


def _held(c: _Client) -> int:
    """The bytes of answer ``c`` holds (being built, or left to write)."""
    if c.job is not None:
        return c.job.nbytes
    return (len(c.reply) if c.reply is not None else 0) + sum(len(p) for p in c.pending)


def _alive(path: str) -> bool:
    """Whether a stack listens at ``path``.  Asked without blocking: a
    stack whose listen backlog is full (stalled, or busy) makes connect()
    wait (EAGAIN when it may not) and is alive; only a refusal or no file
    at all says its stack is gone."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(path)
        return True
    except OSError as e:
        return e.errno not in (errno.ECONNREFUSED, errno.ENOENT)
    finally:
        probe.close()


def _check_free(name: str) -> None:
    """ControlError unless the stack ``name`` may be brought up beside
    those running: ``NAME`` and its workers ``NAME@K`` would be merged into
    one by ``members``, so neither is taken while the other runs."""
    base = group_of(name)
    clash = []
    for other in _socket_names():
        if group_of(other) != base or other == name:
            continue
        if other == base or name == base:  # NAME beside NAME@K, or NAME@K beside NAME
            clash.append(other)
    if clash:
        raise ControlError(f"--name {name!r}: the stack {base!r} is already running "
                           f"as {', '.join(clash)} ({RUN_DIR})")


def _socket_names() -> list[str]:
    """The names of the control sockets that answer; a socket file nobody
    listens on (its stack was killed with SIGKILL) is removed."""
    try:
        files = sorted(f for f in os.listdir(RUN_DIR) if f.endswith(".sock"))
    except FileNotFoundError:
        return []
    names = []
    for f in files:
        path = os.path.join(RUN_DIR, f)
        if _alive(path):
            names.append(f[:-5])
        else:
            _remove_stale(path)
    return names


def running_names() -> list[str]:
    """Names of the stacks whose control socket answers; the workers of
    one stack (``NAME@K``) are listed once, as ``NAME``."""
    names: list[str] = []
    for n in _socket_names():
        g = group_of(n)
        if g not in names:
            names.append(g)
    return names


def members(name: str) -> list[str]:
    """The sockets that make up the stack ``name``: ``name`` itself, or
    (named ``NAME``) its workers ``NAME@K`` in the order of K."""
    check_name(name)
    if _WORKER.match(name):
        return [name]
    workers = [n for n in _socket_names() if group_of(n) == name and n != name]
    workers.sort(key=lambda n: int(n.rpartition("@")[2]))
    return ([name] if os.path.exists(socket_path(name)) else []) + workers


def pick_name(name: str | None) -> str:
    """``name``, or the only stack running (ControlError otherwise)."""
    if name is not None:
        return check_name(name)
    names = running_names()
    if not names:
        raise ControlError(f"no running stack found (no socket in {RUN_DIR})")
    if len(names) > 1:
        raise ControlError(f"several stacks are running ({', '.join(names)}): use --name")
    return names[0]


def ask(name: str, request: dict[str, Any] | str = "stats",
        timeout: float = 5.0) -> dict[str, Any]:
    """The answer of the one control socket ``name`` to ``request`` (a JSON
    object, or words); ControlError if there is none or it says error."""
    path = socket_path(name)
    line = request if isinstance(request, str) else json.dumps(request)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(line.encode() + b"\n")
        chunks = []
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            chunks.append(b)
    except FileNotFoundError:
        raise ControlError(f"no running stack named {name!r} ({path} not found)") from None
    except TimeoutError:
        raise ControlError(f"stack {name!r} did not answer in {timeout:g} s") from None
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.ENOENT):
            raise ControlError(f"stack {name!r} is not running (stale {path})") from None
        raise ControlError(f"cannot read stack {name!r}: {e.strerror or e}") from None
    finally:
        s.close()
    try:
        result = json.loads(b"".join(chunks))
    except ValueError:
        raise ControlError(f"stack {name!r} sent no complete answer") from None
    if not isinstance(result, dict):
        raise ControlError(f"stack {name!r} sent no complete answer")
    if "error" in result:
        raise RequestRefused(str(result["error"]))
    return result


def query_all(name: str | None, request: dict[str, Any] | str = "stats"
              ) -> list[tuple[str, dict[str, Any]]]:
    """(socket name, answer) of each member of the stack ``name`` (or of the
    only one running); a worker that is gone is left out, but not all."""
    name = pick_name(name)
    found = members(name)
    if not found:
        raise ControlError(f"no running stack named {name!r} "
                           f"({socket_path(name)} not found)")
    out: list[tuple[str, dict[str, Any]]] = []
    last: ControlError | None = None
    for member in found:
        try:
            out.append((member, ask(member, request)))
        except RequestRefused:
            raise
        except ControlError as e:
            last = e
    if not out:
        assert last is not None
        raise last
    return out


def query(name: str | None) -> dict[str, Any]:
    """The stats report of the running stack ``name`` (or the only one
    running); the workers of a group merged (``merge_stats``)."""
    return merged(query_all(name, "stats"))


def merged(answers: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One stats report for a stack's answers: its own, or its workers' merged."""
    return answers[0][1] if len(answers) == 1 else merge_stats(answers)


def merge_stats(answers: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The stats reports of a stack's workers as one: counters and TCP
    states summed, interfaces listed together; ``workers`` keeps each."""
    counters: dict[str, int] = {}
    states: dict[str, int] = {}
    interfaces: list[Any] = []
    for _, rep in answers:
        for k, v in rep.get("counters", {}).items():
            counters[k] = counters.get(k, 0) + int(v)
        for k, v in rep.get("tcp", {}).items():
            states[k] = states.get(k, 0) + int(v)
        interfaces += rep.get("interfaces", [])
    return {
        "pids": [rep.get("pid") for _, rep in answers],
        "counters": counters,
        "tcp": states,
        "interfaces": interfaces,
        "workers": {member: rep for member, rep in answers},
    }
