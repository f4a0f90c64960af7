"""PROTOCOL.md section 4: the leader's proposals. Ready requests are cut into batches of at
most batch_max entries with ts = max(clock, previous fresh ts), at most inflight_max undecided
at a time, never at or beyond the last Checkpoint the leader CTBcast plus a window; a ready
request that is gone or replaced by then is not proposed. The leader is a single real
``Replica`` (replica 0 of 3) fed the frames of the followers and clients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ubft.replica.core.actions import (
    Action,
    Decided,
    Delivered,
    Executed,
    ReportEvidence,
    Send,
    TimerKey,
    TimerKind,
)
from ubft.replica.core.admission import ADMIN_CLIENT_ID, AdminOp, admin_command
from ubft.replica.core.codec import (
    decode,
    decode_payload,
    encode,
    encode_batch,
    encode_payload,
)
from ubft.replica.core.crypto import Signer, Tag, digest
from ubft.replica.core.messages import (
    Batch,
    Certificate,
    Checkpoint,
    CkptShare,
    Commit,
    Ctb,
    CtbEcho,
    Entry,
    FastCommit,
    Message,
    Prepare,
    Promise,
    Request,
    RequestEcho,
)
from ubft.replica.core.replica import Replica

CID = 100
CID2 = 101
NEW = 200
LEADER, ME, OTHER = 0, 1, 2
NOW = 1_000_000_000


class Echo:
    """A deterministic application that answers every command with its bytes."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, int]] = []

    def apply(self, command: bytes, clock_ns: int) -> bytes:
        self.calls.append((command, clock_ns))
        return b"r:" + command

    def snapshot(self) -> bytes:
        return b"".join(c for c, _ in self.calls)

    def restore(self, snapshot: bytes) -> None:
        raise NotImplementedError

    def state_pieces(self) -> Iterator[bytes]:  # checkpoints snapshot the state in pieces
        yield self.snapshot()

    def restore_begin(self) -> None:
        raise NotImplementedError

    def restore_feed(self, data: bytes) -> None:
        raise NotImplementedError

    def restore_finish(self) -> None:
        raise NotImplementedError

    def restore_abort(self) -> None:
        raise NotImplementedError

    def digest(self) -> bytes:
        return digest(self.snapshot())


