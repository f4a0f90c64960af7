"""The memory-node protocol on the wire (TCP backend): its five messages and their frames.

A replica sends ``MemRead``, ``MemWrite`` and ``MemMarkKnown`` to a memory node, which answers
with ``MemReadReply`` or ``MemWriteReply``. The frame is the one every link carries
(``ubft.framing``: ``u32 length | u8 version | u8 kind | u32 epoch | body``); integers are
big-endian and unsigned. Bodies::

    MEM_READ         op_id u64 | epoch u32 | writer u16 | b u16 | slot u32
    MEM_WRITE        op_id u64 | epoch u32 | writer u16 | b u16 | slot u32 | subslot u8
                     | data (exactly MEM_SUBSLOT_BYTES = 120 raw bytes)
    MEM_READ_REPLY   op_id u64 | node_incarnation u64 | status u8 (0, 1 or 2)
                     | u8 n | data (n = 0 or MEM_REGISTER_BYTES = 240)
    MEM_WRITE_REPLY  op_id u64 | node_incarnation u64 | status u8 (0, 1 or 2)
    MEM_MARK_KNOWN   op_id u64 | epoch u32 | writer u16 | node_incarnation u64

(``subslot`` is any u8: the memory node itself rejects one that is not 0 or 1.)

Kind numbers are fixed forever and share one number space with the core's ``MsgKind``, which
lists them too (the core may import this module; this module never imports the core). Every
decode failure is a ``DecodeError`` with a reason of the core codec's ``REASONS``; ``encode``
raises ``ValueError`` for a message the format cannot carry and ``TypeError`` for an object
that is no memory-node message.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from ubft.framing import (
    FRAME_HEADER,
    HEADER_BYTES,
    MAX_FRAME_BYTES,
    WIRE_VERSION,
    DecodeError,
    builder,
    end_error,
    fixed_decoder,
    frame_struct,
    read_header,
)

from .layout import REGISTER_BYTES, SUBSLOT_BYTES

__all__ = [
    "DECODERS",
    "ENCODERS",
    "MEM_REGISTER_BYTES",
    "MEM_STATUS_MAX",
    "MEM_SUBSLOT_BYTES",
    "STATUS_OK",
    "STATUS_REJECTED",
    "STATUS_UNKNOWN",
    "MemKind",
    "MemMarkKnown",
    "MemMessage",
    "MemRead",
    "MemReadReply",
    "MemReply",
    "MemRequest",
    "MemWrite",
    "MemWriteReply",
    "decode",
    "decode_request",
    "encode",
]


class MemKind(IntEnum):
    MEM_READ = 48
    MEM_WRITE = 49
    MEM_READ_REPLY = 50
    MEM_WRITE_REPLY = 51
    MEM_MARK_KNOWN = 52  # a writer has rewritten its area after the node lost its memory


MEM_SUBSLOT_BYTES: Final = SUBSLOT_BYTES  # 120
MEM_REGISTER_BYTES: Final = REGISTER_BYTES  # 240

# Reply status, a u8 on the wire.
STATUS_OK: Final = 0
STATUS_UNKNOWN: Final = 1  # the area is not readable here (yet): no reply for a quorum
STATUS_REJECTED: Final = 2  # access control refused it; never applied
MEM_STATUS_MAX: Final = STATUS_REJECTED


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class MemRead:
    op_id: int
    epoch: int
    writer: int
    b: int
    slot: int


@dataclass(frozen=True, slots=True)
class MemWrite:
    op_id: int
    epoch: int
    writer: int
    b: int
    slot: int
    subslot: int
    data: bytes  # one whole sub-slot


@dataclass(frozen=True, slots=True)
class MemMarkKnown:
    """The writer rewrote its whole area of ``epoch`` on this node, in ``node_incarnation``;
    answered with a MemWriteReply."""

    op_id: int
    epoch: int
    writer: int
    node_incarnation: int


@dataclass(frozen=True, slots=True)
class MemReadReply:
    op_id: int
    node_incarnation: int
    status: int  # 0 ok, 1 unknown, 2 rejected
    data: bytes  # both sub-slots when ok


@dataclass(frozen=True, slots=True)
class MemWriteReply:
    op_id: int
    node_incarnation: int
    status: int


MemRequest = MemRead | MemWrite | MemMarkKnown
MemReply = MemReadReply | MemWriteReply
MemMessage = MemRequest | MemReply


# --------------------------------------------------------------------------- encoding

_V = WIRE_VERSION
_K_MEM_READ = int(MemKind.MEM_READ)
_K_MEM_WRITE = int(MemKind.MEM_WRITE)
_K_MEM_READ_REPLY = int(MemKind.MEM_READ_REPLY)
_K_MEM_WRITE_REPLY = int(MemKind.MEM_WRITE_REPLY)
_K_MEM_MARK_KNOWN = int(MemKind.MEM_MARK_KNOWN)

# Header + fixed body part, for encoding; body part alone, for decoding.
_F_MEM_READ = frame_struct("QIHHI")
_B_MEM_READ = struct.Struct(">QIHHI")
_F_MEM_WRITE = frame_struct(f"QIHHIB{MEM_SUBSLOT_BYTES}s")
_B_MEM_WRITE = struct.Struct(f">QIHHIB{MEM_SUBSLOT_BYTES}s")
_F_MEM_READ_REPLY = frame_struct("QQBB")
_B_MEM_READ_REPLY = struct.Struct(">QQBB")
_F_MEM_WRITE_REPLY = frame_struct("QQB")
_B_MEM_WRITE_REPLY = struct.Struct(">QQB")
_F_MEM_MARK_KNOWN = frame_struct("QIHQ")
_B_MEM_MARK_KNOWN = struct.Struct(">QIHQ")
assert FRAME_HEADER.size == HEADER_BYTES


def _status(status: int) -> int:
    if not 0 <= status <= MEM_STATUS_MAX:
        raise ValueError(f"memory status must be 0, 1 or 2, not {status}")
    return status


def _e_mem_read(m: MemRead, epoch: int) -> bytes:
    s = _F_MEM_READ
    return s.pack(s.size - 4, _V, _K_MEM_READ, epoch, m.op_id, m.epoch, m.writer, m.b, m.slot)


def _e_mem_write(m: MemWrite, epoch: int) -> bytes:
    data = m.data
    if len(data) != MEM_SUBSLOT_BYTES:
        raise ValueError(f"MemWrite.data must be {MEM_SUBSLOT_BYTES} bytes, not {len(data)}")
    s = _F_MEM_WRITE
    return s.pack(
        s.size - 4,
        _V,
        _K_MEM_WRITE,
        epoch,
        m.op_id,
        m.epoch,
        m.writer,
        m.b,
        m.slot,
        m.subslot,
        data,
    )


def _e_mem_read_reply(m: MemReadReply, epoch: int) -> bytes:
    n = len(m.data)
    if n not in (0, MEM_REGISTER_BYTES):
        raise ValueError(f"MemReadReply.data must be empty or {MEM_REGISTER_BYTES} bytes, not {n}")
    s = _F_MEM_READ_REPLY
    head = s.pack(
        s.size - 4 + n,
        _V,
        _K_MEM_READ_REPLY,
        epoch,
        m.op_id,
        m.node_incarnation,
        _status(m.status),
        n,
    )
    return head + m.data


def _e_mem_write_reply(m: MemWriteReply, epoch: int) -> bytes:
    s = _F_MEM_WRITE_REPLY
    return s.pack(
        s.size - 4, _V, _K_MEM_WRITE_REPLY, epoch, m.op_id, m.node_incarnation, _status(m.status)
    )


def _e_mem_mark_known(m: MemMarkKnown, epoch: int) -> bytes:
    s = _F_MEM_MARK_KNOWN
    return s.pack(
        s.size - 4, _V, _K_MEM_MARK_KNOWN, epoch, m.op_id, m.epoch, m.writer, m.node_incarnation
    )


ENCODERS: Final[dict[type, Callable[[Any, int], bytes]]] = {
    MemRead: _e_mem_read,
    MemWrite: _e_mem_write,
    MemReadReply: _e_mem_read_reply,
    MemWriteReply: _e_mem_write_reply,
    MemMarkKnown: _e_mem_mark_known,
}
"""Encoder ``(message, epoch) -> frame`` per message class (the core codec registers them)."""


def encode(msg: MemMessage, epoch: int) -> bytes:
    """The frame carrying ``msg`` in ``epoch``."""
    enc = ENCODERS.get(type(msg))
    if enc is None:
        raise TypeError(f"not a memory-node message: {type(msg).__name__}")
    try:
        frame = enc(msg, epoch)
    except struct.error as exc:
        raise ValueError(f"{type(msg).__name__} cannot be encoded: {exc}") from exc
    assert len(frame) <= MAX_FRAME_BYTES
    return frame


# --------------------------------------------------------------------------- decoding

_new_mem_read_reply = builder(MemReadReply)
_new_mem_write_reply = builder(MemWriteReply)
_MEM_READ_REPLY_FIXED = HEADER_BYTES + _B_MEM_READ_REPLY.size  # 28
_MEM_WRITE_REPLY_SIZE = HEADER_BYTES + _B_MEM_WRITE_REPLY.size  # 27


def _d_mem_read_reply(frame: bytes, n: int) -> MemReadReply:
    if n < _MEM_READ_REPLY_FIXED:
        raise DecodeError("body.truncated")
    op_id, incarnation, status, ln = _B_MEM_READ_REPLY.unpack_from(frame, HEADER_BYTES)
    if status > MEM_STATUS_MAX:
        raise DecodeError("field.bad_value")
    if ln != 0 and ln != MEM_REGISTER_BYTES:
        raise DecodeError("field.bad_size")
    if _MEM_READ_REPLY_FIXED + ln != n:
        raise end_error(_MEM_READ_REPLY_FIXED + ln, n)
    return _new_mem_read_reply(op_id, incarnation, status, frame[_MEM_READ_REPLY_FIXED:])


def _d_mem_write_reply(frame: bytes, n: int) -> MemWriteReply:
    if n != _MEM_WRITE_REPLY_SIZE:
        raise end_error(_MEM_WRITE_REPLY_SIZE, n)
    op_id, incarnation, status = _B_MEM_WRITE_REPLY.unpack_from(frame, HEADER_BYTES)
    if status > MEM_STATUS_MAX:
        raise DecodeError("field.bad_value")
    return _new_mem_write_reply(op_id, incarnation, status)


_REQUEST_DECODERS: Final[dict[int, Callable[[bytes, int], MemRequest]]] = {
    _K_MEM_READ: fixed_decoder(_B_MEM_READ, MemRead),
    _K_MEM_WRITE: fixed_decoder(_B_MEM_WRITE, MemWrite),
    _K_MEM_MARK_KNOWN: fixed_decoder(_B_MEM_MARK_KNOWN, MemMarkKnown),
}

DECODERS: Final[dict[int, Callable[[bytes, int], MemMessage]]] = {
    **_REQUEST_DECODERS,
    _K_MEM_READ_REPLY: _d_mem_read_reply,
    _K_MEM_WRITE_REPLY: _d_mem_write_reply,
}
"""Body decoder ``(frame, len(frame)) -> message`` per kind number, for a frame whose header
is already checked (the core codec registers them)."""
assert sorted(DECODERS) == sorted(map(int, MemKind))
assert len(ENCODERS) == len(MemKind)


def decode(frame: bytes) -> tuple[int, MemMessage]:
    """``(epoch, message)`` from one whole memory-node frame; raises only ``DecodeError``."""
    if type(frame) is not bytes:
        frame = bytes(frame)
    kind, epoch, n = read_header(frame)
    dec = DECODERS.get(kind)
    if dec is None:
        raise DecodeError("frame.unknown_kind")
    return epoch, dec(frame, n)


def decode_request(frame: bytes) -> tuple[int, MemRequest]:
    """``(epoch, request)`` from a frame sent to a memory node; any other kind, a reply
    included, is ``frame.unknown_kind``. Raises only ``DecodeError``."""
    if type(frame) is not bytes:
        frame = bytes(frame)
    kind, epoch, n = read_header(frame)
    dec = _REQUEST_DECODERS.get(kind)
    if dec is None:
        raise DecodeError("frame.unknown_kind")
    return epoch, dec(frame, n)
