"""Initial sequence numbers, RFC 6528: ISN = M + F(4-tuple, secret key).

M is a 4-microsecond timer (RFC 9293 3.4.1); F is a keyed hash of the
connection's 4-tuple, so ISNs of different connections are unrelated and an
off-path attacker cannot predict them, while a new incarnation of the same
4-tuple still starts above the old one (the clock keeps moving).  The
secret is per process; SYN cookies (a later issue) share theirs between
workers explicitly.
"""

from __future__ import annotations

import hashlib
import os


class IsnGenerator:
    __slots__ = ("_secret",)

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else os.urandom(16)

    def isn(self, local_ip: bytes, local_port: int, remote_ip: bytes, remote_port: int,
            now: float) -> int:
        # blake2s keyed mode is the standard library's fastest keyed hash
        # (RFC 6528 asks for a cryptographic hash such as MD5 at least).
        h = hashlib.blake2s(
            local_ip + local_port.to_bytes(2, "big") + remote_ip + remote_port.to_bytes(2, "big"),
            key=self._secret, digest_size=4,
        ).digest()
        return (int(now * 250_000) + int.from_bytes(h, "big")) & 0xFFFFFFFF
