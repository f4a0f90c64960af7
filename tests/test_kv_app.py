"""The key-value application: commands, error results, encodings, snapshots and digests."""

from __future__ import annotations

import random

import pytest
from ubft.apps.kv import (
    INT64_MAX,
    INT64_MIN,
    MAX_KEY_BYTES,
    MAX_KEYS_PER_COMMAND,
    MAX_VALUE_BYTES,
    Error,
    Integer,
    KVResult,
    KVStore,
    Nil,
    Ok,
    Value,
    Values,
    cmd_del,
    cmd_get,
    cmd_incr,
    cmd_mget,
    cmd_set,
    decode_result,
    encode_command,
    encode_error,
    encode_int,
    encode_list,
    encode_nil,
    encode_ok,
    encode_result,
    encode_value,
    is_read_only,
    parse_int64,
)
from ubft.replica.core.app import Application


def run(store: KVStore, command: bytes) -> KVResult:
    return decode_result(store.apply(command, clock_ns=0))


def is_error(result: KVResult, fragment: str = "") -> bool:
    return isinstance(result, Error) and fragment in result.message


def test_kvstore_is_an_application() -> None:
    app: Application = KVStore()
    assert app.digest() == KVStore().digest()


def test_get_set_del_mget() -> None:
    kv = KVStore()
    assert run(kv, cmd_get(b"a")) == Nil()
    assert run(kv, cmd_set(b"a", b"1")) == Ok()
    assert run(kv, cmd_set(b"b", b"")) == Ok()
    assert run(kv, cmd_get(b"a")) == Value(b"1")
    assert run(kv, cmd_get(b"b")) == Value(b"")
    assert run(kv, cmd_mget(b"a", b"x", b"b")) == Values((b"1", None, b""))
    assert run(kv, cmd_set(b"a", b"2")) == Ok()
    assert run(kv, cmd_get(b"a")) == Value(b"2")
    # DEL counts keys actually removed; a key named twice counts once.
    assert run(kv, cmd_del(b"a", b"x", b"a")) == Integer(1)
    assert run(kv, cmd_del(b"a")) == Integer(0)
    assert run(kv, cmd_get(b"a")) == Nil()
    assert kv.footprint() == 1


def test_incr() -> None:
    kv = KVStore()
    assert run(kv, cmd_incr(b"n")) == Integer(1)  # missing key starts from 0
    assert run(kv, cmd_incr(b"n", 41)) == Integer(42)
    assert run(kv, cmd_incr(b"n", -50)) == Integer(-8)
    assert run(kv, cmd_get(b"n")) == Value(b"-8")  # counters are decimal strings
    assert run(kv, cmd_set(b"m", b"10")) == Ok()
    assert run(kv, cmd_incr(b"m", 5)) == Integer(15)


@pytest.mark.parametrize("stored", [b"abc", b"", b"1.5", b" 1", b"+1", b"01", b"-0", b"1_0"])
def test_incr_of_non_integer_is_an_error_and_changes_nothing(stored: bytes) -> None:
    kv = KVStore()
    run(kv, cmd_set(b"k", stored))
    before = kv.digest()
    assert is_error(run(kv, cmd_incr(b"k")), "not an integer")
    assert kv.digest() == before
    assert run(kv, cmd_get(b"k")) == Value(stored)


