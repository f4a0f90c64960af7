"""The memory-node wire format (``ubft.memnode.wire``): frames byte for byte as before the
messages moved out of the core, one format whichever codec reads it, and decoding that only
ever raises ``DecodeError``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ubft.memnode import wire
from ubft.memnode.wire import (
    MemKind,
    MemMarkKnown,
    MemMessage,
    MemRead,
    MemReadReply,
    MemWrite,
    MemWriteReply,
)
from ubft.replica.core import codec
from ubft.replica.core.messages import MsgKind, Promise

from ubft.framing import DecodeError

EPOCH = 3

# (message, its frame in epoch 3), the bytes the core codec produced before the move
GOLDEN: list[tuple[MemMessage, bytes]] = [
    (
        MemRead(99, 7, 1, 0, 17),
        bytes.fromhex("0000001a0130000000030000000000000063000000070001000000000011"),
    ),
    (
        MemWrite(100, 7, 1, 0, 17, 1, bytes(range(120))),
        bytes.fromhex("00000093013100000003000000000000006400000007000100000000001101")
        + bytes(range(120)),
    ),
    (
        MemReadReply(99, 5, 0, bytes(range(240))),
        bytes.fromhex("000001080132000000030000000000000063000000000000000500f0")
        + bytes(range(240)),
    ),
    (
        MemReadReply(98, 5, 1, b""),
        bytes.fromhex("00000018013200000003000000000000006200000000000000050100"),
    ),
    (
        MemWriteReply(100, 5, 2),
        bytes.fromhex("000000170133000000030000000000000064000000000000000502"),
    ),
    (
        MemMarkKnown(101, 0, 2, 7),
        bytes.fromhex("0000001c01340000000300000000000000650000000000020000000000000007"),
    ),
]


@pytest.mark.parametrize(("msg", "frame"), GOLDEN, ids=lambda x: type(x).__name__)
def test_frames_are_byte_identical_to_the_format_before_the_move(
    msg: MemMessage, frame: bytes
) -> None:
    assert wire.encode(msg, EPOCH) == frame
    assert codec.encode(msg, EPOCH) == frame, "the core codec writes the same bytes"
    assert wire.decode(frame) == (EPOCH, msg)
    assert codec.decode(frame) == (EPOCH, msg), "and reads them back the same"


def test_kind_numbers_are_one_number_space_with_the_core() -> None:
    for kind in MemKind:
        assert MsgKind[kind.name] == kind, "the core lists every memory-node kind"
    values = [int(k) for k in MsgKind.__members__.values()]
    assert len(values) == len(set(values)), "no kind number is used twice"


def test_requests_and_replies_are_told_apart() -> None:
    for msg, frame in GOLDEN:
        if isinstance(msg, MemRead | MemWrite | MemMarkKnown):
            assert wire.decode_request(frame) == (EPOCH, msg)
        else:
            with pytest.raises(DecodeError) as exc:
                wire.decode_request(frame)
            assert exc.value.reason == "frame.unknown_kind"


def test_a_replica_frame_is_no_memory_node_frame() -> None:
    frame = codec.encode(Promise(1, 2), EPOCH)
    for dec in (wire.decode, wire.decode_request):
        with pytest.raises(DecodeError) as exc:
            dec(frame)
        assert exc.value.reason == "frame.unknown_kind"


def test_encoding_what_the_format_cannot_carry_raises_value_or_type_error() -> None:
    with pytest.raises(ValueError):
        wire.encode(MemWrite(1, 0, 0, 0, 0, 0, bytes(119)), 0)
    with pytest.raises(ValueError):
        wire.encode(MemReadReply(1, 0, 0, bytes(10)), 0)
    with pytest.raises(ValueError):
        wire.encode(MemWriteReply(1, 0, 3), 0)
    with pytest.raises(ValueError):
        wire.encode(MemRead(1 << 64, 0, 0, 0, 0), 0)
    with pytest.raises(TypeError):
        wire.encode(Promise(1, 2), 0)  # type: ignore[arg-type]


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([int(k) for k in MemKind] + [7, 255]))
def test_any_bytes_decode_to_a_message_or_a_decode_error(body: bytes, kind: int) -> None:
    frame = (len(body) + 6).to_bytes(4, "big") + bytes([1, kind]) + bytes(4) + body
    for raw in (frame, body):
        for dec in (wire.decode, wire.decode_request):
            try:
                epoch, msg = dec(raw)
            except DecodeError as exc:
                assert exc.reason in codec.REASONS
                continue
            assert wire.encode(msg, epoch) == raw, "canonical: decoded bytes re-encode exactly"
