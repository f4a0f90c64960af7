"""Byte layout of one SWMR register (PROTOCOL.md section 2), identical over every backend.

A register is two sub-slots ``{checksum u64, incarnation u64, value bytes[104]}``, integers
big-endian. A writer always overwrites the sub-slot that does not hold its latest value, so a
torn write (RDMA) or a lost one leaves the other sub-slot readable; the checksum tells a reader
which sub-slots are whole.
"""

from __future__ import annotations

import hashlib
import struct
from typing import NamedTuple

VALUE_BYTES = 104
SUBSLOT_BYTES = 8 + 8 + VALUE_BYTES  # 120
REGISTER_BYTES = 2 * SUBSLOT_BYTES  # 240

_U64_LIMIT = 1 << 64
_HEADER = struct.Struct(">QQ")  # checksum, incarnation
_CTB_HEAD = struct.Struct(">Q")  # k
_CTB_DIGEST_BYTES = 32
_CTB_SIG_BYTES = 64
assert _CTB_HEAD.size + _CTB_DIGEST_BYTES + _CTB_SIG_BYTES == VALUE_BYTES


class RegisterAddress(NamedTuple):
    """Register (b, slot) in ``writer``'s area of ``epoch``.

    ``b`` is the CTBcast broadcaster whose value the writer locks there; ``slot`` is k mod tail.
    """

    epoch: int
    writer: int
    b: int
    slot: int


def checksum(incarnation: int, value: bytes) -> int:
    """64-bit BLAKE2b of incarnation || value, as an unsigned int."""
    h = hashlib.blake2b(digest_size=8)
    h.update(incarnation.to_bytes(8, "big"))
    h.update(value)
    return int.from_bytes(h.digest(), "big")


def encode_subslot(incarnation: int, value: bytes) -> bytes:
    """One whole sub-slot, ready to be written at once."""
    assert 0 <= incarnation < _U64_LIMIT, "incarnation must fit in a u64"
    assert len(value) == VALUE_BYTES, "value must be exactly VALUE_BYTES"
    return _HEADER.pack(checksum(incarnation, value), incarnation) + bytes(value)


def _parse_subslot(raw: bytes) -> tuple[int, bytes] | None:
    check, incarnation = _HEADER.unpack_from(raw)
    value = bytes(raw[_HEADER.size : SUBSLOT_BYTES])
    if checksum(incarnation, value) != check:
        return None
    return incarnation, value


def parse_register(raw: bytes) -> tuple[int, bytes] | None:
    """(incarnation, value) of the highest valid sub-slot, or None for a garbage register.

    Never raises: anything but exactly REGISTER_BYTES bytes is garbage. Two valid sub-slots with
    equal incarnations (only a faulty writer makes them) resolve by the larger value, so every
    reader of the same bytes picks the same one whichever sub-slot it sits in.
    """
    if not isinstance(raw, bytes | bytearray | memoryview) or len(raw) != REGISTER_BYTES:
        return None
    raw = bytes(raw)
    valid = [
        parsed
        for parsed in (_parse_subslot(raw[:SUBSLOT_BYTES]), _parse_subslot(raw[SUBSLOT_BYTES:]))
        if parsed is not None
    ]
    return max(valid) if valid else None


def _empty_register() -> bytes:
    sub = encode_subslot(0, bytes(VALUE_BYTES))
    return sub + sub


EMPTY_REGISTER: bytes = _empty_register()
"""Both sub-slots at incarnation 0 with a zero value and a valid checksum: reads as (0, zeros)."""


def pack_ctb_value(k: int, digest: bytes, sig: bytes) -> bytes:
    """The CTBcast register value: k u64 | digest 32 B | signature 64 B."""
    assert 0 <= k < _U64_LIMIT, "k must fit in a u64"
    assert len(digest) == _CTB_DIGEST_BYTES, "digest must be 32 bytes"
    assert len(sig) == _CTB_SIG_BYTES, "signature must be 64 bytes"
    return _CTB_HEAD.pack(k) + bytes(digest) + bytes(sig)


def unpack_ctb_value(value: bytes) -> tuple[int, bytes, bytes]:
    """(k, digest, signature) of a CTBcast register value; ValueError if not VALUE_BYTES long."""
    if len(value) != VALUE_BYTES:
        raise ValueError(f"a CTBcast value is {VALUE_BYTES} bytes, got {len(value)}")
    (k,) = _CTB_HEAD.unpack_from(value)
    start = _CTB_HEAD.size
    digest = bytes(value[start : start + _CTB_DIGEST_BYTES])
    sig = bytes(value[start + _CTB_DIGEST_BYTES :])
    return k, digest, sig
