"""What can go wrong in a load run, said at the TCP level: each error kind
with its unit (a connection, or a request) and a one-line explanation.

A load tool that prints "socket errors: read 12" leaves its user to guess;
ustack owns the TCP under the generator, so each failure is classified by
what TCP saw: the SYN answered by RST, the SYN never answered (and how
many times it was sent), RST with a request outstanding, the server's FIN
before the response was whole, bytes that are not HTTP.
"""

from __future__ import annotations

import errno
from typing import Final

# Connections that never carried a request (unit: connection).
REFUSED: Final = "refused"
SYN_TIMEOUT: Final = "syn_timeout"
NO_PORT: Final = "no_port"
CONNECT_FAILED: Final = "connect_failed"
RESET_IDLE: Final = "reset_idle"
# Requests sent that got no whole response (unit: request).
RESET: Final = "reset"
TIMEOUT: Final = "timeout"
TCP_TIMEOUT: Final = "tcp_timeout"
TRUNCATED: Final = "truncated"
CLOSED: Final = "closed"
MALFORMED: Final = "malformed"

CONNECTION_ERRORS: Final = (REFUSED, SYN_TIMEOUT, NO_PORT, CONNECT_FAILED, RESET_IDLE)
REQUEST_ERRORS: Final = (RESET, TIMEOUT, TCP_TIMEOUT, TRUNCATED, CLOSED, MALFORMED)
ERRORS: Final = CONNECTION_ERRORS + REQUEST_ERRORS

# One line each; {target}, {timeout} and {syn_rtx} are filled in by the report.
EXPLAIN: Final[dict[str, str]] = {
    REFUSED: "connections refused: {target} answered our SYN with RST (nothing listens "
             "there, or its backlog or a firewall turned the SYN away)",
    SYN_TIMEOUT: "connections whose SYN went unanswered within --timeout {timeout} s or "
                 "TCP's SYN retries ({syn_rtx} SYN retransmissions in the whole run)",
    NO_PORT: "connections not attempted: every local port of a source address towards "
             "{target} was in use or in TIME-WAIT (give more --sources)",
    CONNECT_FAILED: "connections that failed before the handshake ended for another "
                    "reason (an ICMP error: host or network unreachable)",
    RESET_IDLE: "idle keep-alive connections the server reset (RST with no request "
                "outstanding: no answer lost, but a connection dropped)",
    RESET: "requests lost to RST: the server (or a middlebox) reset the connection while "
           "the request was outstanding",
    TIMEOUT: "requests with no whole response within --timeout {timeout} s (the "
             "connection was then reset)",
    TCP_TIMEOUT: "requests lost when TCP gave up: the server stopped acknowledging our "
                 "segments (retransmissions unanswered)",
    TRUNCATED: "responses cut short: the server closed (FIN) before all of the response "
               "(its head, Content-Length bytes or last chunk) had come",
    CLOSED: "requests never answered: the server closed the connection first (a "
            "Connection: close response with requests pipelined behind it, or an idle "
            "keep-alive close racing the request)",
    MALFORMED: "responses that are not valid HTTP/1.1 (each reason counted in the JSON); "
               "the connection was reset, with what was pipelined behind",
}

STATUS_CLASSES: Final = ("2xx", "3xx", "4xx", "5xx")
EXPLAIN_STATUS: Final[dict[str, str]] = {
    "4xx": "client-error responses: the server refused the request as sent (check the "
           "URL, --method, -H)",
    "5xx": "server-error responses: the server failed to answer the request",
}


def connect_error(code: int) -> str:
    """The kind of a connection that failed before ESTABLISHED with ``code``."""
    if code == errno.ECONNREFUSED:
        return REFUSED
    if code == errno.ETIMEDOUT:
        return SYN_TIMEOUT
    return CONNECT_FAILED


def established_error(code: int) -> str:
    """The kind of an established connection's failure with ``code``, for
    the requests it had outstanding."""
    if code in (errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ECONNREFUSED):
        return RESET
    return TCP_TIMEOUT  # ETIMEDOUT, or the ICMP error that came with it