class One:
    """Replica ``me``; the test plays every other member, the clients and the admin."""

    def __init__(self, make_cluster: Callable[..., Any], me: int = ME, **params: Any) -> None:
        params.setdefault("clients", 2)
        if "window" in params:
            params.setdefault("inflight_max", min(8, params["window"] // 2))
        self.config, self.keys = make_cluster(**params)
        self.n = self.config.n
        self.me = me
        self.app = Echo()
        self.rep = Replica(
            self.config, me, self.keys.members[me], self.app, self.keys.client_keys()
        )
        self.cluster = self.config.cluster_id_bytes
        self.next_k = dict.fromkeys(range(self.n), 0)
        self.actions: list[Action] = []
        self.admin_s = 0
        self.now = NOW

    # ---- input

    def frame(self, sender: int, msg: Message) -> None:
        self.rep.receive(sender, encode(msg, 0), self.now)
        self.drain()

    def drain(self) -> None:
        self.actions.extend(self.rep.take_actions())

    def deliver(self, payload: bytes, b: int = LEADER) -> None:
        """b's next CTBcast value, delivered on the fast path (unanimous echoes)."""
        k = self.next_k[b]
        self.next_k[b] = k + 1
        self.frame(b, Ctb(b, k, payload))
        for r in range(self.n):
            if r not in (b, self.me):
                self.frame(r, CtbEcho(b, k, False, payload))

    def prepare(self, i: int, *entries: Entry, ts: int | None = None, view: int = 0) -> Batch:
        batch = Batch(self.now if ts is None else ts, tuple(entries))
        self.deliver(encode_payload(Prepare(view, i, batch)), self.config.leader(view))
        return batch

    def request(self, cid: int, rid: int, payload: bytes, signed: bool = False) -> None:
        sig = self.signed(cid, rid, payload).sig if signed else b""
        self.rep.receive_client(cid, encode(Request(cid, rid, payload, sig), 0), self.now)
        self.drain()

    def tick(self) -> None:
        self.rep.timer_fired(TimerKey(TimerKind.SYNC), self.now)
        self.drain()

    def decide_fast(self, i: int) -> None:
        for r in range(self.n):
            if r not in (self.me, LEADER):
                self.frame(r, Promise(0, i))
        for r in range(self.n):
            if r != self.me:
                self.frame(r, FastCommit(0, i))

    def prep_cert(self, i: int, batch: Batch, signers: tuple[int, ...]) -> Certificate:
        d = digest(encode_batch(batch))
        sigs = tuple(self.keys.members[r].sign(Tag.PREP, self.cluster, 0, 0, i, d) for r in signers)
        return Certificate(signers, sigs)

    def commit(self, b: int, i: int, batch: Batch, signers: tuple[int, ...] = (0, 2)) -> None:
        self.deliver(encode_payload(Commit(0, i, batch, self.prep_cert(i, batch, signers))), b)

    def checkpoint(self, b: int, c: int, d: bytes = bytes(32)) -> None:
        sigs = tuple(self.keys.members[r].sign(Tag.CKPT, self.cluster, 0, c, d) for r in (0, 2))
        self.deliver(encode_payload(Checkpoint(c, d, Certificate((0, 2), sigs))), b)

    def stabilise(self, c: int) -> None:
        """Another member's matching "ckpt" share for our own checkpoint c."""
        (d,) = {s.digest for s in self.sent(CkptShare) if s.c == c}
        r = next(m for m in range(self.n) if m != self.me)
        sig = self.keys.members[r].sign(Tag.CKPT, self.cluster, 0, c, d)
        self.frame(r, CkptShare(c, d, sig))

    # ---- entries

    def signed(self, cid: int, rid: int, payload: bytes, signer: Signer | None = None) -> Entry:
        s = signer or self.keys.clients[cid]
        return Entry(
            cid, rid, payload, s.sign(Tag.REQ, self.cluster, None, cid, rid, digest(payload))
        )

    def admin(self, op: AdminOp, cid: int, key: bytes) -> Entry:
        self.admin_s += 1
        payload = admin_command(self.keys.admin, self.cluster, 0, op, cid, key, self.admin_s)
        return self.signed(ADMIN_CLIENT_ID, self.admin_s, payload, self.keys.admin)

    # ---- output

    def sent(self, kind: type) -> list[Any]:
        out = []
        for a in self.actions:
            if isinstance(a, Send):
                msg = decode(a.frame)[1]
                if isinstance(msg, kind):
                    out.append(msg)
        return out

    def promised(self) -> list[int]:
        return [p.instance for p in self.sent(Promise)]

    def own_ctb(self, kind: type) -> list[Any]:
        out = []
        for a in self.actions:
            if isinstance(a, Delivered) and a.b == self.me:
                p = decode_payload(a.m)
                if isinstance(p, kind):
                    out.append(p)
        return out

    def executed(self) -> list[tuple[int, int, int]]:
        return [
            (a.instance, a.client_id, a.request_id) for a in self.actions if isinstance(a, Executed)
        ]

    def decided(self) -> list[int]:
        return [a.instance for a in self.actions if isinstance(a, Decided)]

    def evidence(self) -> list[tuple[int, str]]:
        return [(a.against, a.reason) for a in self.actions if isinstance(a, ReportEvidence)]


@pytest.fixture
def one(make_cluster: Callable[..., Any]) -> One:
    return One(make_cluster)


@pytest.fixture
def leader(make_cluster: Callable[..., Any]) -> One:
    return One(make_cluster, me=LEADER)


def _prepares(one: One) -> list[Prepare]:
    return one.own_ctb(Prepare)


def _burst(one: One, *reqs: tuple[int, int, bytes]) -> None:
    """Signed requests that arrive together (one take_actions after all of them)."""
    for cid, rid, payload in reqs:
        e = one.signed(cid, rid, payload)
        one.rep.receive_client(cid, encode(Request(cid, rid, payload, e.sig), 0), one.now)
    one.drain()


def test_the_leader_proposes_a_ready_request_at_its_clock(leader: One) -> None:
    _burst(leader, (CID, 1, b"a"))
    (p,) = _prepares(leader)
    assert (p.view, p.instance, p.batch.ts) == (0, 0, NOW)
    assert p.batch.entries == (leader.signed(CID, 1, b"a"),)


def test_a_follower_never_proposes(one: One) -> None:
    _burst(one, (CID, 1, b"a"), (CID, 2, b"b"))
    assert _prepares(one) == []


def test_a_batch_holds_at_most_batch_max_entries(make_cluster: Callable[..., Any]) -> None:
    leader = One(make_cluster, me=LEADER, batch_max=2)
    _burst(leader, (CID, 1, b"a"), (CID, 2, b"b"), (CID2, 1, b"c"))
    assert [[(e.client_id, e.request_id) for e in p.batch.entries] for p in _prepares(leader)] == [
        [(CID, 1), (CID, 2)],
        [(CID2, 1)],
    ]
    assert [p.instance for p in _prepares(leader)] == [0, 1]


def test_at_most_inflight_max_proposals_are_undecided(make_cluster: Callable[..., Any]) -> None:
    leader = One(make_cluster, me=LEADER, batch_max=1, inflight_max=2)
    _burst(leader, *((CID, rid, b"x%d" % rid) for rid in range(1, 6)))
    assert [p.instance for p in _prepares(leader)] == [0, 1]
    leader.decide_fast(0)
    assert [p.instance for p in _prepares(leader)] == [0, 1, 2]
    leader.decide_fast(1)
    leader.decide_fast(2)
    assert [p.instance for p in _prepares(leader)] == [0, 1, 2, 3, 4]
    assert [p.batch.entries[0].request_id for p in _prepares(leader)] == [1, 2, 3, 4, 5]


def test_one_proposal_at_a_time_with_inflight_max_1(make_cluster: Callable[..., Any]) -> None:
    leader = One(make_cluster, me=LEADER, batch_max=1, inflight_max=1)
    _burst(leader, (CID, 1, b"a"), (CID, 2, b"b"))
    assert [p.instance for p in _prepares(leader)] == [0]
    leader.decide_fast(0)
    assert [p.instance for p in _prepares(leader)] == [0, 1]


def test_proposals_stop_at_the_last_ctbcast_checkpoint_plus_window(
    make_cluster: Callable[..., Any],
) -> None:
    leader = One(make_cluster, me=LEADER, window=4, batch_max=1, inflight_max=2)
    _burst(leader, *((CID, rid, b"x%d" % rid) for rid in range(1, 7)))
    for i in range(4):
        leader.decide_fast(i)
    assert [p.instance for p in _prepares(leader)] == [0, 1, 2, 3], "4 = 0 + window"
    leader.stabilise(2)
    assert [cp.c for cp in leader.own_ctb(Checkpoint)] == [2]
    assert [p.instance for p in _prepares(leader)] == [0, 1, 2, 3, 4, 5]


def test_ts_never_goes_below_the_previous_fresh_ts(leader: One) -> None:
    _burst(leader, (CID, 1, b"a"))
    leader.now = NOW - 100  # the clock went back
    _burst(leader, (CID, 2, b"b"))
    assert [p.batch.ts for p in _prepares(leader)] == [NOW, NOW]
    leader.now = NOW + 100
    _burst(leader, (CID, 3, b"c"))
    assert [p.batch.ts for p in _prepares(leader)] == [NOW, NOW, NOW + 100]


def _admin_request(one: One, op: AdminOp, cid: int, key: bytes, s: int) -> None:
    payload = admin_command(one.keys.admin, one.cluster, 0, op, cid, key, s)
    e = one.signed(ADMIN_CLIENT_ID, s, payload, one.keys.admin)
    frame = encode(Request(ADMIN_CLIENT_ID, s, payload, e.sig), 0)
    one.rep.receive_client(ADMIN_CLIENT_ID, frame, one.now)
    one.drain()


def test_a_ready_request_of_a_client_deregistered_meanwhile_is_not_proposed(
    make_cluster: Callable[..., Any],
) -> None:
    leader = One(make_cluster, me=LEADER, inflight_max=1)
    _admin_request(leader, AdminOp.DEREGISTER, CID, bytes(32), 1)
    _burst(leader, (CID, 1, b"a"))
    assert [p.instance for p in _prepares(leader)] == [0]
    leader.decide_fast(0)
    assert CID not in leader.rep.log.clients
    assert [p.instance for p in _prepares(leader)] == [0], "no empty batch is proposed"


def test_a_ready_request_replaced_by_a_new_identity_is_not_proposed(
    make_cluster: Callable[..., Any],
) -> None:
    leader = One(make_cluster, me=LEADER, inflight_max=1)
    new = Signer(b"\x55" * 32)
    _admin_request(leader, AdminOp.REGISTER, CID, new.public_key, 1)
    _burst(leader, (CID, 1, b"old identity"))
    # instance 0 decides; before the leader cuts its next batch, CID (new key) sends its own
    # request 1, unsigned: it is not ready (no echoes yet)
    for r in (ME, OTHER):
        leader.rep.receive(r, encode(Promise(0, 0), 0), leader.now)
    for r in (ME, OTHER):
        leader.rep.receive(r, encode(FastCommit(0, 0), 0), leader.now)
    leader.rep.receive_client(CID, encode(Request(CID, 1, b"new identity"), 0), leader.now)
    leader.drain()
    assert leader.rep.log.clients[CID].key == new.public_key
    assert [p.instance for p in _prepares(leader)] == [0]
    for r in (ME, OTHER):
        leader.frame(r, RequestEcho(CID, 1, digest(b"new identity")))
    assert [[e.payload for e in p.batch.entries] for p in _prepares(leader)][1:] == [
        [b"new identity"]
    ]
