"""The two kinds of failure the core distinguishes (h11's local/remote split)."""


class DecodeError(Exception):
    """Bytes from a peer do not form a valid frame; ``reason`` is a stable dotted code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UsageError(Exception):
    """The driver misused the core (unknown timer, wrong epoch, ...): a bug in our code."""
