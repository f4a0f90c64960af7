"""The harness every driver uses (``ubft.replica.harness``): events reach the right entry
point, actions are routed in order to links, timers and the observer, memory nodes answer
through the links, and the persistence barrier keeps frames behind the records they depend on
(PROTOCOL.md section 1, durable mode)."""

from __future__ import annotations

from typing import Any

import pytest
from ubft.client.session import ClientSession, Completed
from ubft.memnode.server import MemnodeServer
from ubft.memnode.wire import MemRead, MemReadReply, MemWriteReply, decode, encode
from ubft.replica.core.actions import (
    Action,
    Decided,
    Delivered,
    Executed,
    Persist,
    PersistKind,
    ReportEvidence,
    Send,
    SendClient,
    SendMemnode,
    SetTimer,
    TimerKey,
    TimerKind,
)
from ubft.replica.core.codec import encode as core_encode
from ubft.replica.core.messages import Reply
from ubft.replica.harness import (
    CLIENT,
    MEMNODE,
    REPLICA,
    Harness,
    InstantStorage,
    Node,
    Observer,
)

KEY = TimerKey(TimerKind.SYNC)


class _Replica:
    """Records which entry point got what; hands out scripted actions."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.actions: list[Action] = []

    def receive(self, sender: int, frame: bytes, now_ns: int) -> None:
        self.calls.append(("receive", sender, frame, now_ns))

    def receive_client(self, client_id: int, frame: bytes, now_ns: int) -> None:
        self.calls.append(("receive_client", client_id, frame, now_ns))

    def receive_memnode(self, node: int, frame: bytes, now_ns: int) -> None:
        self.calls.append(("receive_memnode", node, frame, now_ns))

    def timer_fired(self, key: TimerKey, now_ns: int) -> None:
        self.calls.append(("timer_fired", key, now_ns))

    def take_actions(self) -> list[Action]:
        out, self.actions = self.actions, []
        return out


class _World(Observer):
    """Links, timers and observer in one, recording everything in one ordered log."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []

    def send(self, src: Node, dst: Node, frame: bytes) -> None:
        self.log.append(("send", src, dst, frame))

    def set_timer(self, node: Node, key: TimerKey, at_ns: int) -> None:
        self.log.append(("timer", node, key, at_ns))

    def delivered(self, r: int, a: Delivered) -> None:
        self.log.append(("delivered", r, a))

    def decided(self, r: int, a: Decided) -> None:
        self.log.append(("decided", r, a))

    def executed(self, r: int, a: Executed) -> None:
        self.log.append(("executed", r, a))

    def evidence(self, r: int, a: ReportEvidence) -> None:
        self.log.append(("evidence", r, a))

    instant = True

    def persist(self, r: int, records: list[Persist]) -> bool:
        self.log.append(("persist", r, list(records)))
        return self.instant


def _harness(observed: bool = True) -> tuple[Harness, _World, _Replica]:
    world = _World()
    h = Harness(world, world, world)
    rep = _Replica()
    h.add_replica(1, rep, observed=observed)
    return h, world, rep


ALL: list[Action] = [
    Send((0, 2), b"a"),
    SetTimer(KEY, 50),
    Delivered(0, 3, b"m"),
    SendClient(100, b"b"),
    Decided(4, 0, b"d" * 32, True),
    SendMemnode(2, b"c"),
    Executed(4, 100, 1, b"p", b"r"),
    ReportEvidence(0, "ctb.bad_signature"),
]


def test_actions_are_routed_in_order() -> None:
    h, world, rep = _harness()
    rep.actions = list(ALL)
    h.flush_replica(1)
    me = (REPLICA, 1)
    assert world.log == [
        ("send", me, (REPLICA, 0), b"a"),
        ("send", me, (REPLICA, 2), b"a"),
        ("timer", me, KEY, 50),
        ("delivered", 1, ALL[2]),
        ("send", me, (CLIENT, 100), b"b"),
        ("decided", 1, ALL[4]),
        ("send", me, (MEMNODE, 2), b"c"),
        ("executed", 1, ALL[6]),
        ("evidence", 1, ALL[7]),
    ]


