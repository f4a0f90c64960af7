"""One targeted test per rule of ``quorum.py`` (PROTOCOL.md section 4): a certificate is f+1
signatures of distinct members on one statement, signers sorted ascending, for f = 1 and 2.
Each test fails when its rule is weakened (``make mutation`` checks that)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ubft.replica.core.context import Context
from ubft.replica.core.crypto import SignatureCounter, Signer, Tag, Verifier, statement
from ubft.replica.core.messages import Certificate
from ubft.replica.core.quorum import certificate_from_shares, verify_certificate

MakeCluster = Callable[..., tuple[Any, Any]]


def _ctx(
    make_cluster: MakeCluster, f: int, extra: dict[int, bytes] | None = None
) -> tuple[Context, list[Signer]]:
    config, keys = make_cluster(f=f)
    table = {**config.member_keys(), **(extra or {})}
    ctx = Context(config, 0, keys.members[0], Verifier(table, keys.counter))
    return ctx, keys.members


def _stmt(ctx: Context, c: int = 8) -> bytes:
    return statement(Tag.CKPT, ctx.cluster, ctx.epoch, c, b"d" * 32)


def _sign(signers: list[Signer], ctx: Context, who: int, c: int = 8) -> bytes:
    return signers[who].sign(Tag.CKPT, ctx.cluster, ctx.epoch, c, b"d" * 32)


def _cert(ctx: Context, signers: list[Signer], who: tuple[int, ...], c: int = 8) -> Certificate:
    return Certificate(who, tuple(_sign(signers, ctx, r, c) for r in who))


# --------------------------------------------------------------------------- building


def test_no_certificate_below_the_quorum() -> None:
    shares = {2: b"s2", 0: b"s0"}
    assert certificate_from_shares(shares, 3) is None
    assert certificate_from_shares({}, 1) is None


def test_a_certificate_at_exactly_the_quorum_has_sorted_signers_and_their_signatures() -> None:
    assert certificate_from_shares({2: b"s2", 0: b"s0"}, 2) == Certificate((0, 2), (b"s0", b"s2"))


def test_a_certificate_above_the_quorum_keeps_the_lowest_signers_only() -> None:
    shares = {4: b"s4", 1: b"s1", 3: b"s3", 0: b"s0"}
    assert certificate_from_shares(shares, 3) == Certificate((0, 1, 3), (b"s0", b"s1", b"s3"))


# --------------------------------------------------------------------------- verifying


@pytest.mark.parametrize("f", [1, 2])
def test_f_plus_1_signatures_of_distinct_members_verify(make_cluster: MakeCluster, f: int) -> None:
    ctx, signers = _ctx(make_cluster, f)
    for who in [tuple(range(f + 1)), tuple(range(f, 2 * f + 1)), tuple(range(2 * f + 1))]:
        assert verify_certificate(ctx, _cert(ctx, signers, who), _stmt(ctx)) is True


@pytest.mark.parametrize("f", [1, 2])
def test_f_valid_signatures_are_not_enough(make_cluster: MakeCluster, f: int) -> None:
    ctx, signers = _ctx(make_cluster, f)
    for who in [tuple(range(f)), tuple(range(1, f + 1)), ()]:
        assert verify_certificate(ctx, _cert(ctx, signers, who), _stmt(ctx)) is False


@pytest.mark.parametrize("f", [1, 2])
def test_signers_and_signatures_must_pair_up(make_cluster: MakeCluster, f: int) -> None:
    ctx, signers = _ctx(make_cluster, f)
    good = _cert(ctx, signers, tuple(range(f + 2)))
    stmt = _stmt(ctx)
    assert verify_certificate(ctx, Certificate(good.signers, good.sigs[:-1]), stmt) is False
    more = Certificate(good.signers[:-1], good.sigs)
    assert verify_certificate(ctx, more, stmt) is False


def test_a_repeated_signer_counts_once(make_cluster: MakeCluster) -> None:
    ctx, signers = _ctx(make_cluster, 1)
    sig = _sign(signers, ctx, 1)
    assert verify_certificate(ctx, Certificate((1, 1), (sig, sig)), _stmt(ctx)) is False
    two = _cert(ctx, signers, (0, 1))
    assert verify_certificate(ctx, Certificate((0, 1, 1), (*two.sigs, sig)), _stmt(ctx)) is False


def test_signers_must_be_sorted_ascending(make_cluster: MakeCluster) -> None:
    ctx, signers = _ctx(make_cluster, 1)
    good = _cert(ctx, signers, (0, 2))
    swapped = Certificate((2, 0), (good.sigs[1], good.sigs[0]))
    assert verify_certificate(ctx, swapped, _stmt(ctx)) is False


def test_a_signer_outside_the_members_does_not_count(make_cluster: MakeCluster) -> None:
    outsider = Signer(bytes([77]) * 32)
    ctx, signers = _ctx(make_cluster, 1, extra={7: outsider.public_key})
    stmt = _stmt(ctx)
    sig7 = outsider.sign(Tag.CKPT, ctx.cluster, ctx.epoch, 8, b"d" * 32)
    assert ctx.verifier.verify(7, stmt, sig7)  # the key is known, but 7 is no member
    cert = Certificate((0, 7), (_sign(signers, ctx, 0), sig7))
    assert verify_certificate(ctx, cert, stmt) is False
    # not even when its signature is passed as already verified
    assert verify_certificate(ctx, cert, stmt, known={7: sig7}) is False


def test_every_signature_is_checked_on_the_statement(make_cluster: MakeCluster) -> None:
    ctx, signers = _ctx(make_cluster, 1)
    stmt = _stmt(ctx)
    good = _cert(ctx, signers, (0, 1))
    other = _cert(ctx, signers, (0, 1), c=16)  # valid signatures on another statement
    assert verify_certificate(ctx, other, stmt) is False
    assert (
        verify_certificate(ctx, Certificate((0, 1), (good.sigs[0], other.sigs[1])), stmt) is False
    )
    assert (
        verify_certificate(ctx, Certificate((0, 1), (other.sigs[0], good.sigs[1])), stmt) is False
    )
    # a signature of 1 presented as 0's
    assert (
        verify_certificate(ctx, Certificate((0, 2), (good.sigs[1], _sign(signers, ctx, 2))), stmt)
        is False
    )
    bad = bytes(64)
    assert verify_certificate(ctx, Certificate((0, 1), (good.sigs[0], bad)), stmt) is False


def test_known_signatures_are_not_verified_again(make_cluster: MakeCluster) -> None:
    ctx, signers = _ctx(make_cluster, 1)
    stmt = _stmt(ctx)
    cert = _cert(ctx, signers, (0, 1, 2))
    counter: SignatureCounter = ctx.verifier.counter
    before = counter.verified
    assert verify_certificate(ctx, cert, stmt, known={0: cert.sigs[0], 2: cert.sigs[2]})
    assert counter.verified == before + 1
    assert verify_certificate(ctx, cert, stmt, known={})
    assert counter.verified == before + 4


def test_a_known_signature_vouches_only_for_itself(make_cluster: MakeCluster) -> None:
    ctx, signers = _ctx(make_cluster, 1)
    stmt = _stmt(ctx)
    cert = _cert(ctx, signers, (0, 1))
    forged = Certificate((0, 1), (cert.sigs[0], bytes(64)))
    # 0's signature is known; 1's is not, and is bad
    assert verify_certificate(ctx, forged, stmt, known={0: cert.sigs[0]}) is False
    # 1's known signature differs from the one presented, which is bad
    assert verify_certificate(ctx, forged, stmt, known={1: cert.sigs[1]}) is False
    assert verify_certificate(ctx, cert, stmt, known={1: bytes(64)}) is True
