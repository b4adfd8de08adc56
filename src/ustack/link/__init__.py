"""Devices that move Ethernet frames, and wrappers that compose with any of them."""

from ustack.link.base import Capabilities, Device, Frame

__all__ = ["Capabilities", "Device", "Frame"]
