"""Register layout: round trips, torn writes, garbage, and robustness against any bytes."""

from __future__ import annotations

import random

import pytest
from ubft.memnode.layout import (
    EMPTY_REGISTER,
    REGISTER_BYTES,
    SUBSLOT_BYTES,
    VALUE_BYTES,
    RegisterAddress,
    checksum,
    encode_subslot,
    pack_ctb_value,
    parse_register,
    unpack_ctb_value,
)


def _value(fill: int) -> bytes:
    return bytes([fill]) * VALUE_BYTES


def _corrupt(raw: bytes, index: int) -> bytes:
    return raw[:index] + bytes([raw[index] ^ 0xFF]) + raw[index + 1 :]


def test_sizes() -> None:
    assert (VALUE_BYTES, SUBSLOT_BYTES, REGISTER_BYTES) == (104, 120, 240)
    assert len(EMPTY_REGISTER) == REGISTER_BYTES


def test_subslot_encoding_is_checksum_incarnation_value() -> None:
    sub = encode_subslot(7, _value(3))
    assert len(sub) == SUBSLOT_BYTES
    assert int.from_bytes(sub[:8], "big") == checksum(7, _value(3))
    assert int.from_bytes(sub[8:16], "big") == 7
    assert sub[16:] == _value(3)


def test_checksum_depends_on_incarnation_and_value() -> None:
    assert checksum(1, _value(0)) != checksum(2, _value(0))
    assert checksum(1, _value(0)) != checksum(1, _value(1))
    assert 0 <= checksum(1, _value(0)) < 1 << 64


def test_encode_rejects_wrong_value_size() -> None:
    with pytest.raises(AssertionError):
        encode_subslot(1, b"short")


def test_empty_register_reads_incarnation_zero() -> None:
    assert parse_register(EMPTY_REGISTER) == (0, bytes(VALUE_BYTES))


def test_round_trip_picks_highest_incarnation_in_either_subslot() -> None:
    low, high = encode_subslot(4, _value(1)), encode_subslot(5, _value(2))
    assert parse_register(low + high) == (5, _value(2))
    assert parse_register(high + low) == (5, _value(2))


def test_torn_write_falls_back_to_other_subslot() -> None:
    old, new = encode_subslot(4, _value(1)), encode_subslot(5, _value(2))
    for index in (0, 10, SUBSLOT_BYTES - 1):  # checksum, incarnation, value
        assert parse_register(old + _corrupt(new, index)) == (4, _value(1))
        assert parse_register(_corrupt(new, index) + old) == (4, _value(1))


def test_both_subslots_corrupted_is_garbage() -> None:
    raw = encode_subslot(4, _value(1)) + encode_subslot(5, _value(2))
    assert parse_register(_corrupt(_corrupt(raw, 20), SUBSLOT_BYTES + 20)) is None


def test_wrong_length_is_garbage() -> None:
    assert parse_register(b"") is None
    assert parse_register(EMPTY_REGISTER[:-1]) is None
    assert parse_register(EMPTY_REGISTER + b"\x00") is None


def test_equal_incarnations_resolve_the_same_whichever_subslot() -> None:
    a, b = encode_subslot(9, _value(1)), encode_subslot(9, _value(2))
    assert parse_register(a + b) == parse_register(b + a) == (9, _value(2))


def test_random_bytes_never_raise() -> None:
    rng = random.Random(1234)
    for _ in range(2000):
        length = rng.choice([0, 1, 119, 120, 239, 240, 241, rng.randrange(512)])
        raw = rng.randbytes(length)
        result = parse_register(raw)
        assert result is None or len(result[1]) == VALUE_BYTES
    assert parse_register(bytearray(EMPTY_REGISTER)) == (0, bytes(VALUE_BYTES))


def test_ctb_value_round_trip() -> None:
    digest, sig = bytes(range(32)), bytes(range(64, 128))
    value = pack_ctb_value(2**64 - 1, digest, sig)
    assert len(value) == VALUE_BYTES
    assert unpack_ctb_value(value) == (2**64 - 1, digest, sig)
    assert parse_register(encode_subslot(3, value) + EMPTY_REGISTER[SUBSLOT_BYTES:]) == (3, value)


def test_ctb_value_bad_sizes() -> None:
    with pytest.raises(ValueError):
        unpack_ctb_value(b"\x00" * (VALUE_BYTES - 1))
    with pytest.raises(AssertionError):
        pack_ctb_value(1, b"\x00" * 31, b"\x00" * 64)


def test_register_address_fields() -> None:
    addr = RegisterAddress(epoch=1, writer=2, b=0, slot=5)
    assert addr == (1, 2, 0, 5)
    assert {addr: 1}[RegisterAddress(1, 2, 0, 5)] == 1
