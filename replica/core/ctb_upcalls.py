"""What CTBcast needs from the layer above it (consensus)."""

from __future__ import annotations

from typing import Protocol

from .errors import UsageError


class CtbUpcalls(Protocol):
    """What CTBcast needs from the layer above (consensus)."""

    def on_deliver(self, b: int, k: int, m: bytes) -> None: ...

    def ctb_summary(self, b: int, c: int) -> bytes: ...

    def adopt_ctb_summary(self, b: int, c: int, summary: bytes) -> None: ...


class _Unbound:
    """Placeholder until ``CtbCast.bind``: delivering before then is a driver bug."""

    def on_deliver(self, b: int, k: int, m: bytes) -> None:
        raise UsageError("CtbCast used before bind()")

    def ctb_summary(self, b: int, c: int) -> bytes:
        raise UsageError("CtbCast used before bind()")

    def adopt_ctb_summary(self, b: int, c: int, summary: bytes) -> None:
        raise UsageError("CtbCast used before bind()")


_UNBOUND = _Unbound()