def test_incr_overflow() -> None:
    kv = KVStore()
    assert run(kv, cmd_incr(b"k", INT64_MAX)) == Integer(INT64_MAX)
    assert is_error(run(kv, cmd_incr(b"k")), "overflow")
    assert run(kv, cmd_get(b"k")) == Value(str(INT64_MAX).encode())
    assert run(kv, cmd_set(b"k", str(INT64_MIN).encode())) == Ok()
    assert is_error(run(kv, cmd_incr(b"k", -1)), "overflow")
    assert run(kv, cmd_incr(b"k", INT64_MAX)) == Integer(-1)
    # A stored value beyond 64 bits is not an integer at all.
    run(kv, cmd_set(b"big", str(INT64_MAX + 1).encode()))
    assert is_error(run(kv, cmd_incr(b"big")), "not an integer")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"0", 0),
        (b"-1", -1),
        (b"123", 123),
        (str(INT64_MIN).encode(), INT64_MIN),
        (b"", None),
        (b"-", None),
        (b"007", None),
        (b"-0", None),
        (b"+3", None),
        (b"3 ", None),
        ("٣".encode(), None),
        (str(INT64_MIN - 1).encode(), None),
    ],
)
def test_parse_int64_is_canonical(raw: bytes, expected: int | None) -> None:
    assert parse_int64(raw) == expected


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        (b"", "malformed"),
        (b"\x01", "malformed"),
        (cmd_get(b"a") + b"\x00", "malformed"),  # trailing byte
        (cmd_get(b"a")[:-1], "malformed"),  # truncated
        (b"\x09\x00\x00", "unknown command"),
        (b"\x01\x00\x01Z", "malformed"),  # bad argument tag
        (encode_command("GET"), "wrong number"),
        (encode_command("GET", b"a", b"b"), "wrong number"),
        (encode_command("GET", 5), "wrong argument type"),
        (encode_command("SET", b"a"), "wrong number"),
        (encode_command("SET", b"a", 1), "wrong argument type"),
        (encode_command("SET", 1, b"a"), "wrong argument type"),
        (encode_command("DEL"), "wrong number"),
        (encode_command("MGET", b"a", 3), "wrong argument type"),
        (encode_command("INCR", b"a"), "wrong number"),
        (encode_command("INCR", b"a", b"1"), "wrong argument type"),
        (cmd_get(b"k" * (MAX_KEY_BYTES + 1)), "key too long"),
        (cmd_set(b"k" * (MAX_KEY_BYTES + 1), b"v"), "key too long"),
        (cmd_set(b"k", b"v" * (MAX_VALUE_BYTES + 1)), "value too long"),
        (cmd_mget(*[b"k"] * (MAX_KEYS_PER_COMMAND + 1)), "wrong number"),
        (cmd_del(b"ok", b"k" * (MAX_KEY_BYTES + 1)), "key too long"),
    ],
)
def test_bad_commands_give_errors_and_change_nothing(command: bytes, fragment: str) -> None:
    kv = KVStore()
    run(kv, cmd_set(b"ok", b"v"))
    before = kv.snapshot()
    assert is_error(run(kv, command), fragment)
    assert kv.snapshot() == before


def test_limits_are_inclusive() -> None:
    kv = KVStore()
    key, value = b"k" * MAX_KEY_BYTES, b"v" * MAX_VALUE_BYTES
    assert run(kv, cmd_set(key, value)) == Ok()
    assert run(kv, cmd_get(key)) == Value(value)
    assert run(kv, cmd_mget(*[key] * MAX_KEYS_PER_COMMAND)) == Values((value,) * 128)


def test_random_bytes_never_raise() -> None:
    rng = random.Random(20240611)
    kv = KVStore()
    valid = [cmd_set(b"a", b"1"), cmd_incr(b"n", 3), cmd_mget(b"a", b"n"), cmd_del(b"a")]
    for _ in range(3000):
        mode = rng.randrange(3)
        if mode == 0:
            command = rng.randbytes(rng.randrange(24))
        elif mode == 1:  # a plausible header followed by noise
            command = bytes((rng.randrange(1, 7), 0, rng.randrange(4))) + rng.randbytes(
                rng.randrange(16)
            )
        else:  # a valid command with one byte flipped or cut
            mutated = bytearray(rng.choice(valid))
            if rng.random() < 0.5:
                mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
            else:
                del mutated[rng.randrange(len(mutated)) :]
            command = bytes(mutated)
        decode_result(kv.apply(command, clock_ns=rng.randrange(1 << 40)))
        is_read_only(command)


