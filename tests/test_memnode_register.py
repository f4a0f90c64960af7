"""Register client: majority quorums, retries, sub-slot alternation, FIFO, end to end."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from ubft.memnode.layout import (
    EMPTY_REGISTER,
    SUBSLOT_BYTES,
    VALUE_BYTES,
    RegisterAddress,
    encode_subslot,
    parse_register,
)
from ubft.memnode.register import ReadDone, RegisterClient, WriteDone
from ubft.memnode.store import STATUS_OK, STATUS_REJECTED, STATUS_UNKNOWN, MemoryNodeStore
from ubft.memnode.wire import MemRead, MemReadReply, MemWrite, MemWriteReply

NODES = (10, 11, 12)
ADDR = RegisterAddress(epoch=1, writer=0, b=1, slot=3)


def _value(fill: int) -> bytes:
    return bytes([fill]) * VALUE_BYTES


def _ack(
    msg: MemRead | MemWrite, status: int = STATUS_OK, data: bytes = EMPTY_REGISTER
) -> MemReadReply | MemWriteReply:
    if isinstance(msg, MemWrite):
        return MemWriteReply(msg.op_id, 1, status)
    return MemReadReply(msg.op_id, 1, status, data if status == STATUS_OK else b"")


def _register(*subslots: tuple[int, int]) -> bytes:
    return b"".join(encode_subslot(inc, _value(fill)) for inc, fill in subslots)


def _answer(
    client: RegisterClient, sent: Iterable[tuple[int, MemRead | MemWrite]], nodes: set[int]
) -> list[WriteDone | ReadDone]:
    done: list[WriteDone | ReadDone] = []
    for node, msg in sent:
        if node in nodes:
            done += client.on_reply(node, _ack(msg))
    return done


def test_write_goes_to_every_node_and_completes_on_two_of_three_acks() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES)
    client.write(ADDR, 5, _value(7), token="t")
    sent = client.take_outgoing()
    assert [node for node, _ in sent] == list(NODES)
    msg = sent[0][1]
    assert isinstance(msg, MemWrite)
    assert (msg.epoch, msg.writer, msg.b, msg.slot, msg.subslot) == (1, 0, 1, 3, 0)
    assert msg.data == encode_subslot(5, _value(7))
    assert client.on_reply(10, _ack(msg)) == []
    assert client.on_reply(10, _ack(msg)) == []  # a duplicate does not count twice
    assert client.on_reply(11, _ack(msg)) == [WriteDone("t", ADDR)]
    assert client.on_reply(12, _ack(msg)) == []  # completed ops are forgotten
    assert client.pending_ops() == 0
    assert client.take_outgoing() == []


def test_stray_replies_are_ignored() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES)
    client.write(ADDR, 5, _value(7), token="t")
    msg = client.take_outgoing()[0][1]
    assert client.on_reply(99, _ack(msg)) == []  # unknown node
    assert client.on_reply(10, MemWriteReply(12345, 1, STATUS_OK)) == []  # unknown op
    assert client.on_reply(10, MemReadReply(msg.op_id, 1, STATUS_OK, b"")) == []  # wrong kind
    assert client.on_reply(10, _ack(msg, STATUS_REJECTED)) == []
    client.take_outgoing()
    # "unknown" for a write: applied where readers cannot see it, so no ack; it starts the
    # recovery of that node (nothing written yet, so straight to MemMarkKnown)
    assert client.on_reply(11, _ack(msg, STATUS_UNKNOWN)) == []
    assert [(node, type(m).__name__) for node, m in client.take_outgoing()] == [
        (11, "MemMarkKnown")
    ]
    assert client.on_reply(12, _ack(msg)) == []  # only one real ack so far
    assert client.pending_ops() == 2  # the write and the mark


def test_write_to_another_writers_register_or_bad_value_raises() -> None:
    client = RegisterClient(owner=1, memnode_ids=NODES)
    with pytest.raises(ValueError):
        client.write(ADDR, 1, _value(0), token=None)
    with pytest.raises(ValueError):
        client.write(ADDR._replace(writer=1), 1, b"short", token=None)


def test_write_and_read_wait_while_two_nodes_are_down_and_retry_completes_them() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES)
    client.write(ADDR, 5, _value(7), token="w")
    client.read(ADDR._replace(writer=2), token="r")
    sent = client.take_outgoing()
    assert _answer(client, sent, {10}) == []  # 11 and 12 crashed: requests lost
    assert client.pending_ops() == 2
    assert client.retry() is True
    resent = client.take_outgoing()
    assert sorted(node for node, _ in resent) == [11, 11, 12, 12]
    done = _answer(client, resent, {11})
    assert done == [WriteDone("w", ADDR), ReadDone("r", ADDR._replace(writer=2), (0, _value(0)))]
    assert client.retry() is False
    assert client.take_outgoing() == []


def test_read_returns_highest_valid_incarnation_among_the_majority() -> None:
    client = RegisterClient(owner=2, memnode_ids=NODES)
    client.read(ADDR, token="r")
    sent = dict(client.take_outgoing())
    stale = _register((3, 1), (4, 2))
    fresh = _register((6, 3), (5, 4))
    assert client.on_reply(10, _ack(sent[10], data=stale)) == []
    assert client.on_reply(11, _ack(sent[11], data=fresh)) == [ReadDone("r", ADDR, (6, _value(3)))]


def test_read_with_only_garbage_returns_none() -> None:
    client = RegisterClient(owner=2, memnode_ids=NODES)
    client.read(ADDR, token="r")
    sent = dict(client.take_outgoing())
    torn = bytearray(_register((3, 1), (4, 2)))
    torn[20] ^= 1
    torn[SUBSLOT_BYTES + 20] ^= 1
    assert client.on_reply(10, _ack(sent[10], data=bytes(torn))) == []
    assert client.on_reply(11, _ack(sent[11], data=b"junk")) == [ReadDone("r", ADDR, None)]


def test_read_counts_unknown_as_no_reply() -> None:
    client = RegisterClient(owner=2, memnode_ids=NODES)
    client.read(ADDR, token="r")
    sent = dict(client.take_outgoing())
    assert client.on_reply(10, _ack(sent[10], STATUS_UNKNOWN)) == []
    assert client.on_reply(11, _ack(sent[11])) == []
    assert client.retry() is True
    assert [node for node, _ in client.take_outgoing()] == [10, 12]
    assert client.on_reply(10, _ack(sent[10])) == [ReadDone("r", ADDR, (0, _value(0)))]


def test_writes_alternate_subslots_and_queue_fifo_per_register() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES)
    other = ADDR._replace(slot=4)
    for k in range(3):
        client.write(ADDR, k + 1, _value(k), token=k)
    client.write(other, 9, _value(9), token="other")  # another register is not held up
    first = client.take_outgoing()
    assert len(first) == 6
    assert client.pending_ops() == 4
    subslots: list[int] = []
    tokens: list[object] = []
    batch = first
    while batch:
        writes = [msg for _, msg in batch if isinstance(msg, MemWrite) and msg.slot == ADDR.slot]
        assert len({w.op_id for w in writes}) <= 1  # one write per register in flight
        subslots += [w.subslot for w in writes[:1]]
        tokens += [d.token for d in _answer(client, batch, {10, 12})]
        batch = client.take_outgoing()
    assert subslots == [0, 1, 0]
    assert tokens == [0, "other", 1, 2]
    assert client.pending_ops() == 0
    client.write(ADDR, 4, _value(4), token=3)
    assert {msg.subslot for _, msg in client.take_outgoing() if isinstance(msg, MemWrite)} == {1}


def test_op_ids_are_unique_and_increasing() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES)
    client.write(ADDR, 1, _value(1), token=None)
    client.read(ADDR, token=None)
    client.read(ADDR, token=None)
    ids = [msg.op_id for node, msg in client.take_outgoing() if node == 10]
    assert ids == sorted(set(ids)) and len(ids) == 3


def test_node_incarnation_changes_are_counted() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES)
    client.on_reply(10, MemWriteReply(1, 1, STATUS_OK))
    client.on_reply(10, MemWriteReply(2, 1, STATUS_OK))
    assert client.incarnation_changes == 0
    client.on_reply(10, MemWriteReply(3, 2, STATUS_OK))
    assert client.incarnation_changes == 1


def test_memory_stays_bounded_and_forget_epoch_drops_state() -> None:
    client = RegisterClient(owner=0, memnode_ids=NODES)
    for k in range(200):
        client.write(ADDR._replace(slot=k % 4), k, _value(k % 256), token=k)
        client.read(ADDR, token=k)
        while batch := client.take_outgoing():
            _answer(client, batch, set(NODES))
    assert client.pending_ops() == 0
    # latest sub-slot and data per register + incarnations
    assert client.footprint() <= 2 * 4 + len(NODES)
    client.write(ADDR, 1, _value(1), token=None)
    client.write(ADDR, 2, _value(2), token=None)
    client.forget_epoch(ADDR.epoch)
    assert client.pending_ops() == 0
    assert client.footprint() == len(NODES) + len(client.take_outgoing())


def test_end_to_end_with_three_memory_nodes() -> None:
    stores = {node: MemoryNodeStore(node, incarnation=1) for node in NODES}
    for store in stores.values():
        for writer in (0, 1, 2):
            store.provision_area(1, writer, (0, 1, 2), tail=8)
    writer = RegisterClient(owner=0, memnode_ids=NODES)
    reader = RegisterClient(owner=2, memnode_ids=NODES)
    down = {12}

    def pump(client: RegisterClient) -> list[WriteDone | ReadDone]:
        done: list[WriteDone | ReadDone] = []
        while batch := client.take_outgoing():
            for node, msg in batch:
                if node not in down:
                    done += client.on_reply(node, stores[node].handle(client.owner, msg))
        return done

    for inc in (1, 2, 3):
        writer.write(ADDR, inc, _value(inc), token=inc)
    assert [d.token for d in pump(writer)] == [1, 2, 3]
    # Node 10 keeps both latest writes; 12 missed everything and still reads empty.
    assert parse_register(stores[10].handle(2, MemRead(0, 1, 0, 1, 3)).data) == (3, _value(3))
    assert parse_register(stores[12].handle(2, MemRead(0, 1, 0, 1, 3)).data) == (0, _value(0))
    down = {10}
    reader.read(ADDR, token="r")
    assert pump(reader) == [ReadDone("r", ADDR, (3, _value(3)))]
    # A replica cannot write another's registers even by crafting the message.
    forged = MemWrite(99, 1, 0, 1, 3, 0, encode_subslot(50, _value(50)))
    assert all(store.handle(2, forged).status == STATUS_REJECTED for store in stores.values())
    assert all(store.rejected_total == 1 for store in stores.values())


def test_a_node_that_lost_its_memory_gets_our_registers_back_before_it_counts() -> None:
    """PROTOCOL.md section 1: a restarted memory node reads "unknown" until each writer has
    rewritten its latest values there and marked the area known; until then it is no ack."""
    from ubft.memnode.store import MemoryNodeStore

    members = (0, 1, 2)
    stores = {n: MemoryNodeStore(n, incarnation=1) for n in NODES}
    for store in stores.values():
        for w in members:
            store.provision_area(1, w, members, 8)
    writer, reader = RegisterClient(0, NODES), RegisterClient(1, NODES)

    def pump(client: RegisterClient, owner: int, down: set[int]) -> list[WriteDone | ReadDone]:
        done: list[WriteDone | ReadDone] = []
        while batch := client.take_outgoing():
            for node, m in batch:
                if node not in down:
                    done += client.on_reply(node, stores[node].handle(owner, m))
        return done

    for slot in range(3):
        writer.write(ADDR._replace(slot=slot), 1, _value(slot + 1), token=slot)
    assert len(pump(writer, 0, set())) == 3
    # node 10 restarts: new incarnation, every area unknown
    stores[10] = MemoryNodeStore(10, incarnation=2)
    for w in members:
        stores[10].provision_area(1, w, members, 8, known=False)
    # with node 11 down, a read cannot complete: 10 answers "unknown"
    reader.read(ADDR._replace(slot=1), token="r")
    assert pump(reader, 1, {11}) == []
    # the writer's next write meets the new incarnation ("unknown"): it rewrites slots 0-2
    # there, marks the area known, and only then does node 10 count again
    writer.write(ADDR._replace(slot=4), 1, _value(9), token="w")
    sent: list[tuple[int, str]] = []
    done: list[WriteDone | ReadDone] = []
    for _ in range(2):  # the first round meets "unknown"; the retry after the mark completes
        while batch := writer.take_outgoing():
            for node, m in batch:
                sent.append((node, type(m).__name__))
                if node != 11:
                    done += writer.on_reply(node, stores[node].handle(0, m))
        if not done:
            writer.retry()
    assert sent.count((10, "MemMarkKnown")) == 1
    assert sent.count((10, "MemWrite")) >= 1 + 3  # the new write and the three rewrites
    assert done == [WriteDone("w", ADDR._replace(slot=4))]
    assert writer.pending_ops() == 0
    for slot in range(3):  # what node 10 lost is back there
        raw = stores[10].handle(1, MemRead(0, 1, 0, ADDR.b, slot))
        assert isinstance(raw, MemReadReply) and parse_register(raw.data) == (1, _value(slot + 1))
    # now the reader completes with 10 and 12, and sees the value from before the restart
    reader.retry()
    (read,) = pump(reader, 1, {11})
    assert isinstance(read, ReadDone) and read.result == (1, _value(2))
