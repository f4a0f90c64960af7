"""Scripted attacks on one correct replica (issue: core hardening, holes 1-6).

Each test drives a single real ``Replica`` with hand-made frames of the other members (whose
keys the test holds, so it can play a Byzantine leader and a colluding or lagging follower) and
asserts through the replica's actions: promises it sends (it accepted a Prepare), what it
executes, the evidence it reports. No exception may escape any entry point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ubft.apps.kv import KVStore, cmd_incr, cmd_set
from ubft.replica.core.actions import Send
from ubft.replica.core.admission import ADMIN_CLIENT_ID, AdminOp
from ubft.replica.core.bounds import MAX_TS, MAX_VIEW, footprint_bounds
from ubft.replica.core.certifier import Certifier
from ubft.replica.core.codec import MAX_VALUE_BYTES, decode, encode, encode_batch, encode_payload
from ubft.replica.core.crypto import Signer, Tag, digest
from ubft.replica.core.instance import InstanceState
from ubft.replica.core.messages import (
    Batch,
    Certificate,
    Commit,
    CtbCkptShare,
    Entry,
    FastCommit,
    Prepare,
    PrepShare,
    Promise,
    Request,
    RequestForward,
    SealView,
)
from ubft.replica.core.request_log import KEY_HISTORY, RequestLog
from ubft.replica.sim.scripted import LEADER, OTHER, One

CID = 100
NEW = 200  # a client the admin admits during the test


def _one(make_cluster: Callable[..., Any], **params: Any) -> One:
    """Replica ``me`` (default 1) of a 3-replica cluster with one client, running a KVStore."""
    params.setdefault("clients", 1)
    return One(make_cluster, app=KVStore(), now=1_000_000, **params)


@pytest.fixture
def one(make_cluster: Callable[..., Any]) -> One:
    return _one(make_cluster)


def _new_key() -> Signer:
    return Signer(b"\x77" * 32)


# ============================================================ 1. validity across admission


def test_entry_of_a_client_admitted_earlier_in_the_pipeline_waits_for_its_register(
    one: One,
) -> None:
    """Prepare 0 registers client NEW; Prepare 1 carries an entry of NEW that NEW never sent.
    Judged before the Register executes, NEW looks unregistered ("skipped, nothing to check");
    it must instead wait until the table that will execute it is known."""
    new = _new_key()
    one.prepare(0, one.admin(AdminOp.REGISTER, NEW, new.public_key))
    one.prepare(1, Entry(NEW, 1, cmd_set(b"x", b"forged"), b""))
    assert Promise(0, 0) in one.sent(Promise)
    assert Promise(0, 1) not in one.sent(Promise), (
        "accepted an entry judged against a table about to change"
    )
    one.decide_fast(0)
    assert (ADMIN_CLIENT_ID, 1) in [(c, r) for _, c, r in one.executed()]
    assert Promise(0, 1) not in one.sent(Promise), (
        "unsigned and never received from NEW: still not accepted"
    )
    assert one.evidence() == []


def test_signed_entry_of_a_client_admitted_earlier_is_accepted_once_registered(one: One) -> None:
    new = _new_key()
    one.prepare(0, one.admin(AdminOp.REGISTER, NEW, new.public_key))
    one.prepare(1, one.signed(NEW, 1, cmd_incr(b"n"), new))
    assert Promise(0, 1) not in one.sent(Promise)
    one.decide_fast(0)
    assert Promise(0, 1) in one.sent(Promise), "valid under the key registered when it executes"
    one.decide_fast(1)
    assert (NEW, 1) in [(c, r) for _, c, r in one.executed()]


def test_duplicate_before_a_key_rotation_is_not_a_duplicate_after_it(one: One) -> None:
    """Request 1 of CID executed; a Register gives CID a new key (a fresh table); an entry
    (CID, 1) that looked like a duplicate before the rotation must not execute after it."""
    one.prepare(0, one.signed(CID, 1, cmd_incr(b"n")))
    one.decide_fast(0)
    new = _new_key()
    one.prepare(1, one.admin(AdminOp.REGISTER, CID, new.public_key))
    one.prepare(2, Entry(CID, 1, cmd_set(b"x", b"forged"), b""))
    assert Promise(0, 1) in one.sent(Promise)
    assert Promise(0, 2) not in one.sent(Promise), (
        "judged a duplicate against the table before the rotation"
    )
    one.decide_fast(1)
    assert Promise(0, 2) not in one.sent(Promise)
    assert [(c, r) for _, c, r in one.executed()] == [(CID, 1), (ADMIN_CLIENT_ID, 1)]


def test_entry_after_an_admin_command_naming_its_client_in_one_batch_is_skipped(
    one: One,
) -> None:
    new = _new_key()
    forged = Entry(NEW, 1, cmd_set(b"x", b"forged"), b"")
    one.prepare(0, one.admin(AdminOp.REGISTER, NEW, new.public_key), forged)
    assert Promise(0, 0) in one.sent(Promise), (
        "the entry needs no justification: it is never executed"
    )
    one.decide_fast(0)
    assert [(c, r) for _, c, r in one.executed()] == [(ADMIN_CLIENT_ID, 1)]
    assert one.rep.log.clients[NEW].h == 0


def test_entry_after_a_failing_admin_command_naming_its_client_executes(one: One) -> None:
    """A Register that fails (the key is already used) changes nothing: the entry after it in
    the batch was judged against the table that executes it, and runs (seed 293 of the mixed
    simulator run: skipping it left the client's request unanswered forever)."""
    reuse = one.admin(AdminOp.REGISTER, CID, one.keys.clients[CID].public_key)
    entry = one.signed(CID, 1, cmd_incr(b"n"))
    one.prepare(0, reuse, entry)
    assert Promise(0, 0) in one.sent(Promise)
    one.decide_fast(0)
    assert [(c, r) for _, c, r in one.executed()] == [(ADMIN_CLIENT_ID, 1), (CID, 1)]


def test_unsigned_entry_after_a_key_rotation_in_its_batch_is_judged_before_it(one: One) -> None:
    """Judged against the table before the batch: a forged unsigned entry is not accepted,
    whether or not the rotation before it succeeds."""
    rotate = one.admin(AdminOp.REGISTER, CID, _new_key().public_key)
    one.prepare(0, rotate, Entry(CID, 1, cmd_set(b"x", b"forged"), b""))
    assert Promise(0, 0) not in one.sent(Promise)


def test_deregister_earlier_in_the_pipeline_makes_later_entries_wait(one: One) -> None:
    one.prepare(0, one.admin(AdminOp.DEREGISTER, CID, bytes(32)))
    one.prepare(1, Entry(CID, 1, cmd_incr(b"n"), b""))
    assert Promise(0, 1) not in one.sent(Promise)
    one.decide_fast(0)
    assert Promise(0, 1) in one.sent(Promise), (
        "CID is unregistered at execution: skipped, nothing to check"
    )
    one.decide_fast(1)
    assert [(c, r) for _, c, r in one.executed()] == [(ADMIN_CLIENT_ID, 1)]


# ============================================================ 2. peer-chosen integers


def _until_ctb_checkpoint(one: One, b: int) -> None:
    """Deliver SealView-free filler (Commits are not needed: empty Prepares of another view
    are ignored but recorded) until b's CTBcast checkpoint share is due."""
    while one.next_k[b] < one.config.params.ctb_checkpoint_interval:
        one.deliver(encode_payload(SealView(0)), b)  # not increasing: evidence, no crash


@pytest.mark.parametrize("view", [MAX_VIEW + 1, 1 << 63, (1 << 64) - 1])
def test_sealview_with_a_huge_view_is_evidence_not_a_crash(
    make_cluster: Callable[..., Any], view: int
) -> None:
    one = _one(make_cluster, tail=4)
    one.deliver(encode_payload(SealView(view)), OTHER)
    assert (OTHER, "ctb.payload.out_of_range") in one.evidence()
    _until_ctb_checkpoint(one, OTHER)  # the summary at the checkpoint encodes the stream
    shares = [a for a in one.actions if isinstance(a, Send)]
    assert any(isinstance(decode(a.frame)[1], CtbCkptShare) for a in shares)


@pytest.mark.parametrize("ts", [MAX_TS + 1, 1 << 63, (1 << 64) - 1])
def test_prepare_with_a_huge_timestamp_is_evidence_not_a_crash(
    make_cluster: Callable[..., Any], ts: int
) -> None:
    one = _one(make_cluster, tail=4)
    one.prepare(0, ts=ts)
    assert (LEADER, "ctb.payload.out_of_range") in one.evidence()
    _until_ctb_checkpoint(one, LEADER)
    assert any(
        isinstance(decode(a.frame)[1], CtbCkptShare) for a in one.actions if isinstance(a, Send)
    )


def test_values_at_the_limits_are_accepted(make_cluster: Callable[..., Any]) -> None:
    one = _one(make_cluster, tail=4)
    one.deliver(encode_payload(SealView(MAX_VIEW)), OTHER)
    assert one.evidence() == [] and one.rep.consensus.streams[OTHER].seal_view == MAX_VIEW
    _until_ctb_checkpoint(one, OTHER)


def test_prepare_that_cannot_be_rewrapped_in_a_commit_fails_check_e(
    make_cluster: Callable[..., Any],
) -> None:
    one = _one(make_cluster, max_request_bytes=1 << 20, batch_max=4)
    header = len(encode_payload(Prepare(0, 0, Batch(one.now, ()))))
    per_entry = len(encode_batch(Batch(0, (Entry(CID, 1, b"", bytes(64)),)))) - len(
        encode_batch(Batch(0, ()))
    )
    room = MAX_VALUE_BYTES - header - 2 * per_entry - 8  # just under the value limit
    sizes = (1 << 20, room - (1 << 20))
    entries = [one.signed(CID, j + 1, b"S" * size) for j, size in enumerate(sizes)]
    m = encode_payload(Prepare(0, 0, Batch(one.now, tuple(entries))))
    assert len(m) <= MAX_VALUE_BYTES
    one.deliver(m)
    assert (LEADER, "prepare.too_large") in one.evidence()
    assert Promise(0, 0) not in one.sent(Promise)
    # the leader's share would make a certificate: nothing may try to CTBcast the Commit
    sig = one.keys.members[LEADER].sign(Tag.PREP, one.cluster, 0, 0, 0, digest(m[18:]))
    one.frame(LEADER, PrepShare(0, 0, digest(m[18:]), sig))


def test_prepare_with_a_request_over_max_request_is_evidence(one: One) -> None:
    big = b"x" * (one.config.params.max_request_bytes + 1)
    one.prepare(0, one.signed(CID, 1, big))
    assert one.evidence() == [(LEADER, "prepare.request_too_large")]


# ============================================================ 3. crash with every replica correct


def test_deregister_while_a_request_waits_at_the_leader(make_cluster: Callable[..., Any]) -> None:
    one = _one(make_cluster, me=LEADER)
    rep = one.rep
    dereg = one.admin(AdminOp.DEREGISTER, CID, bytes(32))
    rep.receive_client(
        ADMIN_CLIENT_ID, encode(Request(ADMIN_CLIENT_ID, 1, dereg.payload, dereg.sig), 0), one.now
    )
    one.drain()  # the leader proposes the Deregister as instance 0
    req = one.signed(CID, 1, cmd_incr(b"n"))
    rep.receive_client(CID, encode(Request(CID, 1, req.payload, req.sig), 0), one.now)
    for r in (1, 2):  # instance 0 decides before the leader cuts its next batch
        rep.receive(r, encode(Promise(0, 0), 0), one.now)
    for r in (1, 2):
        rep.receive(r, encode(FastCommit(0, 0), 0), one.now)
    one.drain()  # propose(): the ready request's client is gone
    assert (ADMIN_CLIENT_ID, 1) in [(c, r) for _, c, r in one.executed()]
    assert CID not in rep.log.clients
    rep.check_invariants()


# ============================================================ 4. no evidence on lagging state


def test_forward_of_a_client_unknown_here_is_no_evidence(make_cluster: Callable[..., Any]) -> None:
    one = _one(make_cluster, me=LEADER)
    new = _new_key()
    e = one.signed(NEW, 1, b"p", new)  # the follower already executed NEW's Register
    one.frame(OTHER, RequestForward(Request(NEW, 1, e.payload, e.sig)))
    assert one.evidence() == []
    assert one.rep.consensus.intake.dropped == 1


def test_forward_signed_under_a_rotated_key_is_no_evidence(
    make_cluster: Callable[..., Any],
) -> None:
    one = _one(make_cluster, me=LEADER)
    e = one.signed(CID, 1, b"p", _new_key())  # CID's key rotated at the follower already
    one.frame(OTHER, RequestForward(Request(CID, 1, e.payload, e.sig)))
    assert one.evidence() == []


def test_unsigned_forward_is_evidence(make_cluster: Callable[..., Any]) -> None:
    one = _one(make_cluster, me=LEADER)
    one.frame(OTHER, RequestForward(Request(CID, 1, b"p", b"")))
    assert one.evidence() == [(OTHER, "forward.unsigned")]


# ============================================================ 5. declared bounds hold


def test_waiting_requests_stay_within_the_declared_bound(make_cluster: Callable[..., Any]) -> None:
    one = _one(make_cluster, window=8, batch_max=16, tail=64, inflight_max=4)
    p = one.config.params
    for i in range(p.window):  # every Prepare misses every one of its entries
        entries = [Entry(CID, 1 + i * 16 + j, b"p%d" % j, b"") for j in range(16)]
        one.prepare(i, *entries)
    fp = one.rep.footprint()
    bounds = footprint_bounds(p, 3, 1, 3)
    assert fp["waiting_requests"] <= bounds["waiting_requests"]
    for key, value in fp.items():
        assert value <= bounds[key], key


def test_admin_churn_keeps_the_key_history_bounded() -> None:
    admin = Signer(b"\x01" * 32)
    log = RequestLog({}, client_window=4, max_reply=64, admin_key=admin.public_key, max_clients=2)
    seed = 0

    def key() -> bytes:
        nonlocal seed
        seed += 1
        return Signer(seed.to_bytes(32, "big")).public_key

    for cid in range(1, 400):
        assert log.register(cid, key()) is None
        for _ in range(KEY_HISTORY - 1):
            assert log.register(cid, key()) is None  # rotations
        assert log.register(cid, key()) == "key history full for this client id"
        assert log.deregister(cid) is None
        assert log.key_footprint() <= 2 * 2 * (KEY_HISTORY + 1)
    # a forgotten id below the watermark never comes back, with any key
    assert log.register(1, key()) == "client id retired"
    # the last deregistered ones are remembered, so their keys are still refused
    remembered = log.retired[-1]
    assert log.register(remembered, log.used_keys[remembered][0]) == (
        "key already used for this client id"
    )


# ============================================================ 6. certificates across views


def test_shares_of_one_view_never_count_for_a_commit_of_another(one: One) -> None:
    ctx = one.rep.ctx
    batch = Batch(1, ())
    d = digest(encode_batch(batch))
    inst = InstanceState(0)
    sigs = {}
    for r in (LEADER, OTHER):
        sigs[r] = one.keys.members[r].sign(Tag.PREP, one.cluster, 0, 0, 5, d)
        inst.shares[r] = (d, sigs[r])
    cert = Certificate((LEADER, OTHER), (sigs[LEADER], sigs[OTHER]))
    certifier = Certifier(ctx)
    assert certifier.commit_is_certified(Commit(0, 5, batch, cert), d, inst)
    assert not certifier.commit_is_certified(Commit(1, 5, batch, cert), d, inst), (
        "view-0 shares skipped verification for a view-1 Commit"
    )
    # a share of another view is never stored in this view's instance
    other = one.keys.members[OTHER].sign(Tag.PREP, one.cluster, 0, 1, 5, d)
    fresh = InstanceState(0)
    assert not certifier.take_share(OTHER, PrepShare(1, 5, d, other), fresh)
    assert fresh.shares == {}
