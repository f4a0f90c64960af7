"""One targeted test per rule of ``checkpoint.py`` (PROTOCOL.md section 4, "Checkpoints"): a
checkpoint at every multiple of window/2, f+1 "ckpt" shares matching our own digest make it
stable, shares outside (stable_c, exec_next + window] are dropped, a bad signature is evidence
("ckpt.bad_signature"), and only a newer stable checkpoint waits to be CTBcast. Each test fails
when its rule is weakened (``make mutation`` checks that)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ubft.replica.core.actions import ReportEvidence, Send
from ubft.replica.core.checkpoint import CheckpointTracker
from ubft.replica.core.codec import decode
from ubft.replica.core.context import Context
from ubft.replica.core.crypto import Signer, Tag, Verifier, statement
from ubft.replica.core.messages import Certificate, Checkpoint, CkptShare, Message
from ubft.replica.core.quorum import verify_certificate

MakeCluster = Callable[..., tuple[Any, Any]]
WINDOW = 8  # checkpoints every 4 instances
D = b"\x11" * 32
OTHER = b"\x22" * 32


def _tracker(
    make_cluster: MakeCluster, f: int = 1, low: int = 0
) -> tuple[CheckpointTracker, Context, list[Signer]]:
    config, keys = make_cluster(f=f, window=WINDOW, inflight_max=2)
    ctx = Context(config, 0, keys.members[0], Verifier(config.member_keys(), keys.counter))
    return CheckpointTracker(ctx, low), ctx, keys.members


def _share(ctx: Context, signer: Signer, c: int, d: bytes = D) -> CkptShare:
    return CkptShare(c, d, signer.sign(Tag.CKPT, ctx.cluster, ctx.epoch, c, d))


def _sent(ctx: Context) -> list[tuple[tuple[int, ...], Message]]:
    return [(a.targets, decode(a.frame)[1]) for a in ctx.outbox if isinstance(a, Send)]


def _evidence(ctx: Context) -> list[tuple[int, str]]:
    return [(a.against, a.reason) for a in ctx.outbox if isinstance(a, ReportEvidence)]


def _valid(ctx: Context, cert: Certificate | None, c: int, d: bytes = D) -> bool:
    stmt = statement(Tag.CKPT, ctx.cluster, ctx.epoch, c, d)
    return cert is not None and verify_certificate(ctx, cert, stmt)


# --------------------------------------------------------------------------- quorum


def test_taking_a_checkpoint_signs_and_sends_our_share(make_cluster: MakeCluster) -> None:
    t, ctx, _ = _tracker(make_cluster)
    assert t.take(4, D) is None  # our share alone is no quorum for f = 1
    ((targets, msg),) = _sent(ctx)
    assert targets == (1, 2) and isinstance(msg, CkptShare)
    assert (msg.c, msg.digest) == (4, D)
    stmt = statement(Tag.CKPT, ctx.cluster, ctx.epoch, 4, D)
    assert ctx.verifier.verify(0, stmt, msg.sig)
    assert t.own_shares(above=0) == [msg]


@pytest.mark.parametrize("f", [1, 2])
def test_f_plus_1_matching_shares_make_the_checkpoint_stable(
    make_cluster: MakeCluster, f: int
) -> None:
    t, ctx, signers = _tracker(make_cluster, f=f)
    assert t.take(4, D) is None
    for r in range(1, f):
        assert t.on_share(r, _share(ctx, signers[r], 4), exec_next=4) is None
    cert = t.on_share(f, _share(ctx, signers[f], 4), exec_next=4)
    assert _valid(ctx, cert, 4)
    assert cert is not None and cert.signers == tuple(range(f + 1))


def test_shares_count_only_if_they_match_our_own_digest(make_cluster: MakeCluster) -> None:
    t, ctx, signers = _tracker(make_cluster)
    assert t.take(4, D) is None
    assert t.on_share(1, _share(ctx, signers[1], 4, OTHER), exec_next=4) is None
    cert = t.on_share(2, _share(ctx, signers[2], 4), exec_next=4)
    assert cert is not None and cert.signers == (0, 2) and _valid(ctx, cert, 4)


def test_shares_before_our_own_digest_wait_for_it(make_cluster: MakeCluster) -> None:
    t, ctx, signers = _tracker(make_cluster)
    assert t.on_share(2, _share(ctx, signers[2], 4), exec_next=0) is None
    assert t.on_share(1, _share(ctx, signers[1], 4), exec_next=0) is None
    assert t.certificate(4) is None
    cert = t.take(4, D)
    assert cert is not None and cert.signers == (0, 1) and _valid(ctx, cert, 4)
    assert t.certificate(4) == cert
    assert t.take(8, OTHER) is None  # another checkpoint has shares of its own


def test_no_certificate_at_or_below_the_stable_checkpoint(make_cluster: MakeCluster) -> None:
    t, ctx, signers = _tracker(make_cluster)
    t.take(4, D)
    t.on_share(1, _share(ctx, signers[1], 4), exec_next=4)
    t.mark_stable(4)
    assert t.certificate(4) is None
    t.take(8, D)
    t.on_share(1, _share(ctx, signers[1], 8), exec_next=8)
    t.mark_stable(12)
    assert t.certificate(8) is None


# --------------------------------------------------------------------------- signatures


@pytest.mark.parametrize("case", ["wrong_signer", "wrong_c", "wrong_digest", "garbage"])
def test_a_share_with_a_bad_signature_is_evidence_and_ignored(
    make_cluster: MakeCluster, case: str
) -> None:
    t, ctx, signers = _tracker(make_cluster)
    t.take(4, D)
    good = _share(ctx, signers[1], 4)
    bad = {
        "wrong_signer": _share(ctx, signers[2], 4),
        "wrong_c": CkptShare(4, D, _share(ctx, signers[1], 8).sig),
        "wrong_digest": CkptShare(4, D, _share(ctx, signers[1], 4, OTHER).sig),
        "garbage": CkptShare(4, D, bytes(64)),
    }[case]
    assert t.on_share(1, bad, exec_next=4) is None
    assert _evidence(ctx) == [(1, "ckpt.bad_signature")]
    assert ctx.evidence.counts == {(1, "ckpt.bad_signature"): 1}
    assert t.certificate(4) is None  # the bad share was not kept
    assert t.footprint() == 2  # our own share and digest
    assert _valid(ctx, t.on_share(1, good, exec_next=4), 4)
    assert len(_evidence(ctx)) == 1


# --------------------------------------------------------------------------- bounds


def test_shares_at_or_below_the_stable_checkpoint_are_dropped_unchecked(
    make_cluster: MakeCluster,
) -> None:
    t, ctx, _ = _tracker(make_cluster, low=8)
    for c in (4, 8):
        assert t.on_share(1, CkptShare(c, D, bytes(64)), exec_next=8) is None
    assert _evidence(ctx) == [] and t.footprint() == 0
    assert t.on_share(1, CkptShare(12, D, bytes(64)), exec_next=8) is None
    assert _evidence(ctx) == [(1, "ckpt.bad_signature")]


def test_shares_off_the_checkpoint_interval_are_evidence_unchecked(
    make_cluster: MakeCluster,
) -> None:
    t, ctx, signers = _tracker(make_cluster)
    for c in (1, 2, 3, 5, 6, 7):
        assert t.on_share(1, CkptShare(c, D, bytes(64)), exec_next=0) is None
    assert _evidence(ctx) == [(1, "ckpt.bad_index")] * 6 and t.footprint() == 0
    ctx.outbox.clear()
    for c in (4, 8):
        assert t.on_share(1, _share(ctx, signers[1], c), exec_next=0) is None
    assert t.footprint() == 2


def test_shares_beyond_exec_next_plus_window_are_dropped(make_cluster: MakeCluster) -> None:
    t, ctx, signers = _tracker(make_cluster)
    exec_next = 4
    assert t.on_share(1, CkptShare(exec_next + WINDOW + 4, D, bytes(64)), exec_next) is None
    assert _evidence(ctx) == [] and t.footprint() == 0
    top = exec_next + WINDOW  # 12: still kept
    assert t.on_share(1, _share(ctx, signers[1], top), exec_next) is None
    assert t.on_share(2, _share(ctx, signers[2], 8), exec_next) is None
    assert t.footprint() == 2
    assert _valid(ctx, t.take(top, D), top)


def test_marking_stable_drops_what_lies_below_only(make_cluster: MakeCluster) -> None:
    t, ctx, signers = _tracker(make_cluster)
    for c in (4, 8, 12):
        t.take(c, D)
        t.on_share(1, _share(ctx, signers[1], c), exec_next=12)
    assert t.footprint() == 3 * 3
    t.mark_stable(8)
    assert t.stable_c == 8
    assert t.footprint() == 2 * 3  # 8 and 12 kept
    assert [s.c for s in t.own_shares(above=0)] == [8, 12]
    assert t.certificate(12) is not None


# --------------------------------------------------------------------------- own shares


def test_own_shares_are_ours_above_the_given_checkpoint(make_cluster: MakeCluster) -> None:
    t, ctx, signers = _tracker(make_cluster)
    for c in (12, 4, 8):
        t.take(c, D if c != 8 else OTHER)
    t.on_share(1, _share(ctx, signers[1], 4), exec_next=12)
    sent = {msg.c: msg for _, msg in _sent(ctx) if isinstance(msg, CkptShare)}
    assert t.own_shares(above=4) == [sent[8], sent[12]]
    assert t.own_shares(above=0) == [sent[4], sent[8], sent[12]]
    assert t.own_shares(above=12) == []
    assert sent[8].digest == OTHER


# --------------------------------------------------------------------------- CTBcast


def _cp(c: int, d: bytes = D) -> Checkpoint:
    return Checkpoint(c, d, Certificate((0, 1), (bytes(64), bytes(64))))


def test_only_a_checkpoint_above_the_last_one_ctbcast_is_offered(make_cluster: MakeCluster) -> None:
    t, _, _ = _tracker(make_cluster, low=4)
    assert not t.pending()
    t.offer_ctbcast(4, D, _cp(4).cert)
    assert t.take_ctbcast() is None and not t.pending()
    t.offer_ctbcast(8, D, _cp(8).cert)
    assert t.pending()
    assert t.take_ctbcast() == _cp(8)
    assert t.last_ctb_ckpt == 8 and not t.pending()
    assert t.take_ctbcast() is None
    t.offer_ctbcast(8, OTHER, _cp(8).cert)
    assert t.take_ctbcast() is None


def test_a_newer_stable_checkpoint_replaces_one_still_waiting(make_cluster: MakeCluster) -> None:
    t, _, _ = _tracker(make_cluster)
    t.offer_ctbcast(8, D, _cp(8).cert)
    t.offer_ctbcast(4, D, _cp(4).cert)  # older: ignored
    t.offer_ctbcast(8, OTHER, _cp(8).cert)  # not newer: ignored
    t.offer_ctbcast(12, D, _cp(12).cert)
    t.offer_ctbcast(8, D, _cp(8).cert)
    assert t.take_ctbcast() == _cp(12)
    t.offer_ctbcast(16, OTHER, _cp(16).cert)
    t.offer_ctbcast(16, D, _cp(16).cert)
    assert t.take_ctbcast() == _cp(16, OTHER)


def test_pending_while_an_own_checkpoint_is_not_stable(make_cluster: MakeCluster) -> None:
    t, ctx, signers = _tracker(make_cluster)
    assert not t.pending()
    t.take(4, D)
    assert t.pending()
    t.on_share(1, _share(ctx, signers[1], 4), exec_next=4)
    t.mark_stable(4)
    assert not t.pending()  # 4 itself is stable now
    t.take(8, D)
    assert t.pending()


def test_footprint_counts_every_share_and_digest(make_cluster: MakeCluster) -> None:
    t, ctx, signers = _tracker(make_cluster, f=2)
    assert t.footprint() == 0
    t.on_share(1, _share(ctx, signers[1], 4), exec_next=0)
    assert t.footprint() == 1
    t.take(4, D)
    assert t.footprint() == 3
    t.on_share(2, _share(ctx, signers[2], 8), exec_next=0)
    assert t.footprint() == 4
