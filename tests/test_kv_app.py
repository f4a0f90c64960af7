"""The key-value application: commands, error results, encodings, snapshots and digests."""

from __future__ import annotations

import random
import zlib

import pytest
from ubft.apps.kv import (
    BUCKETS,
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
    bucket_of,
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


def test_digest_recomputes_only_written_groups_and_matches_a_fresh_store() -> None:
    from ubft.apps.kv import GROUPS

    incremental = KVStore()
    for j in range(2000):
        incremental.apply(cmd_set(b"k%d" % j, b"v%d" % j), 0)
        if j % 500 == 0:
            incremental.digest()  # interleave digests with writes
    incremental.apply(cmd_del(b"k7", b"k8"), 0)
    incremental.apply(cmd_incr(b"n", 3), 0)
    d = incremental.digest()
    assert sum(x is None for x in incremental._group_digests) == 0
    incremental.apply(cmd_set(b"k1", b"changed"), 0)
    assert sum(x is None for x in incremental._group_digests) == 1 < GROUPS
    assert incremental.digest() != d
    fresh = KVStore()
    fresh.restore(incremental.snapshot())
    assert fresh.digest() == incremental.digest()


# ---------------------------------------------------------------------------------------------
# The state stream (snapshots in chunks)


def test_state_pieces_are_the_snapshot_in_bounded_pieces() -> None:
    from ubft.apps.kv import MAX_PIECE_BYTES, PIECE_BYTES

    kv = KVStore()
    for j in range(400):
        run(kv, cmd_set(b"k%04d" % j, bytes([j % 256]) * (j * 37 % 3000)))
    run(kv, cmd_set(b"huge", b"h" * MAX_VALUE_BYTES))
    pieces = list(kv.state_pieces())
    assert b"".join(pieces) == kv.snapshot()
    assert len(pieces) > 10
    assert max(map(len, pieces)) <= MAX_PIECE_BYTES
    # Pieces are short only at the end, or before and at the end of the one bucket larger than
    # PIECE_BYTES (the huge value's, sliced alone).
    assert sum(len(p) < PIECE_BYTES for p in pieces[:-1]) <= 2, "pieces are not needlessly small"
    assert list(KVStore().state_pieces()) == [KVStore().snapshot()]
    assert len(KVStore().snapshot()) == 12


def test_restore_from_a_stream_cut_anywhere() -> None:
    source = KVStore()
    for command in random_commands(seed=21, count=200):
        source.apply(command, clock_ns=0)
    stream = source.snapshot()
    small = valid_snapshot()
    for cut in range(len(small) + 1):  # every single split point of a small stream
        kv = KVStore()
        kv.restore_begin()
        kv.restore_feed(small[:cut])
        kv.restore_feed(small[cut:])
        kv.restore_finish()
        assert kv.snapshot() == small
    rng = random.Random(4)
    for _ in range(20):
        kv = KVStore()
        run(kv, cmd_set(b"old", b"state"))
        kv.restore_begin()
        pos = 0
        while pos < len(stream):
            step = rng.choice((1, 2, 7, 100, 5000))
            kv.restore_feed(stream[pos : pos + step])
            pos += step
        assert run(kv, cmd_get(b"old")) == Value(b"state"), "untouched until restore_finish"
        kv.restore_finish()
        assert kv.digest() == source.digest() and kv.snapshot() == stream
        assert run(kv, cmd_get(b"old")) == Nil()


def test_streamed_restore_failures_leave_the_state() -> None:
    kv = KVStore()
    run(kv, cmd_set(b"keep", b"me"))
    before = kv.snapshot()
    good = valid_snapshot()
    with pytest.raises(ValueError, match="no restore"):
        kv.restore_feed(good)
    with pytest.raises(ValueError, match="no restore"):
        kv.restore_finish()
    kv.restore_begin()
    kv.restore_feed(good[:-1])
    with pytest.raises(ValueError, match="truncated"):
        kv.restore_finish()
    kv.restore_begin()
    kv.restore_feed(good)
    with pytest.raises(ValueError, match="trailing"):
        kv.restore_feed(b"\x00")
    with pytest.raises(ValueError, match="no restore"):
        kv.restore_finish()  # a failed feed drops the restore
    kv.restore_begin()
    kv.restore_feed(good[:5])
    kv.restore_abort()
    with pytest.raises(ValueError):
        kv.restore_finish()
    # a long key is refused as soon as its length is read, without waiting for its bytes
    kv.restore_begin()
    with pytest.raises(ValueError, match="key too long"):
        kv.restore_feed(good[:12] + (MAX_KEY_BYTES + 1).to_bytes(2, "big"))
    kv.restore_begin()
    with pytest.raises(ValueError, match="value too long"):
        kv.restore_feed(good[:12] + b"\x00\x01a" + (MAX_VALUE_BYTES + 1).to_bytes(4, "big"))
    assert kv.snapshot() == before
    # begin again restarts from scratch
    kv.restore_begin()
    kv.restore_feed(good[:7])
    kv.restore_begin()
    kv.restore_feed(good)
    kv.restore_finish()
    assert kv.snapshot() == good


def test_state_pieces_refuse_a_store_changed_under_them() -> None:
    kv = KVStore()
    for j in range(2000):
        run(kv, cmd_set(b"k%05d" % j, b"v" * 30))
    pieces = kv.state_pieces()
    first = next(pieces)
    run(kv, cmd_get(b"k00001"))  # reads and no-op writes change nothing
    run(kv, cmd_set(b"k00001", b"v" * 30))
    second = next(pieces)
    assert len(first) >= 16 * 1024 and second
    run(kv, cmd_set(b"k00001", b"changed"))
    with pytest.raises(RuntimeError, match="changed"):
        list(pieces)
    pieces = kv.state_pieces()
    next(pieces)
    kv.restore(valid_snapshot())
    with pytest.raises(RuntimeError):
        list(pieces)


def test_digest_after_streamed_restore_matches_incremental_digest() -> None:
    source = KVStore()
    for j in range(3000):
        source.apply(cmd_set(b"k%d" % j, b"v%d" % j), 0)
    source.digest()
    copy = KVStore()
    copy.restore_begin()
    for piece in source.state_pieces():
        copy.restore_feed(piece)
    copy.restore_finish()
    assert copy.digest() == source.digest()
    copy.apply(cmd_set(b"k1", b"x"), 0)
    source.apply(cmd_set(b"k1", b"x"), 0)
    assert copy.digest() == source.digest()


# ---------------------------------------------------------------------------------------------
# Canonical order and per-bucket caches of the state stream


def reference_stream(state: dict[bytes, bytes]) -> bytes:
    """The state stream as the module docstring defines it, written independently: entries
    ascending by (CRC-32(key) mod BUCKETS, key)."""
    out = bytearray(b"ubftkv\x00\x02" + len(state).to_bytes(4, "big"))
    for key in sorted(state, key=lambda k: (zlib.crc32(k) % BUCKETS, k)):
        value = state[key]
        out += len(key).to_bytes(2, "big") + key + len(value).to_bytes(4, "big") + value
    return bytes(out)


def keys_in_bucket(bucket: int, count: int, prefix: bytes = b"c") -> list[bytes]:
    """``count`` keys that all fall into ``bucket``."""
    found: list[bytes] = []
    i = 0
    while len(found) < count:
        key = prefix + b"%d" % i
        if bucket_of(key) == bucket:
            found.append(key)
        i += 1
    return found


def target_state() -> dict[bytes, bytes]:
    """Some keys sharing buckets (in the first, a middle and the last bucket), many alone."""
    state = {b"k%d" % j: b"v%d" % (j * 7) for j in range(600)}
    for bucket in (0, 1234, BUCKETS - 1):
        for i, key in enumerate(keys_in_bucket(bucket, 4, prefix=b"c%d-" % bucket)):
            state[key] = b"shared" * i
    state[b"n"] = b"42"  # reached through INCR below
    state[b""] = b"empty key"
    return state


def test_state_stream_is_canonical_whatever_the_order_and_history() -> None:
    state = target_state()
    plain = KVStore()
    for key in sorted(state):
        plain.apply(cmd_set(key, state[key]), 0)
    assert plain.snapshot() == reference_stream(state)

    churned = KVStore()
    rng = random.Random(3)
    keys = list(state)
    rng.shuffle(keys)
    for n, key in enumerate(keys):
        churned.apply(cmd_set(key, b"first version of " + key), 0)
        churned.apply(cmd_set(b"doomed:%d" % n, b"x" * (n % 50)), 0)
        if n % 97 == 0:  # caches built in the middle of the history
            list(churned.state_pieces())
            churned.digest()
    for n, key in enumerate(reversed(keys)):
        if key == b"n":
            churned.apply(cmd_del(key), 0)
            churned.apply(cmd_incr(key, 40), 0)
            churned.apply(cmd_incr(key, 2), 0)
        else:
            churned.apply(cmd_set(key, state[key]), 0)
        churned.apply(cmd_del(b"doomed:%d" % n), 0)
        if n % 101 == 0:
            churned.snapshot()
    assert churned.footprint() == len(state)

    restored = KVStore()
    restored.restore(churned.snapshot())
    restored.apply(cmd_set(b"k1", b"detour"), 0)
    list(restored.state_pieces())
    restored.apply(cmd_set(b"k1", state[b"k1"]), 0)

    for other in (churned, restored):
        assert list(other.state_pieces()) == list(plain.state_pieces()), "same pieces, same cut"
        assert other.digest() == plain.digest()


def test_pieces_after_a_restore_equal_pieces_before() -> None:
    state = target_state()
    source = KVStore()
    for key, value in state.items():
        source.apply(cmd_set(key, value), 0)
    source.apply(cmd_del(*keys_in_bucket(1234, 2, prefix=b"c1234-")), 0)
    before = list(source.state_pieces())
    stream = b"".join(before)
    rng = random.Random(8)
    copy = KVStore()
    copy.apply(cmd_set(b"stale", b"gone"), 0)
    copy.restore_begin()
    pos = 0
    while pos < len(stream):
        step = rng.choice((1, 3, 50, 1000, 20000))
        copy.restore_feed(stream[pos : pos + step])
        pos += step
    copy.restore_finish()
    encoded = copy.buckets_encoded
    assert list(copy.state_pieces()) == before
    assert copy.digest() == source.digest()
    assert copy.buckets_encoded == encoded, "the restore built the caches from the stream"
    assert copy._bucket_bytes == source._bucket_bytes
    assert copy._bucket_keys == source._bucket_keys
    assert copy._span_bytes == source._span_bytes
    for command in random_commands(seed=31, count=200):
        assert copy.apply(command, 0) == source.apply(command, 0)
    assert list(copy.state_pieces()) == list(source.state_pieces())
    assert copy.digest() == source.digest()


def test_a_write_reencodes_exactly_its_bucket() -> None:
    kv = KVStore()
    for j in range(1000):
        kv.apply(cmd_set(b"k%d" % j, b"v%d" % j), 0)
    pieces = list(kv.state_pieces())
    digest = kv.digest()
    cached = list(kv._bucket_bytes)
    encoded = kv.buckets_encoded

    # Reads and writes that change nothing re-encode nothing.
    for command in (
        cmd_get(b"k1"),
        cmd_set(b"k1", b"v1"),
        cmd_del(b"missing"),
        cmd_set(b"k2", b"v" * (MAX_VALUE_BYTES + 1)),
    ):
        kv.apply(command, 0)
    assert list(kv.state_pieces()) == pieces and kv.digest() is digest
    assert kv.buckets_encoded == encoded

    kv.apply(cmd_set(b"k17", b"new"), 0)
    kv.apply(cmd_set(b"k17", b"newer"), 0)  # twice in one bucket: encoded once
    written = bucket_of(b"k17")
    changed = list(kv.state_pieces())
    assert changed != pieces and kv.digest() != digest
    assert kv.buckets_encoded == encoded + 1
    assert kv._bucket_bytes[written] != cached[written]
    assert all(kv._bucket_bytes[b] is cached[b] for b in range(BUCKETS) if b != written)
    assert b"".join(changed) == reference_stream(
        {**{b"k%d" % j: b"v%d" % j for j in range(1000)}, b"k17": b"newer"}
    )

    # digest() and state_pieces() share one encoding; a DEL re-encodes its bucket too.
    kv.apply(cmd_del(b"k18"), 0)
    kv.digest()
    list(kv.state_pieces())
    assert kv.buckets_encoded == encoded + 2
    list(kv.state_pieces())
    assert kv.buckets_encoded == encoded + 2


def test_emptied_buckets_leave_no_trace() -> None:
    kv = KVStore()
    keys = [*keys_in_bucket(77, 3), b"a", b"b"]
    for key in keys:
        kv.apply(cmd_set(key, key), 0)
    list(kv.state_pieces())
    kv.apply(cmd_del(*keys), 0)
    assert kv.snapshot() == KVStore().snapshot() and kv.digest() == KVStore().digest()
    assert kv._bucket_keys == KVStore()._bucket_keys


def test_shared_buckets_restore_from_any_cut() -> None:
    state = {key: b"v" + key for key in keys_in_bucket(5, 3) + keys_in_bucket(6, 2)}
    state[b"alone"] = b""
    kv = KVStore()
    for key in sorted(state, reverse=True):
        kv.apply(cmd_set(key, state[key]), 0)
    stream = kv.snapshot()
    assert stream == reference_stream(state)
    for cut in range(len(stream) + 1):
        copy = KVStore()
        copy.restore_begin()
        copy.restore_feed(stream[:cut])
        copy.restore_feed(stream[cut:])
        copy.restore_finish()
        assert list(copy.state_pieces()) == list(kv.state_pieces())
        assert copy.digest() == kv.digest()


def _stream_of(entries: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray(KVStore().snapshot()[:8] + len(entries).to_bytes(4, "big"))
    for key, value in entries:
        out += len(key).to_bytes(2, "big") + key + len(value).to_bytes(4, "big") + value
    return bytes(out)


def test_restore_refuses_streams_out_of_canonical_order() -> None:
    # two keys, a < b, with bucket_of(b) < bucket_of(a): canonical order is b, a
    a, b = next(
        (x, y)
        for x, y in ((b"x%d" % i, b"x%d" % (i + 1)) for i in range(1000))
        if bucket_of(y) < bucket_of(x)
    )
    same = sorted(keys_in_bucket(9, 2))
    good = _stream_of([(b, b"1"), (a, b"2")])
    for bad, fragment in (
        (_stream_of([(a, b"2"), (b, b"1")]), "canonical order"),  # key order (version 1's)
        (_stream_of([(same[1], b""), (same[0], b"")]), "canonical order"),  # within a bucket
        (_stream_of([(same[0], b""), (same[0], b"")]), "canonical order"),  # a duplicate
        (b"ubftkv\x00\x01" + good[8:], "not a kv snapshot"),  # version 1
    ):
        kv = KVStore()
        with pytest.raises(ValueError, match=fragment):
            kv.restore(bad)
    kv = KVStore()
    kv.restore(good)
    assert kv.snapshot() == good and kv.snapshot() == reference_stream({a: b"2", b: b"1"})


def test_large_buckets_and_spans_stay_within_piece_bounds() -> None:
    from ubft.apps.kv import MAX_PIECE_BYTES, PIECE_BYTES

    state: dict[bytes, bytes] = {}
    for i, key in enumerate(keys_in_bucket(300, 4)):  # one bucket of ~150 KiB
        state[key] = bytes([i]) * (MAX_VALUE_BYTES - i)
    for i, key in enumerate(keys_in_bucket(301, 2)):  # a neighbour just over PIECE_BYTES
        state[key] = bytes([i]) * (PIECE_BYTES // 2 + 10)
    for j in range(1500):  # spans of over PIECE_BYTES made of small buckets
        state[b"s%d" % j] = bytes([j % 256]) * 300
    kv = KVStore()
    for key, value in state.items():
        kv.apply(cmd_set(key, value), 0)
    pieces = list(kv.state_pieces())
    assert b"".join(pieces) == reference_stream(state)
    assert max(map(len, pieces)) <= MAX_PIECE_BYTES
    big = sum(len(b) > PIECE_BYTES for b in kv._bucket_bytes)
    assert big == 2
    assert sum(len(p) < PIECE_BYTES for p in pieces[:-1]) <= 2 * big
    copy = KVStore()
    copy.restore_begin()
    for piece in pieces:
        copy.restore_feed(piece)
    copy.restore_finish()
    assert list(copy.state_pieces()) == pieces and copy.digest() == kv.digest()


def test_random_histories_match_the_reference_stream() -> None:
    from ubft.apps.kv import MAX_PIECE_BYTES

    rng = random.Random(12)
    pool = [*keys_in_bucket(40, 4), *keys_in_bucket(41, 3), *(b"r%d" % i for i in range(60))]
    kv = KVStore()
    model: dict[bytes, bytes] = {}
    for step in range(400):
        key = rng.choice(pool)
        roll = rng.random()
        if roll < 0.25:
            kv.apply(cmd_del(key), 0)
            model.pop(key, None)
        else:
            size = rng.choice((0, 5, 40, 3000, 20000)) if roll < 0.95 else MAX_VALUE_BYTES
            value = rng.randbytes(size)
            kv.apply(cmd_set(key, value), 0)
            model[key] = value
        if step % rng.choice((1, 3, 17)) == 0:
            pieces = list(kv.state_pieces())
            assert b"".join(pieces) == reference_stream(model)
            assert max(map(len, pieces)) <= MAX_PIECE_BYTES
            assert kv._span_bytes == [
                sum(map(len, kv._bucket_bytes[lo : lo + 256])) for lo in range(0, BUCKETS, 256)
            ]
        if step % 50 == 0:
            fresh = KVStore()
            fresh.restore(reference_stream(model))
            assert fresh.digest() == kv.digest()
            assert list(fresh.state_pieces()) == list(kv.state_pieces())
