"""Three real replicas, three memory nodes (``MemnodeServer``) and client sessions, hosted by the
harness every driver uses (``ubft.replica.harness``) and wired by a tiny deterministic in-test
driver: one FIFO queue of frames, timers fired only when a test says so, and a drop filter.
Tests are named after the PROTOCOL.md sections they exercise."""

from __future__ import annotations

import random
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import pytest
from ubft.apps.kv import KVStore, cmd_incr, encode_int
from ubft.client.session import ClientSession, Completed
from ubft.memnode.layout import EMPTY_REGISTER, VALUE_BYTES, RegisterAddress, encode_subslot
from ubft.memnode.store import STATUS_REJECTED, MemoryNodeStore
from ubft.memnode.wire import MemRead, MemReadReply, MemWrite
from ubft.replica.core.actions import (
    Decided,
    Delivered,
    Executed,
    ReportEvidence,
    TimerKey,
    TimerKind,
)
from ubft.replica.core.codec import REASONS, decode, encode, encode_batch, encode_payload
from ubft.replica.core.config import ClusterConfig
from ubft.replica.core.crypto import Tag, digest
from ubft.replica.core.messages import (
    Batch,
    Certificate,
    Checkpoint,
    Commit,
    Ctb,
    CtbCkptCert,
    CtbCkptShare,
    CtbEcho,
    CtbSig,
    CtbSigRequest,
    Entry,
    Equivocation,
    FastCommit,
    Message,
    Prepare,
    PrepShare,
    Promise,
    Reply,
    Request,
    RequestEcho,
    SealView,
    Sync,
)
from ubft.replica.core.replica import Replica
from ubft.replica.harness import CLIENT, REPLICA, Harness, InstantStorage, Node, Observer
from ubft.replica.sim.cluster import provision_memnodes

CID = 100


class _Record(Observer):
    """What the replicas report, kept per replica by the driver."""

    def __init__(self, d: Driver) -> None:
        self.d = d

    def decided(self, r: int, a: Decided) -> None:
        self.d.decided[r].append(a)

    def delivered(self, r: int, a: Delivered) -> None:
        prev = self.d.delivered[r].setdefault((a.b, a.k), digest(a.m))
        assert prev == digest(a.m), f"R{r} delivered two values for {(a.b, a.k)}"

    def executed(self, r: int, a: Executed) -> None:
        self.d.executed[r].append(a)

    def evidence(self, r: int, a: ReportEvidence) -> None:
        self.d.evidence[r].append(a)


class Driver:
    """A FIFO network on virtual time. ``run`` delivers frames until none is left; timers fire
    only through ``fire``; ``drop(src, dst, frame)`` returning True loses a frame. It is the
    harness's links (``send``) and timers (``set_timer``)."""

    def __init__(self, config: ClusterConfig, keys: Any) -> None:
        self.config = config
        self.keys = keys
        client_keys = keys.client_keys()
        self.replicas = {
            i: Replica(config, i, keys.members[i], KVStore(), client_keys)
            for i in config.member_ids
        }
        self.memnodes = provision_memnodes(config)
        self.sessions = {cid: ClientSession(config, cid, s) for cid, s in keys.clients.items()}
        self.harness = Harness(self, self, _Record(self), InstantStorage())
        for i, rep in self.replicas.items():
            self.harness.add_replica(i, rep)
        for session in self.sessions.values():
            self.harness.add_client(session)
        for server in self.memnodes.values():
            self.harness.add_memnode(server)
        self.queue: deque[tuple[Node, Node, bytes]] = deque()
        self.timers: list[tuple[int, Node, TimerKey]] = []
        self.now = 0
        self.drop: Callable[[Node, Node, bytes], bool] = lambda src, dst, frame: False
        self.hold: Callable[[Node, Node, bytes], bool] = lambda src, dst, frame: False
        self.held: list[tuple[Node, Node, bytes]] = []  # delayed until ``release``
        self.sent: list[tuple[Node, Node, bytes]] = []  # every frame sent, dropped ones too
        self.decided: dict[int, list[Decided]] = defaultdict(list)
        self.delivered: dict[int, dict[tuple[int, int], bytes]] = defaultdict(dict)
        self.executed: dict[int, list[Executed]] = defaultdict(list)
        self.evidence: dict[int, list[ReportEvidence]] = defaultdict(list)
        self.completed: dict[int, list[Completed]] = defaultdict(list)

    @property
    def stores(self) -> dict[int, MemoryNodeStore]:
        return {j: server.store for j, server in self.memnodes.items()}

    # ------------------------------------------------------------------ plumbing

    def send(self, src: Node, dst: Node, frame: bytes) -> None:
        self.post(src, dst, frame)

    def set_timer(self, node: Node, key: TimerKey, at_ns: int) -> None:
        self.timers.append((at_ns, node, key))

    def post(self, src: Node, dst: Node, frame: bytes) -> None:
        self.sent.append((src, dst, frame))
        if self.drop(src, dst, frame):
            return
        if self.hold(src, dst, frame):
            self.held.append((src, dst, frame))
        else:
            self.queue.append((src, dst, frame))

    def release(self) -> None:
        """Deliver the held frames next (after whatever is queued now)."""
        self.hold = lambda src, dst, frame: False
        self.queue.extend(self.held)
        self.held.clear()

    def inject(self, src: Node, dst: Node, msg: Message) -> None:
        """Put a hand-made frame on the wire (it still passes the drop filter)."""
        self.post(src, dst, encode(msg, self.config.epoch))

    def collect(self, r: int) -> None:
        self.harness.flush_replica(r)

    def collect_client(self, cid: int) -> None:
        self.completed[cid].extend(self.harness.flush_client(cid))

    def step(self) -> None:
        src, dst, frame = self.queue.popleft()
        self.harness.deliver(src, dst, frame, self.now)  # a memory node answers at once
        kind, ident = dst
        if kind == REPLICA:
            self.collect(ident)
        elif kind == CLIENT:
            self.collect_client(ident)
        else:
            dropped = self.memnodes[ident].dropped_by_reason
            assert not dropped, f"M{ident} got frames it could not read: {dropped}"

    def run(self, limit: int = 50_000) -> int:
        for r in self.replicas:
            self.collect(r)
        steps = 0
        while self.queue:
            self.step()
            steps += 1
            assert steps < limit, "the cluster does not quiesce"
        return steps

    def fire(self, *kinds: TimerKind) -> int:
        """Fire every timer of these kinds set so far (time jumps to its deadline)."""
        due = sorted(t for t in self.timers if t[2].kind in kinds)
        self.timers = [t for t in self.timers if t[2].kind not in kinds]
        for at, node, key in due:
            self.now = max(self.now, at)
            self.harness.fire(node, key, self.now)
            if node[0] == REPLICA:
                self.collect(node[1])
            else:
                self.collect_client(node[1])
        return len(due)

    def submit(self, cid: int, payload: bytes) -> int:
        rid = self.sessions[cid].submit(payload, self.now)
        self.collect_client(cid)
        return rid

    # ------------------------------------------------------------------ inspection

    def messages(self, cls: type, src: int | None = None) -> list[tuple[int, int, Any]]:
        """(sender, receiver, message) of every frame of type ``cls`` replicas sent."""
        out = []
        for (sk, s), (dk, d), frame in self.sent:
            if sk != "R" or dk == "M" or (src is not None and s != src):
                continue
            _, msg = decode(frame)
            if isinstance(msg, cls):
                out.append((s, d, msg))
        return out

    def reasons(self, r: int, against: int | None = None) -> list[str]:
        return [e.reason for e in self.evidence[r] if against is None or e.against == against]


