"""ustack: a user-space TCP/IP stack in Python ("IP per process")."""

__version__ = "0.1.0"
