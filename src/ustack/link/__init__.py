"""Devices that move Ethernet frames, and wrappers that compose with any of them.

Devices: ``TapDevice`` (tap.py), ``PacketDevice`` (packet.py, AF_PACKET with
rings), ``pipe_pair`` (pipe.py, in memory), ``thread_pipe_pair`` (threadpipe.py, in
memory with each end in its own thread), on ``DeviceBase`` (base.py).
Wrappers, on ``DeviceWrapper`` (wrapper.py): ``PcapTee`` (pcap.py),
``FaultInjector`` (fault.py), ``Shaper`` (shaper.py).  ``open_link``/``wrap`` (open.py)
build them from strings.  Every failure to open or use one is a
``LinkError`` with a one-line reason.
"""

from ustack.link.base import Capabilities, Device, DeviceBase, Frame
from ustack.link.errors import LinkError
from ustack.link.fault import FaultInjector, FaultSpec
from ustack.link.open import open_link, wrap
from ustack.link.packet import PacketDevice
from ustack.link.pcap import PcapTee, PcapWriter
from ustack.link.pipe import PipeDevice, pipe_pair
from ustack.link.tap import TapDevice, configure_host_side, interface_index, interface_mac
from ustack.link.threadpipe import ThreadPipeDevice, thread_pipe_pair
from ustack.link.wrapper import DeviceWrapper

__all__ = [
    "Capabilities",
    "Device",
    "DeviceBase",
    "DeviceWrapper",
    "FaultInjector",
    "FaultSpec",
    "Frame",
    "LinkError",
    "PacketDevice",
    "PcapTee",
    "PcapWriter",
    "PipeDevice",
    "TapDevice",
    "ThreadPipeDevice",
    "configure_host_side",
    "interface_index",
    "interface_mac",
    "open_link",
    "pipe_pair",
    "thread_pipe_pair",
    "wrap",
]
