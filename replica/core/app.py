"""The application state machine the replicas drive (key-value store, order book, ...)."""

from __future__ import annotations

from typing import Protocol


class Application(Protocol):
    """Deterministic: the same commands in the same order give the same results and digest.

    ``clock_ns`` is the application clock of the instance (max of batch ts and the previous
    clock), the only time source a command may use. ``apply`` never raises on a bad command:
    it returns an error result, identically on every replica.
    """

    def apply(self, command: bytes, clock_ns: int) -> bytes: ...

    def snapshot(self) -> bytes: ...

    def restore(self, snapshot: bytes) -> None: ...

    def digest(self) -> bytes: ...
