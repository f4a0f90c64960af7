"""PROTOCOL.md section 4, "Clients and requests" (submission), one rule per test: what a
replica logs, echoes and forwards, when the leader holds a request ready to propose, what a
forwarded request must carry, and the replies. A single real ``Replica`` is fed the frames of
the other members and of clients, and judged by the frames it sends and the Prepares it
CTBcasts (its own ``Delivered`` actions).
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
    SendClient,
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
    Reply,
    Request,
    RequestEcho,
    RequestEchoes,
    RequestForward,
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
        """The leader's matching "ckpt" share for our own checkpoint c."""
        (d,) = {s.digest for s in self.sent(CkptShare) if s.c == c}
        sig = self.keys.members[LEADER].sign(Tag.CKPT, self.cluster, 0, c, d)
        self.frame(LEADER, CkptShare(c, d, sig))

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


def _proposed(one: One) -> list[tuple[int, tuple[tuple[int, int, bytes, bool], ...]]]:
    """(instance, entries as (client, request, payload, signed)) of each Prepare it CTBcast."""
    return [
        (
            p.instance,
            tuple((e.client_id, e.request_id, e.payload, bool(e.sig)) for e in p.batch.entries),
        )
        for p in one.own_ctb(Prepare)
    ]


def _echo(one: One, r: int, cid: int, rid: int, payload: bytes) -> None:
    one.frame(r, RequestEcho(cid, rid, digest(payload)))


def _forward(one: One, sender: int, e: Entry) -> None:
    one.frame(sender, RequestForward(Request(e.client_id, e.request_id, e.payload, e.sig)))


def _to_leader(one: One, kind: type) -> list[tuple[tuple[int, ...], Any]]:
    out = []
    for a in one.actions:
        if isinstance(a, Send):
            msg = decode(a.frame)[1]
            if isinstance(msg, kind):
                out.append((a.targets, msg))
    return out


def _replies(one: One) -> list[Reply]:
    out = []
    for a in one.actions:
        if isinstance(a, SendClient):
            msg = decode(a.frame)[1]
            assert isinstance(msg, Reply)
            out.append(msg)
    return out


# ============================================================ the leader: ready to propose


def test_a_signed_request_is_ready_at_once(leader: One) -> None:
    leader.request(CID, 1, b"p", signed=True)
    assert _proposed(leader) == [(0, ((CID, 1, b"p", True),))]


def test_an_unsigned_request_needs_identical_echoes_from_all_followers(leader: One) -> None:
    leader.request(CID, 1, b"p")
    assert _proposed(leader) == []
    _echo(leader, ME, CID, 1, b"p")
    assert _proposed(leader) == []
    _echo(leader, OTHER, CID, 1, b"p")
    assert _proposed(leader) == [(0, ((CID, 1, b"p", False),))]


def test_with_f_2_the_leader_needs_all_four_echoes(make_cluster: Callable[..., Any]) -> None:
    leader = One(make_cluster, me=LEADER, f=2)
    leader.request(CID, 1, b"p")
    for r in (1, 2, 3):
        _echo(leader, r, CID, 1, b"p")
    assert _proposed(leader) == []
    _echo(leader, 4, CID, 1, b"p")
    assert [i for i, _ in _proposed(leader)] == [0]


def test_a_mismatching_echo_keeps_the_request_unready(leader: One) -> None:
    leader.request(CID, 1, b"p")
    _echo(leader, ME, CID, 1, b"p")
    _echo(leader, OTHER, CID, 1, b"q")
    assert _proposed(leader) == []
    _echo(leader, OTHER, CID, 1, b"p")  # the first echo of a follower is the one that counts
    assert _proposed(leader) == []
    leader.request(CID, 1, b"p", signed=True)  # the client resends it signed
    assert _proposed(leader) == [(0, ((CID, 1, b"p", True),))]


def test_echoes_before_the_request_are_buffered(leader: One) -> None:
    _echo(leader, ME, CID, 1, b"p")
    _echo(leader, OTHER, CID, 1, b"p")
    assert _proposed(leader) == []
    leader.request(CID, 1, b"p")
    assert _proposed(leader) == [(0, ((CID, 1, b"p", False),))]


