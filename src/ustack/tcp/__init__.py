"""TCP (RFC 9293 and the RFCs docs/architecture.md lists).

Modules, from the wire up:

- ``seq``: sequence-number arithmetic modulo 2**32 (every comparison).
- ``states``: the states and the transition table, with its rules.
- ``config``, ``segment``: per-connection settings; segments in and out,
  events for the application.
- ``tcb``: what one connection remembers, with its parts: ``sendq`` and
  ``rcvq`` (the bytes and their sequence arithmetic), ``recovery`` (dupacks,
  fast recovery, the RTO cursor), ``timers`` (the six deadlines), ``rto``,
  ``cc``, ``sack``, ``reassembly``.
- ``presegment``: responses cut once into segments with their payload
  sums (``Presegmented``), which the send queue holds by reference and the
  output sends from without summing them again.
- ``connection``: the rules of RFC 9293 3.10 (state machine, application
  calls, segment arrival with header prediction); ``output`` (what to send
  and when, 3.8) and ``timeouts`` (3.10.8) act on the same TCB.
- ``isn``: initial sequence numbers (RFC 6528).
- ``layer``: the Stack's TCP: demultiplexing, listeners, resets, the one
  timer per connection, frames out (with TSO on capable links), bind.
- ``socket``: the native application API (TcpSocket, TcpListener) and the
  one readiness rule (``poll``).
"""
