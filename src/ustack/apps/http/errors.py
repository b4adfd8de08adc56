"""``HttpError``: a request the server answers with an error status.

Raised by the parser (``request``) and the chunked decoder (``chunked``);
``response.error_response`` turns it into bytes.  ``name`` is the counter a
server bumps for it (``http_bad_request_line``...), so an operator can tell
*why* 400s went out, as the stack's drop reasons do for packets.
"""

from __future__ import annotations


class HttpError(Exception):
    """``status`` and a short ``reason`` for the body; ``close``: the
    connection cannot carry another request (the framing is lost or the
    rest of the message was not read); ``headers`` go into the response
    (``Allow`` for 405)."""

    status: int
    reason: str
    close: bool
    headers: list[tuple[str, str]]
    name: str

    def __init__(self, status: int, reason: str, *, close: bool = True,
                 headers: list[tuple[str, str]] | None = None, name: str = "") -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.close = close
        self.headers = [] if headers is None else headers
        self.name = name or f"http_status_{status}"
