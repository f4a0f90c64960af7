"""The two kinds of failure the core distinguishes (h11's local/remote split).

``DecodeError`` (bytes from a peer do not form a valid frame) is ``ubft.framing``'s, shared with
the memory node's codec; it is exported here for the core and its drivers.
"""

from ubft.framing import DecodeError

__all__ = ["DecodeError", "UsageError"]


class UsageError(Exception):
    """The driver misused the core (unknown timer, wrong epoch, ...): a bug in our code."""
