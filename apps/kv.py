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

Counters are stored as canonical decimal strings (Redis semantics): GET of a counter returns
e.g. b"5", and INCR accepts only values that parse as a canonical signed 64-bit integer.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
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

_SNAPSHOT_MAGIC: Final = b"ubftkv\x00\x01"

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
    r = _Reader(command)
    try:
        code = r.u8()
        argc = r.u16()
        args: list[bytes | int] = []
        for _ in range(argc):
            kind = r.u8()
            if kind == _ARG_BYTES:
                args.append(r.take(r.u32()))
            elif kind == _ARG_INT:
                args.append(r.i64())
            else:
                raise ValueError("bad argument tag")
        r.finish()
    except ValueError as exc:
        raise _BadCommand("malformed command") from exc
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


CHUNKS = 256


def _chunk_of(key: bytes) -> int:
    """The chunk a key belongs to: deterministic on every replica (unlike ``hash``)."""
    return zlib.crc32(key) & (CHUNKS - 1)


class KVStore:
    """A bytes -> bytes map driven by ``apply`` (the ``Application`` protocol).

    ``max_keys`` bounds the number of keys (a SET or INCR creating one more fails with
    "store full"); ``max_result_bytes`` bounds an encoded result (a larger one becomes the
    error "result too large"), so a reply always fits the replica's ``max_reply_bytes``.
    Both must be equal on every replica, like any configuration.
    """

    def __init__(self, *, max_keys: int | None = None, max_result_bytes: int | None = None) -> None:
        if max_keys is not None and max_keys < 0:
            raise ValueError("max_keys must be >= 0")
        if max_result_bytes is not None and max_result_bytes < 64:
            raise ValueError("max_result_bytes must leave room for an error result (>= 64)")
        self._max_keys = max_keys
        self._max_result_bytes = max_result_bytes
        self._data: dict[bytes, bytes] = {}
        # snapshot() and digest() are asked for at every checkpoint; writes invalidate both.
        self._snapshot: bytes | None = None
        self._digest: bytes | None = None
        # The digest is over CHUNKS chunk digests (keys split by CRC-32), so a checkpoint
        # rehashes only the chunks written since the last one, not the whole store.
        self._chunk_keys: list[set[bytes]] = [set() for _ in range(CHUNKS)]
        self._chunk_digests: list[bytes | None] = [None] * CHUNKS

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
        """Deterministic: keys sorted, one encoding per state."""
        if self._snapshot is None:
            parts = [_SNAPSHOT_MAGIC, _U32.pack(len(self._data))]
            for key in sorted(self._data):
                value = self._data[key]
                parts += [_U16.pack(len(key)), key, _U32.pack(len(value)), value]
            self._snapshot = b"".join(parts)
        return self._snapshot

    def restore(self, snapshot: bytes) -> None:
        """Replace the state with ``snapshot``; ValueError if it is not a canonical snapshot."""
        snapshot = bytes(snapshot)
        r = _Reader(snapshot)
        if r.take(len(_SNAPSHOT_MAGIC)) != _SNAPSHOT_MAGIC:
            raise ValueError("not a kv snapshot")
        count = r.u32()
        if self._max_keys is not None and count > self._max_keys:
            raise ValueError("snapshot holds more keys than max_keys")
        data: dict[bytes, bytes] = {}
        previous: bytes | None = None
        for _ in range(count):
            key = r.take(r.u16())
            if len(key) > MAX_KEY_BYTES:
                raise ValueError("snapshot key too long")
            # Strictly ascending keys: no duplicates, and the digest has one preimage per state.
            if previous is not None and key <= previous:
                raise ValueError("snapshot keys not strictly ascending")
            value = r.take(r.u32())
            if len(value) > MAX_VALUE_BYTES:
                raise ValueError("snapshot value too long")
            data[key] = value
            previous = key
        r.finish()
        self._data = data
        self._snapshot = snapshot
        self._digest = None
        self._chunk_keys = [set() for _ in range(CHUNKS)]
        for key in data:
            self._chunk_keys[_chunk_of(key)].add(key)
        self._chunk_digests = [None] * CHUNKS

    def digest(self) -> bytes:
        """BLAKE2b-256 over the list of chunk digests, cached until the next write; a chunk's
        digest covers its entries in key order and is recomputed only after a write to it."""
        if self._digest is None:
            digests = self._chunk_digests
            parts: list[bytes] = []
            for c, d in enumerate(digests):
                if d is None:
                    d = digests[c] = self._chunk_digest(c)
                parts.append(d)
            self._digest = hashlib.blake2b(b"".join(parts), digest_size=DIGEST_BYTES).digest()
        return self._digest

    def _chunk_digest(self, c: int) -> bytes:
        h = hashlib.blake2b(digest_size=DIGEST_BYTES)
        data = self._data
        for key in sorted(self._chunk_keys[c]):
            value = data[key]
            h.update(_U16.pack(len(key)) + key + _U32.pack(len(value)))
            h.update(value)
        return h.digest()

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
                keys = _keys(name, args)
                removed = 0
                for key in keys:
                    if self._data.pop(key, None) is not None:
                        removed += 1
                        self._chunk_keys[_chunk_of(key)].discard(key)
                        self._invalidate(key)
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
        full = self._max_keys is not None and len(self._data) >= self._max_keys
        if full and key not in self._data:
            raise _BadCommand("store full")
        if self._data.get(key) != value:
            self._data[key] = value
            self._chunk_keys[_chunk_of(key)].add(key)
            self._invalidate(key)

    def _invalidate(self, key: bytes) -> None:
        self._snapshot = None
        self._digest = None
        self._chunk_digests[_chunk_of(key)] = None
