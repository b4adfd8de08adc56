"""The one exception opening or using a link raises, with a readable message.

Opening a device touches the system in many ways (``/dev/net/tun``, ioctls,
socket options, mmap); any of them can fail with an ``OSError`` whose text
("[Errno 16] Device or resource busy") does not say which device or what to
do.  Every such failure is turned into a ``LinkError`` whose ``str()`` is one
line naming the device and the likely cause, e.g.
``tap u0: device busy (another process holds it)``.
"""

from __future__ import annotations

import errno as _errno

# Causes in words a user acts on; errno names are kept for the rest.
_REASONS: dict[int, str] = {
    _errno.EPERM: "permission denied (run as root)",
    _errno.EACCES: "permission denied (run as root)",
    _errno.EBUSY: "busy",
    _errno.ENODEV: "no such interface",
    _errno.ENXIO: "no such interface",
    _errno.ENOENT: "no such file",
    _errno.EINVAL: "invalid argument (kernel rejected the setting)",
    _errno.ENOMEM: "out of memory (ring too large?)",
    _errno.EAFNOSUPPORT: "address family not supported by this kernel",
    _errno.EPROTONOSUPPORT: "protocol not supported by this kernel",
    _errno.ENOPROTOOPT: "option not supported by this kernel",
    _errno.ENETDOWN: "interface is down",
    _errno.EADDRNOTAVAIL: "address not available",
    _errno.EEXIST: "already exists",
}


class LinkError(Exception):
    """A device could not be opened, configured or used.

    ``errno`` is the underlying OS error number when there was one, so
    callers can still branch on it (e.g. retry on EBUSY).
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


def reason(exc: OSError) -> str:
    """A short human cause for ``exc`` (no errno number, no prefix)."""
    if exc.errno is not None and exc.errno in _REASONS:
        return _REASONS[exc.errno]
    if exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def from_os_error(what: str, exc: OSError) -> LinkError:
    """``LinkError("<what>: <cause>")`` for an ``OSError`` raised by ``what``.

    ``what`` names the device and, where useful, the step, e.g. ``"tap u0"``
    or ``"tap: /dev/net/tun"``.
    """
    err = LinkError(f"{what}: {reason(exc)}", exc.errno)
    err.__cause__ = exc
    return err
