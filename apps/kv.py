"""Key-value application: a deterministic, sans-IO state machine (PROTOCOL.md §4, execution).

Commands and results use a compact, strict binary encoding. Every replica must produce
byte-identical results, so decoding accepts exactly one encoding per command and ``apply``
turns anything else into an ``Error`` result instead of raising.

Command wire format (big-endian)::

    command := opcode:u8 argc:u16 arg{argc}
    arg     := 'B' len:u32 bytes{len}     a key or a value
             | 'I' i64                    an integer (INCR's increment)

    GET key | SET key value | DEL key+ | INCR key by | MGET key+

Result wire format::

    0x00 OK | 0x01 NIL | 0x02 len:u32 bytes | 0x03 i64
    | 0x04 count:u32 (0x01 | 0x02 len:u32 bytes){count} | 0x05 len:u16 utf-8 message

State stream (``state_pieces`` / ``restore_*``, the snapshot's application part)::

    state := magic:8 count:u32 entry{count}
    entry := klen:u16 key{klen} vlen:u32 value{vlen}

Entries are in canonical order, strictly ascending by (bucket_of(key), key) where
bucket_of(key) = CRC-32(key) mod BUCKETS: one stream per state, whatever the history.

Counters are stored as canonical decimal strings (Redis semantics): GET of a counter returns
e.g. b"5", and INCR accepts only values that parse as a canonical signed 64-bit integer.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

MAX_KEY_BYTES: Final = 512
MAX_VALUE_BYTES: Final = 64 * 1024
MAX_KEYS_PER_COMMAND: Final = 128
INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1
DIGEST_BYTES: Final = 32

# Opcode numbers are part of the wire format: never renumber or reuse one.
_OPCODES: Final[dict[str, int]] = {"GET": 1, "SET": 2, "DEL": 3, "INCR": 4, "MGET": 5}
_OP_NAMES: Final[dict[int, str]] = {code: name for name, code in _OPCODES.items()}
_READ_ONLY: Final = frozenset({_OPCODES["GET"], _OPCODES["MGET"]})

_ARG_BYTES: Final = 0x42  # 'B'
_ARG_INT: Final = 0x49  # 'I'

_R_OK: Final = 0x00
_R_NIL: Final = 0x01
_R_VALUE: Final = 0x02
_R_INT: Final = 0x03
_R_LIST: Final = 0x04
_R_ERROR: Final = 0x05

# Version 2: entries in bucket order (version 1 had them in plain key order).
_SNAPSHOT_MAGIC: Final = b"ubftkv\x00\x02"
_STATE_HEAD_BYTES: Final = len(_SNAPSHOT_MAGIC) + 4  # magic, key count u32
MAX_ENTRY_BYTES: Final = 2 + MAX_KEY_BYTES + 4 + MAX_VALUE_BYTES
# state_pieces joins cached bucket bytes into pieces of at least PIECE_BYTES where it can (a
# piece is shorter only at the end or next to a bucket larger than PIECE_BYTES, which is sliced).
PIECE_BYTES: Final = 16 * 1024
MAX_PIECE_BYTES: Final = 2 * PIECE_BYTES

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_HEAD = struct.Struct(">BH")


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class Ok:
    """The command succeeded and has nothing to return (SET)."""


@dataclass(frozen=True, slots=True)
class Nil:
    """The key is missing (GET)."""


@dataclass(frozen=True, slots=True)
class Value:
    """A stored value (GET)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Integer:
    """A count (DEL) or a counter's new value (INCR)."""

    value: int


@dataclass(frozen=True, slots=True)
class Values:
    """One entry per requested key, None for a missing one (MGET)."""

    items: tuple[bytes | None, ...]


@dataclass(frozen=True, slots=True)
class Error:
    """The command was rejected and changed nothing."""

    message: str


KVResult = Ok | Nil | Value | Integer | Values | Error


