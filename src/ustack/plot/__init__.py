"""``ustack plot``: a TCP connection drawn from a trace or a capture.

``series`` holds what a picture shows as plain data (``Series``) and reads
it from a ``--trace`` file (``from_trace``); ``pcapread`` reads it from a
pcap of any TCP (``from_pcap``); ``draw`` draws it with matplotlib (an
optional dependency: ``pip install ustack[plot]``).  Tests check the data,
not the pixels.
"""
