"""Memory-node store: access control, rejection counting, reads, and allocation figures."""

from __future__ import annotations

import pytest
from ubft.memnode.layout import (
    EMPTY_REGISTER,
    REGISTER_BYTES,
    SUBSLOT_BYTES,
    VALUE_BYTES,
    encode_subslot,
    parse_register,
)
from ubft.memnode.store import (
    STATUS_OK,
    STATUS_REJECTED,
    STATUS_UNKNOWN,
    MemoryNodeStore,
)
from ubft.memnode.wire import MemMarkKnown, MemRead, MemReadReply, MemWrite, MemWriteReply

MEMBERS = (0, 1, 2)
EPOCH = 1
TAIL = 4


def _store(tail: int = TAIL, epochs: tuple[int, ...] = (EPOCH,)) -> MemoryNodeStore:
    store = MemoryNodeStore(node_id=10, incarnation=3)
    for epoch in epochs:
        for writer in MEMBERS:
            store.provision_area(epoch, writer, [b for b in MEMBERS if b != writer], tail)
    return store


def _sub(incarnation: int, fill: int = 1) -> bytes:
    return encode_subslot(incarnation, bytes([fill]) * VALUE_BYTES)


def _read(store: MemoryNodeStore, requester: int, writer: int, b: int, slot: int) -> MemReadReply:
    reply = store.handle(requester, MemRead(1, EPOCH, writer, b, slot))
    assert isinstance(reply, MemReadReply)
    return reply


def _write(store: MemoryNodeStore, requester: int, msg: MemWrite) -> int:
    reply = store.handle(requester, msg)
    assert isinstance(reply, MemWriteReply)
    assert reply.op_id == msg.op_id and reply.node_incarnation == 3
    return reply.status


def _snapshot(store: MemoryNodeStore) -> list[bytes]:
    return [
        _read(store, 0, writer, b, slot).data
        for writer in MEMBERS
        for b in MEMBERS
        if b != writer
        for slot in range(TAIL)
    ]


def test_fresh_register_reads_empty() -> None:
    reply = _read(_store(), requester=1, writer=0, b=2, slot=3)
    assert (reply.status, reply.node_incarnation) == (STATUS_OK, 3)
    assert reply.data == EMPTY_REGISTER


def test_member_writes_own_range_and_others_read_it() -> None:
    store = _store()
    msg = MemWrite(7, EPOCH, 0, 1, 2, 1, _sub(5))
    assert _write(store, 0, msg) == STATUS_OK
    reply = _read(store, requester=2, writer=0, b=1, slot=2)
    assert reply.data == EMPTY_REGISTER[:SUBSLOT_BYTES] + _sub(5)
    assert parse_register(reply.data) == (5, bytes([1]) * VALUE_BYTES)
    assert store.rejected_total == 0


@pytest.mark.parametrize(
    ("requester", "msg", "reason"),
    [
        (1, MemWrite(1, EPOCH, 0, 1, 0, 0, _sub(9)), "not_writer"),  # another's range
        (1, MemWrite(1, EPOCH, 1, 1, 0, 0, _sub(9)), "unknown_register"),  # b == writer
        (0, MemWrite(1, EPOCH + 5, 0, 1, 0, 0, _sub(9)), "unknown_epoch"),
        (7, MemWrite(1, EPOCH, 7, 1, 0, 0, _sub(9)), "not_member"),
        (0, MemWrite(1, EPOCH, 0, 1, TAIL, 0, _sub(9)), "unknown_register"),
        (0, MemWrite(1, EPOCH, 0, 1, -1, 0, _sub(9)), "unknown_register"),
        (0, MemWrite(1, EPOCH, 0, 9, 0, 0, _sub(9)), "unknown_register"),
        (0, MemWrite(1, EPOCH, 0, 1, 0, 2, _sub(9)), "bad_subslot"),
        (0, MemWrite(1, EPOCH, 0, 1, 0, -1, _sub(9)), "bad_subslot"),
        (0, MemWrite(1, EPOCH, 0, 1, 0, 0, _sub(9)[:-1]), "bad_length"),
        (0, MemWrite(1, EPOCH, 0, 1, 0, 0, _sub(9) + b"\x00"), "bad_length"),
        (0, MemWrite(1, EPOCH, 0, 1, 0, 0, EMPTY_REGISTER), "bad_length"),
        (0, MemWrite(1, EPOCH, 0, 1, "0", 0, _sub(9)), "malformed"),  # type: ignore[arg-type]
    ],
)
def test_bad_writes_are_rejected_counted_and_not_applied(
    requester: int, msg: MemWrite, reason: str
) -> None:
    store = _store()
    before = _snapshot(store)
    assert _write(store, requester, msg) == STATUS_REJECTED
    assert store.rejected_total == 1
    assert store.rejected_by_reason == {reason: 1}
    assert _snapshot(store) == before