@pytest.fixture
def cluster(make_cluster: Callable[..., Any]) -> Driver:
    config, keys = make_cluster()
    return Driver(config, keys)


def _ctb_sig(d: Driver, b: int, k: int, m: bytes, epoch: int | None = None) -> bytes:
    ep = d.config.epoch if epoch is None else epoch
    return d.keys.members[b].sign(Tag.CTB, d.config.cluster_id_bytes, ep, b, k, digest(m))


def _prepare(view: int, instance: int, ts: int, *entries: Entry) -> bytes:
    return encode_payload(Prepare(view, instance, Batch(ts, tuple(entries))))


def _replies(d: Driver, cid: int) -> list[tuple[int, Reply]]:
    out = []
    for (sk, s), (dk, c), frame in d.sent:
        if sk == "R" and dk == "C" and c == cid:
            _, msg = decode(frame)
            assert isinstance(msg, Reply)
            out.append((s, msg))
    return out


# =========================================================================== section 4: fast path


def test_sec4_fast_path_decides_without_signatures_on_n_fast_commits(cluster: Driver) -> None:
    d = cluster
    rid = d.submit(CID, cmd_incr(b"k"))
    d.run()
    assert d.keys.counter.created == 0, "no signature is created on the fast path"
    assert d.keys.counter.verified == 0, "no signature is verified on the fast path"
    digests = set()
    for r in (0, 1, 2):
        assert [(x.instance, x.view, x.fast) for x in d.decided[r]] == [(0, 0, True)]
        digests.add(d.decided[r][0].digest)
        assert [(e.client_id, e.request_id, e.result) for e in d.executed[r]] == [
            (CID, rid, encode_int(1))
        ]
        assert d.replicas[r].consensus.inst[0].fast_commits == {0, 1, 2}
    assert len(digests) == 1
    fcs = d.messages(FastCommit)
    assert {s for s, _, m in fcs if m == FastCommit(0, 0)} == {0, 1, 2}, "n FastCommits"
    assert len(fcs) == 3 * 2
    assert {s for s, _, _ in d.messages(Promise)} == {1, 2}, "the leader's Prepare is its promise"
    assert d.completed[CID] == [Completed(rid, encode_int(1))]
    assert not any(d.evidence.values())


def test_sec4_fast_path_many_requests_stay_fast_and_in_order(cluster: Driver) -> None:
    d = cluster
    for _ in range(5):
        d.submit(CID, cmd_incr(b"k"))
        d.run()
    assert [c.result for c in d.completed[CID]] == [encode_int(i) for i in range(1, 6)]
    for r in (0, 1, 2):
        assert [x.instance for x in d.decided[r]] == list(range(5))
        assert all(x.fast for x in d.decided[r])
    assert d.keys.counter.created == 0


def test_sec4_promises_before_the_prepare_are_buffered(cluster: Driver) -> None:
    d = cluster

    def late_echo(src: Node, dst: Node, frame: bytes) -> bool:
        return src == ("R", 1) and dst == ("R", 2) and isinstance(decode(frame)[1], CtbEcho)

    d.hold = late_echo  # R1's echo of the Prepare reaches R2 only after R1's promise
    rid = d.submit(CID, cmd_incr(b"k"))
    d.run()
    inst2 = d.replicas[2].consensus.inst[0]
    assert not inst2.accepted and inst2.promises == {1}, "R1's promise is kept"
    assert not d.decided[2]
    d.release()
    d.run()
    for r in (0, 1, 2):
        assert [(x.instance, x.fast) for x in d.decided[r]] == [(0, True)]
    assert d.completed[CID] == [Completed(rid, encode_int(1))]
    assert d.keys.counter.created == 0


# =========================================================================== section 4: slow path


def _until_completed(d: Driver, cid: int, rounds: int = 12) -> int:
    """Run, firing the retry, fast-path and fast-timeout timers, until the client's oldest
    outstanding request completes; returns how many timer rounds it took."""
    want = min(d.sessions[cid].outstanding)
    for i in range(rounds):
        d.run()
        if any(c.request_id == want for c in d.completed[cid]):
            return i
        d.fire(TimerKind.CLIENT_RETRY, TimerKind.FAST_PATH, TimerKind.FAST_TIMEOUT)
    d.run()
    assert any(c.request_id == want for c in d.completed[cid]), "no result after the timers"
    return rounds


