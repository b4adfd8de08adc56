"""``ustack load``: an HTTP load generator on ustack's native TCP API (issue 13).

- ``target``:    the URL taken apart (an IPv4 address: no resolver), the
  request built once;
- ``generator``: ``LoadGenerator``: connections round-robin over the
  interface's addresses, the closed and the open loop, timeouts;
- ``response``:  ``ResponseParser``: HTTP/1.1 responses on the client's
  side, strict, every malformed one named;
- ``outcomes``:  the error kinds, each with its unit and a one-line
  explanation at the TCP level;
- ``results``:   ``LoadStats``: what a run counted, per phase histograms and
  per source figures;
- ``report``:    the JSON dict and the text summary, one from the other;
- ``histogram``: ``Histogram``: latencies in integer microseconds, 1 µs to
  60 s at 3 significant digits (HdrHistogram's layout), written in its
  ``.hgrm`` text format;
- ``schedule``:  ``OpenLoop``: the intended send times of a constant-rate
  run, with the requests sent late or never sent counted, so latency is
  measured from when a request was due (coordinated-omission correction).

Everything but the generator is sans-I/O; the generator reads no clock
either (``stack.now``), so the tests step it with a fake one.
"""
