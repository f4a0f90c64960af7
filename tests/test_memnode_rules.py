"""One targeted test per rule of the memory-node store and the register client (PROTOCOL.md
section 2): every access-control check with the reason it is counted under, every bound of a
register, the majority quorum for M = 1, 3, 5 and 7, and the recovery of a node that lost its
memory. Each test fails when its rule is weakened (``make mutation`` checks that)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from ubft.memnode.layout import (
    EMPTY_REGISTER,
    REGISTER_BYTES,
    SUBSLOT_BYTES,
    VALUE_BYTES,
    RegisterAddress,
    encode_subslot,
    parse_register,
)
from ubft.memnode.register import ReadDone, RegisterClient, WriteDone
from ubft.memnode.store import MemoryNodeStore
from ubft.memnode.wire import (
    STATUS_OK,
    STATUS_REJECTED,
    STATUS_UNKNOWN,
    MemMarkKnown,
    MemRead,
    MemReadReply,
    MemWrite,
    MemWriteReply,
)

MEMBERS = (0, 1, 2)
EPOCH = 1
TAIL = 4
INC = 3  # the store's incarnation

Request = MemRead | MemWrite | MemMarkKnown
Done = WriteDone | ReadDone


def _value(fill: int) -> bytes:
    return bytes([fill]) * VALUE_BYTES


def _sub(incarnation: int, fill: int = 1) -> bytes:
    return encode_subslot(incarnation, _value(fill))


def _store(
    tail: int = TAIL, epochs: Iterable[int] = (EPOCH,), known: bool = True
) -> MemoryNodeStore:
    store = MemoryNodeStore(node_id=10, incarnation=INC)
    for epoch in epochs:
        for writer in MEMBERS:
            store.provision_area(epoch, writer, MEMBERS, tail, known=known)
    return store


def _read(store: MemoryNodeStore, requester: int, msg: MemRead) -> MemReadReply:
    reply = store.handle(requester, msg)
    assert isinstance(reply, MemReadReply)
    assert (reply.op_id, reply.node_incarnation) == (msg.op_id, INC)
    return reply


def _write(store: MemoryNodeStore, requester: int, msg: MemWrite | MemMarkKnown) -> int:
    reply = store.handle(requester, msg)
    assert isinstance(reply, MemWriteReply)
    assert (reply.op_id, reply.node_incarnation) == (msg.op_id, INC)
    return reply.status


def _everything(store: MemoryNodeStore, epoch: int = EPOCH) -> list[bytes]:
    """Every register of every area of ``epoch``, read by member 0."""
    out = []
    for writer in MEMBERS:
        for b in MEMBERS:
            if b != writer:
                for slot in range(TAIL):
                    out.append(_read(store, 0, MemRead(1, epoch, writer, b, slot)).data)
    return out


# =========================================================================== store: writes


def test_a_writer_writes_each_subslot_of_each_register_in_place() -> None:
    store = _store()
    for b in (1, 2):
        for slot in range(TAIL):
            for subslot in (0, 1):
                fill = 16 * b + 4 * slot + 2 * subslot
                msg = MemWrite(7, EPOCH, 0, b, slot, subslot, _sub(fill + 1, fill))
                assert _write(store, 0, msg) == STATUS_OK
    for b in (1, 2):
        for slot in range(TAIL):
            fill = 16 * b + 4 * slot
            raw = _read(store, 1, MemRead(2, EPOCH, 0, b, slot)).data
            assert raw == _sub(fill + 1, fill) + _sub(fill + 3, fill + 2)
            assert len(raw) == REGISTER_BYTES
    assert store.rejected_total == 0
    # the other writers' areas were not touched
    assert _read(store, 1, MemRead(3, EPOCH, 1, 0, 0)).data == EMPTY_REGISTER


def test_one_subslot_write_leaves_the_other_subslot_and_registers_alone() -> None:
    store = _store()
    before = _everything(store)
    assert _write(store, 0, MemWrite(1, EPOCH, 0, 2, TAIL - 1, 1, _sub(9, 9))) == STATUS_OK
    after = _everything(store)
    changed = [i for i, (x, y) in enumerate(zip(before, after, strict=True)) if x != y]
    assert len(changed) == 1
    assert after[changed[0]] == EMPTY_REGISTER[:SUBSLOT_BYTES] + _sub(9, 9)


@pytest.mark.parametrize(
    ("requester", "msg", "reason"),
    [
        (1, MemWrite(1, EPOCH, 0, 1, 0, 0, _sub(9)), "not_writer"),
        (3, MemWrite(1, EPOCH, 3, 1, 0, 0, _sub(9)), "not_member"),
        (0, MemWrite(1, EPOCH + 1, 0, 1, 0, 0, _sub(9)), "unknown_epoch"),
        (0, MemWrite(1, EPOCH, 0, 0, 0, 0, _sub(9)), "unknown_register"),
        (0, MemWrite(1, EPOCH, 0, 7, 0, 0, _sub(9)), "unknown_register"),
        (0, MemWrite(1, EPOCH, 0, 1, TAIL, 0, _sub(9)), "unknown_register"),
        (0, MemWrite(1, EPOCH, 0, 1, -1, 0, _sub(9)), "unknown_register"),
        (0, MemWrite(1, EPOCH, 0, 1, 0, 2, _sub(9)), "bad_subslot"),
        (0, MemWrite(1, EPOCH, 0, 1, 0, -1, _sub(9)), "bad_subslot"),
        (0, MemWrite(1, EPOCH, 0, 1, 0, 0, _sub(9)[1:]), "bad_length"),
        (0, MemWrite(1, EPOCH, 0, 1, 0, 0, "x" * SUBSLOT_BYTES), "bad_length"),  # type: ignore[arg-type]
        (0, MemWrite(1, "1", 0, 1, 0, 0, _sub(9)), "malformed"),  # type: ignore[arg-type]
        (0, MemWrite(1, EPOCH, 0.0, 1, 0, 0, _sub(9)), "malformed"),  # type: ignore[arg-type]
        (0, MemWrite(1, EPOCH, 0, None, 0, 0, _sub(9)), "malformed"),  # type: ignore[arg-type]
        (0, MemWrite(1, EPOCH, 0, 1, 0.0, 0, _sub(9)), "malformed"),  # type: ignore[arg-type]
        (0, MemWrite(1, EPOCH, 0, 1, 0, True, _sub(9)), "malformed"),
    ],
)
def test_each_refused_write_is_counted_under_its_reason_and_not_applied(
    requester: int, msg: MemWrite, reason: str
) -> None:
    store = _store()
    before = _everything(store)
    assert _write(store, requester, msg) == STATUS_REJECTED
    assert _write(store, requester, msg) == STATUS_REJECTED
    assert store.rejected_by_reason == {reason: 2}
    assert store.rejected_total == 2
    assert _everything(store) == before


def test_a_write_into_an_unknown_area_is_applied_but_answered_unknown() -> None:
    store = _store(known=False)
    assert _write(store, 0, MemWrite(1, EPOCH, 0, 1, 2, 1, _sub(5, 5))) == STATUS_UNKNOWN
    assert store.rejected_total == 0
    assert _write(store, 0, MemMarkKnown(2, EPOCH, 0, INC)) == STATUS_OK
    raw = _read(store, 1, MemRead(3, EPOCH, 0, 1, 2)).data
    assert raw == EMPTY_REGISTER[:SUBSLOT_BYTES] + _sub(5, 5)


# =========================================================================== store: reads


@pytest.mark.parametrize(
    ("requester", "msg", "reason"),
    [
        (3, MemRead(1, EPOCH, 0, 1, 0), "not_member"),
        (0, MemRead(1, EPOCH + 1, 0, 1, 0), "unknown_epoch"),
        (0, MemRead(1, EPOCH, 5, 1, 0), "unknown_area"),
        (0, MemRead(1, EPOCH, 0, 0, 0), "unknown_register"),
        (0, MemRead(1, EPOCH, 0, 1, TAIL), "unknown_register"),
        (0, MemRead(1, EPOCH, 0, 1, -1), "unknown_register"),
        (0, MemRead(1, None, 0, 1, 0), "malformed"),  # type: ignore[arg-type]
        (0, MemRead(1, EPOCH, "0", 1, 0), "malformed"),  # type: ignore[arg-type]
        (0, MemRead(1, EPOCH, 0, 1.0, 0), "malformed"),  # type: ignore[arg-type]
        (0, MemRead(1, EPOCH, 0, 1, False), "malformed"),
    ],
)
def test_each_refused_read_is_counted_under_its_reason(
    requester: int, msg: MemRead, reason: str
) -> None:
    store = _store()
    for _ in range(2):
        reply = _read(store, requester, msg)
        assert (reply.status, reply.data) == (STATUS_REJECTED, b"")
    assert store.rejected_by_reason == {reason: 2}


def test_every_member_reads_every_register_from_slot_0_to_tail_minus_1() -> None:
    store = _store()
    for requester in MEMBERS:
        for writer in MEMBERS:
            for b in MEMBERS:
                if b == writer:
                    continue
                for slot in (0, TAIL - 1):
                    reply = _read(store, requester, MemRead(4, EPOCH, writer, b, slot))
                    assert (reply.status, reply.data) == (STATUS_OK, EMPTY_REGISTER)
    assert store.rejected_total == 0


def test_an_unknown_area_reads_unknown_without_a_rejection() -> None:
    store = _store(known=False)
    reply = _read(store, 1, MemRead(1, EPOCH, 0, 1, 0))
    assert (reply.status, reply.data) == (STATUS_UNKNOWN, b"")
    assert store.rejected_total == 0


def test_a_tail_of_one_has_exactly_one_register_per_broadcaster() -> None:
    store = MemoryNodeStore(node_id=1, incarnation=INC)
    store.provision_area(EPOCH, 0, MEMBERS, tail=1)
    assert _read(store, 0, MemRead(1, EPOCH, 0, 2, 0)).status == STATUS_OK
    assert _read(store, 0, MemRead(1, EPOCH, 0, 2, 1)).status == STATUS_REJECTED
    assert store.allocated_bytes() == 2 * REGISTER_BYTES


# =========================================================================== store: areas


def test_provisioning_rejects_a_tail_below_one() -> None:
    store = MemoryNodeStore(node_id=1, incarnation=INC)
    for tail in (0, -1):
        with pytest.raises(ValueError):
            store.provision_area(EPOCH, 0, MEMBERS, tail)
    assert store.allocated_bytes() == 0


def test_the_writer_gets_no_register_for_its_own_broadcasts() -> None:
    store = MemoryNodeStore(node_id=1, incarnation=INC)
    store.provision_area(EPOCH, 1, MEMBERS, TAIL)
    assert store.allocated_bytes() == 2 * TAIL * REGISTER_BYTES
    assert _read(store, 1, MemRead(1, EPOCH, 1, 0, 0)).status == STATUS_OK
    assert _read(store, 1, MemRead(1, EPOCH, 1, 2, 0)).status == STATUS_OK
    assert _read(store, 1, MemRead(1, EPOCH, 1, 1, 0)).status == STATUS_REJECTED
    assert store.rejected_by_reason == {"unknown_register": 1}


def test_allocation_is_registers_times_240_bytes() -> None:
    store = MemoryNodeStore(node_id=1, incarnation=INC)
    store.provision_area(EPOCH, 0, (0, 1, 2, 3, 4), 6)
    assert store.allocated_bytes() == 4 * 6 * REGISTER_BYTES
    store.provision_area(EPOCH, 1, (0, 1), 3)
    assert store.allocated_bytes() == (4 * 6 + 1 * 3) * REGISTER_BYTES


def test_provisioning_again_keeps_the_area_and_a_new_shape_raises() -> None:
    store = _store()
    assert _write(store, 0, MemWrite(1, EPOCH, 0, 1, 0, 0, _sub(4, 4))) == STATUS_OK
    store.provision_area(EPOCH, 0, MEMBERS, TAIL, known=False)  # same shape: kept as is
    assert _read(store, 1, MemRead(1, EPOCH, 0, 1, 0)).data[:SUBSLOT_BYTES] == _sub(4, 4)
    with pytest.raises(ValueError):
        store.provision_area(EPOCH, 0, MEMBERS, TAIL + 2)  # same broadcasters, other tail
    with pytest.raises(ValueError):
        store.provision_area(EPOCH, 0, (0, 1), TAIL)  # same tail, other broadcasters
    assert _read(store, 1, MemRead(1, EPOCH, 0, 2, 0)).status == STATUS_OK


def test_releasing_an_epoch_frees_its_areas_and_membership_only() -> None:
    store = _store(epochs=(EPOCH, EPOCH + 1))
    assert _write(store, 1, MemWrite(1, EPOCH + 1, 1, 0, 0, 0, _sub(2, 2))) == STATUS_OK
    store.release_epoch(EPOCH)
    assert store.allocated_bytes() == 3 * 2 * TAIL * REGISTER_BYTES
    assert _read(store, 0, MemRead(1, EPOCH, 0, 1, 0)).status == STATUS_REJECTED
    assert store.rejected_by_reason == {"unknown_epoch": 1}
    for writer in MEMBERS:  # every writer's area of the next epoch is still there
        assert _read(store, 0, MemRead(1, EPOCH + 1, writer, 2 - writer // 2, 0)).status == 0
    assert _read(store, 2, MemRead(1, EPOCH + 1, 1, 0, 0)).data[:SUBSLOT_BYTES] == _sub(2, 2)


def test_membership_is_per_epoch() -> None:
    store = MemoryNodeStore(node_id=1, incarnation=INC)
    store.provision_area(EPOCH, 0, (0, 1), TAIL)
    store.provision_area(EPOCH + 1, 1, (0, 1), TAIL)
    # 1 is a member of EPOCH + 1 only: it may not read EPOCH's area
    assert _read(store, 1, MemRead(1, EPOCH, 0, 1, 0)).status == STATUS_REJECTED
    assert store.rejected_by_reason == {"not_member": 1}


# =========================================================================== store: mark known


def test_mark_known_is_the_writers_own_and_bound_to_the_node_incarnation() -> None:
    store = _store(known=False)
    assert _write(store, 1, MemMarkKnown(1, EPOCH, 0, INC)) == STATUS_REJECTED
    assert store.rejected_by_reason == {"not_writer": 1}
    assert _write(store, 0, MemMarkKnown(2, EPOCH, 0, INC - 1)) == STATUS_UNKNOWN  # lost
    assert store.rejected_total == 1  # "unknown" is no rejection
    assert _read(store, 1, MemRead(3, EPOCH, 0, 1, 0)).status == STATUS_UNKNOWN
    assert _write(store, 0, MemMarkKnown(4, EPOCH + 4, 0, INC)) == STATUS_REJECTED
    assert store.rejected_by_reason == {"not_writer": 1, "unknown_area": 1}
    assert _write(store, 0, MemMarkKnown(5, EPOCH, 0, INC)) == STATUS_OK
    assert _read(store, 1, MemRead(6, EPOCH, 0, 1, 0)).status == STATUS_OK
    # only that writer's area became readable
    assert _read(store, 0, MemRead(7, EPOCH, 1, 0, 0)).status == STATUS_UNKNOWN


def test_mark_known_without_an_incarnation_marks_at_once() -> None:
    store = _store(known=False)
    assert store.mark_known(2, EPOCH, 2) == STATUS_OK
    assert _read(store, 0, MemRead(1, EPOCH, 2, 0, 0)).status == STATUS_OK
    assert store.mark_known(0, EPOCH, 1) == STATUS_REJECTED
    assert store.mark_known(5, EPOCH, 5) == STATUS_REJECTED
    assert store.rejected_by_reason == {"not_writer": 1, "unknown_area": 1}


@pytest.mark.parametrize(
    "msg",
    [
        MemMarkKnown(1, "1", 0, INC),  # type: ignore[arg-type]
        MemMarkKnown(1, EPOCH, 0.0, INC),  # type: ignore[arg-type]
        MemMarkKnown(1, EPOCH, 0, None),  # type: ignore[arg-type]
    ],
)
def test_a_malformed_mark_known_is_refused(msg: MemMarkKnown) -> None:
    store = _store(known=False)
    assert _write(store, 0, msg) == STATUS_REJECTED
    assert store.rejected_by_reason == {"malformed": 1}
    assert _read(store, 1, MemRead(1, EPOCH, 0, 1, 0)).status == STATUS_UNKNOWN


# =========================================================================== register client

NODES3 = (10, 11, 12)
ADDR = RegisterAddress(epoch=EPOCH, writer=0, b=1, slot=3)


def _ok(
    msg: Request, inc: int = 1, status: int = STATUS_OK, data: bytes = EMPTY_REGISTER
) -> MemReadReply | MemWriteReply:
    if isinstance(msg, MemRead):
        return MemReadReply(msg.op_id, inc, status, data if status == STATUS_OK else b"")
    return MemWriteReply(msg.op_id, inc, status)


def _by_node(sent: list[tuple[int, Request]]) -> dict[int, list[Request]]:
    out: dict[int, list[Request]] = {}
    for node, msg in sent:
        out.setdefault(node, []).append(msg)
    return out


@pytest.mark.parametrize(("m", "majority"), [(1, 1), (3, 2), (5, 3), (7, 4)])
def test_a_write_completes_on_exactly_a_majority_of_acks(m: int, majority: int) -> None:
    nodes = tuple(range(20, 20 + m))
    client = RegisterClient(owner=0, memnode_ids=nodes)
    client.write(ADDR, 1, _value(1), token="w")
    sent = client.take_outgoing()
    assert [node for node, _ in sent] == list(nodes)
    for node, msg in sent[: majority - 1]:
        assert client.on_reply(node, _ok(msg)) == []
    node, msg = sent[majority - 1]
    assert client.on_reply(node, _ok(msg)) == [WriteDone("w", ADDR)]
    assert client.pending_ops() == 0


@pytest.mark.parametrize(("m", "majority"), [(1, 1), (3, 2), (5, 3), (7, 4)])
def test_a_read_completes_on_exactly_a_majority_of_replies(m: int, majority: int) -> None:
    nodes = tuple(range(20, 20 + m))
    client = RegisterClient(owner=2, memnode_ids=nodes)
    client.read(ADDR, token="r")
    sent = client.take_outgoing()
    for node, msg in sent[: majority - 1]:
        assert client.on_reply(node, _ok(msg)) == []
    node, msg = sent[majority - 1]
    assert client.on_reply(node, _ok(msg)) == [ReadDone("r", ADDR, (0, _value(0)))]


def test_repeated_memory_node_ids_count_once() -> None:
    client = RegisterClient(owner=0, memnode_ids=(10, 10, 11, 11, 12))
    client.write(ADDR, 1, _value(1), token="w")
    sent = client.take_outgoing()
    assert [node for node, _ in sent] == [10, 11, 12]
    assert client.on_reply(10, _ok(sent[0][1])) == []
    assert client.on_reply(11, _ok(sent[1][1])) == [WriteDone("w", ADDR)]


def test_a_client_needs_a_memory_node() -> None:
    with pytest.raises(ValueError):
        RegisterClient(owner=0, memnode_ids=())
    RegisterClient(owner=0, memnode_ids=(1,))


def test_a_replica_writes_only_its_own_registers_and_only_whole_values() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES3)
    with pytest.raises(ValueError):
        client.write(ADDR._replace(writer=1), 1, _value(1), token=None)
    for bad in (b"", _value(1)[1:], _value(1) + b"\x00"):
        with pytest.raises(ValueError):
            client.write(ADDR, 1, bad, token=None)
    assert client.take_outgoing() == []
    client.write(ADDR, 1, _value(1), token=None)
    assert client.has_outgoing()
    assert len(client.take_outgoing()) == len(NODES3)
    assert not client.has_outgoing()


def test_replies_that_are_no_ack_do_not_count() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES3)
    client.write(ADDR, 1, _value(1), token="w")
    w = client.take_outgoing()[0][1]
    client.read(ADDR, token="r")
    r = client.take_outgoing()[0][1]
    assert client.on_reply(99, _ok(w)) == []  # not one of our nodes
    assert client.on_reply(10, MemWriteReply(999, 1, STATUS_OK)) == []  # no such op
    assert client.on_reply(10, _ok(w, status=STATUS_REJECTED)) == []
    assert client.on_reply(10, _ok(r, status=STATUS_REJECTED)) == []
    assert client.on_reply(10, _ok(r, status=STATUS_UNKNOWN)) == []  # a read: no recovery
    assert client.on_reply(10, MemReadReply(w.op_id, 1, STATUS_OK, EMPTY_REGISTER)) == []
    assert client.on_reply(10, MemWriteReply(r.op_id, 1, STATUS_OK)) == []
    assert client.take_outgoing() == []
    assert client.pending_ops() == 2
    # none of those counted: one real ack is not enough, the second completes
    assert client.on_reply(11, _ok(w)) == []
    assert client.on_reply(11, _ok(w)) == []  # a duplicate does not count twice
    assert client.on_reply(12, _ok(w)) == [WriteDone("w", ADDR)]
    assert client.on_reply(11, _ok(r)) == []
    assert client.on_reply(12, _ok(r)) == [ReadDone("r", ADDR, (0, _value(0)))]
    assert client.on_reply(10, _ok(r)) == []  # completed ops are forgotten
    assert client.retry() is False


def test_a_read_returns_the_highest_incarnation_and_ignores_garbage() -> None:
    old = encode_subslot(3, _value(3)) + encode_subslot(4, _value(4))
    new = encode_subslot(6, _value(6)) + encode_subslot(5, _value(5))
    for first, second, expect in [
        (old, new, (6, _value(6))),
        (new, old, (6, _value(6))),
        (b"junk", old, (4, _value(4))),
        (old, b"junk", (4, _value(4))),
        (b"junk", bytes(REGISTER_BYTES), None),
    ]:
        client = RegisterClient(owner=2, memnode_ids=NODES3)
        client.read(ADDR, token="r")
        sent = dict(client.take_outgoing())
        assert client.on_reply(10, _ok(sent[10], data=first)) == []
        assert client.on_reply(11, _ok(sent[11], data=second)) == [ReadDone("r", ADDR, expect)]


def test_a_second_reply_from_one_node_to_a_read_is_ignored() -> None:
    old = encode_subslot(3, _value(3)) * 2
    new = encode_subslot(4, _value(4)) * 2
    client = RegisterClient(owner=2, memnode_ids=NODES3)
    client.read(ADDR, token="r")
    sent = dict(client.take_outgoing())
    assert client.on_reply(10, _ok(sent[10], data=old)) == []
    assert client.on_reply(10, _ok(sent[10], data=new)) == []
    assert client.on_reply(11, _ok(sent[11], data=old)) == [ReadDone("r", ADDR, (3, _value(3)))]


def test_retry_keeps_going_while_only_a_recovery_is_left() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES3)
    client.write(ADDR, 1, _value(1), token="w")
    w = client.take_outgoing()[0][1]
    assert client.on_reply(10, _ok(w, status=STATUS_UNKNOWN)) == []
    ((node, mark),) = client.take_outgoing()
    assert node == 10 and isinstance(mark, MemMarkKnown)
    assert client.on_reply(11, _ok(w)) == []
    assert client.on_reply(12, _ok(w)) == [WriteDone("w", ADDR)]
    assert client.pending_ops() == 1
    assert client.retry() is True
    assert client.take_outgoing() == [(10, mark)]
    assert client.on_reply(10, _ok(mark)) == []
    assert client.retry() is False


def test_retry_resends_to_the_nodes_that_have_not_answered_and_says_if_work_is_left() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES3)
    assert client.retry() is False
    client.write(ADDR, 1, _value(1), token="w")
    w = client.take_outgoing()[0][1]
    assert client.on_reply(11, _ok(w)) == []
    assert client.retry() is True
    assert client.take_outgoing() == [(10, w), (12, w)]
    assert client.on_reply(12, _ok(w)) == [WriteDone("w", ADDR)]
    assert client.retry() is False
    assert client.take_outgoing() == []


def test_writes_to_one_register_run_one_at_a_time_in_order_on_alternating_subslots() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES3)
    for k in range(4):
        client.write(ADDR, k + 1, _value(k), token=k)
    assert client.pending_ops() == 4
    seen: list[tuple[int, int, bytes]] = []
    tokens: list[object] = []
    while batch := client.take_outgoing():
        writes = {msg.op_id: msg for _, msg in batch if isinstance(msg, MemWrite)}
        assert len(writes) == 1  # one write in flight per register
        (msg,) = writes.values()
        seen.append((msg.op_id, msg.subslot, msg.data))
        for node in (10, 11):
            tokens += [d.token for d in client.on_reply(node, _ok(msg))]
    assert [s for _, s, _ in seen] == [0, 1, 0, 1]
    assert [d for _, _, d in seen] == [encode_subslot(k + 1, _value(k)) for k in range(4)]
    assert tokens == [0, 1, 2, 3]
    assert client.pending_ops() == 0
    assert len({op for op, _, _ in seen}) == 4


def test_forget_epoch_drops_that_epoch_only() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES3)
    other = ADDR._replace(epoch=EPOCH + 1)
    for addr in (ADDR, other):
        client.write(addr, 1, _value(1), token=addr.epoch)
        for node, msg in client.take_outgoing():
            client.on_reply(node, _ok(msg))
    client.write(ADDR, 2, _value(2), token="a")  # in flight in EPOCH
    client.write(ADDR, 3, _value(3), token="b")  # queued in EPOCH
    client.read(other, token="r")  # in flight in EPOCH + 1
    sent = client.take_outgoing()
    assert client.pending_ops() == 3
    client.forget_epoch(EPOCH)
    assert client.pending_ops() == 1
    read = next(msg for node, msg in sent if node == 10 and isinstance(msg, MemRead))
    assert client.on_reply(10, _ok(read)) == []
    assert client.on_reply(11, _ok(read)) == [ReadDone("r", other, (0, _value(0)))]
    # EPOCH + 1 still knows its register's latest sub-slot; EPOCH starts over at 0
    client.write(other, 2, _value(2), token=None)
    client.write(ADDR, 4, _value(4), token=None)
    subslots = {
        msg.epoch: msg.subslot for _, msg in client.take_outgoing() if isinstance(msg, MemWrite)
    }
    assert subslots == {EPOCH + 1: 1, EPOCH: 0}


def test_pending_ops_counts_in_flight_queued_and_recovery_ops() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES3)
    assert client.pending_ops() == 0
    client.write(ADDR, 1, _value(1), token=None)
    client.write(ADDR, 2, _value(2), token=None)
    client.write(ADDR, 3, _value(3), token=None)
    client.read(ADDR, token=None)
    assert client.pending_ops() == 4  # two in flight, two queued
    w = client.take_outgoing()[0][1]
    # node 10 answers "unknown": a recovery (its mark, nothing rewritten yet) starts
    assert client.on_reply(10, _ok(w, status=STATUS_UNKNOWN)) == []
    assert client.pending_ops() == 5


def test_footprint_counts_every_entry_held() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES3)
    assert client.footprint() == 0
    for slot in range(2):
        client.write(ADDR._replace(slot=slot), 1, _value(1), token=None)
        for node, msg in client.take_outgoing():
            client.on_reply(node, _ok(msg))
    # per register its latest sub-slot and bytes, and one incarnation per node
    assert client.footprint() == 2 * 2 + 3
    client.write(ADDR, 2, _value(2), token=None)
    client.write(ADDR, 3, _value(3), token=None)
    # + 1 op in flight + 1 queued (pending) + 1 register writing + 1 queue + 3 outgoing
    assert client.footprint() == 7 + 2 + 1 + 1 + 3
    w = client.take_outgoing()[0][1]
    assert client.footprint() == 7 + 2 + 1 + 1
    client.on_reply(10, _ok(w, status=STATUS_UNKNOWN))
    # + 2 rewrites to node 10 (pending + outgoing each) + 1 recovery
    assert client.footprint() == 11 + 2 + 2 + 1


# =========================================================================== restarts


def test_acks_from_a_node_that_restarted_no_longer_count() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES3)
    client.write(ADDR, 1, _value(1), token="w")
    client.read(ADDR, token="r")
    sent = _by_node(client.take_outgoing())
    w, r = sent[10]
    assert client.on_reply(10, _ok(w, inc=1)) == []
    assert client.on_reply(10, _ok(r, inc=1)) == []
    assert client.incarnation_changes == 0
    # node 10 shows a new incarnation (any reply): its ack of the write is void and the write
    # goes to it again; its reply to the read still stands
    assert client.on_reply(10, MemWriteReply(999, 2, STATUS_OK)) == []
    assert client.incarnation_changes == 1
    assert client.take_outgoing() == [(10, w)]
    assert client.on_reply(11, _ok(w, inc=1)) == []
    assert client.on_reply(11, _ok(r, inc=1)) == [ReadDone("r", ADDR, (0, _value(0)))]
    assert client.on_reply(10, _ok(w, inc=2)) == [WriteDone("w", ADDR)]
    assert client.incarnation_changes == 1
    assert client.on_reply(10, MemWriteReply(999, 3, STATUS_OK)) == []
    assert client.incarnation_changes == 2
    assert client.take_outgoing() == []  # nothing in flight to resend


def test_a_node_that_answers_unknown_gets_this_epochs_registers_back() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES3)
    a, b, c = ADDR._replace(slot=0), ADDR._replace(slot=1), ADDR._replace(epoch=EPOCH + 1)
    latest: dict[RegisterAddress, MemWrite] = {}
    for addr, rounds in ((a, 2), (b, 1), (c, 1)):
        for k in range(rounds):
            client.write(addr, k + 1, _value(k + 1), token=None)
            for node, msg in client.take_outgoing():
                client.on_reply(node, _ok(msg))
                assert isinstance(msg, MemWrite)
                latest[addr] = msg
    client.write(ADDR, 9, _value(9), token="w")
    w = client.take_outgoing()[0][1]
    assert client.on_reply(11, _ok(w, status=STATUS_UNKNOWN, inc=5)) == []
    assert client.on_reply(11, _ok(w, status=STATUS_UNKNOWN, inc=5)) == []  # one recovery
    rewrites = client.take_outgoing()
    assert [node for node, _ in rewrites] == [11, 11]  # EPOCH's two registers, not c
    got = {(m.b, m.slot, m.subslot, m.data) for _, m in rewrites if isinstance(m, MemWrite)}
    assert got == {(x.b, x.slot, latest[x].subslot, latest[x].data) for x in (a, b)}
    assert all(isinstance(m, MemWrite) and m.epoch == EPOCH for _, m in rewrites)
    # the mark goes out only once both rewrites are acknowledged, in the same incarnation
    first, second = (m for _, m in rewrites)
    assert client.on_reply(11, _ok(first, inc=5)) == []
    assert client.on_reply(11, _ok(first, inc=5)) == []  # duplicate
    assert client.on_reply(11, _ok(second, inc=5, status=STATUS_REJECTED)) == []  # no ack
    assert client.take_outgoing() == []
    assert client.on_reply(11, _ok(second, inc=5, status=STATUS_UNKNOWN)) == []  # an ack
    (mark_sent,) = client.take_outgoing()
    mark = mark_sent[1]
    assert mark_sent[0] == 11 and isinstance(mark, MemMarkKnown)
    assert (mark.epoch, mark.writer, mark.node_incarnation) == (EPOCH, 0, 5)
    assert client.on_reply(11, _ok(mark, inc=5, status=STATUS_UNKNOWN)) == []
    assert client.retry() is True
    assert (11, mark) in client.take_outgoing()
    assert client.on_reply(11, _ok(mark, inc=5)) == []
    # the recovery is over; the write still waits for a real ack from 11 or another node
    assert client.pending_ops() == 1
    assert client.on_reply(12, _ok(w)) == []
    assert client.on_reply(11, _ok(w, inc=5)) == [WriteDone("w", ADDR)]
    assert client.pending_ops() == 0
    assert client.retry() is False


def test_recovery_replies_from_the_wrong_node_or_of_the_wrong_kind_are_ignored() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES3)
    client.write(ADDR, 1, _value(1), token=None)
    for node, msg in client.take_outgoing():
        client.on_reply(node, _ok(msg))
    client.write(ADDR, 2, _value(2), token=None)
    w = client.take_outgoing()[0][1]
    client.on_reply(10, _ok(w, status=STATUS_UNKNOWN))
    ((_, rewrite),) = client.take_outgoing()
    assert client.on_reply(11, MemWriteReply(rewrite.op_id, 1, STATUS_OK)) == []
    assert client.on_reply(10, MemReadReply(rewrite.op_id, 1, STATUS_OK, EMPTY_REGISTER)) == []
    assert client.take_outgoing() == []  # no mark yet
    assert client.on_reply(10, MemWriteReply(rewrite.op_id, 1, STATUS_OK)) == []
    assert [type(m).__name__ for _, m in client.take_outgoing()] == ["MemMarkKnown"]


def test_a_node_that_restarts_again_during_recovery_is_recovered_from_scratch() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES3)
    client.write(ADDR, 1, _value(1), token=None)
    for node, msg in client.take_outgoing():
        client.on_reply(node, _ok(msg))
    client.write(ADDR, 2, _value(2), token=None)
    w = client.take_outgoing()[0][1]
    client.on_reply(10, _ok(w, status=STATUS_UNKNOWN, inc=2))
    ((_, rewrite),) = client.take_outgoing()
    assert isinstance(rewrite, MemWrite)
    assert client.pending_ops() == 2
    # acknowledged, but by incarnation 3: what was rewritten in 2 is gone, start over
    assert client.on_reply(10, MemWriteReply(rewrite.op_id, 3, STATUS_OK)) == []
    ((node, again),) = client.take_outgoing()
    assert node == 10 and isinstance(again, MemWrite) and again.op_id != rewrite.op_id
    assert again.data == rewrite.data
    assert client.pending_ops() == 2  # the old rewrite is no longer pending
    assert client.on_reply(10, MemWriteReply(again.op_id, 3, STATUS_OK)) == []
    ((_, mark),) = client.take_outgoing()
    assert isinstance(mark, MemMarkKnown) and mark.node_incarnation == 3
    # restarting once more while the mark is out: rewrite again, bound to incarnation 4
    assert client.on_reply(10, MemWriteReply(mark.op_id, 4, STATUS_UNKNOWN)) == []
    ((_, third),) = client.take_outgoing()
    assert isinstance(third, MemWrite)
    assert client.pending_ops() == 2
    assert client.on_reply(10, MemWriteReply(third.op_id, 4, STATUS_OK)) == []
    ((_, mark2),) = client.take_outgoing()
    assert isinstance(mark2, MemMarkKnown) and mark2.node_incarnation == 4
    assert client.on_reply(10, MemWriteReply(mark2.op_id, 4, STATUS_OK)) == []
    assert client.pending_ops() == 1


def test_forget_epoch_ends_its_recoveries() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES3)
    client.write(ADDR, 1, _value(1), token=None)
    for node, msg in client.take_outgoing():
        client.on_reply(node, _ok(msg))
    client.write(ADDR, 2, _value(2), token=None)
    w = client.take_outgoing()[0][1]
    client.on_reply(10, _ok(w, status=STATUS_UNKNOWN))  # recovery of (10, EPOCH), rewrite out
    client.take_outgoing()
    other = RegisterAddress(EPOCH + 1, 0, 2, 0)
    client.write(other, 1, _value(1), token=None)
    w2 = client.take_outgoing()[0][1]
    client.on_reply(11, _ok(w2, status=STATUS_UNKNOWN))  # recovery of (11, EPOCH + 1): mark
    client.take_outgoing()
    assert client.pending_ops() == 4
    client.forget_epoch(EPOCH)
    assert client.pending_ops() == 2  # EPOCH + 1: its write and its mark
    assert client.retry() is True
    resent = client.take_outgoing()
    assert {(node, type(m).__name__, m.epoch) for node, m in resent} == {
        (10, "MemWrite", EPOCH + 1),
        (11, "MemWrite", EPOCH + 1),
        (12, "MemWrite", EPOCH + 1),
        (11, "MemMarkKnown", EPOCH + 1),
    }
    client.forget_epoch(EPOCH + 1)
    assert client.pending_ops() == 0
    assert client.retry() is False


def test_end_to_end_over_five_memory_nodes_two_of_them_down() -> None:
    nodes = (10, 11, 12, 13, 14)
    stores = {n: MemoryNodeStore(n, incarnation=1) for n in nodes}
    for store in stores.values():
        for w in MEMBERS:
            store.provision_area(EPOCH, w, MEMBERS, TAIL)
    writer, reader = RegisterClient(0, nodes), RegisterClient(2, nodes)

    def pump(client: RegisterClient, down: set[int]) -> list[Done]:
        done: list[Done] = []
        while batch := client.take_outgoing():
            for node, m in batch:
                if node not in down:
                    done += client.on_reply(node, stores[node].handle(client.owner, m))
        return done

    writer.write(ADDR, 7, _value(7), token="w")
    assert pump(writer, {10, 11, 12}) == []  # two of five: no majority
    assert pump(writer, set()) == []  # nothing re-sent without retry
    writer.retry()
    assert pump(writer, {13, 14}) == [WriteDone("w", ADDR)]  # three of five
    reader.read(ADDR, token="r")
    assert pump(reader, {12, 13}) == [ReadDone("r", ADDR, (7, _value(7)))]
    raw = stores[13].handle(2, MemRead(0, EPOCH, 0, 1, 3))
    assert isinstance(raw, MemReadReply) and parse_register(raw.data) == (7, _value(7))