def test_sec4_silent_follower_request_decides_on_slow_path(cluster: Driver) -> None:
    d = cluster
    d.drop = lambda src, dst, frame: src == ("R", 2)  # R2's outgoing frames are lost
    rid = d.submit(CID, cmd_incr(b"k"))
    d.run()
    assert not d.decided[0], "no decision without R2's echo, promise and FastCommit"
    _until_completed(d, CID)
    assert d.completed[CID] == [Completed(rid, encode_int(1))]
    digests = set()
    for r in (0, 1, 2):  # R2 still hears everything, so it decides too
        assert [(x.instance, x.fast) for x in d.decided[r]] == [(0, False)], r
        digests.add(d.decided[r][0].digest)
    assert len(digests) == 1
    assert d.keys.counter.created > 0
    # the client got f+1 = 2 identical replies, from R0 and R1 (R2's were lost)
    answered = {s for s, rep in _replies(d, CID) if rep.request_id == rid and s != 2}
    assert answered == {0, 1}
    assert not any(d.reasons(r) for r in (0, 1))
    # every register write went to the writer's own area and was accepted
    for (sk, s), (dk, _), frame in d.sent:
        if sk == "R" and dk == "M":
            _, msg = decode(frame)
            if isinstance(msg, MemWrite):
                assert msg.writer == s
    assert all(store.rejected_total == 0 for store in d.stores.values())


@pytest.mark.parametrize("slow", [False, True])
def test_sec1_durable_mode_runs_through_the_harness_barrier(
    make_cluster: Callable[..., Any], slow: bool
) -> None:
    config, keys = make_cluster(durable=True)
    d = Driver(config, keys)
    storage = InstantStorage(keep=True)
    d.harness.storage = storage
    if slow:
        d.drop = lambda src, dst, frame: src == ("R", 2)
    rid = d.submit(CID, cmd_incr(b"k"))
    _until_completed(d, CID)
    assert d.completed[CID] == [Completed(rid, encode_int(1))]
    assert [x.fast for x in d.decided[0]] == [not slow]
    for r in (0, 1):
        assert storage.records.get(r), f"R{r} persisted nothing in durable mode"
    assert all(d.harness.behind_barrier(r) == 0 for r in d.replicas)


def test_sec4_slow_path_only_after_fast_timeout(cluster: Driver) -> None:
    d = cluster
    # R2 hears nothing from R0, so it never accepts; R0 and R1 accept but cannot go fast
    d.drop = lambda src, dst, frame: src == ("R", 0) and dst == ("R", 2)
    rid = d.submit(CID, cmd_incr(b"k"))
    d.run()
    d.fire(TimerKind.CLIENT_RETRY)  # signed: the leader needs no echo from R2
    d.run()
    d.fire(TimerKind.FAST_PATH)
    d.run()
    assert d.replicas[1].consensus.inst[0].accepted
    assert not d.decided[0] and not d.decided[1]
    assert not d.messages(PrepShare), "no share before fast_timeout"
    d.fire(TimerKind.FAST_TIMEOUT)
    _until_completed(d, CID)
    assert d.completed[CID] == [Completed(rid, encode_int(1))]
    assert [x.fast for x in d.decided[0]] == [False]
    assert {s for s, _, _ in d.messages(PrepShare)} >= {0, 1}


def test_sec2_slow_path_with_one_memory_node_down(cluster: Driver) -> None:
    d = cluster
    d.drop = lambda src, dst, frame: src == ("R", 2) or dst == ("M", 0) or src == ("M", 0)
    rid = d.submit(CID, cmd_incr(b"k"))
    _until_completed(d, CID)
    assert d.completed[CID] == [Completed(rid, encode_int(1))]
    assert [x.fast for x in d.decided[0]] == [False]
    assert d.stores[0].rejected_total == 0 and d.stores[0].allocated_bytes() > 0


def test_sec4_leader_uses_echoes_that_arrive_before_the_request(cluster: Driver) -> None:
    d = cluster
    d.hold = lambda src, dst, frame: src == ("C", CID) and dst == ("R", 0)
    rid = d.submit(CID, cmd_incr(b"k"))
    d.run()
    leader = d.replicas[0]
    assert leader.log.clients[CID].early_echoes[rid].keys() == {1, 2}
    assert not d.decided[0]
    d.release()
    d.run()
    assert d.completed[CID] == [Completed(rid, encode_int(1))]
    assert [x.fast for x in d.decided[0]] == [True]
    assert leader.log.clients[CID].early_echoes == {}


# =========================================================================== section 3: CTBcast


@pytest.mark.parametrize("schedule", ["interleaved", "r1_first", "r2_first"])
def test_sec3_equivocating_broadcaster_is_never_delivered_twice(
    cluster: Driver, schedule: str
) -> None:
    d = cluster
    m1 = _prepare(0, 0, 1)
    m2 = _prepare(0, 0, 2)
    assert m1 != m2
    sends = {
        1: [Ctb(0, 0, m1), CtbSig(0, 0, _ctb_sig(d, 0, 0, m1))],
        2: [Ctb(0, 0, m2), CtbSig(0, 0, _ctb_sig(d, 0, 0, m2))],
    }
    order = {"interleaved": [1, 2], "r1_first": [1], "r2_first": [2]}[schedule]
    for r in order:
        for msg in sends[r]:
            d.inject(("R", 0), ("R", r), msg)
    d.run()
    for r in (1, 2):
        if r not in order:
            for msg in sends[r]:
                d.inject(("R", 0), ("R", r), msg)
    d.run()
    values = {d.delivered[r].get((0, 0)) for r in (1, 2)} - {None}
    assert len(values) <= 1, "consistency: two receivers delivered different m for (0, 0)"
    holders = [r for r in (1, 2) if 0 in d.replicas[r].ctx.evidence.proofs]
    assert holders, "an equivocation proof is produced"
    finders = [r for r in (1, 2) if "ctb.equivocation" in d.reasons(r, against=0)]
    assert finders
    forwarded = d.messages(Equivocation)
    assert forwarded and {s for s, _, _ in forwarded} <= set(finders)
    proof = forwarded[0][2]
    assert (
        proof.b == 0 and proof.k == 0 and {proof.digest1, proof.digest2} == {digest(m1), digest(m2)}
    )
    assert sorted(holders) == [1, 2], "the forwarded proof reaches the other receiver"
    # after the proof every further message of R0 is dropped by the holders
    m3 = _prepare(0, 1, 3)
    for r in (1, 2):
        d.inject(("R", 0), ("R", r), Ctb(0, 1, m3))
        d.inject(("R", 0), ("R", r), CtbSig(0, 1, _ctb_sig(d, 0, 1, m3)))
    d.run()
    assert all((0, 1) not in d.delivered[r] for r in (1, 2))
    assert not d.reasons(0), "no evidence against a correct replica"