def encode_result(result: KVResult) -> bytes:
    """The canonical bytes of ``result``; ``decode_result`` inverts it."""
    match result:
        case Ok():
            return bytes((_R_OK,))
        case Nil():
            return bytes((_R_NIL,))
        case Value(data):
            return bytes((_R_VALUE,)) + _U32.pack(len(data)) + data
        case Integer(value):
            return bytes((_R_INT,)) + _I64.pack(value)
        case Values(items):
            parts = [bytes((_R_LIST,)), _U32.pack(len(items))]
            for item in items:
                if item is None:
                    parts.append(bytes((_R_NIL,)))
                else:
                    parts += [bytes((_R_VALUE,)), _U32.pack(len(item)), item]
            return b"".join(parts)
        case Error(message):
            raw = message.encode()
            return bytes((_R_ERROR,)) + _U16.pack(len(raw)) + raw


def encode_ok() -> bytes:
    return encode_result(Ok())


def encode_nil() -> bytes:
    return encode_result(Nil())


def encode_value(data: bytes) -> bytes:
    return encode_result(Value(data))


def encode_int(value: int) -> bytes:
    return encode_result(Integer(value))


def encode_list(items: tuple[bytes | None, ...] | list[bytes | None]) -> bytes:
    return encode_result(Values(tuple(items)))


def encode_error(message: str) -> bytes:
    return encode_result(Error(message))


