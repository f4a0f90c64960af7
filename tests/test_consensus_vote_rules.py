"""PROTOCOL.md section 4, "Fast path", "Slow path" and "Checkpoints", one rule per test.

A single real ``Replica`` (replica 1 of 3 unless a test says otherwise) is fed the frames of the
other members, whose keys the test holds, and judged by its actions: the Promise, FastCommit and
"prep" share frames it sends, the values it CTBcasts (its own ``Delivered`` actions), the
``Decided`` actions and the evidence it reports. Every quorum size, certificate check and bound
has a test that fails when it is weakened by one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ubft.replica.core.actions import (
    Decided,
    Send,
    TimerKey,
    TimerKind,
)
from ubft.replica.core.admission import AdminOp
from ubft.replica.core.certifier import Certifier
from ubft.replica.core.codec import (
    decode,
    encode,
    encode_batch,
    encode_payload,
)
from ubft.replica.core.crypto import Signer, Tag, digest
from ubft.replica.core.instance import InstanceState
from ubft.replica.core.messages import (
    Batch,
    Certificate,
    Checkpoint,
    CkptShare,
    Commit,
    CtbCkptCert,
    CtbCkptShare,
    Entry,
    FastCommit,
    Prepare,
    PrepShare,
    Promise,
    Request,
    SealView,
)
from ubft.replica.core.stream import Stream, encode_summary
from ubft.replica.sim.scripted import LEADER, ME, NOW, OTHER, One

CID = 100
CID2 = 101
NEW = 200


@pytest.fixture
def one(make_cluster: Callable[..., Any]) -> One:
    return One(make_cluster)


def _fcs(one: One) -> list[int]:
    return [m.instance for m in one.sent(FastCommit)]


def _shares(one: One) -> list[PrepShare]:
    return one.sent(PrepShare)


def _commits(one: One) -> list[Commit]:
    return one.own_ctb(Commit)


def _decisions(one: One) -> list[Decided]:
    return [a for a in one.actions if isinstance(a, Decided)]


def _d(batch: Batch) -> bytes:
    return digest(encode_batch(batch))


# ============================================================ fast path: promises


def test_a_follower_promises_what_it_accepts(one: One) -> None:
    one.prepare(0)
    sends = [a for a in one.actions if isinstance(a, Send)]
    promises = [a for a in sends if isinstance(decode(a.frame)[1], Promise)]
    assert [decode(a.frame)[1] for a in promises] == [Promise(0, 0)]
    assert promises[0].targets == (LEADER, OTHER)


def test_a_follower_fastcommits_only_after_the_other_followers_promise(one: One) -> None:
    one.prepare(0)
    assert _fcs(one) == []
    one.frame(LEADER, Promise(0, 0))  # the leader's Prepare is its promise: not counted again
    assert _fcs(one) == []
    one.frame(OTHER, Promise(0, 0))
    assert _fcs(one) == [0]
    one.frame(OTHER, Promise(0, 0))
    assert _fcs(one) == [0], "FastCommit is sent once"


def test_with_f_2_a_follower_needs_all_n_minus_2_other_followers(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, f=2)
    one.prepare(0)
    for r in (2, 3):
        one.frame(r, Promise(0, 0))
    assert _fcs(one) == []
    one.frame(4, Promise(0, 0))
    assert _fcs(one) == [0]


def test_the_leader_fastcommits_after_promises_of_all_n_minus_1(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, me=LEADER)
    e = one.signed(CID, 1, b"p")
    one.rep.receive_client(CID, encode(Request(CID, 1, e.payload, e.sig), 0), one.now)
    one.drain()
    assert [p.instance for p in one.own_ctb(Prepare)] == [0]
    assert one.promised() == [], "the leader's Prepare is its promise"
    one.frame(ME, Promise(0, 0))
    assert _fcs(one) == []
    one.frame(OTHER, Promise(0, 0))
    assert _fcs(one) == [0]


def test_promises_before_the_prepare_are_buffered(one: One) -> None:
    one.frame(OTHER, Promise(0, 0))
    assert _fcs(one) == []
    one.prepare(0)
    assert _fcs(one) == [0]


def test_a_promise_for_a_waiting_prepare_sends_no_fastcommit(one: One) -> None:
    one.prepare(0, Entry(CID, 1, b"missing"))
    one.frame(OTHER, Promise(0, 0))
    assert _fcs(one) == []


# ============================================================ fast path: decision


def test_decision_needs_fastcommits_of_all_n_including_its_own(one: One) -> None:
    one.prepare(0)
    one.frame(LEADER, FastCommit(0, 0))
    one.frame(OTHER, FastCommit(0, 0))
    assert _decisions(one) == [], "its own FastCommit is missing"
    one.frame(OTHER, Promise(0, 0))
    assert [(x.instance, x.fast) for x in _decisions(one)] == [(0, True)]
    one.frame(OTHER, FastCommit(0, 0))
    assert len(_decisions(one)) == 1


def test_two_fastcommits_of_n_do_not_decide(one: One) -> None:
    one.prepare(0)
    one.frame(OTHER, Promise(0, 0))
    one.frame(LEADER, FastCommit(0, 0))
    assert _decisions(one) == []
    one.frame(OTHER, FastCommit(0, 0))
    assert [x.instance for x in _decisions(one)] == [0]


def test_a_decided_instance_sends_no_fastcommit(one: One) -> None:
    batch = one.prepare(0)
    one.commit(LEADER, 0, batch)
    one.commit(OTHER, 0, batch)
    assert [(x.instance, x.fast) for x in _decisions(one)] == [(0, False)]
    one.frame(OTHER, Promise(0, 0))
    assert _fcs(one) == []


def test_votes_of_another_view_count_for_nothing_and_hold_no_state(one: One) -> None:
    one.frame(LEADER, FastCommit(1, 0))
    one.frame(OTHER, Promise(1, 0))
    assert one.rep.footprint()["instances"] == 0
    one.prepare(0)
    one.frame(OTHER, Promise(1, 0))
    assert _fcs(one) == []
    one.frame(OTHER, Promise(0, 0))
    one.frame(LEADER, FastCommit(1, 0))
    one.frame(OTHER, FastCommit(1, 0))
    assert _decisions(one) == []


def test_votes_are_held_below_two_windows_past_the_last_ctbcast_checkpoint(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, window=4)
    one.frame(OTHER, Promise(0, 8))
    one.frame(OTHER, FastCommit(0, 9))
    one.frame(OTHER, PrepShare(0, 8, bytes(32), bytes(64)))
    assert one.rep.footprint()["instances"] == 0
    one.frame(OTHER, Promise(0, 7))
    assert one.rep.footprint()["instances"] == 1
    one.frame(OTHER, Promise(0, 4))
    assert one.rep.footprint()["instances"] == 2


def _stable_at_2(one: One) -> None:
    for i in range(2):
        batch = Batch(NOW, ())
        one.commit(LEADER, i, batch)
        one.commit(OTHER, i, batch)
    one.stabilise(2)
    assert [cp.c for cp in one.own_ctb(Checkpoint)] == [2]


def test_votes_below_the_stable_checkpoint_are_dropped(make_cluster: Callable[..., Any]) -> None:
    one = One(make_cluster, window=4)
    _stable_at_2(one)
    assert one.rep.footprint()["instances"] == 0
    one.frame(OTHER, Promise(0, 1))
    one.frame(OTHER, FastCommit(0, 0))
    assert one.rep.footprint()["instances"] == 0
    one.frame(OTHER, Promise(0, 2))
    assert one.rep.footprint()["instances"] == 1


def test_a_late_commit_below_the_stable_checkpoint_is_harmless(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, window=4)
    _stable_at_2(one)
    one.commit(LEADER, 0, Batch(NOW, ()))
    assert one.evidence() == []
    assert [x.instance for x in _decisions(one)] == [0, 1]


# ============================================================ slow path: shares


def test_share_only_once_fast_timeout_passed(one: One) -> None:
    batch = one.prepare(0)
    assert _shares(one) == []
    one.now += one.config.params.fast_timeout_ns - 1
    one.rep.timer_fired(TimerKey(TimerKind.FAST_TIMEOUT), one.now)
    one.drain()
    assert _shares(one) == []
    one.fast_timeout()
    (share,) = _shares(one)
    assert (share.view, share.instance, share.digest) == (0, 0, _d(batch))
    expected = one.keys.members[ME].sign(Tag.PREP, one.cluster, 0, 0, 0, _d(batch))
    assert share.sig == expected


def test_no_share_at_fast_timeout_for_a_decided_instance(one: One) -> None:
    one.prepare(0)
    one.decide_fast(0)
    one.fast_timeout()
    assert _shares(one) == []


def test_no_share_at_fast_timeout_for_a_prepare_not_accepted(one: One) -> None:
    one.prepare(0, Entry(CID, 1, b"missing"))
    one.fast_timeout()
    assert _shares(one) == []


def test_always_mode_shares_at_acceptance(make_cluster: Callable[..., Any]) -> None:
    one = One(make_cluster, slow_path_mode="always")
    one.prepare(0)
    assert [s.instance for s in _shares(one)] == [0]


def test_another_replicas_share_triggers_ours_once(one: One) -> None:
    batch = one.prepare(0)
    one.share(LEADER, 0, batch)
    assert [s.instance for s in _shares(one)] == [0]
    one.share(OTHER, 0, batch)
    one.fast_timeout()
    assert [s.instance for s in _shares(one)] == [0]


def test_our_share_at_timeout_is_not_repeated_on_anothers(one: One) -> None:
    batch = one.prepare(0)
    one.fast_timeout()
    one.share(LEADER, 0, batch)
    assert [s.instance for s in _shares(one)] == [0]


def test_a_share_before_the_prepare_triggers_ours_at_acceptance(one: One) -> None:
    batch = Batch(NOW, ())
    one.share(LEADER, 0, batch)
    assert _shares(one) == []
    one.prepare(0)
    assert [s.instance for s in _shares(one)] == [0]


def test_a_share_with_a_bad_signature_is_evidence_and_triggers_nothing(one: One) -> None:
    batch = one.prepare(0)
    one.frame(LEADER, PrepShare(0, 0, _d(batch), bytes(64)))
    assert one.evidence() == [(LEADER, "prep.bad_signature")]
    assert _shares(one) == []
    one.fast_timeout()
    one.share(OTHER, 0, batch)
    assert [c.cert.signers for c in _commits(one)] == [(ME, OTHER)]


# ============================================================ slow path: certificate and Commit


def test_commit_needs_f_plus_1_matching_shares(one: One) -> None:
    batch = one.prepare(0)
    one.fast_timeout()
    assert _commits(one) == [], "our share alone is not a certificate"
    one.share(OTHER, 0, Batch(NOW + 1, ()))  # on another batch
    assert _commits(one) == []
    one.share(LEADER, 0, batch)
    (c,) = _commits(one)
    assert (c.view, c.instance, c.batch) == (0, 0, batch)
    assert c.cert.signers == (LEADER, ME)
    assert [x.instance for x in _decisions(one)] == []


def test_the_first_share_of_a_replica_is_the_one_that_counts(one: One) -> None:
    batch = one.prepare(0)
    one.fast_timeout()
    one.share(LEADER, 0, Batch(NOW + 1, ()))
    one.share(LEADER, 0, batch)
    assert _commits(one) == []


def test_commit_is_ctbcast_once(one: One) -> None:
    batch = one.prepare(0)
    one.share(LEADER, 0, batch)
    assert len(_commits(one)) == 1
    one.share(OTHER, 0, batch)
    one.fast_timeout()
    assert len(_commits(one)) == 1


def test_a_commit_is_ctbcast_even_after_a_fast_decision(one: One) -> None:
    batch = one.prepare(0)
    one.decide_fast(0)
    one.share(LEADER, 0, batch)
    assert len(_commits(one)) == 1


def test_no_commit_for_a_prepare_not_accepted(one: One) -> None:
    batch = one.prepare(0, Entry(CID, 1, b"missing"))
    one.share(LEADER, 0, batch)
    one.share(OTHER, 0, batch)
    assert _commits(one) == [] and _shares(one) == []


def test_commit_only_below_the_last_ctbcast_checkpoint_plus_window(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, window=4)
    one.checkpoint(LEADER, 2)
    batches = [one.prepare(i) for i in range(5)]
    for i in range(4):
        one.share(LEADER, i, batches[i])
    assert [c.instance for c in _commits(one)] == [0, 1, 2, 3]
    one.share(LEADER, 4, batches[4])
    assert [c.instance for c in _commits(one)] == [0, 1, 2, 3], "4 >= 0 + window"
    one.decide_fast(0)
    one.decide_fast(1)
    one.stabilise(2)
    assert [cp.c for cp in one.own_ctb(Checkpoint)] == [2]
    assert [c.instance for c in _commits(one)] == [0, 1, 2, 3, 4]


# ============================================================ Commits: decision


def test_a_single_commit_does_not_decide(one: One) -> None:
    batch = Batch(NOW, ())
    one.commit(LEADER, 0, batch)
    assert _decisions(one) == []
    one.commit(OTHER, 0, batch)
    assert [(x.instance, x.fast, x.digest) for x in _decisions(one)] == [(0, False, _d(batch))]
    assert one.evidence() == []


def test_a_third_commit_does_not_decide_again(one: One) -> None:
    batch = one.prepare(0)
    one.share(LEADER, 0, batch)  # our own Commit follows
    one.commit(OTHER, 0, batch)
    one.commit(LEADER, 0, batch)
    assert [x.instance for x in _decisions(one)] == [0]


def test_the_same_replicas_commit_twice_counts_once(one: One) -> None:
    batch = Batch(NOW, ())
    one.commit(LEADER, 0, batch)
    one.commit(LEADER, 0, batch)
    assert _decisions(one) == [] and one.evidence() == []


def test_commits_on_different_batches_do_not_add_up(one: One) -> None:
    one.commit(LEADER, 0, Batch(NOW, ()))
    one.commit(OTHER, 0, Batch(NOW + 1, ()))
    assert _decisions(one) == []


def test_a_decision_by_commits_executes_the_committed_batch(one: One) -> None:
    one.prepare(0, Entry(CID, 1, b"missing"))
    batch = Batch(NOW, (one.signed(CID, 1, b"c"),))
    one.commit(LEADER, 0, batch)
    one.commit(OTHER, 0, batch)
    assert one.executed() == [(0, CID, 1)]


def test_commit_at_low_plus_window_is_evidence(make_cluster: Callable[..., Any]) -> None:
    one = One(make_cluster, window=4)
    one.commit(LEADER, 3, Batch(NOW, ()))
    assert one.evidence() == []
    for b in (LEADER, OTHER):
        one.commit(b, 4, Batch(NOW, ()))
    assert one.evidence() == [(LEADER, "commit.beyond_window"), (OTHER, "commit.beyond_window")]
    assert _decisions(one) == []


def test_commit_window_counts_from_the_senders_own_checkpoint(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, window=4)
    one.checkpoint(LEADER, 2)
    one.commit(LEADER, 5, Batch(NOW, ()))
    assert one.evidence() == []
    one.commit(OTHER, 5, Batch(NOW, ()))
    assert one.evidence() == [(OTHER, "commit.beyond_window")]
    one.commit(LEADER, 6, Batch(NOW, ()))
    assert one.evidence()[-1] == (LEADER, "commit.beyond_window")


def _bad_cert(one: One, how: str, batch: Batch) -> Certificate:
    d = _d(batch)
    k = one.keys.members

    def sig(r: int, view: int = 0, i: int = 0, dd: bytes = d) -> bytes:
        out: bytes = k[r].sign(Tag.PREP, one.cluster, 0, view, i, dd)
        return out

    if how == "too few":
        return Certificate((LEADER,), (sig(LEADER),))
    if how == "wrong signer":
        return Certificate((LEADER, OTHER), (sig(LEADER), sig(ME)))
    if how == "not a member":
        return Certificate((LEADER, 7), (sig(LEADER), sig(OTHER)))
    if how == "wrong view":
        return Certificate((LEADER, OTHER), (sig(LEADER), sig(OTHER, view=1)))
    if how == "wrong instance":
        return Certificate((LEADER, OTHER), (sig(LEADER), sig(OTHER, i=1)))
    if how == "wrong digest":
        return Certificate((LEADER, OTHER), (sig(LEADER), sig(OTHER, dd=bytes(32))))
    assert how == "forged"
    return Certificate((LEADER, OTHER), (sig(LEADER), bytes(64)))


BAD = [
    "too few",
    "wrong signer",
    "not a member",
    "wrong view",
    "wrong instance",
    "wrong digest",
    "forged",
]


@pytest.mark.parametrize("how", BAD)
def test_commit_with_a_bad_certificate_is_evidence_and_counts_for_nothing(
    one: One, how: str
) -> None:
    batch = Batch(NOW, ())
    for b in (LEADER, OTHER):
        one.deliver(encode_payload(Commit(0, 0, batch, _bad_cert(one, how, batch))), b)
    assert one.evidence() == [(LEADER, "commit.bad_certificate"), (OTHER, "commit.bad_certificate")]
    assert _decisions(one) == []
    assert one.rep.consensus.streams[LEADER].commits == {}


def test_a_certificate_with_a_repeated_signer_never_reaches_consensus(one: One) -> None:
    batch = Batch(NOW, ())
    good = Commit(0, 0, batch, one.prep_cert(0, batch, (0, 2)))
    m = bytearray(encode_payload(good))
    m[18 + 1 + 66 : 18 + 1 + 66 + 2] = (0).to_bytes(2, "big")  # second signer id := first
    one.deliver(bytes(m))
    assert one.evidence() == [(LEADER, "ctb.payload.cert.signers_not_ascending")]


def test_a_certificate_reusing_a_share_on_another_batch_is_bad(one: One) -> None:
    """The leader's verified share on the accepted batch B must not vouch for B' in a
    Commit: only shares on the very same digest are exempt from verification."""
    batch = one.prepare(0)
    one.share(LEADER, 0, batch)
    one.evidence()
    forged = Batch(NOW + 7, ())
    leader_sig_on_b = one.keys.members[LEADER].sign(Tag.PREP, one.cluster, 0, 0, 0, _d(batch))
    other_sig = one.keys.members[OTHER].sign(Tag.PREP, one.cluster, 0, 0, 0, _d(forged))
    cert = Certificate((LEADER, OTHER), (leader_sig_on_b, other_sig))
    one.deliver(encode_payload(Commit(0, 0, forged, cert)), OTHER)
    assert one.evidence() == [(OTHER, "commit.bad_certificate")]


def test_a_certificate_of_shares_already_verified_is_not_verified_again(one: One) -> None:
    batch = one.prepare(0)
    one.share(LEADER, 0, batch)
    one.share(OTHER, 0, batch)
    counter = one.keys.counter
    before = counter.verified
    one.commit(OTHER, 0, batch, (LEADER, OTHER))
    assert counter.verified == before
    assert one.evidence() == []


def test_a_commit_of_a_later_view_is_verified_and_recorded(one: One) -> None:
    batch = Batch(NOW, ())
    d = _d(batch)
    sigs = tuple(one.keys.members[r].sign(Tag.PREP, one.cluster, 0, 1, 0, d) for r in (0, 2))
    one.deliver(encode_payload(Commit(1, 0, batch, Certificate((0, 2), sigs))), OTHER)
    assert one.rep.consensus.streams[OTHER].commits == {0: (1, d)}


def test_commits_of_a_later_view_do_not_decide(one: One) -> None:
    batch = Batch(NOW, ())
    d = _d(batch)
    sigs = tuple(one.keys.members[r].sign(Tag.PREP, one.cluster, 0, 1, 0, d) for r in (0, 2))
    for b in (LEADER, OTHER):
        one.deliver(encode_payload(Commit(1, 0, batch, Certificate((0, 2), sigs))), b)
    assert _decisions(one) == []


# ============================================================ Certifier


def test_certifier_shares_of_one_view_never_count_for_another(one: One) -> None:
    ctx = one.rep.ctx
    batch = Batch(1, ())
    d = _d(batch)
    inst = InstanceState(0)
    sigs = {r: one.keys.members[r].sign(Tag.PREP, one.cluster, 0, 0, 5, d) for r in (0, 2)}
    for r, s in sigs.items():
        inst.shares[r] = (d, s)
    cert = Certificate((0, 2), (sigs[0], sigs[2]))
    certifier = Certifier(ctx)
    assert certifier.commit_is_certified(Commit(0, 5, batch, cert), d, inst)
    assert certifier.commit_is_certified(Commit(0, 5, batch, cert), d, None)
    assert not certifier.commit_is_certified(Commit(1, 5, batch, cert), d, inst)
    assert not certifier.commit_is_certified(Commit(1, 5, batch, cert), d, None)
    other = one.keys.members[OTHER].sign(Tag.PREP, one.cluster, 0, 1, 5, d)
    fresh = InstanceState(0)
    assert not certifier.take_share(OTHER, PrepShare(1, 5, d, other), fresh)
    assert fresh.shares == {} and one.evidence() == []


def test_certifier_keeps_the_first_valid_share_per_replica(one: One) -> None:
    certifier = Certifier(one.rep.ctx)
    inst = InstanceState(0)
    d = bytes(range(32))
    s1 = one.keys.members[OTHER].sign(Tag.PREP, one.cluster, 0, 0, 3, d)
    assert certifier.take_share(OTHER, PrepShare(0, 3, d, s1), inst)
    d2 = bytes(32)
    s2 = one.keys.members[OTHER].sign(Tag.PREP, one.cluster, 0, 0, 3, d2)
    assert not certifier.take_share(OTHER, PrepShare(0, 3, d2, s2), inst)
    assert inst.shares == {OTHER: (d, s1)}
    assert not certifier.take_share(LEADER, PrepShare(0, 3, d, bytes(64)), inst)
    one.drain()
    assert one.evidence() == [(LEADER, "prep.bad_signature")]
    assert inst.shares == {OTHER: (d, s1)}


def test_certifier_repeated_signer_is_no_certificate(one: One) -> None:
    certifier = Certifier(one.rep.ctx)
    batch = Batch(1, ())
    d = _d(batch)
    s = one.keys.members[0].sign(Tag.PREP, one.cluster, 0, 0, 5, d)
    assert not certifier.commit_is_certified(
        Commit(0, 5, batch, Certificate((0, 0), (s, s))), d, None
    )


def test_certifier_signs_one_share_per_instance(one: One) -> None:
    certifier = Certifier(one.rep.ctx)
    inst = InstanceState(0, digest=bytes(32), accepted=True)
    first = certifier.make_share(0, 4, inst)
    assert first is not None and first.digest == bytes(32)
    assert certifier.make_share(0, 4, inst) is None
    assert certifier.certificate(inst) is None
    inst.shares[OTHER] = (bytes(32), bytes(64))
    cert = certifier.certificate(inst)
    assert cert is not None and cert.signers == (ME, OTHER)


# ============================================================ checkpoints


def _execute_to_2(one: One) -> bytes:
    for i in range(2):
        one.prepare(i)
        one.decide_fast(i)
    d: bytes
    (d,) = {s.digest for s in one.sent(CkptShare) if s.c == 2}
    return d


def _ckpt_sig(one: One, r: int, c: int, d: bytes) -> bytes:
    sig: bytes = one.keys.members[r].sign(Tag.CKPT, one.cluster, 0, c, d)
    return sig


def test_a_checkpoint_is_stable_on_f_plus_1_matching_shares(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, window=4)
    d = _execute_to_2(one)
    assert one.own_ctb(Checkpoint) == [], "our own share is one of f+1"
    other = bytes(32)
    one.frame(LEADER, CkptShare(2, other, _ckpt_sig(one, LEADER, 2, other)))
    assert one.own_ctb(Checkpoint) == [] and one.rep.consensus.stable_c == 0
    one.frame(OTHER, CkptShare(2, d, _ckpt_sig(one, OTHER, 2, d)))
    (cp,) = one.own_ctb(Checkpoint)
    assert (cp.c, cp.digest, cp.cert.signers) == (2, d, (ME, OTHER))
    assert one.rep.consensus.stable_c == 2
    one.frame(LEADER, CkptShare(2, d, _ckpt_sig(one, LEADER, 2, d)))
    assert len(one.own_ctb(Checkpoint)) == 1


def test_a_ckpt_share_with_a_bad_signature_is_evidence(make_cluster: Callable[..., Any]) -> None:
    one = One(make_cluster, window=4)
    d = _execute_to_2(one)
    one.frame(LEADER, CkptShare(2, d, bytes(64)))
    assert one.evidence() == [(LEADER, "ckpt.bad_signature")]
    assert one.own_ctb(Checkpoint) == []


def test_anothers_checkpoint_on_our_digest_makes_it_stable(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, window=4)
    d = _execute_to_2(one)
    one.checkpoint(OTHER, 2, d)
    assert one.evidence() == []
    assert [cp.c for cp in one.own_ctb(Checkpoint)] == [2]


def test_anothers_checkpoint_on_another_digest_does_not(make_cluster: Callable[..., Any]) -> None:
    one = One(make_cluster, window=4)
    _execute_to_2(one)
    one.checkpoint(OTHER, 2, bytes(32))
    assert one.evidence() == []
    assert one.own_ctb(Checkpoint) == [] and one.rep.consensus.stable_c == 0


def test_checkpoint_at_an_index_not_a_multiple_of_window_half_is_evidence(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, window=4)
    one.checkpoint(LEADER, 3)
    assert one.evidence() == [(LEADER, "checkpoint.bad_index")]
    for i in range(4):
        one.prepare(i)
    one.prepare(4)  # the bad Checkpoint did not move the leader's window
    assert one.evidence()[-1] == (LEADER, "prepare.beyond_window")


def test_checkpoints_must_strictly_increase(make_cluster: Callable[..., Any]) -> None:
    one = One(make_cluster, window=4)
    one.checkpoint(LEADER, 2)
    one.checkpoint(LEADER, 2)
    assert one.evidence() == [(LEADER, "checkpoint.not_increasing")]
    one.checkpoint(LEADER, 4)
    one.checkpoint(LEADER, 2)
    assert one.evidence() == [(LEADER, "checkpoint.not_increasing")] * 2
    for i in range(8):
        one.prepare(i)
    assert one.promised() == list(range(8)), "the window counts from Checkpoint{4}"


@pytest.mark.parametrize("how", ["too few", "wrong digest", "wrong c", "not a member", "forged"])
def test_checkpoint_with_a_bad_certificate_is_evidence(
    make_cluster: Callable[..., Any], how: str
) -> None:
    one = One(make_cluster, window=4)
    d = bytes(range(32))
    good = _ckpt_sig(one, LEADER, 2, d)
    if how == "too few":
        cert = Certificate((0,), (good,))
    elif how == "wrong digest":
        cert = Certificate((0, 2), (good, _ckpt_sig(one, OTHER, 2, bytes(32))))
    elif how == "wrong c":
        cert = Certificate((0, 2), (good, _ckpt_sig(one, OTHER, 4, d)))
    elif how == "not a member":
        cert = Certificate((0, 9), (good, _ckpt_sig(one, OTHER, 2, d)))
    else:
        cert = Certificate((0, 2), (good, bytes(64)))
    one.deliver(encode_payload(Checkpoint(2, d, cert)))
    assert one.evidence() == [(LEADER, "checkpoint.bad_certificate")]
    for i in range(4):
        one.prepare(i)
    one.prepare(4)
    assert one.evidence()[-1] == (LEADER, "prepare.beyond_window")


def test_a_checkpoint_certificate_reusing_a_share_on_another_digest_is_bad(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, window=4)
    true = bytes(range(32))
    leader_sig = _ckpt_sig(one, LEADER, 2, true)
    one.frame(LEADER, CkptShare(2, true, leader_sig))  # verified and kept
    fake = bytes(32)
    cert = Certificate((0, 2), (leader_sig, _ckpt_sig(one, OTHER, 2, fake)))
    one.deliver(encode_payload(Checkpoint(2, fake, cert)), OTHER)
    assert one.evidence() == [(OTHER, "checkpoint.bad_certificate")]


def test_a_checkpoint_drops_the_senders_commits_below_it(make_cluster: Callable[..., Any]) -> None:
    one = One(make_cluster, window=4)
    for i in range(3):
        one.commit(LEADER, i, Batch(NOW, ()))
    assert sorted(one.rep.consensus.streams[LEADER].commits) == [0, 1, 2]
    one.checkpoint(LEADER, 2)
    assert sorted(one.rep.consensus.streams[LEADER].commits) == [2]


def test_the_checkpoint_waits_for_room_in_our_own_tail(make_cluster: Callable[..., Any]) -> None:
    """Tail t = 4: four Commits fill our tail until the others certify a CTBcast checkpoint
    of our stream. Checkpoint{2}, stable meanwhile, is CTBcast only then, and only then is
    what lies below it discarded."""
    one = One(make_cluster, window=4, tail=4)
    batches = [one.prepare(i) for i in range(4)]
    for i in range(2):
        one.decide_fast(i)
    for i in range(4):
        one.share(LEADER, i, batches[i])
    commits = _commits(one)
    assert [c.instance for c in commits] == [0, 1, 2, 3]
    one.stabilise(2)
    assert one.rep.consensus.stable_c == 2
    assert one.own_ctb(Checkpoint) == [], "our tail is full"
    assert one.rep.footprint()["instances"] == 4
    # the leader certifies our CTBcast checkpoint at 2 (the summary of our first 2 Commits)
    s = Stream(commits={c.instance: (0, _d(c.batch)) for c in commits[:2]})
    d = digest(encode_summary(2, s))
    sig = one.keys.members[LEADER].sign(Tag.CTB_CKPT, one.cluster, 0, ME, 2, d)
    one.frame(LEADER, CtbCkptShare(ME, 2, d, sig))
    assert [cp.c for cp in one.own_ctb(Checkpoint)] == [2]
    assert one.rep.footprint()["instances"] == 2


# ============================================================ SealView


def test_sealviews_must_strictly_increase(one: One) -> None:
    one.deliver(encode_payload(SealView(0)), OTHER)
    assert one.evidence() == []
    one.deliver(encode_payload(SealView(0)), OTHER)
    assert one.evidence() == [(OTHER, "sealview.not_increasing")]
    one.deliver(encode_payload(SealView(3)), OTHER)
    one.deliver(encode_payload(SealView(2)), OTHER)
    assert one.evidence() == [(OTHER, "sealview.not_increasing")] * 2
    assert one.rep.consensus.streams[OTHER].seal_view == 3


# ============================================================ CTBcast checkpoint summaries


def test_commits_of_adopted_summaries_count_as_delivered(make_cluster: Callable[..., Any]) -> None:
    one = One(make_cluster, tail=4)
    batch = one.prepare(0)
    d = _d(batch)
    one.adopt(LEADER, 2, Stream(prep_view=0, prep_instance=1, fresh_ts=NOW, commits={0: (0, d)}))
    assert _decisions(one) == []
    one.adopt(OTHER, 2, Stream(commits={0: (0, d)}))
    assert [(x.instance, x.fast) for x in _decisions(one)] == [(0, False)]
    assert one.executed() == []  # an empty batch
    assert one.rep.consensus.exec_next == 1


def test_summary_commits_of_another_view_or_batch_do_not_decide(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, tail=4, window=4)
    batch = one.prepare(0)
    one.prepare(1)
    d = _d(batch)
    commits = {0: (1, d), 1: (0, bytes(32)), 50: (0, d)}  # 50: beyond the instances held
    one.adopt(LEADER, 4, Stream(prep_view=0, prep_instance=1, fresh_ts=NOW, commits=commits))
    one.adopt(OTHER, 2, Stream(commits=commits))
    assert one.rep.consensus.streams[LEADER].commits == commits, "both summaries adopted"
    assert _decisions(one) == [], "view 1; a digest of no batch held here; not held"
    one.frame(OTHER, Promise(0, 0))
    one.frame(LEADER, FastCommit(0, 0))
    one.frame(OTHER, FastCommit(0, 0))
    assert [x.instance for x in _decisions(one)] == [0]


def test_the_leaders_summary_sets_the_next_prepare_and_fresh_ts(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, tail=4)
    one.adopt(LEADER, 2, Stream(prep_view=0, prep_instance=0, fresh_ts=NOW + 10))
    one.prepare(1, ts=NOW + 5)
    assert one.evidence() == [(LEADER, "prepare.bad_batch")]
    one.prepare(2, ts=NOW + 10)
    assert one.promised() == [2]


def test_a_summary_does_not_move_the_expected_prepare_back(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, tail=4)
    one.prepare(0, ts=NOW + 20)
    one.adopt(LEADER, 2, Stream(prep_view=0, prep_instance=2, fresh_ts=NOW))
    one.prepare(3, ts=NOW + 10)
    assert one.evidence() == [(LEADER, "prepare.bad_batch")], "the previous fresh ts stays"
    one.prepare(4, ts=NOW + 20)
    assert one.promised() == [0, 4]


@pytest.mark.parametrize("who", ["another replica", "another view"])
def test_only_the_leaders_summary_of_this_view_moves_the_expected_prepare(
    make_cluster: Callable[..., Any], who: str
) -> None:
    one = One(make_cluster, tail=4)
    if who == "another replica":
        one.adopt(OTHER, 2, Stream(prep_view=0, prep_instance=5, fresh_ts=NOW))
    else:
        one.adopt(LEADER, 2, Stream(prep_view=1, prep_instance=5, fresh_ts=NOW))
    one.prepare(0)
    assert one.promised() == [0] and one.evidence() == []


# ============================================================ pending work (sync timer)


def test_an_idle_replica_sends_no_sync(one: One) -> None:
    assert one.syncs() == 0


def test_an_accepted_undecided_instance_keeps_sync_going(one: One) -> None:
    one.prepare(0, one.signed(CID, 1, b"a"))
    assert one.syncs() == 2
    one.decide_fast(0)
    assert one.syncs() == 0


def test_a_clock_waiting_prepare_keeps_sync_going(make_cluster: Callable[..., Any]) -> None:
    one = One(make_cluster, skew_ns=1000)
    one.prepare(0, ts=NOW + 5000)
    assert one.syncs() == 2


def test_a_buffered_vote_alone_is_no_pending_work(one: One) -> None:
    one.frame(OTHER, Promise(0, 3))
    assert one.syncs() == 0


def test_an_unstable_own_checkpoint_keeps_sync_going(make_cluster: Callable[..., Any]) -> None:
    one = One(make_cluster, window=4)
    for i in range(2):
        one.prepare(i)
        one.decide_fast(i)
    assert one.syncs() == 2
    one.stabilise(2)
    assert one.syncs() == 0


def test_a_summary_that_adds_no_prepare_changes_nothing_for_prepares(
    make_cluster: Callable[..., Any],
) -> None:
    """The summary's last Prepare is one already delivered here: the next Prepare is
    expected as before and nothing before it is unknown (no wait for execution)."""
    one = One(make_cluster, tail=4)
    one.prepare(0)
    one.adopt(LEADER, 2, Stream(prep_view=0, prep_instance=0, fresh_ts=NOW))
    one.prepare(1, one.signed(CID, 1, b"c"))
    assert one.promised() == [0, 1] and one.evidence() == []


def test_a_malformed_certified_summary_changes_nothing(make_cluster: Callable[..., Any]) -> None:
    one = One(make_cluster, tail=4)
    summary = b"\x00" * 7
    d = digest(summary)
    sigs = tuple(
        one.keys.members[r].sign(Tag.CTB_CKPT, one.cluster, 0, LEADER, 2, d) for r in (0, 2)
    )
    one.frame(OTHER, CtbCkptCert(LEADER, 2, summary, Certificate((0, 2), sigs)))
    one.next_k[LEADER] = 2
    one.prepare(0)
    assert one.promised() == [0]


def test_summary_commits_on_another_digest_than_our_prepare_do_not_decide(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, tail=4)
    one.prepare(0)
    other = {0: (0, bytes(32))}
    one.adopt(LEADER, 2, Stream(prep_view=0, prep_instance=0, fresh_ts=NOW, commits=other))
    one.adopt(OTHER, 2, Stream(commits=other))
    assert _decisions(one) == [], "no batch held for that digest"


# ============================================================ more on the slow path


def test_no_share_at_fast_timeout_for_an_instance_decided_before_acceptance(one: One) -> None:
    one.prepare(0)
    batch = Batch(NOW, (Entry(CID, 2, b"p"),))
    one.deliver(encode_payload(Prepare(0, 1, batch)))  # waits for the request
    one.commit(LEADER, 1, batch)
    one.commit(OTHER, 1, batch)
    assert [x.instance for x in _decisions(one)] == [1]  # decided, not executed (0 is not)
    one.request(CID, 2, b"p")
    assert one.promised() == [0, 1], "accepted after its decision"
    one.fast_timeout()
    assert [s.instance for s in _shares(one)] == [0]


# ============================================================ re-check triggers


def test_an_admission_recheck_does_not_turn_every_later_run_into_a_recheck(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, skew_ns=1000)
    new = Signer(b"\x66" * 32)
    one.prepare(0, one.admin(AdminOp.REGISTER, NEW, new.public_key))
    one.prepare(1)
    one.prepare(2, ts=NOW + 1500)
    one.decide_fast(0)  # an admission change executed: one re-check of waiting Prepares
    one.now += 1000
    one.decide_fast(1)  # no admission change: no re-check (the clock is re-checked at ticks)
    assert one.promised() == [0, 1]
    one.tick()
    assert one.promised() == [0, 1, 2]


# ============================================================ public state, checkpoint digests


def test_consensus_exposes_view_leader_and_positions(make_cluster: Callable[..., Any]) -> None:
    one = One(make_cluster)
    cons = one.rep.consensus
    assert (cons.view, cons.leader, cons.is_leader()) == (0, 0, False)
    assert One(make_cluster, me=LEADER).rep.consensus.is_leader()
    one.prepare(0, ts=NOW + 3)
    assert cons.last_fresh_ts == NOW + 3
    one.decide_fast(0)
    assert (cons.exec_next, cons.stable_c) == (1, 0)


def test_checkpoints_work_with_wall_clock_timestamps(make_cluster: Callable[..., Any]) -> None:
    wall = 1_700_000_000_000_000_000  # ns since 1970: above 2**56
    one = One(make_cluster, window=4)
    one.now = wall
    for i in range(2):
        one.prepare(i)
        one.decide_fast(i)
    assert [s.c for s in one.sent(CkptShare)] == [2]


def test_instance_votes_count_every_vote_held(one: One) -> None:
    batch = Batch(NOW, ())
    one.frame(OTHER, Promise(0, 0))
    one.frame(LEADER, FastCommit(0, 0))
    one.share(LEADER, 0, batch)
    one.commit(OTHER, 0, batch)
    assert one.rep.footprint()["instance_votes"] == 4
    one.frame(OTHER, FastCommit(0, 0))
    assert one.rep.footprint()["instance_votes"] == 5


def test_a_prepare_waiting_for_its_request_keeps_sync_going(one: One) -> None:
    one.prepare(0, Entry(CID, 1, b"missing"))
    assert one.syncs() == 2


def test_a_waiting_key_left_by_another_decided_batch_keeps_sync_until_the_checkpoint(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, window=4)
    one.prepare(0, Entry(CID, 1, b"x"))
    one.commit(LEADER, 0, Batch(NOW, ()))
    one.commit(OTHER, 0, Batch(NOW, ()))
    assert one.rep.footprint()["waiting_requests"] == 1
    assert one.syncs() == 2
    one.commit(LEADER, 1, Batch(NOW, ()))
    one.commit(OTHER, 1, Batch(NOW, ()))
    one.stabilise(2)
    assert one.rep.footprint()["waiting_requests"] == 0
    assert one.syncs() == 0


def test_votes_below_the_stable_checkpoint_are_dropped_while_it_waits_for_room(
    make_cluster: Callable[..., Any],
) -> None:
    """Tail t = 4, window 8: our Commits of 1..4 fill our tail, so stable Checkpoint{4} waits
    and instances below it are still held; a share for one of them must not make us sign."""
    one = One(make_cluster, window=8, tail=4)
    batches = [one.prepare(i) for i in range(4)]
    one.adopt(LEADER, 4, Stream())  # the leader's CTBcast checkpoint: its tail moves on
    batches.append(one.prepare(4))
    assert one.promised() == [0, 1, 2, 3, 4]
    for i in range(1, 5):
        one.share(LEADER, i, batches[i])
    assert [c.instance for c in _commits(one)] == [1, 2, 3, 4]
    for i in range(4):
        one.decide_fast(i)
    one.stabilise(4)
    assert one.rep.consensus.stable_c == 4 and one.own_ctb(Checkpoint) == []
    before = len(_shares(one))
    one.share(OTHER, 0, batches[0])
    assert len(_shares(one)) == before
    one.frame(OTHER, FastCommit(0, 0))
    assert one.evidence() == []