def test_sec3_second_message_for_one_index_is_evidence(cluster: Driver) -> None:
    d = cluster
    m1, m2 = _prepare(0, 0, 1), _prepare(0, 0, 2)
    d.inject(("R", 0), ("R", 1), Ctb(0, 0, m1))
    d.inject(("R", 0), ("R", 1), Ctb(0, 0, m2))
    d.inject(("R", 0), ("R", 2), Ctb(0, 0, m1))
    d.run()
    assert "ctb.second_message" in d.reasons(1, against=0)
    assert d.delivered[1][(0, 0)] == digest(m1) == d.delivered[2][(0, 0)]


def test_sec3_bad_ctb_signature_is_evidence_and_never_raises(cluster: Driver) -> None:
    d = cluster
    m = _prepare(0, 0, 1)
    bad = [
        bytes(64),
        b"\xff" * 64,
        _ctb_sig(d, 0, 1, m),  # another index
        _ctb_sig(d, 0, 0, m, epoch=1),  # another epoch
        d.keys.members[0].sign(Tag.PREP, d.config.cluster_id_bytes, 0, 0, 0, digest(m)),  # tag
        _ctb_sig(d, 1, 0, m),  # signed by someone else
        _ctb_sig(d, 0, 0, _prepare(0, 0, 2)),  # another value
    ]
    d.inject(("R", 0), ("R", 1), CtbSig(0, 0, bad[0]))  # before m: checked when m arrives
    d.inject(("R", 0), ("R", 1), Ctb(0, 0, m))
    for sig in bad[1:]:
        d.inject(("R", 0), ("R", 1), CtbSig(0, 0, sig))
    d.run()
    assert d.reasons(1, against=0) == ["ctb.bad_signature"] * len(bad)
    assert not [f for f in d.sent if f[0] == ("R", 1) and f[1][0] == "M"], "nothing written"
    # the valid signature is still accepted afterwards: R1 locks it in its own register
    d.inject(("R", 0), ("R", 1), CtbSig(0, 0, _ctb_sig(d, 0, 0, m)))
    d.run()
    writes = [decode(f)[1] for s, t, f in d.sent if s == ("R", 1) and t[0] == "M"]
    assert any(isinstance(w, MemWrite) and (w.writer, w.b, w.slot) == (1, 0, 0) for w in writes)
    assert (0, 0) in d.delivered[1]


def test_sec3_forged_equivocation_proof_is_evidence_against_its_sender(cluster: Driver) -> None:
    d = cluster
    m1, m2 = _prepare(0, 0, 1), _prepare(0, 0, 2)
    forged = Equivocation(0, 0, digest(m1), _ctb_sig(d, 0, 0, m1), digest(m2), bytes(64))
    same = Equivocation(0, 0, digest(m1), _ctb_sig(d, 0, 0, m1), digest(m1), _ctb_sig(d, 0, 0, m1))
    d.inject(("R", 2), ("R", 1), forged)
    d.inject(("R", 2), ("R", 1), same)
    d.run()
    assert d.reasons(1, against=2) == ["ctb.bad_equivocation_proof"] * 2
    assert not d.replicas[1].ctx.evidence.proofs
    real = Equivocation(0, 0, digest(m1), _ctb_sig(d, 0, 0, m1), digest(m2), _ctb_sig(d, 0, 0, m2))
    d.inject(("R", 2), ("R", 1), real)
    d.run()
    assert d.replicas[1].ctx.evidence.proofs[0] == real
    assert d.reasons(1, against=0) == ["ctb.equivocation"]
    assert not d.messages(Equivocation, src=1), "a received proof is not forwarded again"


# =========================================================================== malformed input


def test_malformed_frames_from_a_peer_are_evidence_never_raise(cluster: Driver) -> None:
    d = cluster
    rep = d.replicas[0]
    rng = random.Random(11)
    frames = [b"", b"\x00" * 3, rng.randbytes(9)]
    frames += [rng.randbytes(rng.randrange(0, 300)) for _ in range(300)]
    for frame in frames:
        rep.receive(1, frame, 0)
    actions = rep.take_actions()
    ev = [a for a in actions if isinstance(a, ReportEvidence)]
    assert rep.rejected_frames == len(frames) == len(ev)
    assert all(e.against == 1 and not e.is_client and e.reason in REASONS for e in ev)
    assert rep.ctx.evidence.against(1) == len(frames)
    # frames of a kind a replica never sends to a replica
    for msg in (Reply(0, CID, 1, b"x"), MemReadReply(1, 1, 0, b"")):
        rep.receive(1, encode(msg, 0), 0)
    assert rep.rejected_frames == len(frames) + 2
    # bounded: the evidence log keeps at most evidence_per_peer_max recent reasons
    assert len(rep.ctx.evidence.recent[1]) <= d.config.params.evidence_per_peer_max


def test_mutated_frames_from_peers_never_raise(cluster: Driver) -> None:
    d = cluster
    for _ in range(3):
        d.submit(CID, cmd_incr(b"k"))
        d.run()
    valid = [(s[1], t[1], f) for s, t, f in d.sent if s[0] == "R" and t[0] == "R"]
    rng = random.Random(5)
    for _ in range(1500):
        src, dst, frame = rng.choice(valid)
        buf = bytearray(frame)
        for _ in range(rng.randrange(1, 4)):
            pos = rng.randrange(4, len(buf))  # keep the length field: reach the decoders
            buf[pos] = rng.randrange(256)
        d.replicas[dst].receive(src, bytes(buf), d.now)
        d.collect(dst)
    d.queue.clear()
    # the cluster still serves requests
    d.submit(CID, cmd_incr(b"k"))
    _until_completed(d, CID)