def test_an_unobserved_replica_still_sends_and_sets_timers() -> None:
    h, world, rep = _harness(observed=False)
    rep.actions = list(ALL)
    h.flush_replica(1)
    assert [entry[0] for entry in world.log] == ["send", "send", "timer", "send", "send"]


def test_a_frame_reaches_the_entry_point_of_its_senders_kind() -> None:
    h, world, rep = _harness()
    h.deliver((REPLICA, 0), (REPLICA, 1), b"x", 5)
    h.deliver((CLIENT, 100), (REPLICA, 1), b"y", 6)
    h.deliver((MEMNODE, 2), (REPLICA, 1), b"z", 7)
    h.fire((REPLICA, 1), KEY, 8)
    assert rep.calls == [
        ("receive", 0, b"x", 5),
        ("receive_client", 100, b"y", 6),
        ("receive_memnode", 2, b"z", 7),
        ("timer_fired", KEY, 8),
    ]
    assert world.log == [], "nothing is routed before the driver flushes"
    with pytest.raises(KeyError):
        h.deliver((REPLICA, 0), (REPLICA, 9), b"x", 9)  # not hosted here: a driver bug


def test_a_memory_node_answers_through_the_links_and_drops_what_it_cannot_read() -> None:
    world = _World()
    h = Harness(world, world)
    server = MemnodeServer(node_id=2, incarnation=5)
    for w in (0, 1, 2):
        server.provision_area(0, w, (0, 1, 2), 4)
    h.add_memnode(server)
    h.deliver((REPLICA, 1), (MEMNODE, 2), encode(MemRead(9, 0, 0, 1, 3), 0), 0)
    [(what, src, dst, frame)] = world.log
    assert (what, src, dst) == ("send", (MEMNODE, 2), (REPLICA, 1))
    _, reply = decode(frame)
    assert isinstance(reply, MemReadReply) and (reply.op_id, reply.status) == (9, 0)
    h.deliver((REPLICA, 1), (MEMNODE, 2), b"garbage", 0)
    assert len(world.log) == 1 and server.dropped_total == 1
    server.crash()
    h.deliver((REPLICA, 1), (MEMNODE, 2), encode(MemRead(10, 0, 0, 1, 3), 0), 0)
    assert len(world.log) == 1, "a crashed node answers nothing"
    with pytest.raises(ValueError):
        h.deliver((CLIENT, 100), (MEMNODE, 2), b"x", 0)  # only members have links to it
    with pytest.raises(ValueError):
        h.fire((MEMNODE, 2), KEY, 0)


def test_client_sessions_send_set_timers_and_return_completions(
    make_cluster: Any,
) -> None:
    config, keys = make_cluster()
    world = _World()
    h = Harness(world, world)
    session = ClientSession(config, 100, keys.clients[100])
    h.add_client(session)
    rid = session.submit(b"cmd", 0)
    assert h.flush_client(100) == []
    sends = [e for e in world.log if e[0] == "send"]
    assert [(e[1], e[2]) for e in sends] == [((CLIENT, 100), (REPLICA, r)) for r in (0, 1, 2)]
    assert any(e[0] == "timer" and e[1] == (CLIENT, 100) for e in world.log)
    for r in (0, 1):
        h.deliver((REPLICA, r), (CLIENT, 100), core_encode(Reply(0, 100, rid, b"ok"), 0), 1)
    assert h.flush_client(100) == [Completed(rid, b"ok")]


def _durable(instant: bool) -> tuple[Harness, _World, _Replica]:
    world = _World()
    world.instant = instant
    h = Harness(world, world, world, storage=world)
    rep = _Replica()
    h.add_replica(1, rep)
    return h, world, rep


P1 = Persist(PersistKind.CTB_SENT, 4, 0, b"m")
P2 = Persist(PersistKind.ACCEPTED, 0, 4, b"d" * 32)
P3 = Persist(PersistKind.FAST_COMMITTED, 0, 4, b"B")


