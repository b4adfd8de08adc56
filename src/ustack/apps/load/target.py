"""What ``ustack load`` asks for: the URL, taken apart, and the request bytes.

The URL is ``http://IPV4[:PORT][/PATH][?QUERY]``: the generator resolves no
names (it runs on its own stack, with no resolver), speaks no TLS, and
sends the same request each time, built once (``build_request``).  Every
refusal is a ``ValueError`` whose text is one line for the command.
"""

from __future__ import annotations

import re
from typing import Final

from ustack.wire import ipv4

# RFC 9110 5.6.2: token = 1*tchar (a field name, a method).
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9112 3.2: the request-target is visible ASCII.
_TARGET_RE: Final = re.compile(r"[\x21-\x7e]*")
# RFC 9110 5.5: a field value holds no CTL but HTAB (and, sent, no obs-text).
_VALUE_RE: Final = re.compile(r"[\t\x20-\x7e]*")

METHODS: Final = ("GET", "HEAD", "POST")
USER_AGENT: Final = "ustack-load"
# Fields the generator writes itself: a -H of these would contradict the framing.
_FRAMING: Final = frozenset({"content-length", "transfer-encoding"})


class Target:
    """The server's address, ``port``, the request-target ``path`` (with its
    query) and the ``host`` field value."""

    __slots__ = ("host", "ip", "path", "port", "url")

    def __init__(self, url: str, ip: str, port: int, path: str) -> None:
        self.url = url
        self.ip = ip
        self.port = port
        self.path = path
        self.host = ip if port == 80 else f"{ip}:{port}"


def parse_url(url: str) -> Target:
    """``http://IPV4[:PORT][/PATH]`` taken apart; ValueError (one line) if it is not."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"{url}: not a URL (want http://IPV4[:PORT]/PATH)")
    if scheme.lower() != "http":
        why = "no TLS" if scheme.lower() == "https" else f"not {scheme}"
        raise ValueError(f"{url}: ustack load speaks plain HTTP/1.1 ({why}): want http://...")
    rest = rest.partition("#")[0]  # a fragment is never sent (RFC 9110 4.2.4)
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    if not path.startswith("/"):
        path = "/" + path
    if "@" in authority:
        raise ValueError(f"{url}: user information in the URL is not supported")
    host, colon, port_text = authority.partition(":")
    port = 80
    if colon:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{url}: port {port_text!r} is not 1..65535")
        port = int(port_text)
    if not host:
        raise ValueError(f"{url}: no host")
    try:
        ip = ipv4.addr_to_str(ipv4.addr_from_str(host))
    except ValueError:
        raise ValueError(f"{url}: {host} is not an IPv4 address (ustack load resolves no "
                         "names: give the server's address)") from None
    if ip != host:
        raise ValueError(f"{url}: {host} is not an IPv4 address in dotted-quad form")
    if _TARGET_RE.fullmatch(path) is None:
        raise ValueError(f"{url}: the path holds characters a request-target cannot "
                         "(spaces, non-ASCII): percent-encode them")
    return Target(url, ip, port, path)


def parse_header(text: str) -> tuple[str, str]:
    """``Name: value`` (a -H option) as (name, value); ValueError if it is no field line."""
    name, colon, value = text.partition(":")
    if not colon or _TOKEN_RE.fullmatch(name) is None:
        raise ValueError(f"-H {text!r}: not a header field (want 'Name: value')")
    value = value.strip(" \t")
    if _VALUE_RE.fullmatch(value) is None:
        raise ValueError(f"-H {text!r}: the value holds control or non-ASCII characters")
    if name.lower() in _FRAMING:
        raise ValueError(f"-H {text!r}: {name} is the generator's own (it frames --body)")
    return name, value


def build_request(target: Target, method: str = "GET", headers: list[tuple[str, str]] | None = None,
                  body: bytes = b"", close: bool = False) -> bytes:
    """The request's bytes: request line, ``Host``, ``User-Agent``, the
    ``headers`` given (each replacing a default of the same name),
    ``Connection: close`` when ``close`` and no Connection field was given,
    ``Content-Length`` for a POST, then the body."""
    if method not in METHODS:
        raise ValueError(f"--method {method}: one of {', '.join(METHODS)}")
    if body and method != "POST":
        raise ValueError(f"--body: a {method} request has no body (--method POST)")
    given = headers or []
    names = {name.lower() for name, _ in given}
    fields: list[tuple[str, str]] = []
    if "host" not in names:
        fields.append(("Host", target.host))
    if "user-agent" not in names:
        fields.append(("User-Agent", USER_AGENT))
    fields += given
    if close and "connection" not in names:
        fields.append(("Connection", "close"))
    if method == "POST":
        fields.append(("Content-Length", str(len(body))))
    head = f"{method} {target.path} HTTP/1.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in fields)
    return (head + "\r\n").encode("ascii") + body