def test_echoes_in_one_frame_count_like_single_ones(leader: One) -> None:
    leader.request(CID, 1, b"p")
    leader.request(CID2, 1, b"q")
    leader.frame(
        ME, RequestEchoes((RequestEcho(CID, 1, digest(b"p")), RequestEcho(CID2, 1, digest(b"q"))))
    )
    leader.frame(
        OTHER,
        RequestEchoes((RequestEcho(CID, 1, digest(b"p")), RequestEcho(CID2, 1, digest(b"q")))),
    )
    assert [sorted((c, r) for c, r, _, _ in entries) for _, entries in _proposed(leader)] == [
        [(CID, 1), (CID2, 1)]
    ]


def test_a_ready_request_is_proposed_once(leader: One) -> None:
    leader.request(CID, 1, b"p")
    _echo(leader, ME, CID, 1, b"p")
    _echo(leader, OTHER, CID, 1, b"p")
    _echo(leader, OTHER, CID, 1, b"p")
    leader.request(CID, 1, b"p", signed=True)
    e = leader.signed(CID, 1, b"p")
    _forward(leader, ME, e)
    assert [i for i, _ in _proposed(leader)] == [0]
    assert leader.rep.footprint()["ready"] == 0


def test_a_signed_forward_makes_a_request_ready_at_the_leader(leader: One) -> None:
    _forward(leader, ME, leader.signed(CID, 1, b"p"))
    assert _proposed(leader) == [(0, ((CID, 1, b"p", True),))]
    assert leader.evidence() == []


def test_a_forward_of_exactly_max_request_bytes_is_taken(make_cluster: Callable[..., Any]) -> None:
    leader = One(make_cluster, me=LEADER, max_request_bytes=64)
    _forward(leader, ME, leader.signed(CID, 1, b"x" * 64))
    assert [i for i, _ in _proposed(leader)] == [0]
    assert leader.rep.consensus.intake.dropped == 0


# ============================================================ forwards the leader refuses


def test_an_unsigned_forward_is_evidence(leader: One) -> None:
    _forward(leader, ME, Entry(CID, 1, b"p"))
    assert leader.evidence() == [(ME, "forward.unsigned")]
    assert leader.rep.consensus.intake.dropped == 0
    _echo(leader, ME, CID, 1, b"p")
    _echo(leader, OTHER, CID, 1, b"p")
    assert _proposed(leader) == [], "the unsigned forward was not logged"


@pytest.mark.parametrize("why", ["unknown client", "bad signature", "over max_request"])
def test_a_forward_that_cannot_be_checked_here_is_dropped_without_evidence(
    make_cluster: Callable[..., Any], why: str
) -> None:
    leader = One(make_cluster, me=LEADER, max_request_bytes=64)
    if why == "unknown client":
        e = leader.signed(NEW, 1, b"p", Signer(b"\x33" * 32))
    elif why == "bad signature":
        e = leader.signed(CID, 1, b"p", leader.keys.clients[CID2])
    else:
        e = leader.signed(CID, 1, b"x" * 65)
    _forward(leader, ME, e)
    assert leader.evidence() == []
    assert leader.rep.consensus.intake.dropped == 1
    assert _proposed(leader) == []
    assert leader.rep.footprint()["request_log"] == 3, "nothing logged (one unit per client)"


# ============================================================ followers: echo and forward


def test_a_follower_echoes_an_unsigned_request_to_the_leader(one: One) -> None:
    one.request(CID, 1, b"p")
    assert _to_leader(one, RequestEcho) == [((LEADER,), RequestEcho(CID, 1, digest(b"p")))]
    assert _to_leader(one, RequestEchoes) == [] and _to_leader(one, RequestForward) == []


def test_a_follower_sends_a_bursts_echoes_in_one_frame(one: One) -> None:
    for rid in (1, 2, 3):
        one.rep.receive_client(CID, encode(Request(CID, rid, b"p%d" % rid), 0), one.now)
    one.drain()
    assert _to_leader(one, RequestEcho) == []
    (frame,) = _to_leader(one, RequestEchoes)
    assert frame[0] == (LEADER,)
    assert [e.request_id for e in frame[1].echoes] == [1, 2, 3]


