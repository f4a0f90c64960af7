"""One line per simulator event, for replaying a failing seed (``ubft simulate --trace``):
``  1234.5us R0->R1 Promise(view=0, instance=3)``, as raft's ``DescribeMessage`` does."""

from __future__ import annotations

import dataclasses
from typing import TextIO

from ubft.replica.core.codec import decode, decode_payload
from ubft.replica.core.errors import DecodeError
from ubft.replica.core.messages import Ctb

from .network import Node


def _short(value: object) -> str:
    if isinstance(value, bytes):
        return value[:4].hex() + ("…" if len(value) > 4 else "") + f"/{len(value)}B"
    if isinstance(value, tuple):
        return "(" + ", ".join(_short(v) for v in value) + ")"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return describe(value)
    return repr(value)


def describe(msg: object) -> str:
    fields = ", ".join(f"{f.name}={_short(getattr(msg, f.name))}" for f in dataclasses.fields(msg))  # type: ignore[arg-type]
    return f"{type(msg).__name__}({fields})"


def describe_frame(frame: bytes) -> str:
    try:
        _, msg = decode(frame)
    except DecodeError as exc:
        return f"<malformed: {exc.reason}>"
    if isinstance(msg, Ctb):
        try:
            inner = describe(decode_payload(msg.m))
        except DecodeError as exc:
            inner = f"<malformed value: {exc.reason}>"
        return f"Ctb(b={msg.b}, k={msg.k}, m={inner})"
    return describe(msg)


def _name(node: Node) -> str:
    return f"{node[0]}{node[1]}"


class Tracer:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def deliver(self, now_ns: int, src: Node, dst: Node, frame: bytes) -> None:
        self.out.write(
            f"{now_ns / 1000:12.1f}us {_name(src)}->{_name(dst)} {describe_frame(frame)}\n"
        )

    def timer(self, now_ns: int, node: Node, key: object) -> None:
        self.out.write(f"{now_ns / 1000:12.1f}us {_name(node)} timer {key}\n")

    def note(self, now_ns: int, text: str) -> None:
        self.out.write(f"{now_ns / 1000:12.1f}us {text}\n")
