"""One targeted test per rule of ``crypto.py`` beyond tests/test_crypto.py (PROTOCOL.md section
1): the sizes the wire format relies on, verification refusing malformed input before any
curve arithmetic (and before counting), and the signature counters' on-path/off-path split
with and without checkpoint signatures. Each test fails when its rule is weakened (``make
mutation`` checks that)."""

from __future__ import annotations

import pytest
from ubft.replica.core.crypto import (
    SignatureCounter,
    Signer,
    Tag,
    Verifier,
    digest,
    statement,
    verify_with_key,
)

CLUSTER = b"rules"


def _signer(i: int, counter: SignatureCounter | None = None) -> Signer:
    return Signer(bytes([i + 40]) * 32, counter)


def test_digests_and_statements_are_32_bytes_and_signatures_64() -> None:
    # BLAKE2b-256 and Ed25519: the register layout and the codec hard-code these sizes
    assert len(digest(b"")) == 32 and len(digest(b"x" * 1000)) == 32
    assert len(statement(Tag.CTB, CLUSTER, 0, 1, 2, digest(b"m"))) == 32
    s = _signer(1)
    assert len(s.public_key) == 32
    assert len(s.sign(Tag.CTB, CLUSTER, 0, 1)) == 64


def test_a_signature_of_the_wrong_length_is_refused_uncounted() -> None:
    s = _signer(1)
    counter = SignatureCounter()
    v = Verifier({0: s.public_key}, counter)
    stmt = statement(Tag.PREP, CLUSTER, 0, 3)
    sig = s.sign(Tag.PREP, CLUSTER, 0, 3)
    for bad in (sig[:63], sig + b"\x00", b""):
        assert v.verify(0, stmt, bad) is False
        assert verify_with_key(s.public_key, stmt, bad, counter) is False
    assert counter.verified == 0
    assert v.verify(0, stmt, sig) is True
    assert verify_with_key(s.public_key, stmt, sig, counter) is True
    assert counter.verified == 2


def test_a_key_of_the_wrong_length_is_refused_uncounted() -> None:
    s = _signer(1)
    counter = SignatureCounter()
    stmt = statement(Tag.CLIENT, CLUSTER, 0, 9)
    sig = s.sign(Tag.CLIENT, CLUSTER, 0, 9)
    for key in (s.public_key[:31], s.public_key + b"\x00", b""):
        assert verify_with_key(key, stmt, sig, counter) is False
    assert counter.verified == 0


def test_an_unknown_signer_is_refused_uncounted() -> None:
    s = _signer(1)
    counter = SignatureCounter()
    v = Verifier({3: s.public_key}, counter)
    stmt = statement(Tag.CKPT, CLUSTER, 0, 4)
    sig = s.sign(Tag.CKPT, CLUSTER, 0, 4)
    assert v.knows(3) and not v.knows(4)
    assert v.verify(4, stmt, sig) is False
    assert counter.verified == 0
    assert v.verify(3, stmt, sig) is True
    assert counter.verified == 1


def test_a_valid_signature_under_another_key_is_refused_but_counted() -> None:
    s, other = _signer(1), _signer(2)
    counter = SignatureCounter()
    v = Verifier({0: s.public_key, 1: other.public_key}, counter)
    stmt = statement(Tag.REQ, CLUSTER, None, 100, 1)
    sig = other.sign(Tag.REQ, CLUSTER, None, 100, 1)
    assert v.verify(0, stmt, sig) is False
    assert verify_with_key(s.public_key, stmt, sig, counter) is False
    assert counter.verified == 2


@pytest.mark.parametrize("epoch", [None, 0, 7])
def test_int_and_bytes_fields_never_collide_whatever_the_epoch(epoch: int | None) -> None:
    assert statement(Tag.STATE, CLUSTER, epoch, 5) != statement(Tag.STATE, CLUSTER, epoch, b"\x05")
    assert statement(Tag.STATE, CLUSTER, epoch, 5) == statement(Tag.STATE, CLUSTER, epoch, 5)


def test_counters_start_at_zero_and_count_one_per_signature() -> None:
    counter = SignatureCounter()
    assert (counter.created, counter.verified, counter.created_by_tag) == (0, 0, {})
    assert counter.on_path() == 0 and counter.off_path() == 0
    s = _signer(1, counter)
    s.sign(Tag.CTB, CLUSTER, 0, 1)
    s.sign(Tag.CTB, CLUSTER, 0, 2)
    s.sign(Tag.PREP, CLUSTER, 0, 1)
    assert counter.created == 3
    assert counter.created_by_tag == {Tag.CTB: 2, Tag.PREP: 1}
    # no checkpoint signature yet: everything is on the decision path
    assert counter.off_path() == 0 and counter.on_path() == 3


@pytest.mark.parametrize("tag", [Tag.CKPT, Tag.CTB_CKPT])
def test_each_kind_of_checkpoint_signature_is_off_the_decision_path(tag: Tag) -> None:
    counter = SignatureCounter()
    s = _signer(1, counter)
    s.sign(Tag.CTB, CLUSTER, 0, 1)
    s.sign(tag, CLUSTER, 0, 2)
    s.sign(tag, CLUSTER, 0, 4)
    assert counter.off_path() == 2 and counter.on_path() == 1


def test_signers_and_verifiers_share_a_counter_only_when_given_one() -> None:
    shared = SignatureCounter()
    a, b = _signer(1, shared), _signer(2)
    assert a.counter is shared and b.counter is not shared
    v = Verifier({0: a.public_key}, shared)
    alone = Verifier({0: a.public_key})
    assert v.counter is shared and alone.counter is not shared
    sig = a.sign(Tag.LINK, CLUSTER, 0, b"x")
    alone.verify(0, statement(Tag.LINK, CLUSTER, 0, b"x"), sig)
    assert shared.verified == 0 and alone.counter.verified == 1