def test_malformed_frames_from_a_client_are_counted_never_raise(cluster: Driver) -> None:
    d = cluster
    rep = d.replicas[1]
    rng = random.Random(3)
    junk = [rng.randbytes(rng.randrange(0, 200)) for _ in range(200)]
    for frame in junk:
        rep.receive_client(CID, frame, 0)
    assert rep.rejected_frames == len(junk)
    ev = [a for a in rep.take_actions() if isinstance(a, ReportEvidence)]
    assert len(ev) == len(junk) and all(e.is_client and e.against == CID for e in ev)
    assert all(e.reason in REASONS for e in ev)
    # well-formed but wrong: another client's id, not a request, a bad signature, too large
    big = b"x" * (d.config.params.max_request_bytes + 1)
    for msg in (
        Request(CID + 1, 1, b"p"),
        Reply(0, CID, 1, b"p"),
        Request(CID, 1, b"p", bytes(64)),
        Request(CID, 1, big),
    ):
        rep.receive_client(CID, encode(msg, 0), 0)
    reasons = [a.reason for a in rep.take_actions() if isinstance(a, ReportEvidence)]
    assert reasons == [
        "client.unexpected_message",
        "client.unexpected_message",
        "client.bad_signature",
        "client.request_too_large",
    ]
    # an unregistered client is refused without touching any state
    rep.receive_client(999, encode(Request(999, 1, b"p"), 0), 0)
    assert rep.rejected_frames == len(junk) + 5
    assert rep.log.clients[CID].pending == {}
    assert 999 not in rep.log.clients


def test_malformed_frames_from_a_memory_node_are_counted(cluster: Driver) -> None:
    rep = cluster.replicas[2]
    rng = random.Random(4)
    for _ in range(100):
        rep.receive_memnode(0, rng.randbytes(rng.randrange(0, 100)), 0)
    rep.receive_memnode(0, encode(Request(CID, 1, b"p"), 0), 0)
    assert rep.rejected_frames == 101


# =========================================================================== section 4: Prepare checks


def test_sec4_prepare_from_a_non_leader_is_evidence(cluster: Driver) -> None:
    d = cluster
    m = _prepare(0, 0, 1)  # view 0's leader is R0, but R1 broadcasts it
    for r in (0, 2):
        d.inject(("R", 1), ("R", r), Ctb(1, 0, m))
    d.run()
    for r in (0, 2):
        assert d.delivered[r][(1, 0)] == digest(m)
        assert "prepare.not_leader" in d.reasons(r, against=1)
    assert not d.messages(Promise), "nobody accepts it"


def test_sec4_prepare_out_of_order_is_evidence(cluster: Driver) -> None:
    d = cluster
    m = _prepare(0, 1, 1)  # the leader's first Prepare of view 0 must be instance 0
    for r in (1, 2):
        d.inject(("R", 0), ("R", r), Ctb(0, 0, m))
    d.run()
    for r in (1, 2):
        assert "prepare.out_of_order" in d.reasons(r, against=0)


def test_sec4_prepare_without_the_request_is_kept_until_it_arrives(cluster: Driver) -> None:
    d = cluster
    payload = cmd_incr(b"k")
    req_frame = encode(Request(CID, 1, payload), 0)
    d.post(("C", CID), ("R", 2), req_frame)  # R2 has the request, R1 not yet
    d.run()
    ts = d.now
    m = _prepare(0, 0, ts, Entry(CID, 1, payload))
    for r in (1, 2):
        d.inject(("R", 0), ("R", r), Ctb(0, 0, m))
    d.run()
    inst1 = d.replicas[1].consensus.inst[0]
    assert d.delivered[1][(0, 0)] == digest(m)
    assert inst1.waiting and not inst1.accepted
    assert not d.messages(Promise, src=1)
    assert not d.reasons(1), "a Prepare failing only the log check is no evidence"
    assert d.replicas[2].consensus.inst[0].accepted
    d.post(("C", CID), ("R", 1), req_frame)
    d.run()
    assert inst1.accepted and not inst1.waiting
    assert inst1.digest == digest(encode_batch(Batch(ts, (Entry(CID, 1, payload),))))
    assert [m.instance for _, _, m in d.messages(Promise, src=1)] == [0, 0]


def test_sec4_prepare_with_a_signed_request_needs_no_log(cluster: Driver) -> None:
    d = cluster
    payload = cmd_incr(b"k")
    sig = d.keys.clients[CID].sign(
        Tag.REQ, d.config.cluster_id_bytes, None, CID, 1, digest(payload)
    )
    m = _prepare(0, 0, 0, Entry(CID, 1, payload, sig))
    forged = _prepare(0, 0, 0, Entry(CID, 1, payload, bytes(64)))
    d.inject(("R", 0), ("R", 1), Ctb(0, 0, m))
    d.inject(("R", 0), ("R", 2), Ctb(0, 0, m))
    d.run()
    assert d.replicas[1].consensus.inst[0].accepted
    # with a forged client signature it would have waited
    config, keys = d.config, d.keys
    d2 = Driver(config, keys)
    for r in (1, 2):
        d2.inject(("R", 0), ("R", r), Ctb(0, 0, forged))
    d2.run()
    assert d2.replicas[1].consensus.inst[0].waiting


# =========================================================================== Byzantine peers


def _broadcast_as(d: Driver, b: int, k: int, payload: Any) -> bytes:
    """Replica b's CTBcast of ``payload`` at index k, made by hand (fast path: no signature)."""
    m = encode_payload(payload)
    for r in d.replicas:
        if r != b:
            d.inject(("R", b), ("R", r), Ctb(b, k, m))
    return m