def test_a_follower_forwards_a_signed_request_to_the_leader(one: One) -> None:
    one.request(CID, 1, b"p", signed=True)
    e = one.signed(CID, 1, b"p")
    assert _to_leader(one, RequestForward) == [
        ((LEADER,), RequestForward(Request(CID, 1, b"p", e.sig)))
    ]
    assert _to_leader(one, RequestEcho) == []


def test_a_repeated_request_sends_nothing_more(one: One) -> None:
    one.request(CID, 1, b"p")
    one.request(CID, 1, b"p")
    one.request(CID, 1, b"other")
    assert len(_to_leader(one, RequestEcho)) == 1


def test_a_follower_ignores_echoes(one: One) -> None:
    before = one.rep.footprint()["request_log"]
    one.request(CID, 1, b"p")
    logged = one.rep.footprint()["request_log"]
    assert logged == before + 1
    _echo(one, OTHER, CID, 1, b"p")
    _echo(one, OTHER, CID, 2, b"q")
    assert one.rep.footprint()["request_log"] == logged


def test_a_forward_to_a_follower_is_logged_but_never_made_ready(one: One) -> None:
    _forward(one, OTHER, one.signed(CID, 1, b"p"))
    assert one.rep.footprint()["ready"] == 0
    one.prepare(0, Entry(CID, 1, b"p"))
    assert one.promised() == [0], "the forwarded copy is in the log"


def test_a_waiting_prepare_is_rechecked_when_its_request_arrives(one: One) -> None:
    one.prepare(0, Entry(CID, 1, b"p"))
    assert one.promised() == []
    one.request(CID, 1, b"p")
    assert one.promised() == [0]


def test_a_waiting_prepare_is_rechecked_when_a_forward_brings_its_request(one: One) -> None:
    one.prepare(0, Entry(CID, 1, b"p"))
    _forward(one, OTHER, one.signed(CID, 1, b"p"))
    assert one.promised() == [0]


def test_the_leader_neither_echoes_nor_forwards(leader: One) -> None:
    leader.request(CID, 1, b"p")
    leader.request(CID2, 1, b"q", signed=True)
    assert _to_leader(leader, RequestEcho) == [] and _to_leader(leader, RequestForward) == []


# ============================================================ windows and replies


def test_requests_outside_h_to_h_plus_client_window_are_dropped(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, client_window=4)
    one.request(CID, 0, b"p")
    one.request(CID, 5, b"p")
    assert _to_leader(one, RequestEcho) == []
    one.request(CID, 4, b"p")
    assert [m.request_id for _, m in _to_leader(one, RequestEcho)] == [4]


def test_an_executed_request_is_answered_from_the_table(one: One) -> None:
    one.prepare(0, one.signed(CID, 1, b"p"))
    one.decide_fast(0)
    assert _replies(one) == [Reply(0, CID, 1, b"r:p")]
    one.request(CID, 1, b"p")
    assert _replies(one) == [Reply(0, CID, 1, b"r:p")] * 2
    assert _to_leader(one, RequestEcho) == []


# ============================================================ re-echo at sync ticks


def test_a_follower_re_echoes_and_re_forwards_pending_requests(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, sync_interval_ns=1000)
    one.request(CID, 1, b"p")
    one.request(CID2, 1, b"q", signed=True)
    one.now += 500  # exactly half a sync interval old: resent
    one.tick()
    assert [m.request_id for _, m in _to_leader(one, RequestEcho)] == [1, 1]
    assert len(_to_leader(one, RequestForward)) == 2


def test_a_request_younger_than_half_a_sync_interval_is_not_resent(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, sync_interval_ns=1000)
    one.request(CID, 1, b"p")
    one.now += 499
    one.tick()
    assert len(_to_leader(one, RequestEcho)) == 1


def test_the_leader_resends_nothing_at_a_tick(make_cluster: Callable[..., Any]) -> None:
    leader = One(make_cluster, me=LEADER, sync_interval_ns=1000)
    leader.request(CID, 1, b"p")
    leader.now += 5000
    leader.tick()
    assert _to_leader(leader, RequestEcho) == [] and _to_leader(leader, RequestEchoes) == []