def test_is_read_only() -> None:
    assert is_read_only(cmd_get(b"a"))
    assert is_read_only(cmd_mget(b"a", b"b"))
    assert KVStore().is_read_only(cmd_get(b"a"))
    for command in (cmd_set(b"a", b"b"), cmd_del(b"a"), cmd_incr(b"a"), b"", b"\x01"):
        assert not is_read_only(command)


def test_encode_command_rejects_unencodable_arguments() -> None:
    with pytest.raises(ValueError):
        encode_command("FLUSHALL")
    with pytest.raises(ValueError):
        encode_command("INCR", b"a", INT64_MAX + 1)
    with pytest.raises(TypeError):
        encode_command("INCR", b"a", True)
    with pytest.raises(TypeError):
        encode_command("GET", "a")  # type: ignore[arg-type]


RESULTS: list[KVResult] = [
    Ok(),
    Nil(),
    Value(b""),
    Value(b"\x00\xff" * 10),
    Integer(0),
    Integer(INT64_MIN),
    Integer(INT64_MAX),
    Values(()),
    Values((b"a", None, b"")),
    Error("bad things"),
    Error("ünïcode"),
]


@pytest.mark.parametrize("result", RESULTS)
def test_results_round_trip_and_reject_extra_or_missing_bytes(result: KVResult) -> None:
    raw = encode_result(result)
    assert decode_result(raw) == result
    with pytest.raises(ValueError):
        decode_result(raw + b"\x00")
    for cut in range(len(raw)):
        try:
            decoded = decode_result(raw[:cut])
        except ValueError:
            continue
        # A prefix can only decode if it is itself a complete, different result.
        assert decoded != result


def test_result_helpers() -> None:
    assert decode_result(encode_ok()) == Ok()
    assert decode_result(encode_nil()) == Nil()
    assert decode_result(encode_value(b"v")) == Value(b"v")
    assert decode_result(encode_int(-3)) == Integer(-3)
    assert decode_result(encode_list([b"x", None])) == Values((b"x", None))
    assert decode_result(encode_error("e")) == Error("e")
    for bad in (b"", b"\x06", b"\x04\x00\x00\x00\x01\x07", b"\x05\x00\x01\xff"):
        with pytest.raises(ValueError):
            decode_result(bad)


