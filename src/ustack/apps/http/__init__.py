"""A static-file HTTP/1.1 server on ustack's native TCP API (issue 12).

The protocol core is sans-I/O: it turns bytes into requests and decisions
into bytes, and touches the file system only to look files up and read them.

- ``request``:     ``RequestParser`` (bytes in, ``Request`` or ``HttpError``
  out), ``Limits``: RFC 9112 message syntax and framing.
- ``target``:      request-target forms and path normalisation (RFC 9112 3.2,
  RFC 3986 5.2.4).
- ``errors``:      ``HttpError``: the status, reason and counter name of a
  refused request.
- ``chunked``:     the chunked transfer coding of request bodies (RFC 9112 7.1).
- ``response``:    status reasons, HTTP-dates (RFC 9110 5.6.7), ``DateCache``,
  response heads (``build_head``) and error responses.
- ``conditional``: parsing of entity-tag lists, ``Range`` and ``If-Range``
  (RFC 9110 13, 14).
- ``files``:       ``StaticFiles``: path -> ``FileEntry`` under the root,
  cached; ``respond``: a GET or HEAD -> ``Plan``.
"""
