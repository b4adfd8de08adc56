"""``Socket.makefile``: file objects over a socket, as the standard library
makes them (``socket.SocketIO`` under io's buffered and text layers).

Each file object holds a reference that keeps the socket open after its
close(), until the last file object is closed too (``_decref_socketios``,
the name ``SocketIO`` calls).
"""

from __future__ import annotations

import io
import socket as _std
from typing import Any, cast

from ustack.api.socket.close import Closing


class FileObjects(Closing):
    """makefile and the references its file objects hold."""

    def makefile(self, mode: str = "r", buffering: int | None = None, *,
                 encoding: str | None = None, errors: str | None = None,
                 newline: str | None = None) -> Any:
        """File objects over the socket, as ``socket.socket.makefile``."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        writing = "w" in mode
        reading = "r" in mode or not writing
        binary = "b" in mode
        rawmode: Any = ("r" if reading else "") + ("w" if writing else "")
        raw = _std.SocketIO(cast(Any, self), rawmode)
        self._io_refs += 1
        if buffering is None or buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if not binary:
                raise ValueError("unbuffered streams must be binary")
            return raw
        buffer: Any
        if reading and writing:
            buffer = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffer = io.BufferedReader(raw, buffering)
        else:
            buffer = io.BufferedWriter(raw, buffering)
        if binary:
            return buffer
        text = io.TextIOWrapper(buffer, encoding, errors, newline)
        text.mode = mode  # type: ignore[misc]
        return text

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed and self._io_refs <= 0:
            self._real_close()