def random_commands(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    keys = [b"k%d" % i for i in range(12)]
    commands = []
    for _ in range(count):
        key = rng.choice(keys)
        commands.append(
            rng.choice(
                [
                    cmd_set(key, rng.randbytes(rng.randrange(8))),
                    cmd_set(key, str(rng.randrange(-100, 100)).encode()),
                    cmd_incr(key, rng.randrange(-5, 6)),
                    cmd_del(key, rng.choice(keys)),
                    cmd_get(key),
                    cmd_mget(key, rng.choice(keys)),
                ]
            )
        )
    return commands


def test_same_commands_same_results_and_digest() -> None:
    commands = random_commands(seed=7, count=500)
    a, b = KVStore(), KVStore()
    for i, command in enumerate(commands):
        assert a.apply(command, clock_ns=i) == b.apply(command, clock_ns=i * 1000)
        assert a.digest() == b.digest()
    assert a.snapshot() == b.snapshot()
    assert len(a.digest()) == 32
    assert a.digest() != KVStore().digest()


def test_snapshot_is_independent_of_insertion_order() -> None:
    a, b = KVStore(), KVStore()
    for key in (b"x", b"a", b"m"):
        run(a, cmd_set(key, key * 2))
    for key in (b"m", b"x", b"a"):
        run(b, cmd_set(key, key * 2))
    assert a.snapshot() == b.snapshot()
    assert a.digest() == b.digest()


def test_restore_reproduces_state_and_digest() -> None:
    source = KVStore()
    for command in random_commands(seed=11, count=300):
        source.apply(command, clock_ns=0)
    copy = KVStore()
    run(copy, cmd_set(b"stale", b"gone"))
    copy.restore(source.snapshot())
    assert copy.digest() == source.digest()
    assert copy.footprint() == source.footprint()
    assert run(copy, cmd_get(b"stale")) == Nil()
    # Both continue identically after the restore.
    for command in random_commands(seed=12, count=100):
        assert copy.apply(command, clock_ns=0) == source.apply(command, clock_ns=0)
    assert copy.digest() == source.digest()


def test_digest_is_cached_and_invalidated_by_writes() -> None:
    kv = KVStore()
    run(kv, cmd_set(b"a", b"1"))
    first = kv.digest()
    assert kv.digest() is first  # cached
    run(kv, cmd_get(b"a"))
    run(kv, cmd_set(b"a", b"1"))  # same value: nothing changed
    run(kv, cmd_del(b"missing"))
    assert kv.digest() is first
    run(kv, cmd_incr(b"n"))
    assert kv.digest() != first
    run(kv, cmd_del(b"n"))
    assert kv.digest() == first


def valid_snapshot() -> bytes:
    kv = KVStore()
    run(kv, cmd_set(b"a", b"1"))
    run(kv, cmd_set(b"b", b"2"))
    return kv.snapshot()


@pytest.mark.parametrize(
    "snapshot",
    [
        b"",
        b"garbage!" + bytes(4),
        valid_snapshot()[:-1],
        valid_snapshot() + b"\x00",
        # keys out of order: swap the two entries of a two-key snapshot
        valid_snapshot()[:12] + valid_snapshot()[12 + 8 :] + valid_snapshot()[12 : 12 + 8],
        # a duplicate key
        valid_snapshot()[:12] + valid_snapshot()[12 : 12 + 8] * 2,
    ],
)
def test_restore_rejects_malformed_snapshots(snapshot: bytes) -> None:
    kv = KVStore()
    run(kv, cmd_set(b"keep", b"me"))
    before = kv.digest()
    with pytest.raises(ValueError):
        kv.restore(snapshot)
    assert kv.digest() == before


def test_max_keys_and_max_result_bytes() -> None:
    kv = KVStore(max_keys=2, max_result_bytes=64)
    assert run(kv, cmd_set(b"a", b"1")) == Ok()
    assert run(kv, cmd_incr(b"b")) == Integer(1)
    assert is_error(run(kv, cmd_set(b"c", b"1")), "store full")
    assert is_error(run(kv, cmd_incr(b"c")), "store full")
    assert run(kv, cmd_set(b"a", b"x" * 100)) == Ok()  # overwriting needs no new key
    assert is_error(run(kv, cmd_get(b"a")), "result too large")
    assert run(kv, cmd_get(b"b")) == Value(b"1")
    big = KVStore()
    for key in (b"1", b"2", b"3"):
        run(big, cmd_set(key, b""))
    with pytest.raises(ValueError):
        kv.restore(big.snapshot())


def test_digest_recomputes_only_written_chunks_and_matches_a_fresh_store() -> None:
    from ubft.apps.kv import CHUNKS

    incremental = KVStore()
    for j in range(2000):
        incremental.apply(cmd_set(b"k%d" % j, b"v%d" % j), 0)
        if j % 500 == 0:
            incremental.digest()  # interleave digests with writes
    incremental.apply(cmd_del(b"k7", b"k8"), 0)
    incremental.apply(cmd_incr(b"n", 3), 0)
    d = incremental.digest()
    assert sum(x is None for x in incremental._chunk_digests) == 0
    incremental.apply(cmd_set(b"k1", b"changed"), 0)
    assert sum(x is None for x in incremental._chunk_digests) == 1 < CHUNKS
    assert incremental.digest() != d
    fresh = KVStore()
    fresh.restore(incremental.snapshot())
    assert fresh.digest() == incremental.digest()
