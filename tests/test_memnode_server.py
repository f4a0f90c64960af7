"""The memory-node server: bytes in, bytes out (decode, access control, store, encoded reply),
its drops counted and never raised, and its life cycle (crash, restart with or without its
memory, provisioning again)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ubft.memnode.layout import EMPTY_REGISTER, SUBSLOT_BYTES, VALUE_BYTES, encode_subslot
from ubft.memnode.server import DROP_DOWN, MemnodeServer
from ubft.memnode.wire import (
    STATUS_OK,
    STATUS_REJECTED,
    STATUS_UNKNOWN,
    MemMarkKnown,
    MemRead,
    MemReadReply,
    MemWrite,
    MemWriteReply,
    decode,
    encode,
)
from ubft.replica.core.codec import REASONS
from ubft.replica.core.codec import encode as core_encode
from ubft.replica.core.messages import Promise

MEMBERS = (0, 1, 2)
EPOCH = 4
TAIL = 4


def _server(incarnation: int = 7) -> MemnodeServer:
    server = MemnodeServer(node_id=1, incarnation=incarnation)
    for w in MEMBERS:
        server.provision_area(EPOCH, w, MEMBERS, TAIL)
    return server


def _ask(server: MemnodeServer, requester: int, msg: object) -> MemReadReply | MemWriteReply:
    reply = server.handle_frame(requester, encode(msg, EPOCH))  # type: ignore[arg-type]
    assert reply is not None
    epoch, out = decode(reply)
    assert epoch == EPOCH, "the reply travels in the request's epoch"
    assert isinstance(out, MemReadReply | MemWriteReply)
    return out


def _sub(x: int) -> bytes:
    return encode_subslot(x, bytes([x]) * VALUE_BYTES)


def test_a_write_then_a_read_over_the_wire() -> None:
    server = _server()
    w = _ask(server, 0, MemWrite(5, EPOCH, 0, 1, 2, 1, _sub(3)))
    assert w == MemWriteReply(5, 7, STATUS_OK)
    r = _ask(server, 2, MemRead(6, EPOCH, 0, 1, 2))
    assert isinstance(r, MemReadReply)
    assert (r.op_id, r.node_incarnation, r.status) == (6, 7, STATUS_OK)
    assert r.data == EMPTY_REGISTER[:SUBSLOT_BYTES] + _sub(3)
    assert server.served == 2 and server.dropped_total == 0


def test_the_reply_is_the_stores_reply_encoded() -> None:
    server, twin = _server(), _server()
    for requester, msg in [
        (0, MemWrite(1, EPOCH, 0, 1, 0, 0, _sub(1))),
        (1, MemWrite(2, EPOCH, 0, 1, 0, 0, _sub(2))),  # not its area
        (2, MemRead(3, EPOCH, 0, 1, 0)),
        (0, MemMarkKnown(4, EPOCH, 0, 7)),
    ]:
        assert server.handle_frame(requester, encode(msg, EPOCH)) == encode(
            twin.store.handle(requester, msg), EPOCH
        )


@pytest.mark.parametrize(
    ("requester", "msg", "reason"),
    [
        (1, MemWrite(1, EPOCH, 0, 1, 0, 0, _sub(9)), "not_writer"),
        (9, MemRead(1, EPOCH, 0, 1, 0), "not_member"),
        (0, MemWrite(1, EPOCH + 1, 0, 1, 0, 0, _sub(9)), "unknown_epoch"),
        (0, MemWrite(1, EPOCH, 0, 1, TAIL, 0, _sub(9)), "unknown_register"),
        (0, MemWrite(1, EPOCH, 0, 1, 0, 2, _sub(9)), "bad_subslot"),
        (1, MemMarkKnown(1, EPOCH, 0, 7), "not_writer"),
    ],
)
def test_what_access_control_refuses_is_answered_rejected_and_never_applied(
    requester: int, msg: MemWrite | MemRead | MemMarkKnown, reason: str
) -> None:
    server = _server()
    before = bytes(server.store._areas[(EPOCH, 0)].memory)
    reply = _ask(server, requester, msg)
    assert reply.status == STATUS_REJECTED
    assert server.store.rejected_by_reason == {reason: 1}
    assert bytes(server.store._areas[(EPOCH, 0)].memory) == before


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "frame.too_short"),
        (b"\x00" * 9, "frame.too_short"),
        (encode(MemRead(1, EPOCH, 0, 1, 0), EPOCH)[:-1], "frame.length_mismatch"),
        (b"\x00\x00\x00\x06\x02\x30\x00\x00\x00\x00", "frame.bad_version"),
        (b"\x00\x00\x00\x07\x01\x30\x00\x00\x00\x00\x00", "body.truncated"),
        (encode(MemReadReply(1, 2, 0, b""), EPOCH), "frame.unknown_kind"),  # a reply
        (encode(MemWriteReply(1, 2, 0), EPOCH), "frame.unknown_kind"),
        (core_encode(Promise(0, 1), EPOCH), "frame.unknown_kind"),  # a replica's frame
    ],
)
def test_a_malformed_frame_is_a_counted_drop(frame: bytes, reason: str) -> None:
    server = _server()
    assert server.handle_frame(0, frame) is None
    assert server.dropped_by_reason == {reason: 1}
    assert reason in REASONS
    assert server.served == 0 and server.store.rejected_total == 0


@settings(max_examples=1000, deadline=None)
@given(st.integers(min_value=0, max_value=12), st.binary(max_size=400))
def test_no_input_raises(requester: int, frame: bytes) -> None:
    server = _server()
    reply = server.handle_frame(requester, frame)
    if reply is None:
        assert server.dropped_total == 1
    else:
        assert server.served == 1
        decode(reply)


def test_a_crashed_node_loses_every_frame_then_comes_back_with_its_memory() -> None:
    server = _server()
    _ask(server, 0, MemWrite(1, EPOCH, 0, 1, 0, 0, _sub(4)))
    server.crash()
    server.crash()
    assert not server.up
    assert server.handle_frame(2, encode(MemRead(2, EPOCH, 0, 1, 0), EPOCH)) is None
    assert server.dropped_by_reason == {DROP_DOWN: 1}
    server.restart()
    assert server.up and server.incarnation == 7
    r = _ask(server, 2, MemRead(3, EPOCH, 0, 1, 0))
    assert isinstance(r, MemReadReply) and r.data[:SUBSLOT_BYTES] == _sub(4)


def test_a_restart_that_lost_the_memory_has_a_new_incarnation_and_recovering_areas() -> None:
    server = _server()
    _ask(server, 0, MemWrite(1, EPOCH, 0, 1, 0, 0, _sub(4)))
    server.crash()
    with pytest.raises(ValueError):
        server.restart(incarnation=7)
    server.restart(incarnation=8)
    assert server.incarnation == 8 and server.allocated_bytes() == 0
    # not provisioned again yet: the node holds no area of the epoch
    assert _ask(server, 2, MemRead(2, EPOCH, 0, 1, 0)).status == STATUS_REJECTED
    for w in MEMBERS:
        server.provision_area(EPOCH, w, MEMBERS, TAIL, known=False)
    assert _ask(server, 2, MemRead(3, EPOCH, 0, 1, 0)) == MemReadReply(3, 8, STATUS_UNKNOWN, b"")
    # the writer rewrites its area and marks it known, bound to the incarnation it saw
    assert _ask(server, 0, MemWrite(4, EPOCH, 0, 1, 0, 0, _sub(4))).status == STATUS_UNKNOWN
    assert _ask(server, 0, MemMarkKnown(5, EPOCH, 0, 7)).status == STATUS_UNKNOWN  # stale
    assert _ask(server, 0, MemMarkKnown(6, EPOCH, 0, 8)).status == STATUS_OK
    r = _ask(server, 2, MemRead(7, EPOCH, 0, 1, 0))
    assert isinstance(r, MemReadReply) and r.status == STATUS_OK
    assert r.data[:SUBSLOT_BYTES] == _sub(4)


def test_release_epoch_frees_the_areas() -> None:
    server = _server()
    assert server.allocated_bytes() > 0
    server.release_epoch(EPOCH)
    assert server.allocated_bytes() == 0
    assert _ask(server, 0, MemRead(1, EPOCH, 0, 1, 0)).status == STATUS_REJECTED