class _Reader:
    """Bounds-checked cursor; every short read raises ValueError."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise ValueError("truncated")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = _U16.unpack(self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = _U32.unpack(self.take(4))[0]
        return value

    def i64(self) -> int:
        value: int = _I64.unpack(self.take(8))[0]
        return value

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise ValueError("trailing bytes")


def decode_result(result: bytes) -> KVResult:
    """Parse a result; raises ValueError unless ``result`` is exactly one canonical encoding."""
    r = _Reader(bytes(result))
    tag = r.u8()
    decoded: KVResult
    if tag == _R_OK:
        decoded = Ok()
    elif tag == _R_NIL:
        decoded = Nil()
    elif tag == _R_VALUE:
        decoded = Value(r.take(r.u32()))
    elif tag == _R_INT:
        decoded = Integer(r.i64())
    elif tag == _R_LIST:
        count = r.u32()
        items: list[bytes | None] = []
        for _ in range(count):
            item_tag = r.u8()
            if item_tag == _R_NIL:
                items.append(None)
            elif item_tag == _R_VALUE:
                items.append(r.take(r.u32()))
            else:
                raise ValueError(f"bad list item tag {item_tag:#x}")
        decoded = Values(tuple(items))
    elif tag == _R_ERROR:
        decoded = Error(r.take(r.u16()).decode("utf-8", errors="strict"))
    else:
        raise ValueError(f"bad result tag {tag:#x}")
    r.finish()
    return decoded


# ---------------------------------------------------------------------------------------------
# Commands


def encode_command(op: str, *args: bytes | int) -> bytes:
    """Encode ``op`` (GET, SET, DEL, INCR, MGET) with ``args``.

    Only encodability is checked here (known op, bytes or 64-bit int arguments); arity and
    size limits are the state machine's to judge, so a malformed command can still be built.
    """
    code = _OPCODES.get(op)
    if code is None:
        raise ValueError(f"unknown op {op!r}")
    if len(args) > 0xFFFF:
        raise ValueError("too many arguments")
    parts = [_HEAD.pack(code, len(args))]
    for arg in args:
        # bool is an int subclass; a True increment is almost certainly a caller bug.
        if isinstance(arg, bool) or not isinstance(arg, int | bytes):
            raise TypeError(f"argument must be bytes or int, not {type(arg).__name__}")
        if isinstance(arg, int):
            if not INT64_MIN <= arg <= INT64_MAX:
                raise ValueError("integer argument outside the signed 64-bit range")
            parts += [bytes((_ARG_INT,)), _I64.pack(arg)]
        else:
            if len(arg) > 0xFFFFFFFF:
                raise ValueError("argument too long")
            parts += [bytes((_ARG_BYTES,)), _U32.pack(len(arg)), bytes(arg)]
    return b"".join(parts)


def cmd_get(key: bytes) -> bytes:
    return encode_command("GET", key)


def cmd_set(key: bytes, value: bytes) -> bytes:
    return encode_command("SET", key, value)


def cmd_del(*keys: bytes) -> bytes:
    return encode_command("DEL", *keys)


def cmd_incr(key: bytes, by: int = 1) -> bytes:
    return encode_command("INCR", key, by)


def cmd_mget(*keys: bytes) -> bytes:
    return encode_command("MGET", *keys)


class _BadCommand(Exception):
    """Internal: the command is rejected with this message as its Error result."""


def _decode_command(command: bytes) -> tuple[int, list[bytes | int]]:
    """(code, arguments) of a well-formed command; _BadCommand otherwise. Runs once per
    executed request on every replica, so it reads with offsets, not a cursor object."""
    n = len(command)
    if n < 3:
        raise _BadCommand("malformed command")
    code, argc = _HEAD.unpack_from(command)
    pos = 3
    args: list[bytes | int] = []
    for _ in range(argc):
        if pos >= n:
            raise _BadCommand("malformed command")
        kind = command[pos]
        if kind == _ARG_BYTES:
            if pos + 5 > n:
                raise _BadCommand("malformed command")
            (length,) = _U32.unpack_from(command, pos + 1)
            pos += 5 + length
            if pos > n:
                raise _BadCommand("malformed command")
            args.append(command[pos - length : pos])
        elif kind == _ARG_INT:
            if pos + 9 > n:
                raise _BadCommand("malformed command")
            args.append(_I64.unpack_from(command, pos + 1)[0])
            pos += 9
        else:
            raise _BadCommand("malformed command")
    if pos != n:
        raise _BadCommand("malformed command")
    if code not in _OP_NAMES:
        raise _BadCommand("unknown command")
    return code, args


def is_read_only(command: bytes) -> bool:
    """True for a well-formed GET or MGET: it changes no state, whatever its result."""
    try:
        code, _ = _decode_command(bytes(command))
    except _BadCommand:
        return False
    return code in _READ_ONLY


def parse_int64(raw: bytes) -> int | None:
    """The value of a canonical decimal signed 64-bit integer, else None.

    Canonical (no sign on positives, no leading zeros, no "-0", no spaces) so that a stored
    counter has exactly one spelling and every replica agrees on what INCR accepts.
    """
    if not 0 < len(raw) <= 20:
        return None
    digits = raw[1:] if raw[:1] == b"-" else raw
    # bytes.isdigit is ASCII-only, unlike str.isdigit, and rules out "_" that int() accepts.
    if not digits.isdigit():
        return None
    if (len(digits) > 1 and digits[:1] == b"0") or raw == b"-0":
        return None
    value = int(raw)
    if not INT64_MIN <= value <= INT64_MAX:
        return None
    return value


# ---------------------------------------------------------------------------------------------
# The state machine


def _arity(name: str, args: list[bytes | int], n: int) -> None:
    if len(args) != n:
        raise _BadCommand(f"wrong number of arguments for {name}")


def _key(name: str, arg: bytes | int) -> bytes:
    if not isinstance(arg, bytes):
        raise _BadCommand(f"wrong argument type for {name}")
    if len(arg) > MAX_KEY_BYTES:
        raise _BadCommand("key too long")
    return arg


def _keys(name: str, args: list[bytes | int]) -> list[bytes]:
    # A bound on keys per command keeps one command's work and result size predictable.
    if not 1 <= len(args) <= MAX_KEYS_PER_COMMAND:
        raise _BadCommand(f"wrong number of arguments for {name}")
    return [_key(name, arg) for arg in args]


# Canonical order of the state stream, and the unit of its caches: keys are spread over BUCKETS
# buckets by CRC-32 (deterministic on every replica, unlike ``hash``); the stream lists the
# buckets in ascending index, each bucket's keys ascending. A protocol constant: changing it
# changes every snapshot and digest.
BUCKETS: Final = 4096
_BUCKET_MASK: Final = BUCKETS - 1
# digest() hashes groups of consecutive buckets (GROUPS group digests, then one over them).
_GROUP_SHIFT: Final = 4
GROUP_BUCKETS: Final = 1 << _GROUP_SHIFT
GROUPS: Final = BUCKETS // GROUP_BUCKETS
# state_pieces measures its pieces span by span (a span: _SPAN_BUCKETS consecutive buckets,
# whose cached bytes are counted in _span_bytes), going bucket by bucket only through a span
# larger than PIECE_BYTES.
_SPAN_SHIFT: Final = 8
_SPAN_BUCKETS: Final = 1 << _SPAN_SHIFT
_SPANS: Final = BUCKETS // _SPAN_BUCKETS


def bucket_of(key: bytes) -> int:
    """The bucket of ``key`` (0..BUCKETS-1), which places it in the state stream."""
    return zlib.crc32(key) & _BUCKET_MASK


def _join_run(head: bytes, cached: list[bytes], lo: int, hi: int) -> bytes:
    """One piece of the state stream: ``head`` (if any), then buckets lo..hi-1."""
    run = b"".join(cached[lo:hi])
    return head + run if head else run


class _StateReader:
    """Incremental parser of a state stream fed in arbitrary slices. It buffers at most one
    partial entry beyond what one feed brings (lengths are checked before waiting for bytes).

    It checks the canonical order (bucket ascending, then key ascending: no duplicates, one
    stream per state) and builds the store's bucket caches from the entries' own bytes, so a
    restored store streams and digests without serialising anything again.
    """

    __slots__ = (
        "_bucket",
        "_buf",
        "_count",
        "_max_keys",
        "_parts",
        "_previous",
        "bucket_bytes",
        "bucket_keys",
        "data",
    )

    def __init__(self, max_keys: int | None) -> None:
        self._max_keys = max_keys
        self._buf = bytearray()
        self._count: int | None = None  # None until the header is read
        self._bucket = -1  # the bucket of the last entry read
        self._previous = b""  # the key of the last entry read
        self._parts: list[bytes] = []  # the entries read so far of bucket self._bucket
        self.data: dict[bytes, bytes] = {}
        self.bucket_keys: list[list[bytes] | None] = [None] * BUCKETS
        self.bucket_bytes: list[bytes] = [b""] * BUCKETS

    def feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        if self._count is None:
            if end < _STATE_HEAD_BYTES:
                return
            if buf[: len(_SNAPSHOT_MAGIC)] != _SNAPSHOT_MAGIC:
                raise ValueError("not a kv snapshot")
            count: int = _U32.unpack_from(buf, len(_SNAPSHOT_MAGIC))[0]
            if self._max_keys is not None and count > self._max_keys:
                raise ValueError("snapshot holds more keys than max_keys")
            self._count = count
            pos = _STATE_HEAD_BYTES
        count = self._count
        entries = self.data
        while len(entries) < count:
            if end - pos < 2:
                break
            klen: int = _U16.unpack_from(buf, pos)[0]
            if klen > MAX_KEY_BYTES:
                raise ValueError("snapshot key too long")
            vstart = pos + 2 + klen + 4
            if end < vstart:
                break
            vlen: int = _U32.unpack_from(buf, vstart - 4)[0]
            if vlen > MAX_VALUE_BYTES:
                raise ValueError("snapshot value too long")
            stop = vstart + vlen
            if end < stop:
                break
            key = bytes(buf[pos + 2 : vstart - 4])
            bucket = zlib.crc32(key) & _BUCKET_MASK
            if bucket != self._bucket:
                if bucket < self._bucket:
                    raise ValueError("snapshot keys not in canonical order")
                self._close_bucket()
                self._bucket = bucket
                self.bucket_keys[bucket] = [key]
            else:
                if key <= self._previous:
                    raise ValueError("snapshot keys not in canonical order")
                keys = self.bucket_keys[bucket]
                assert keys is not None
                keys.append(key)  # ascending, so the list stays sorted
            entries[key] = bytes(buf[vstart:stop])
            self._parts.append(bytes(buf[pos:stop]))
            self._previous = key
            pos = stop
        if len(entries) == count and pos < end:
            raise ValueError("trailing bytes")
        del buf[:pos]

    def _close_bucket(self) -> None:
        if self._parts:
            self.bucket_bytes[self._bucket] = b"".join(self._parts)
            self._parts = []

    def finish(self) -> None:
        if self._count is None or len(self.data) < self._count or self._buf:
            raise ValueError("truncated")
        self._close_bucket()


class KVStore:
    """A bytes -> bytes map driven by ``apply`` (the ``Application`` protocol).

    ``max_keys`` bounds the number of keys (a SET or INCR creating one more fails with
    "store full"); ``max_result_bytes`` bounds an encoded result (a larger one becomes the
    error "result too large"), so a reply always fits the replica's ``max_reply_bytes``.
    Both must be equal on every replica, like any configuration.

    The map is the whole state (no expiry, no other per-key data; ``clock_ns`` is unused).
    State stream and digest are asked for at every checkpoint, so both are cached per bucket:
    each bucket keeps its sorted key list and its entries' stream bytes, re-encoded only if the
    bucket was written since (``buckets_encoded`` counts those encodings, for tests and
    benchmarks); ``state_pieces`` then only joins cached bytes.
    """

    def __init__(self, *, max_keys: int | None = None, max_result_bytes: int | None = None) -> None:
        if max_keys is not None and max_keys < 0:
            raise ValueError("max_keys must be >= 0")
        if max_result_bytes is not None and max_result_bytes < 64:
            raise ValueError("max_result_bytes must leave room for an error result (>= 64)")
        self._max_keys = max_keys
        self._max_result_bytes = max_result_bytes
        self._data: dict[bytes, bytes] = {}
        # Per bucket: its keys, sorted (None while it has none), and its stream bytes, valid
        # unless the bucket is in _dirty. _span_bytes: the cached bytes per span of buckets.
        self._bucket_keys: list[list[bytes] | None] = [None] * BUCKETS
        self._bucket_bytes: list[bytes] = [b""] * BUCKETS
        self._span_bytes: list[int] = [0] * _SPANS
        self._dirty: set[int] = set()
        # digest(): one digest per group of buckets, None once the group is written; the
        # digest over them, None after any write.
        self._group_digests: list[bytes | None] = [None] * GROUPS
        self._digest: bytes | None = None
        # Bumped by every change of state, so a state_pieces iterator notices one under it.
        self._version = 0
        self._restoring: _StateReader | None = None
        self.buckets_encoded = 0

    # -- Application protocol ------------------------------------------------------------------

    def apply(self, command: bytes, clock_ns: int) -> bytes:
        """Execute ``command``; a bad one yields an Error result and changes nothing.

        ``clock_ns`` is unused: no command depends on time yet.
        """
        try:
            result = self._execute(*_decode_command(bytes(command)))
        except _BadCommand as exc:
            result = Error(str(exc))
        encoded = encode_result(result)
        if self._max_result_bytes is not None and len(encoded) > self._max_result_bytes:
            # Only reads produce large results, so nothing needs to be undone.
            return encode_result(Error("result too large"))
        return encoded

    def snapshot(self) -> bytes:
        """The whole state stream as one bytes object (tests, small stores): prefer
        ``state_pieces``, which never holds the whole store at once."""
        return b"".join(self.state_pieces())

    def restore(self, snapshot: bytes) -> None:
        """Replace the state with ``snapshot``; ValueError if it is not a canonical snapshot
        (the state is then unchanged)."""
        self.restore_begin()
        try:
            self.restore_feed(bytes(snapshot))
            self.restore_finish()
        except ValueError:
            self.restore_abort()
            raise

    # -- StateStream protocol ------------------------------------------------------------------

    def state_pieces(self) -> Iterator[bytes]:
        """The canonical state stream in pieces of at most ``MAX_PIECE_BYTES``.

        It reads the state as of its first ``next``; a write or restore before it is exhausted
        makes it raise RuntimeError (never silently mixed states). Its cost is re-encoding the
        buckets written since the last call, then one join of cached bytes per piece.
        """
        version = self._version
        self._refresh()
        for piece in self._pieces():
            yield piece
            if self._version != version:
                raise RuntimeError("the store changed while its state was being read")

    def _pieces(self) -> Iterator[bytes]:
        """The state stream (caches fresh) in pieces: each joins a run of consecutive buckets
        until it reaches PIECE_BYTES, so it stays below 2 * PIECE_BYTES. A bucket larger than
        PIECE_BYTES ends the run before it (that piece may be short) and is sliced alone."""
        cached = self._bucket_bytes
        sizes = self._span_bytes
        head = _SNAPSHOT_MAGIC + _U32.pack(len(self._data))  # leads the first piece
        lo = 0  # the run: buckets lo.., holding `run` bytes (with the head while it leads)
        run = len(head)
        for span in range(_SPANS):
            start = span << _SPAN_SHIFT
            if sizes[span] <= PIECE_BYTES:  # the common case: the whole span joins the run
                run += sizes[span]
                if run >= PIECE_BYTES:
                    yield _join_run(head, cached, lo, start + _SPAN_BUCKETS)
                    head, lo, run = b"", start + _SPAN_BUCKETS, 0
                continue
            for bucket in range(start, start + _SPAN_BUCKETS):
                blob = cached[bucket]
                if len(blob) <= PIECE_BYTES:
                    run += len(blob)
                    if run >= PIECE_BYTES:
                        yield _join_run(head, cached, lo, bucket + 1)
                        head, lo, run = b"", bucket + 1, 0
                    continue
                if run:
                    yield _join_run(head, cached, lo, bucket)
                    head = b""
                for pos in range(0, len(blob), PIECE_BYTES):
                    yield blob[pos : pos + PIECE_BYTES]
                lo, run = bucket + 1, 0
        if run:
            yield _join_run(head, cached, lo, BUCKETS)

    def _refresh(self) -> None:
        """Re-encode the buckets written since the last refresh."""
        dirty = self._dirty
        if not dirty:
            return
        data = self._data
        bucket_keys = self._bucket_keys
        cached = self._bucket_bytes
        sizes = self._span_bytes
        u16 = _U16.pack
        u32 = _U32.pack
        for bucket in dirty:
            keys = bucket_keys[bucket]
            if keys:
                parts: list[bytes] = []
                for key in keys:
                    value = data[key]
                    parts += (u16(len(key)), key, u32(len(value)), value)
                fresh = b"".join(parts)
            else:
                bucket_keys[bucket] = None
                fresh = b""
            sizes[bucket >> _SPAN_SHIFT] += len(fresh) - len(cached[bucket])
            cached[bucket] = fresh
        self.buckets_encoded += len(dirty)
        dirty.clear()

    def restore_begin(self) -> None:
        """Start restoring a state stream; the current state stays until restore_finish."""
        self._restoring = _StateReader(self._max_keys)

    def restore_feed(self, data: bytes) -> None:
        """The next bytes of the stream, cut anywhere. ValueError on a malformed stream (the
        restore is then dropped)."""
        reader = self._restoring
        if reader is None:
            raise ValueError("no restore in progress")
        try:
            reader.feed(data)
        except ValueError:
            self._restoring = None
            raise

    def restore_finish(self) -> None:
        """Replace the state with the stream fed since restore_begin; ValueError if it is
        incomplete (the current state is then unchanged)."""
        reader = self._restoring
        self._restoring = None
        if reader is None:
            raise ValueError("no restore in progress")
        reader.finish()
        cached = reader.bucket_bytes
        self._data = reader.data
        self._bucket_keys = reader.bucket_keys
        self._bucket_bytes = cached
        self._span_bytes = [
            sum(map(len, cached[lo : lo + _SPAN_BUCKETS]))
            for lo in range(0, BUCKETS, _SPAN_BUCKETS)
        ]
        self._dirty = set()
        self._group_digests = [None] * GROUPS
        self._digest = None
        self._version += 1

    def restore_abort(self) -> None:
        self._restoring = None

    def digest(self) -> bytes:
        """BLAKE2b-256 over the GROUPS group digests, cached until the next write. A group's
        digest is the BLAKE2b-256 of its part of the state stream (the entries of its
        GROUP_BUCKETS buckets in stream order), recomputed only after a write to it."""
        if self._digest is None:
            self._refresh()
            cached = self._bucket_bytes
            digests = self._group_digests
            parts: list[bytes] = []
            for group, d in enumerate(digests):
                if d is None:
                    lo = group << _GROUP_SHIFT
                    segment = b"".join(cached[lo : lo + GROUP_BUCKETS])
                    d = digests[group] = hashlib.blake2b(segment, digest_size=DIGEST_BYTES).digest()
                parts.append(d)
            self._digest = hashlib.blake2b(b"".join(parts), digest_size=DIGEST_BYTES).digest()
        return self._digest

    # -- extras --------------------------------------------------------------------------------

    def footprint(self) -> int:
        """Number of keys (for bounded-memory checks)."""
        return len(self._data)

    def is_read_only(self, command: bytes) -> bool:
        return is_read_only(command)

    # -- commands ------------------------------------------------------------------------------

    def _execute(self, code: int, args: list[bytes | int]) -> KVResult:
        name = _OP_NAMES[code]
        match name:
            case "GET":
                _arity(name, args, 1)
                stored = self._data.get(_key(name, args[0]))
                return Nil() if stored is None else Value(stored)
            case "MGET":
                return Values(tuple(self._data.get(key) for key in _keys(name, args)))
            case "SET":
                _arity(name, args, 2)
                key = _key(name, args[0])
                value = args[1]
                if not isinstance(value, bytes):
                    raise _BadCommand(f"wrong argument type for {name}")
                if len(value) > MAX_VALUE_BYTES:
                    raise _BadCommand("value too long")
                self._put(key, value)
                return Ok()
            case "DEL":
                removed = 0
                for key in _keys(name, args):
                    if self._data.pop(key, None) is not None:
                        removed += 1
                        self._remove_key(key)
                return Integer(removed)
            case "INCR":
                _arity(name, args, 2)
                return self._incr(_key(name, args[0]), args[1])
        raise AssertionError(f"opcode {code} has no handler")

    def _incr(self, key: bytes, by: bytes | int) -> KVResult:
        if not isinstance(by, int):
            raise _BadCommand("wrong argument type for INCR")
        current = self._data.get(key)
        base = 0 if current is None else parse_int64(current)
        if base is None:
            return Error("value is not an integer or out of range")
        new = base + by
        if not INT64_MIN <= new <= INT64_MAX:
            return Error("increment would overflow")
        self._put(key, str(new).encode())
        return Integer(new)

    def _put(self, key: bytes, value: bytes) -> None:
        data = self._data
        current = data.get(key)
        if current is None:
            if self._max_keys is not None and len(data) >= self._max_keys:
                raise _BadCommand("store full")
            data[key] = value
            bucket = bucket_of(key)
            keys = self._bucket_keys[bucket]
            if keys is None:
                self._bucket_keys[bucket] = [key]
            else:
                bisect.insort(keys, key)
            self._touch(bucket)
        elif current != value:
            data[key] = value
            self._touch(bucket_of(key))

    def _remove_key(self, key: bytes) -> None:
        bucket = bucket_of(key)
        keys = self._bucket_keys[bucket]
        assert keys is not None, "a stored key is in its bucket's list"
        keys.remove(key)
        self._touch(bucket)

    def _touch(self, bucket: int) -> None:
        """The state changed in ``bucket``."""
        self._version += 1
        self._digest = None
        self._dirty.add(bucket)
        self._group_digests[bucket >> _GROUP_SHIFT] = None