def _prep_sig(d: Driver, signer: int, view: int, i: int, batch: Batch) -> bytes:
    stmt_digest = digest(encode_batch(batch))
    return d.keys.members[signer].sign(Tag.PREP, d.config.cluster_id_bytes, 0, view, i, stmt_digest)


def test_sec4_commit_with_an_invalid_certificate_is_evidence(cluster: Driver) -> None:
    d = cluster
    batch = Batch(0, (Entry(CID, 1, cmd_incr(b"k")),))
    own = _prep_sig(d, 2, 0, 0, batch)
    certs = [
        Certificate((2,), (own,)),  # below f+1
        Certificate((1, 2), (bytes(64), own)),  # a forged share
        Certificate((1, 2), (_prep_sig(d, 1, 0, 1, batch), own)),  # R1 signed another instance
        Certificate((2, 9), (own, own)),  # not a member
    ]
    for k, cert in enumerate(certs):
        _broadcast_as(d, 2, k, Commit(0, 0, batch, cert))
    d.run()
    for r in (0, 1):
        assert d.reasons(r, against=2) == ["commit.bad_certificate"] * len(certs)
        assert not d.decided[r] and not d.executed[r]
        assert d.replicas[r].consensus.streams[2].commits == {}


def test_sec4_commit_beyond_the_window_is_evidence(make_cluster: Callable[..., Any]) -> None:
    config, keys = make_cluster(window=4, inflight_max=2)
    d = Driver(config, keys)
    batch = Batch(0, ())
    cert = Certificate((1, 2), (_prep_sig(d, 1, 0, 4, batch), _prep_sig(d, 2, 0, 4, batch)))
    _broadcast_as(d, 2, 0, Commit(0, 4, batch, cert))  # R2 CTBcast no Checkpoint: limit is 0 + 4
    d.run()
    assert d.reasons(0, against=2) == ["commit.beyond_window"]


def test_sec4_bad_checkpoints_and_seal_views_are_evidence(cluster: Driver) -> None:
    d = cluster
    interval = d.config.params.checkpoint_interval
    _broadcast_as(d, 2, 0, Checkpoint(3, bytes(32), Certificate((), ())))
    _broadcast_as(
        d, 2, 1, Checkpoint(interval, bytes(32), Certificate((1, 2), (bytes(64), bytes(64))))
    )
    _broadcast_as(d, 2, 2, SealView(1))
    _broadcast_as(d, 2, 3, SealView(1))  # SealViews must name strictly increasing views
    d.run()
    for r in (0, 1):
        assert d.reasons(r, against=2) == [
            "checkpoint.bad_index",
            "checkpoint.bad_certificate",
            "sealview.not_increasing",
        ]
        assert d.replicas[r].consensus.streams[2].ckpt_c == 0


def test_sec4_bad_prep_share_is_evidence(cluster: Driver) -> None:
    d = cluster
    d.inject(("R", 2), ("R", 0), PrepShare(0, 0, bytes(32), bytes(64)))
    d.inject(("R", 2), ("R", 0), PrepShare(0, 1, bytes(32), _prep_sig(d, 1, 0, 1, Batch(0, ()))))
    d.run()
    assert d.reasons(0, against=2) == ["prep.bad_signature"] * 2
    assert 2 not in d.replicas[0].consensus.inst[0].shares


def test_sec3_bad_ctb_checkpoint_shares_and_certificates_are_evidence(cluster: Driver) -> None:
    d = cluster
    interval = d.config.params.ctb_checkpoint_interval
    sig = bytes(64)
    d.inject(("R", 1), ("R", 0), CtbCkptShare(0, 3, bytes(32), sig))  # not a multiple
    d.inject(("R", 1), ("R", 0), CtbCkptShare(0, interval, bytes(32), sig))  # beyond next_k
    bad_cert = Certificate((0, 1), (bytes(64), bytes(64)))
    d.inject(("R", 1), ("R", 2), CtbCkptCert(0, 3, b"summary", bad_cert))
    d.inject(("R", 1), ("R", 2), CtbCkptCert(0, interval, b"summary", bad_cert))
    d.run()
    assert d.reasons(0, against=1) == ["ctbckpt.bad_share"] * 2
    assert d.replicas[2].ctx.evidence.counts == {
        (1, "ctbckpt.bad_index"): 1,
        (1, "ctbckpt.bad_certificate"): 1,
    }
    assert d.replicas[2].ctb.receivers[0].cert_c == 0, "nothing adopted"


def test_sec3_every_recorded_evidence_is_reported(cluster: Driver) -> None:
    d = cluster
    bad_cert = Certificate((0, 1), (bytes(64), bytes(64)))
    d.inject(("R", 1), ("R", 2), CtbCkptCert(0, 3, b"summary", bad_cert))  # c not a multiple
    d.run()
    recorded = d.replicas[2].ctx.evidence.counts
    assert recorded == {(1, "ctbckpt.bad_index"): 1}
    # expected: ReportEvidence(1, "ctbckpt.bad_index"); actual: no action at all
    assert d.reasons(2, against=1) == ["ctbckpt.bad_index"]


def test_sec3_signature_requests_cannot_flood_the_broadcaster(cluster: Driver) -> None:
    d = cluster
    d.submit(CID, cmd_incr(b"k"))
    d.run()
    before = len(d.sent)
    for _ in range(50):
        d.inject(("R", 1), ("R", 0), CtbSigRequest(0, 0))
    d.run()
    resent = [decode(f)[1] for s, t, f in d.sent[before:] if s == ("R", 0) and t == ("R", 1)]
    assert sum(isinstance(m, Ctb) for m in resent) == 1
    assert sum(isinstance(m, CtbSig) for m in resent) == 1


