"""ustack: a user-space TCP/IP stack in Python ("IP per process")."""

from ustack import purepy

__version__ = "0.1.0"

# USTACK_PURE=1: the pure-Python sources, not the compiled modules beside them
# (purepy.py); decided here, before any other ustack module is imported.
if purepy.pure_requested():
    purepy.install()
else:
    purepy.warn_if_stale(__path__[0])
