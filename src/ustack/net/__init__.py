"""The network floor: Ethernet, ARP, IPv4 and ICMP for a host, and what they share.

- ``host``: the context every layer gets (clock reading, counters, timers,
  routes, local addresses) and the ``RX_*`` properties of a received frame.
- ``interface``: one device with its MAC, IPv4 address, ARP table and the
  frames it transmits at the end of a poll (it builds TCP frames for
  offloading devices).
- ``ethernet``: receive dispatch, a batch of frames at a time.
- ``neighbours`` (the ARP table of an interface) and ``arp`` (the protocol).
- ``ipv4`` (input, the one output path, fragmentation), ``reassembly``,
  ``route`` (longest prefix; next hops cached per source and destination), ``icmp``.
- ``ports`` (the ephemeral port allocator TCP, UDP and the sockets share)
  and ``sockaddr`` (AF_INET addresses as the socket module checks them).
"""
