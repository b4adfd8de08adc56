"""TCP (RFC 9293 and the RFCs DESIGN.md lists).

Modules, from the wire up:

- ``seq``: sequence-number arithmetic modulo 2**32 (every comparison).
- ``states``: the states and the transition table, with its rules.
- ``connection``: one connection, sans-I/O (segments and time in,
  segments, timers and events out).
- ``rto``, ``cc``, ``sack``, ``reassembly``: the RTT estimator (RFC 6298),
  congestion control (CUBIC, NewReno), the SACK scoreboard (RFC 6675) and
  the out-of-order queue (RFC 2018 blocks).
- ``isn``: initial sequence numbers (RFC 6528).
- ``layer``: the Stack's TCP: demultiplexing, listeners, resets, timers,
  frames out (with TSO on capable links).
- ``socket``: the native application API (TcpSocket, TcpListener).
"""
