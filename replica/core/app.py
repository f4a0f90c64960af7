"""The application state machine the replicas drive (key-value store, order book, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class StateStream(Protocol):
    """The application state as a canonical byte stream, produced and restored in bounded pieces.

    ``state_pieces`` yields the stream: every replica in the same state yields the same bytes
    (the cut into pieces may differ; only their concatenation is canonical), and no piece holds
    more than a bounded amount (one entry or a few KiB), never the whole state. The iterator
    reads live state: it must be consumed before the next ``apply`` or restore (an application
    may raise RuntimeError if the state changed underneath it).

    Restoring: ``restore_begin()``, then ``restore_feed(data)`` with the stream's bytes cut
    anywhere, then ``restore_finish()``, which replaces the state. Until ``restore_finish``
    succeeds the current state is untouched. ``restore_feed`` and ``restore_finish`` raise
    ValueError (only) on bytes that are not one canonical stream; ``restore_abort()`` drops a
    restore in progress (a new ``restore_begin`` also does).
    """

    def state_pieces(self) -> Iterator[bytes]: ...

    def restore_begin(self) -> None: ...

    def restore_feed(self, data: bytes) -> None: ...

    def restore_finish(self) -> None: ...

    def restore_abort(self) -> None: ...


class Application(StateStream, Protocol):
    """Deterministic: the same commands in the same order give the same results and digest.

    ``clock_ns`` is the application clock of the instance (max of batch ts and the previous
    clock), the only time source a command may use. ``apply`` never raises on a bad command:
    it returns an error result, identically on every replica.

    Checkpoints and state transfer use the streamed form of ``StateStream``
    (``replica/core/snapshot.py``); ``digest`` is the application's own (cheap, incremental)
    digest of its state, for observers and tests.
    """

    def apply(self, command: bytes, clock_ns: int) -> bytes: ...

    def digest(self) -> bytes: ...
