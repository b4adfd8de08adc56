"""The one exception every parser in ``ustack.wire`` raises."""


class ParseError(ValueError):
    """Malformed input.  ``reason`` is a short, stable, machine-friendly name.

    Parsers raise this and nothing else for any byte string, however broken:
    callers on the receive path catch exactly this type, count the drop under
    ``reason`` and move on to the next frame.
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
