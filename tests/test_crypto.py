"""Signed statements (PROTOCOL.md section 1): domain separation, sign/verify, never-raising
verification, signature counters."""

from __future__ import annotations

import itertools
import random

import pytest
from ubft.replica.core.crypto import (
    DIGEST_BYTES,
    SIGNATURE_BYTES,
    SignatureCounter,
    Signer,
    Tag,
    Verifier,
    digest,
    public_key_is_valid,
    statement,
    verify_with_key,
)

CLUSTER = b"test"


def _signer(i: int, counter: SignatureCounter | None = None) -> Signer:
    return Signer(bytes([i]) * 32, counter)


# --------------------------------------------------------------------------- statement()


def test_statement_is_a_32_byte_deterministic_digest() -> None:
    s = statement(Tag.CTB, CLUSTER, 0, 1, 2, b"d" * 32)
    assert len(s) == DIGEST_BYTES
    assert s == statement(Tag.CTB, CLUSTER, 0, 1, 2, b"d" * 32)
    assert len(digest(b"x")) == DIGEST_BYTES and digest(b"x") != digest(b"y")


def test_every_tag_gives_a_different_statement() -> None:
    stmts = {statement(tag, CLUSTER, 0, 1, 2, b"x") for tag in Tag}
    assert len(stmts) == len(Tag)


def test_cluster_and_epoch_separate_statements() -> None:
    base = statement(Tag.PREP, CLUSTER, 3, 0, 5, b"d")
    assert base != statement(Tag.PREP, b"other", 3, 0, 5, b"d")
    assert base != statement(Tag.PREP, CLUSTER, 4, 0, 5, b"d")
    assert base != statement(Tag.PREP, CLUSTER, None, 0, 5, b"d")


def test_cluster_id_is_length_prefixed() -> None:
    # "ab" + epoch must not collide with "a" + something that starts with "b"
    assert statement(Tag.CKPT, b"ab", None, 1) != statement(Tag.CKPT, b"a", None, b"b", 1)
    assert statement(Tag.CKPT, b"ab", 0) != statement(Tag.CKPT, b"a", 0, b"b")


def test_field_order_and_boundaries_matter() -> None:
    assert statement(Tag.CTB, CLUSTER, 0, 1, 2) != statement(Tag.CTB, CLUSTER, 0, 2, 1)
    assert statement(Tag.CTB, CLUSTER, 0, b"ab", b"c") != statement(
        Tag.CTB, CLUSTER, 0, b"a", b"bc"
    )
    assert statement(Tag.CTB, CLUSTER, 0, b"a", b"") != statement(Tag.CTB, CLUSTER, 0, b"a")
    assert statement(Tag.CTB, CLUSTER, 0) != statement(Tag.CTB, CLUSTER, 0, 0)


def test_int_and_bytes_fields_are_typed() -> None:
    as_int = statement(Tag.STATE, CLUSTER, 0, 1)
    assert as_int != statement(Tag.STATE, CLUSTER, 0, (1).to_bytes(8, "big"))
    assert as_int != statement(Tag.STATE, CLUSTER, 0, b"\x01")
    assert statement(Tag.STATE, CLUSTER, 0, 0) != statement(Tag.STATE, CLUSTER, 0, b"")


def test_epoch_is_not_confused_with_a_leading_int_field() -> None:
    # epoch=None followed by the int 7 differs from epoch 7 with no fields
    assert statement(Tag.REQ, CLUSTER, None, 7) != statement(Tag.REQ, CLUSTER, 7)


def test_no_collisions_over_a_grid_of_statements() -> None:
    seen: dict[bytes, tuple[object, ...]] = {}
    for tag, cluster, epoch, fields in itertools.product(
        (Tag.CTB, Tag.PREP, Tag.REQ),
        (b"a", b"b", b"ab"),
        (None, 0, 1),
        ((), (0,), (1,), (b"",), (b"\x00",), (0, 1), (1, 0), (b"a", 1), (1, b"a")),
    ):
        s = statement(tag, cluster, epoch, *fields)
        key = (tag, cluster, epoch, fields)
        assert s not in seen, f"{key} collides with {seen.get(s)}"
        seen[s] = key


# --------------------------------------------------------------------------- sign / verify


def test_sign_verify_round_trip() -> None:
    s0, s1 = _signer(1), _signer(2)
    v = Verifier({0: s0.public_key, 1: s1.public_key})
    assert v.knows(0) and v.knows(1) and not v.knows(2)
    stmt = statement(Tag.CTB, CLUSTER, 0, 0, 5, digest(b"m"))
    sig = s0.sign(Tag.CTB, CLUSTER, 0, 0, 5, digest(b"m"))
    assert len(sig) == SIGNATURE_BYTES
    assert v.verify(0, stmt, sig)
    assert not v.verify(1, stmt, sig), "another member's key must not verify it"
    assert verify_with_key(s0.public_key, stmt, sig, SignatureCounter())
    assert not verify_with_key(s1.public_key, stmt, sig, SignatureCounter())


