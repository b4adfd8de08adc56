"""UDP (RFC 768, RFC 1122 4.1): the layer and its native sockets (``socket``)."""