def test_sec5_bounded_state_under_a_flood_from_a_byzantine_peer(cluster: Driver) -> None:
    d = cluster
    p = d.config.params
    d.submit(CID, cmd_incr(b"k"))
    d.run()
    rep = d.replicas[1]
    for k in range(0, 3000, 3):
        rep.receive(2, encode(CtbEcho(0, k, False, b"m%d" % k), 0), d.now)
        rep.receive(2, encode(Promise(0, k), 0), d.now)
        rep.receive(2, encode(FastCommit(0, k), 0), d.now)
        rep.receive(2, encode(CtbSig(2, k, bytes(64)), 0), d.now)
        rep.receive(2, encode(Ctb(2, k, b"junk"), 0), d.now)
        rep.receive(2, encode(Sync(k, k, k, k), 0), d.now)
        d.replicas[0].receive(2, encode(RequestEcho(CID, k, bytes(32)), 0), d.now)
    rep.take_actions()
    d.replicas[0].take_actions()
    assert len(rep.ctb.receivers[0].slots) <= p.tail
    assert len(rep.ctb.receivers[2].slots) <= p.tail
    assert len(rep.consensus.inst) <= 2 * p.window
    assert len(rep.ctx.evidence.recent[2]) <= p.evidence_per_peer_max
    assert len(rep.ctx.evidence.counts) <= 16
    leader_log = d.replicas[0].log.clients[CID]
    assert len(leader_log.early_echoes) <= p.client_window


# =========================================================================== exactly-once


def test_sec4_duplicate_request_ids_execute_once_and_resends_get_the_cached_reply(
    cluster: Driver,
) -> None:
    d = cluster
    rid = d.submit(CID, cmd_incr(b"k"))
    # the network duplicates the client's frames
    for src, dst, frame in list(d.queue):
        if src == ("C", CID):
            d.post(src, dst, frame)
    d.run()
    assert d.completed[CID] == [Completed(rid, encode_int(1))]
    for r in (0, 1, 2):
        assert [(e.request_id, e.result) for e in d.executed[r]] == [(rid, encode_int(1))]
    decided = {r: len(d.decided[r]) for r in (0, 1, 2)}
    before = len(_replies(d, CID))
    # the client resends the executed request, unsigned and then signed
    payload = cmd_incr(b"k")
    sig = d.keys.clients[CID].sign(
        Tag.REQ, d.config.cluster_id_bytes, None, CID, rid, digest(payload)
    )
    for r in (0, 1, 2):
        d.inject(("C", CID), ("R", r), Request(CID, rid, payload))
        d.inject(("C", CID), ("R", r), Request(CID, rid, payload, sig))
    d.run()
    resent = _replies(d, CID)[before:]
    assert len(resent) == 6
    assert all(rep == Reply(0, CID, rid, encode_int(1)) for _, rep in resent)
    assert {r: len(d.decided[r]) for r in (0, 1, 2)} == decided, "nothing proposed again"
    assert all(len(d.executed[r]) == 1 for r in (0, 1, 2))
    # the next request sees the state changed exactly once
    rid2 = d.submit(CID, cmd_incr(b"k"))
    d.run()
    assert d.completed[CID][-1] == Completed(rid2, encode_int(2))


def test_sec4_request_with_another_payload_for_an_executed_id_is_not_executed(
    cluster: Driver,
) -> None:
    d = cluster
    rid = d.submit(CID, cmd_incr(b"k"))
    d.run()
    for r in (0, 1, 2):
        d.inject(("C", CID), ("R", r), Request(CID, rid, cmd_incr(b"k", 10)))
    d.run()
    assert all(len(d.executed[r]) == 1 for r in (0, 1, 2))
    assert all(len(d.decided[r]) == 1 for r in (0, 1, 2))


# =========================================================================== section 2: registers


def test_sec2_a_replica_cannot_write_another_replicas_register(cluster: Driver) -> None:
    d = cluster
    with pytest.raises(ValueError):
        d.replicas[1].regs.write(RegisterAddress(0, 0, 2, 0), 1, bytes(VALUE_BYTES), "t")
    forged = MemWrite(77, 0, 0, 2, 0, 0, encode_subslot(1, b"\x01" * VALUE_BYTES))
    for j in d.stores:
        d.inject(("R", 1), ("M", j), forged)
    d.run()
    for store in d.stores.values():
        assert store.rejected_by_reason == {"not_writer": 1}
        reply = store.handle(2, MemRead(1, 0, 0, 2, 0))
        assert reply.data == EMPTY_REGISTER, "the forged write was never applied"
    replies = [decode(f)[1] for s, t, f in d.sent if s[0] == "M"]
    assert len(replies) == 3 and all(r.status == STATUS_REJECTED for r in replies)
    assert d.replicas[1].rejected_frames == 0, "a stray rejection never raises"
    # its own register, though, it may write
    own = MemWrite(78, 0, 1, 2, 0, 0, encode_subslot(1, b"\x01" * VALUE_BYTES))
    assert d.stores[0].handle(1, own).status == 0


# =========================================================================== long runs, small bounds


def _footprint_total(rep: Replica) -> int:
    return sum(rep.footprint().values())


@pytest.mark.parametrize("clients", [1, 3])
def test_sec3_sec4_checkpoints_keep_state_bounded_on_the_fast_path(
    make_cluster: Callable[..., Any], clients: int
) -> None:
    config, keys = make_cluster(clients=clients, tail=4, window=4, inflight_max=2, client_window=2)
    d = Driver(config, keys)
    rounds = 30
    peak = {r: 0 for r in d.replicas}
    for _ in range(rounds):
        for cid in d.sessions:
            d.submit(cid, cmd_incr(b"k"))
        d.run()
        for r, rep in d.replicas.items():
            peak[r] = max(peak[r], _footprint_total(rep))
    results = sorted(c.result for cs in d.completed.values() for c in cs)
    assert results == sorted(encode_int(i) for i in range(1, rounds * clients + 1))
    for r, rep in d.replicas.items():
        assert all(x.fast for x in d.decided[r])
        assert rep.consensus.stable_c > 0, "checkpoints became stable"
        assert rep.ctb.broadcaster.cert_c > 0 or r != 0, "the leader's CTBcast tail moved"
    assert keys.counter.on_path() == 0, "only checkpoint certificates were signed"
    assert keys.counter.off_path() > 0
    assert max(peak.values()) < 200, peak
    assert not any(d.evidence.values())