def test_reads_check_membership_and_existence() -> None:
    store = _store()
    assert _read(store, 7, 0, 1, 0).status == STATUS_REJECTED  # non-member
    assert _read(store, 0, 0, 0, 0).status == STATUS_REJECTED  # own broadcasts: no register
    assert _read(store, 0, 0, 1, TAIL).status == STATUS_REJECTED
    assert _read(store, 0, 5, 1, 0).status == STATUS_REJECTED  # no such writer
    other_epoch = store.handle(0, MemRead(1, EPOCH + 1, 0, 1, 0))
    assert other_epoch.status == STATUS_REJECTED
    assert store.rejected_by_reason == {
        "not_member": 1,
        "unknown_register": 2,
        "unknown_area": 1,
        "unknown_epoch": 1,
    }
    assert all(_read(store, 7, 0, 1, 0).data == b"" for _ in range(2))


def test_unknown_area_reads_unknown_until_its_writer_marks_it_known() -> None:
    store = MemoryNodeStore(node_id=10, incarnation=3)
    store.provision_area(EPOCH, 0, MEMBERS, TAIL, known=False)
    store.provision_area(EPOCH, 1, MEMBERS, TAIL)
    reply = _read(store, 1, 0, 1, 0)
    assert (reply.status, reply.data) == (STATUS_UNKNOWN, b"")
    # applied, but answered "unknown": it does not count toward the writer's quorum yet
    assert _write(store, 0, MemWrite(1, EPOCH, 0, 1, 0, 0, _sub(4))) == STATUS_UNKNOWN
    assert store.mark_known(1, EPOCH, 0) == STATUS_REJECTED  # only the writer may
    assert store.mark_known(0, EPOCH, 0, node_incarnation=2) == STATUS_UNKNOWN  # rewrites lost
    assert _read(store, 1, 0, 1, 0).status == STATUS_UNKNOWN
    assert store.mark_known(0, EPOCH, 0) == STATUS_OK
    assert parse_register(_read(store, 1, 0, 1, 0).data) == (4, bytes([1]) * VALUE_BYTES)
    assert store.mark_known(0, EPOCH + 1, 0) == STATUS_REJECTED
    assert store.rejected_total == 2


def test_provision_twice_keeps_the_area_and_a_new_shape_raises() -> None:
    store = _store()
    assert _write(store, 0, MemWrite(1, EPOCH, 0, 1, 0, 0, _sub(4))) == STATUS_OK
    store.provision_area(EPOCH, 0, [1, 2], TAIL)
    assert parse_register(_read(store, 1, 0, 1, 0).data) == (4, bytes([1]) * VALUE_BYTES)
    with pytest.raises(ValueError):
        store.provision_area(EPOCH, 0, [1, 2], TAIL + 1)
    with pytest.raises(ValueError):
        store.provision_area(EPOCH, 5, [1], 0)


def test_allocation_for_three_replicas_at_default_tail() -> None:
    store = _store(tail=128)
    assert store.allocated_bytes() == 3 * 2 * 128 * REGISTER_BYTES == 184_320  # 180 KiB
    both = _store(tail=128, epochs=(EPOCH, EPOCH + 1))
    assert both.allocated_bytes() == 2 * 184_320
    assert both.allocated_bytes() < 1 << 20
    both.release_epoch(EPOCH)
    assert both.allocated_bytes() == 184_320
    assert both.handle(0, MemRead(1, EPOCH, 0, 1, 0)).status == STATUS_REJECTED


def test_mark_known_over_the_wire_binds_the_node_incarnation() -> None:
    store = MemoryNodeStore(node_id=10, incarnation=3)
    store.provision_area(EPOCH, 0, MEMBERS, TAIL, known=False)
    store.provision_area(EPOCH, 1, MEMBERS, TAIL)
    assert store.handle(0, MemMarkKnown(9, EPOCH, 0, 2)).status == STATUS_UNKNOWN
    assert store.handle(1, MemMarkKnown(9, EPOCH, 0, 3)).status == STATUS_REJECTED
    reply = store.handle(0, MemMarkKnown(9, EPOCH, 0, 3))
    assert (reply.op_id, reply.node_incarnation, reply.status) == (9, 3, STATUS_OK)
    assert _read(store, 1, 0, 1, 0).status == STATUS_OK