def test_frames_after_a_persist_leave_once_it_is_durable() -> None:
    h, world, rep = _durable(instant=True)
    rep.actions = [Send((0,), b"before"), P1, P2, Send((0, 2), b"a"), SetTimer(KEY, 9), P3]
    rep.actions += [SendMemnode(2, b"w"), Decided(4, 0, b"d" * 32, True)]
    h.flush_replica(1)
    me = (REPLICA, 1)
    assert world.log == [
        ("send", me, (REPLICA, 0), b"before"),
        ("timer", me, KEY, 9),  # timers and observations pass the barrier
        ("decided", 1, Decided(4, 0, b"d" * 32, True)),
        ("persist", 1, [P1, P2]),  # consecutive records: one group commit
        ("send", me, (REPLICA, 0), b"a"),
        ("send", me, (REPLICA, 2), b"a"),
        ("persist", 1, [P3]),
        ("send", me, (MEMNODE, 2), b"w"),
    ]
    assert h.behind_barrier(1) == 0
    world.log.clear()
    rep.actions = [Send((2,), b"free")]
    h.flush_replica(1)
    assert world.log == [("send", me, (REPLICA, 2), b"free")], "no barrier left"


def test_frames_wait_for_a_storage_that_acknowledges_later() -> None:
    h, world, rep = _durable(instant=False)
    me = (REPLICA, 1)
    rep.actions = [P1, Send((0,), b"a"), SendClient(100, b"r"), P2, Send((2,), b"b")]
    h.flush_replica(1)
    assert world.log == [("persist", 1, [P1])]
    rep.actions = [Send((0,), b"c")]
    h.flush_replica(1)
    assert len(world.log) == 1 and h.behind_barrier(1) == 5, "later frames wait too"
    world.log.clear()
    h.persisted(1)  # P1 is durable: up to the next barrier
    assert world.log == [
        ("send", me, (REPLICA, 0), b"a"),
        ("send", me, (CLIENT, 100), b"r"),
        ("persist", 1, [P2]),
    ]
    world.log.clear()
    h.persisted(1)
    assert world.log == [("send", me, (REPLICA, 2), b"b"), ("send", me, (REPLICA, 0), b"c")]
    assert h.behind_barrier(1) == 0
    with pytest.raises(ValueError):
        h.persisted(1)  # nothing is being persisted


def test_a_record_still_syncing_holds_frames_routed_after_it() -> None:
    h, world, rep = _durable(instant=False)
    rep.actions = [P1]
    h.flush_replica(1)
    rep.actions = [Send((0,), b"later")]
    h.flush_replica(1)
    assert world.log == [("persist", 1, [P1])]
    h.persisted(1)
    assert world.log[-1] == ("send", (REPLICA, 1), (REPLICA, 0), b"later")


def test_persisting_without_a_storage_is_a_driver_error() -> None:
    h, _, rep = _harness()
    rep.actions = [P1]
    with pytest.raises(ValueError):
        h.flush_replica(1)


def test_instant_storage_keeps_the_records_in_order() -> None:
    world = _World()
    storage = InstantStorage(keep=True)
    h = Harness(world, world, storage=storage)
    rep = _Replica()
    h.add_replica(3, rep)
    rep.actions = [P1, P2, Send((0,), b"x"), P3]
    h.flush_replica(3)
    assert storage.records == {3: [P1, P2, P3]}
    assert (storage.commits, storage.persisted) == (2, 3)
    assert world.log == [("send", (REPLICA, 3), (REPLICA, 0), b"x")]


def test_a_node_is_hosted_once() -> None:
    h, _, rep = _harness()
    with pytest.raises(ValueError):
        h.add_replica(1, rep)
    h.add_memnode(MemnodeServer(0, 1))
    with pytest.raises(ValueError):
        h.add_memnode(MemnodeServer(0, 2))


def test_an_unknown_action_is_a_bug() -> None:
    h, _, rep = _harness()
    rep.actions = [MemWriteReply(1, 1, 0)]  # type: ignore[list-item]
    with pytest.raises(AssertionError):
        h.flush_replica(1)