@pytest.mark.parametrize(
    "other",
    [
        (Tag.PREP, CLUSTER, 0, 0, 5),  # other tag
        (Tag.CTB_CKPT, CLUSTER, 0, 0, 5),
        (Tag.CTB, b"other", 0, 0, 5),  # other cluster
        (Tag.CTB, CLUSTER, 1, 0, 5),  # other epoch
        (Tag.CTB, CLUSTER, None, 0, 5),  # no epoch
        (Tag.CTB, CLUSTER, 0, 1, 5),  # other sender
        (Tag.CTB, CLUSTER, 0, 0, 6),  # other index
    ],
)
def test_a_signature_never_verifies_under_another_statement(other: tuple[object, ...]) -> None:
    s = _signer(1)
    v = Verifier({0: s.public_key})
    d = digest(b"m")
    sig = s.sign(Tag.CTB, CLUSTER, 0, 0, 5, d)
    tag, cluster, epoch, *fields = other
    assert not v.verify(0, statement(tag, cluster, epoch, *fields, d), sig)  # type: ignore[arg-type]


def test_req_statements_have_no_epoch_and_verify_with_a_raw_key() -> None:
    client = _signer(7)
    d = digest(b"payload")
    sig = client.sign(Tag.REQ, CLUSTER, None, 100, 1, d)
    counter = SignatureCounter()
    assert verify_with_key(
        client.public_key, statement(Tag.REQ, CLUSTER, None, 100, 1, d), sig, counter
    )
    assert not verify_with_key(
        client.public_key, statement(Tag.REQ, CLUSTER, 0, 100, 1, d), sig, counter
    )
    assert not verify_with_key(
        client.public_key, statement(Tag.REQ, CLUSTER, None, 100, 2, d), sig, counter
    )
    assert counter.verified == 3


def test_verify_never_raises_on_garbage() -> None:
    s = _signer(1)
    counter = SignatureCounter()
    v = Verifier({0: s.public_key}, counter)
    stmt = statement(Tag.PREP, CLUSTER, 0, 0, 0, digest(b"b"))
    good = s.sign(Tag.PREP, CLUSTER, 0, 0, 0, digest(b"b"))
    rng = random.Random(1)
    cases = [b"", b"\x00", good[:63], good + b"\x00", bytes(64), b"\xff" * 64, rng.randbytes(64)]
    cases += [bytes([good[0] ^ 1]) + good[1:], good[:32] + bytes(32), good[:32] + b"\xff" * 32]
    for sig in cases:
        assert v.verify(0, stmt, sig) is False
        assert v.verify(0, b"", sig) is False
        assert v.verify(0, rng.randbytes(7), sig) is False
    for ident in (-1, 1, 1 << 40):
        assert v.verify(ident, stmt, good) is False  # unknown signer
    for key in (b"", bytes(31), bytes(32), b"\xff" * 32, rng.randbytes(33)):
        assert verify_with_key(key, stmt, good, counter) is False
    assert v.verify(0, stmt, good) is True


def test_verifier_counts_only_real_checks() -> None:
    s = _signer(1)
    counter = SignatureCounter()
    v = Verifier({0: s.public_key}, counter)
    stmt = statement(Tag.CKPT, CLUSTER, 0, 128, digest(b"s"))
    v.verify(0, stmt, b"short")  # rejected before any curve arithmetic
    v.verify(5, stmt, bytes(64))  # unknown signer
    assert counter.verified == 0
    v.verify(0, stmt, bytes(64))
    v.verify(0, stmt, s.sign(Tag.CKPT, CLUSTER, 0, 128, digest(b"s")))
    assert counter.verified == 2


# --------------------------------------------------------------------------- counters


def test_counters_by_tag_on_and_off_path() -> None:
    counter = SignatureCounter()
    s = _signer(1, counter)
    other = _signer(2, counter)  # signers may share a counter
    for _ in range(3):
        s.sign(Tag.CTB, CLUSTER, 0, 0, 0, b"d")
    s.sign(Tag.PREP, CLUSTER, 0, 0, 0, b"d")
    other.sign(Tag.CKPT, CLUSTER, 0, 128, b"d")
    other.sign(Tag.CTB_CKPT, CLUSTER, 0, 0, 64, b"d")
    other.sign(Tag.CTB_CKPT, CLUSTER, 0, 0, 128, b"d")
    assert counter.created == 7
    assert counter.created_by_tag == {Tag.CTB: 3, Tag.PREP: 1, Tag.CKPT: 1, Tag.CTB_CKPT: 2}
    assert counter.off_path() == 3
    assert counter.on_path() == 4
    assert counter.verified == 0


def test_each_signer_has_its_own_counter_by_default() -> None:
    a, b = _signer(1), _signer(2)
    a.sign(Tag.LINK, CLUSTER, 0, b"t")
    assert a.counter.created == 1 and b.counter.created == 0


# --------------------------------------------------------------------------- public keys


def test_public_key_is_valid() -> None:
    assert public_key_is_valid(_signer(1).public_key)
    assert not public_key_is_valid(bytes(32))  # small order
    assert not public_key_is_valid(b"\x01" + bytes(31))  # the identity
    assert not public_key_is_valid(b"\xff" * 32)  # not canonical
    assert not public_key_is_valid(_signer(1).public_key[:31])
    assert not public_key_is_valid(_signer(1).public_key + b"\x00")
    assert not public_key_is_valid(b"")
