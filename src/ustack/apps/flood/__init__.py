"""``ustack flood``: a SYN flood from the stack's link, its answers counted (issue 13).

- ``syn``: ``SynWriter``: the SYNs, a template per target patched per
  packet (addresses, ports, sequence number, checksums folded from the
  template's sums), written straight into the AF_PACKET TX ring's slots
  or into frames; sequence numbers a keyed hash plus the SYN's serial
  number, so an answer names the SYN it answers without a table.
- ``answers``: ``FloodAnswers``: takes TCP from the IPv4 layer during the
  flood, counts SYN-ACKs, RSTs and retransmitted answers per target, each
  SYN once (a bit per SYN sent), and never answers them.
- ``run``: ``Flood``: resolves the targets, sends in batches (as fast as
  the ring takes them, or at ``rate`` through a token bucket) bounded by a
  count and a duration, and waits a grace period for late answers.
- ``report``: the figures as one dict (``--json``) and a plain summary.
"""
