"""What every wire codec shares: the frame header, its limits, ``DecodeError`` and the helpers
that decode fixed-size bodies fast.

Every link (replica, client and memory-node alike) carries the same frame::

    u32 length        number of bytes after this field (= len(frame) - 4)
    u8  version       WIRE_VERSION (1)
    u8  kind          a kind number (``MsgKind`` of the core, ``MemKind`` of the memory node)
    u32 epoch
    body              per kind; must be consumed exactly

This module sits below both codecs (``ubft.replica.core.codec`` and ``ubft.memnode.wire``) and
imports nothing of ``ubft``, so the memory node never imports the replica to read a frame
(pyproject.toml's import-linter contracts keep it so).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from typing import Any, Final, TypeVar

__all__ = [
    "FRAME_HEADER",
    "HEADER_BYTES",
    "KIND_OFFSET",
    "MAX_FRAME_BYTES",
    "WIRE_VERSION",
    "DecodeError",
    "builder",
    "end_error",
    "fixed_decoder",
    "frame_struct",
    "read_header",
]

WIRE_VERSION: Final = 1
MAX_FRAME_BYTES: Final = 4 << 20  # a whole frame, length field included
FRAME_HEADER: Final = struct.Struct(">IBBI")  # length, version, kind, epoch
HEADER_BYTES: Final = FRAME_HEADER.size  # 10
KIND_OFFSET: Final = 5  # frame[KIND_OFFSET] is the kind byte

_T = TypeVar("_T")


class DecodeError(Exception):
    """Bytes from a peer do not form a valid frame; ``reason`` is a stable dotted code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def frame_struct(body: str) -> struct.Struct:
    """The header and the fixed part of a body in one Struct (``body`` without byte order)."""
    return struct.Struct(">IBBI" + body)


def end_error(end: int, n: int) -> DecodeError:
    """The error for a body that should end at ``end`` but the buffer ends at ``n``."""
    return DecodeError("body.truncated" if end > n else "body.trailing_bytes")


def read_header(frame: bytes) -> tuple[int, int, int]:
    """``(kind, epoch, len(frame))`` of one whole frame; raises only ``DecodeError`` (the
    ``frame.*`` reasons). The body is left to the kind's decoder."""
    n = len(frame)
    if n < HEADER_BYTES:
        raise DecodeError("frame.too_short")
    if n > MAX_FRAME_BYTES:
        raise DecodeError("frame.too_long")
    length, version, kind, epoch = FRAME_HEADER.unpack_from(frame)
    if length != n - 4:
        raise DecodeError("frame.length_mismatch")
    if version != WIRE_VERSION:
        raise DecodeError("frame.bad_version")
    return kind, epoch, n


def builder(cls: type[_T]) -> Callable[..., _T]:
    """A positional constructor of ``cls`` that fills its slots directly.

    The ``__init__`` of a frozen dataclass stores each field through ``object.__setattr__``,
    which costs as much as all the rest of decoding a small frame. For a slotted dataclass whose
    ``__init__`` only stores its fields, in order, setting the slots directly builds an equal
    object in about half the time. Any other class gets its own constructor back.
    """
    if not dataclasses.is_dataclass(cls) or hasattr(cls, "__post_init__"):
        return cls
    fields = dataclasses.fields(cls)
    names = tuple(f.name for f in fields)
    if cls.__dict__.get("__slots__") != names or not all(f.init for f in fields):
        return cls
    args = ", ".join(names)
    body = "".join(f"    set_{name}(obj, {name})\n" for name in names)
    env: dict[str, Any] = {f"set_{name}": cls.__dict__[name].__set__ for name in names}
    env["new"] = object.__new__
    env["cls"] = cls
    exec(f"def build({args}):\n    obj = new(cls)\n{body}    return obj\n", env)
    built: Callable[..., _T] = env["build"]
    return built


def fixed_decoder(body: struct.Struct, cls: type[_T]) -> Callable[[bytes, int], _T]:
    """Decoder ``(frame, len(frame)) -> message`` of a body that is exactly one Struct (its 's'
    fields have their exact size), its fields in the order of ``cls``'s."""
    size = HEADER_BYTES + body.size
    unpack = body.unpack_from
    build = builder(cls)

    def dec(frame: bytes, n: int) -> _T:
        if n != size:
            raise end_error(size, n)
        return build(*unpack(frame, HEADER_BYTES))

    return dec
