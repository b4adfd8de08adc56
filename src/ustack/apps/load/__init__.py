"""``ustack load``: an HTTP load generator on ustack's native TCP API (issue 13).

The measuring parts are sans-I/O (no clock read, no socket: the caller
passes ``now`` and the values):

- ``histogram``: ``Histogram``: latencies in integer microseconds, 1 µs to
  60 s at 3 significant digits (HdrHistogram's layout), merged, summarised
  as percentiles and written in HdrHistogram's ``.hgrm`` text format.
- ``schedule``:  ``OpenLoop``: the intended send times of a constant-rate
  run, with the requests sent late or never sent counted, so latency is
  measured from when a request was due (coordinated-omission correction).

The generator itself (connections, requests, the command) comes next.
"""