def test_sec3_sec4_slow_path_over_many_tail_rounds(make_cluster: Callable[..., Any]) -> None:
    config, keys = make_cluster(tail=4, window=4, inflight_max=2, client_window=2)
    d = Driver(config, keys)
    d.drop = lambda src, dst, frame: src == ("R", 2)
    for i in range(1, 13):
        rid = d.submit(CID, cmd_incr(b"k"))
        _until_completed(d, CID, rounds=20)
        assert d.completed[CID][-1] == Completed(rid, encode_int(i))
    for r in (0, 1):
        assert len(d.decided[r]) == 12 and not any(x.fast for x in d.decided[r])
    assert d.replicas[0].ctb.broadcaster.cert_c >= 8, "register slots were reused"
    assert not any(d.reasons(r) for r in (0, 1))
    assert all(store.rejected_total == 0 for store in d.stores.values())


def test_sec3_large_values_are_echoed_as_digests(make_cluster: Callable[..., Any]) -> None:
    config, keys = make_cluster(echo_digest_threshold_bytes=16)
    d = Driver(config, keys)
    rid = d.submit(CID, cmd_incr(b"k" * 100))
    d.run()
    echoes = d.messages(CtbEcho)
    assert echoes and all(m.is_digest and len(m.data) == 32 for _, _, m in echoes)
    assert d.completed[CID] == [Completed(rid, encode_int(1))]
    assert all(x.fast for r in (0, 1, 2) for x in d.decided[r])


# =========================================================================== lossy links


def test_duplicated_frames_change_nothing(cluster: Driver) -> None:
    d = cluster
    original = d.post

    def twice(src: Node, dst: Node, frame: bytes) -> None:
        original(src, dst, frame)
        original(src, dst, frame)

    d.post = twice  # type: ignore[method-assign]
    for i in range(1, 4):
        rid = d.submit(CID, cmd_incr(b"k"))
        d.run()
        assert d.completed[CID][-1] == Completed(rid, encode_int(i))
    for r in (0, 1, 2):
        assert [x.instance for x in d.decided[r]] == [0, 1, 2]
        assert all(x.fast for x in d.decided[r])
        assert [e.request_id for e in d.executed[r]] == [1, 2, 3]
    assert not any(d.evidence.values())
    assert d.keys.counter.created == 0


_ALL_TIMERS = (
    TimerKind.SYNC,
    TimerKind.MEM_RETRY,
    TimerKind.FAST_PATH,
    TimerKind.FAST_TIMEOUT,
    TimerKind.CLIENT_RETRY,
)


@pytest.mark.parametrize("seed", range(6))
def test_lost_frames_are_recovered_by_timers(make_cluster: Callable[..., Any], seed: int) -> None:
    # a small tail exercises CTBcast checkpoint adoption; the window stays large enough that no
    # replica falls behind a stable checkpoint (that needs state transfer: see the xfail below)
    config, keys = make_cluster(clients=2, tail=4, client_window=2)
    d = Driver(config, keys)
    rng = random.Random(seed)
    d.drop = lambda src, dst, frame: rng.random() < 0.25
    for _ in range(4):
        for cid in d.sessions:
            if d.sessions[cid].can_submit():
                d.submit(cid, cmd_incr(b"k"))
        d.run()
        d.fire(*_ALL_TIMERS)
    d.drop = lambda src, dst, frame: False  # the network stabilises
    for _ in range(40):
        d.run()
        if not any(s.outstanding for s in d.sessions.values()):
            break
        d.fire(*_ALL_TIMERS)
    assert not any(s.outstanding for s in d.sessions.values()), "requests unanswered"
    results = sorted(c.result for cs in d.completed.values() for c in cs)
    assert results == sorted(encode_int(i) for i in range(1, len(results) + 1))
    by_instance: dict[int, bytes] = {}
    for r in (0, 1, 2):
        for x in d.decided[r]:
            assert by_instance.setdefault(x.instance, x.digest) == x.digest, "agreement"
    assert not any(d.evidence.values()), "no evidence against a correct replica"


@pytest.mark.xfail(
    strict=True,
    reason="state transfer is not implemented: a replica that missed one decision below the "
    "others' stable checkpoint never catches up; when it is the leader, nothing is ever "
    "proposed again (consensus._on_checkpoint: 'needs state transfer')",
)
def test_sec4_leader_behind_a_stable_checkpoint_catches_up(
    make_cluster: Callable[..., Any],
) -> None:
    config, keys = make_cluster(window=4, inflight_max=2)  # a checkpoint every 2 instances

    def lost_fast_commit(src: Node, dst: Node, frame: bytes) -> bool:
        return src == ("R", 1) and dst == ("R", 0) and decode(frame)[1] == FastCommit(0, 0)

    d = Driver(config, keys)
    d.drop = lost_fast_commit  # the leader misses R1's FastCommit for instance 0, only that
    for i in range(1, 5):
        rid = d.submit(CID, cmd_incr(b"k"))
        d.run()
        assert d.completed[CID][-1] == Completed(rid, encode_int(i))  # R1 and R2 answer
    assert d.replicas[1].consensus.stable_c == d.replicas[2].consensus.stable_c == 4
    assert d.replicas[0].consensus.exec_next == 0
    d.drop = lambda src, dst, frame: False  # the network heals
    rid = d.submit(CID, cmd_incr(b"k"))
    for _ in range(30):
        d.run()
        if d.completed[CID][-1].request_id == rid:
            break
        d.fire(*_ALL_TIMERS)
    # expected: R0 learns the stable checkpoint 4 (R1's and R2's Checkpoint), fetches its
    # snapshot and proposes again; actual: R0 stays at exec_next 0 with next_propose 4 =
    # last_ctb_ckpt + window, so request 5 is never proposed or answered
    assert d.replicas[0].consensus.exec_next >= 4
    assert d.completed[CID][-1] == Completed(rid, encode_int(5))
