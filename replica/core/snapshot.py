"""Checkpoint snapshots in chunks (PROTOCOL.md section 4, "Checkpoints" and "State transfer and
catch-up").

The snapshot at a checkpoint (configuration, application clock, client table, application
state) is encoded canonically in chunks. Chunk 0 holds the configuration alone
(``encode_config``); chunks 1..N are the rest stream cut into ``chunk_size`` bytes each (the last
may be shorter; N is 0 only if the rest stream were empty)::

    rest := clock:u64 table_len:u64 table{table_len} app_state

``table`` is ``RequestLog.table_bytes()`` and ``app_state`` the application's canonical state
stream (``StateStream.state_pieces``), self-delimiting. Digests (BLAKE2b-256, ``crypto.digest``)::

    chunk digest  = digest(chunk bytes)
    rest digest   = digest(chunk digest 1 || ... || chunk digest N)
    snapshot      = digest(chunk digest 0 || rest digest)

``SnapshotBuilder`` cuts the chunks as the pieces arrive, hashing each once, so no step holds
the application state as one bytes object. ``SnapshotRestorer`` collects chunks in any order,
each checked against a chunk-digest list that was checked against the certified snapshot digest,
and restores by streaming the chunks through the table decoder and the application. Sans-IO.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from pydantic import ValidationError

from .app import StateStream
from .config import ClusterConfig
from .crypto import DIGEST_BYTES, digest
from .request_log import RequestLog, TableDecodeError

_U64_MAX: Final = (1 << 64) - 1
# Chunk 0 (the configuration) is not cut; a configuration beyond this is refused outright
# (a member list of 2f+1 <= 33 entries is a few KiB).
MAX_CONFIG_CHUNK_BYTES: Final = 1 << 20


class SnapshotError(ValueError):
    """A complete snapshot that does not restore: its bytes are not one canonical snapshot.

    Its chunks matched a certified digest, so this means a bug somewhere (f+1 replicas signed
    it), never a faulty server; ``SnapshotRestorer.restore`` raises nothing else.
    """


# ------------------------------------------------------------------------------- configuration


def encode_config(config: ClusterConfig) -> bytes:
    """Canonical bytes of ``config`` (chunk 0): compact JSON, keys sorted, ASCII only, every
    field written (defaults included), so equal configurations give equal bytes everywhere."""
    return json.dumps(
        config.model_dump(mode="json"),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    ).encode("ascii")


def decode_config(data: bytes) -> ClusterConfig:
    """The configuration whose canonical bytes are ``data``; SnapshotError otherwise."""
    try:
        config = ClusterConfig.model_validate_json(data)
    except ValidationError as exc:
        raise SnapshotError(f"configuration chunk: {exc.error_count()} invalid field(s)") from exc
    if encode_config(config) != bytes(data):
        raise SnapshotError("configuration chunk is not in canonical form")
    return config


# ------------------------------------------------------------------------------------- digests


def rest_digest(chunk_digests: Iterable[bytes]) -> bytes:
    """digest(chunk digest 1 || ... || chunk digest N), given the digests of chunks 1..N."""
    return digest(b"".join(chunk_digests))


def snapshot_digest(config_chunk_digest: bytes, rest: bytes) -> bytes:
    """digest(snapshot) from digest(chunk 0) and the rest digest (also what an EpochProof's
    configuration chunk and rest digest are checked with)."""
    return digest(config_chunk_digest + rest)


def check_chunk_list(snapshot: bytes, chunk_digests: Sequence[bytes]) -> str | None:
    """Why the list of chunk digests 0..N does not belong to the snapshot digest, or None."""
    if not chunk_digests:
        return "empty chunk list"
    if any(len(d) != DIGEST_BYTES for d in chunk_digests):
        return "chunk digest of the wrong length"
    if snapshot_digest(chunk_digests[0], rest_digest(chunk_digests[1:])) != snapshot:
        return "chunk list does not match the snapshot digest"
    return None


# -------------------------------------------------------------------------------------- build


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """A built snapshot: its chunks (kept to serve fetchers) and their digests.

    ``chunks[0]`` is the configuration; ``chunk_digests[i]`` is ``digest(chunks[i])``.
    """

    chunks: tuple[bytes, ...]
    chunk_digests: tuple[bytes, ...]
    rest_digest: bytes
    digest: bytes

    @property
    def config_chunk(self) -> bytes:
        return self.chunks[0]

    def chunk(self, index: int) -> bytes | None:
        """Chunk ``index`` (GetChunk{c, index}), or None out of range."""
        return self.chunks[index] if 0 <= index < len(self.chunks) else None

    def index_of(self, chunk_digest: bytes) -> int | None:
        """The first index of a chunk with this digest (GetChunk{chunk digest}), or None."""
        try:
            return self.chunk_digests.index(chunk_digest)
        except ValueError:
            return None

    def size(self) -> int:
        """Bytes held (all chunks)."""
        return sum(len(c) for c in self.chunks)


class SnapshotBuilder:
    """Builds a Snapshot from its parts, cutting and hashing chunks as the bytes arrive.

    ``SnapshotBuilder(config_bytes, clock, table_bytes, chunk_size)``, then ``feed`` each piece
    of the application's state stream in order, then ``finish()``. It holds the finished chunks
    and at most one partial chunk, never a copy of a piece beyond that. The pieces may be fed
    across several steps, provided the application does not change meanwhile.
    """

    __slots__ = ("_buf", "_chunk_size", "_chunks", "_digests", "_finished")

    def __init__(self, config_bytes: bytes, clock: int, table: bytes, chunk_size: int) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        if not 0 <= clock <= _U64_MAX:
            raise ValueError("application clock outside u64")
        if not 0 < len(config_bytes) <= MAX_CONFIG_CHUNK_BYTES:
            raise ValueError("configuration chunk empty or too large")
        self._chunk_size = chunk_size
        config_bytes = bytes(config_bytes)
        self._chunks: list[bytes] = [config_bytes]
        self._digests: list[bytes] = [digest(config_bytes)]
        self._buf = bytearray()
        self._finished = False
        self.feed(clock.to_bytes(8, "big") + len(table).to_bytes(8, "big"))
        self.feed(table)

    def feed(self, piece: bytes) -> None:
        """The next bytes of the rest stream (application pieces after the constructor's)."""
        if self._finished:
            raise RuntimeError("snapshot already finished")
        size = self._chunk_size
        buf = self._buf
        view = memoryview(piece)
        pos = 0
        if buf:
            pos = min(size - len(buf), len(view))
            buf += view[:pos]
            if len(buf) < size:
                return
            self._cut(bytes(buf))
            buf.clear()
        # whole chunks straight from the piece, then keep the remainder
        while len(view) - pos >= size:
            self._cut(bytes(view[pos : pos + size]))
            pos += size
        buf += view[pos:]

    def _cut(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._digests.append(digest(chunk))

    def finish(self) -> Snapshot:
        if self._finished:
            raise RuntimeError("snapshot already finished")
        self._finished = True
        if self._buf:
            self._cut(bytes(self._buf))
            self._buf = bytearray()
        rest = rest_digest(self._digests[1:])
        return Snapshot(
            tuple(self._chunks),
            tuple(self._digests),
            rest,
            snapshot_digest(self._digests[0], rest),
        )


def build_snapshot(
    config: ClusterConfig | bytes,
    clock: int,
    table: bytes,
    app: StateStream,
    chunk_size: int,
) -> Snapshot:
    """The snapshot of (config, clock, table, app's current state) in one call."""
    config_bytes = encode_config(config) if isinstance(config, ClusterConfig) else config
    builder = SnapshotBuilder(config_bytes, clock, table, chunk_size)
    for piece in app.state_pieces():
        builder.feed(piece)
    return builder.finish()


# ------------------------------------------------------------------------------------ restore


@dataclass(frozen=True, slots=True)
class Restored:
    """What a restore produced besides the application state (already replaced)."""

    c: int
    digest: bytes
    config: ClusterConfig
    clock: int
    table: RequestLog


class SnapshotRestorer:
    """Collects the chunks of a certified snapshot, in any order, and restores it.

    ``offer_list(c, digest, chunk_digests)`` sets (or replaces, with a newer c) the list the
    chunks are checked against; ``digest`` is the certified digest(snapshot) of checkpoint c.
    ``add_chunk(index, data)`` keeps a chunk whose digest is the list's at ``index``. Both return
    the reason something is refused (a faulty server: fetch it elsewhere), None otherwise; an
    already held chunk is ignored. Chunks are held by digest, so equal chunks are fetched once
    and a newer list keeps every chunk whose digest it still has. Once ``missing()`` is empty,
    ``restore(app)`` rebuilds everything, raising only SnapshotError.
    """

    __slots__ = ("_c", "_chunk_size", "_digest", "_held", "_list", "_wanted")

    def __init__(self, chunk_size: int) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        self._chunk_size = chunk_size
        self._c = -1
        self._digest = b""
        self._list: tuple[bytes, ...] = ()
        self._wanted: frozenset[bytes] = frozenset()
        self._held: dict[bytes, bytes] = {}  # chunk digest -> bytes

    @property
    def c(self) -> int | None:
        """The checkpoint being fetched, None before a list was accepted."""
        return self._c if self._list else None

    @property
    def digest(self) -> bytes:
        return self._digest

    @property
    def chunk_digests(self) -> tuple[bytes, ...]:
        return self._list

    def offer_list(self, c: int, snapshot: bytes, chunk_digests: Sequence[bytes]) -> str | None:
        """Accept the chunk list of checkpoint c (certified digest ``snapshot``) if it matches
        and c is newer than the list held; chunks the new list does not name are dropped."""
        digests = tuple(bytes(d) for d in chunk_digests)
        if self._list and c <= self._c:
            if (c, snapshot, digests) == (self._c, self._digest, self._list):
                return None  # the same list again (from another server)
            return "not newer than the chunk list held"
        reason = check_chunk_list(snapshot, digests)
        if reason is not None:
            return reason
        self._c = c
        self._digest = bytes(snapshot)
        self._list = digests
        self._wanted = frozenset(digests)
        self._held = {d: b for d, b in self._held.items() if d in self._wanted}
        return None

    def add_chunk(self, index: int, data: bytes) -> str | None:
        """Keep chunk ``index`` if its digest is the list's; the reason it is refused, or None
        (kept, or already held)."""
        if not self._list:
            return "no chunk list"
        if not 0 <= index < len(self._list):
            return "chunk index out of range"
        limit = MAX_CONFIG_CHUNK_BYTES if index == 0 else self._chunk_size
        if len(data) > limit:
            return "chunk larger than chunk_size"
        expected = self._list[index]
        if expected in self._held:
            return None
        data = bytes(data)
        if digest(data) != expected:
            return "chunk digest does not match the list"
        self._held[expected] = data
        return None

    def missing(self) -> list[int]:
        """Indices still to fetch (ascending); empty once the snapshot is complete (and
        before any list is accepted: check ``c``)."""
        return [i for i, d in enumerate(self._list) if d not in self._held]

    @property
    def complete(self) -> bool:
        return bool(self._list) and not self.missing()

    def held_bytes(self) -> int:
        return sum(len(b) for b in self._held.values())

    def restore(self, app: StateStream) -> Restored:
        """Restore the complete snapshot: the application's state is replaced (streamed chunk
        by chunk); configuration, clock and client table are returned. Raises SnapshotError
        (only) if the bytes are not one canonical snapshot; the application is then unchanged.
        """
        if not self.complete:
            raise SnapshotError("snapshot incomplete")
        held = self._held
        chunks = [held[d] for d in self._list]
        size = self._chunk_size
        for i, chunk in enumerate(chunks[1:], start=1):
            if not chunk or (i < len(chunks) - 1 and len(chunk) != size):
                raise SnapshotError(f"chunk {i} is not cut at chunk_size")
        config = decode_config(chunks[0])
        p = config.params
        stream = _RestStream(chunks[1:])
        clock = int.from_bytes(stream.take(8), "big")
        table_len = int.from_bytes(stream.take(8), "big")
        if table_len > stream.remaining:
            raise SnapshotError("client table longer than the snapshot")
        try:
            table = RequestLog.from_table_bytes(
                stream.take(table_len), p.client_window, p.max_reply_bytes, p.max_clients
            )
        except TableDecodeError as exc:
            raise SnapshotError(f"client table: {exc}") from exc
        app.restore_begin()
        try:
            for part in stream.rest():
                app.restore_feed(part)
            app.restore_finish()
        except ValueError as exc:
            app.restore_abort()
            raise SnapshotError(f"application state: {exc}") from exc
        return Restored(self._c, self._digest, config, clock, table)


class _RestStream:
    """Reads the rest stream across chunks: small fixed fields, then the chunks as they are."""

    __slots__ = ("_chunks", "_index", "_offset", "remaining")

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self._index = 0  # current chunk
        self._offset = 0  # position in it
        self.remaining = sum(len(c) for c in chunks)

    def take(self, n: int) -> bytes:
        """The next n bytes (n at most ``remaining``), joined across chunks."""
        if n > self.remaining:
            raise SnapshotError("snapshot truncated")
        parts: list[bytes] = []
        need = n
        while need:
            chunk = self._chunks[self._index]
            part = chunk[self._offset : self._offset + need]
            parts.append(part)
            need -= len(part)
            self._offset += len(part)
            if self._offset == len(chunk):
                self._index += 1
                self._offset = 0
        self.remaining -= n
        return b"".join(parts)

    def rest(self) -> Iterator[bytes]:
        """The remaining bytes, one chunk (or the tail of the current one) at a time."""
        for i in range(self._index, len(self._chunks)):
            chunk = self._chunks[i]
            part = chunk[self._offset :] if i == self._index else chunk
            if part:
                yield part
        self._index = len(self._chunks)
        self._offset = 0
        self.remaining = 0
