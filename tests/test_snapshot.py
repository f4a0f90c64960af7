"""Checkpoint snapshots in chunks (PROTOCOL.md section 4, "Checkpoints" and "State transfer and
catch-up"): canonical chunking and digests, the client-table codec, and the restorer that takes
chunks in any order against a certified chunk list."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from ubft.apps.kv import MAX_PIECE_BYTES, KVStore, bucket_of, cmd_del, cmd_incr, cmd_set
from ubft.replica.core.config import ClusterConfig, ProtocolParams
from ubft.replica.core.crypto import digest
from ubft.replica.core.request_log import (
    KEY_HISTORY,
    REPLY_TOO_LARGE,
    RequestLog,
    TableDecodeError,
)
from ubft.replica.core.snapshot import (
    Snapshot,
    SnapshotBuilder,
    SnapshotError,
    SnapshotRestorer,
    build_snapshot,
    check_chunk_list,
    decode_config,
    encode_config,
    rest_digest,
    snapshot_digest,
)

MakeCluster = Callable[..., tuple[ClusterConfig, Any]]
CHUNK = 1024  # small chunks: a few hundred keys already span many
WINDOW = 4
MAX_REPLY = 64
MAX_CLIENTS = 4


@pytest.fixture
def config(make_cluster: MakeCluster) -> ClusterConfig:
    cfg, _ = make_cluster(
        clients=2,
        client_window=WINDOW,
        max_reply_bytes=MAX_REPLY,
        max_clients=MAX_CLIENTS,
        chunk_size=CHUNK,
    )
    return cfg


def _key(i: int) -> bytes:
    return bytes([i]) * 32


def make_log(config: ClusterConfig) -> RequestLog:
    p = config.params
    return RequestLog(
        {100: _key(100), 101: _key(101)},
        p.client_window,
        p.max_reply_bytes,
        admin_key=bytes.fromhex(config.admin_public_key),
        max_clients=p.max_clients,
    )


def busy_log(config: ClusterConfig) -> RequestLog:
    """A table with every kind of checkpointed state: admission history, retired and pruned
    ids, executed ids above h, replies (one replaced by REPLY_TOO_LARGE), the admin's."""
    log = make_log(config)
    for x in (1, 2, 4):
        assert log.execute(100, x)[0] == "execute"
        log.record(100, x, b"r%d" % x)
    log.record(101, 1, b"x" * (MAX_REPLY + 1))
    assert log.register(102, _key(102)) is None
    assert log.register(103, _key(103)) is None
    assert log.deregister(103) is None
    assert log.register(103, _key(113)) is None, "a new key is a new identity"
    for cid, key in ((102, None), (103, None), (104, 104), (104, None), (105, 105)):
        assert (log.deregister(cid) if key is None else log.register(cid, _key(key))) is None
    assert log.deregister(105) is None
    assert log.register(106, _key(106)) is None
    assert log.deregister(106) is None  # the 5th retired id pushes the oldest (102) out
    log.record(0, 1, b"OK")
    log.admin_s = 7
    assert len(log.retired) == MAX_CLIENTS and 102 not in log.used_keys
    assert log.id_watermark == 106 and log.used_keys[103] == [_key(103), _key(113)]
    return log


def kv_with(keys: int, value_bytes: int = 24, seed: int = 1) -> KVStore:
    kv = KVStore()
    order = list(range(keys))
    random.Random(seed).shuffle(order)
    for j in order:
        kv.apply(cmd_set(b"key:%06d" % j, bytes([j % 251]) * value_bytes), 0)
    return kv


def restore_all(snap: Snapshot, c: int = 128, app: KVStore | None = None) -> tuple[Any, KVStore]:
    restorer = SnapshotRestorer(CHUNK)
    assert restorer.offer_list(c, snap.digest, snap.chunk_digests) is None
    for i, chunk in enumerate(snap.chunks):
        assert restorer.add_chunk(i, chunk) is None
    assert restorer.missing() == [] and restorer.complete
    target = app if app is not None else KVStore()
    return restorer.restore(target), target


# ------------------------------------------------------------------------------ configuration


def test_config_encoding_is_canonical(config: ClusterConfig, make_cluster: MakeCluster) -> None:
    raw = encode_config(config)
    assert decode_config(raw) == config
    assert encode_config(decode_config(raw)) == raw
    assert raw.isascii() and b" " not in raw and b'"chunk_size":1024' in raw
    # the same configuration built another way gives the same bytes
    again = ClusterConfig.model_validate_json(config.model_dump_json(indent=2))
    assert encode_config(again) == raw
    other, _ = make_cluster(clients=2, client_window=WINDOW)
    assert encode_config(other) != raw
    with pytest.raises(SnapshotError, match="canonical"):
        decode_config(config.model_dump_json(indent=1).encode())
    for bad in (b"", b"{}", b"\xff", raw[:-1]):
        with pytest.raises(SnapshotError):
            decode_config(bad)


def test_chunk_size_is_a_bounded_protocol_parameter() -> None:
    assert ProtocolParams().chunk_size == 64 * 1024
    assert ProtocolParams(chunk_size=1024).chunk_size == 1024
    for bad in (0, 1023, (1 << 20) + 1):
        with pytest.raises(ValidationError, match="chunk_size"):
            ProtocolParams(chunk_size=bad)


# ------------------------------------------------------------------------------- client table


def test_table_round_trip(config: ClusterConfig) -> None:
    log = busy_log(config)
    raw = log.table_bytes()
    p = config.params
    copy = RequestLog.from_table_bytes(raw, p.client_window, p.max_reply_bytes, p.max_clients)
    assert copy.table_bytes() == raw
    assert (copy.admin_s, copy.id_watermark) == (7, 106)
    assert copy.used_keys == log.used_keys and copy.retired == log.retired
    assert copy.clients.keys() == log.clients.keys()
    for cid, e in log.clients.items():
        c = copy.clients[cid]
        assert (c.key, c.h, c.executed) == (e.key, e.h, e.executed)
        assert list(c.replies.items()) == list(e.replies.items()), "execution order kept"
    assert copy.clients[101].replies[1] == REPLY_TOO_LARGE
    # and both go on identically (reply eviction order, admission rules)
    for t in (log, copy):
        for x in range(2, 2 + WINDOW):
            assert t.execute(101, x)[0] == "execute"
            t.record(101, x, b"a%d" % x)  # evicts the oldest replies
        assert t.register(102, _key(102)) == "client id retired"
        assert t.register(105, _key(105)) == "key already used for this client id"
        assert t.register(103, _key(123)) is None
    assert copy.table_bytes() == log.table_bytes()


def test_table_decoder_rejects_every_truncation_and_extension(config: ClusterConfig) -> None:
    raw = busy_log(config).table_bytes()
    p = config.params
    for cut in range(len(raw)):
        with pytest.raises(TableDecodeError):
            RequestLog.from_table_bytes(raw[:cut], WINDOW, MAX_REPLY, MAX_CLIENTS)
    with pytest.raises(TableDecodeError, match="trailing"):
        RequestLog.from_table_bytes(raw + b"\x00", WINDOW, MAX_REPLY, MAX_CLIENTS)
    with pytest.raises(TableDecodeError, match="max_reply"):
        RequestLog.from_table_bytes(raw, WINDOW, 1, MAX_CLIENTS)
    with pytest.raises(TableDecodeError):
        RequestLog.from_table_bytes(raw, 1, p.max_reply_bytes, MAX_CLIENTS)


def test_table_decoder_is_canonical_under_byte_flips(config: ClusterConfig) -> None:
    """Any single-byte change either fails with TableDecodeError or decodes to a table whose
    encoding is exactly the changed bytes: one encoding per table."""
    raw = busy_log(config).table_bytes()
    rng = random.Random(3)
    for pos in range(len(raw)):
        for value in {raw[pos] ^ 1, raw[pos] ^ 0x80, rng.randrange(256)} - {raw[pos]}:
            bad = raw[:pos] + bytes([value]) + raw[pos + 1 :]
            try:
                decoded = RequestLog.from_table_bytes(bad, WINDOW, MAX_REPLY, MAX_CLIENTS)
            except TableDecodeError:
                continue
            assert decoded.table_bytes() == bad


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_table_decoder_raises_only_its_error(data: bytes) -> None:
    try:
        decoded = RequestLog.from_table_bytes(data, WINDOW, MAX_REPLY, MAX_CLIENTS)
    except TableDecodeError:
        return
    assert decoded.table_bytes() == data


def test_table_invariants_are_checked(config: ClusterConfig) -> None:
    log = make_log(config)
    log.used_keys[100] = [_key(1)] * 2  # duplicate key in a history
    with pytest.raises(TableDecodeError, match="duplicate key"):
        RequestLog.from_table_bytes(log.table_bytes(), WINDOW, MAX_REPLY, MAX_CLIENTS)
    log = make_log(config)
    log.used_keys[100] = [_key(i) for i in range(KEY_HISTORY + 1)]
    with pytest.raises(TableDecodeError, match="history"):
        RequestLog.from_table_bytes(log.table_bytes(), WINDOW, MAX_REPLY, MAX_CLIENTS)
    log = make_log(config)
    log.clients[100].executed = {1}  # h + 1 executed would have advanced h
    with pytest.raises(TableDecodeError, match="outside"):
        RequestLog.from_table_bytes(log.table_bytes(), WINDOW, MAX_REPLY, MAX_CLIENTS)
    log = make_log(config)
    log.clients[100].replies[3] = b"never executed"
    with pytest.raises(TableDecodeError, match="not executed"):
        RequestLog.from_table_bytes(log.table_bytes(), WINDOW, MAX_REPLY, MAX_CLIENTS)
    log = make_log(config)
    log.retired.append(100)  # retired yet registered
    with pytest.raises(TableDecodeError, match="remembered"):
        RequestLog.from_table_bytes(log.table_bytes(), WINDOW, MAX_REPLY, MAX_CLIENTS)


# ------------------------------------------------------------------------------- build / digest


def test_round_trip_of_a_store_spanning_many_chunks(config: ClusterConfig) -> None:
    kv = kv_with(600)
    kv.apply(cmd_incr(b"counter", 41), 0)
    log = busy_log(config)
    snap = build_snapshot(config, 123_456_789, log.table_bytes(), kv, CHUNK)
    assert len(snap.chunks) > 20
    assert snap.chunks[0] == encode_config(config)
    assert all(len(c) == CHUNK for c in snap.chunks[1:-1]) and 0 < len(snap.chunks[-1]) <= CHUNK
    assert snap.chunk_digests == tuple(digest(c) for c in snap.chunks)
    assert snap.rest_digest == digest(b"".join(snap.chunk_digests[1:]))
    assert snap.digest == digest(snap.chunk_digests[0] + snap.rest_digest)
    assert snap.digest == snapshot_digest(
        snap.chunk_digests[0], rest_digest(snap.chunk_digests[1:])
    )
    stream = b"".join(snap.chunks[1:])
    table = log.table_bytes()
    assert stream[:8] == (123_456_789).to_bytes(8, "big")
    assert stream[8:16] == len(table).to_bytes(8, "big") and stream[16 : 16 + len(table)] == table
    assert stream[16 + len(table) :] == kv.snapshot()

    stale = KVStore()
    stale.apply(cmd_set(b"stale", b"gone"), 0)
    restored, app = restore_all(snap, app=stale)
    assert (restored.c, restored.digest) == (128, snap.digest)
    assert restored.config == config and restored.clock == 123_456_789
    assert restored.table.table_bytes() == table
    assert app.digest() == kv.digest() and app.snapshot() == kv.snapshot()
    again = build_snapshot(
        restored.config, restored.clock, restored.table.table_bytes(), app, CHUNK
    )
    assert again.chunks == snap.chunks and again.digest == snap.digest


def test_same_commands_in_other_insertion_orders_give_identical_digests(
    config: ClusterConfig,
) -> None:
    a, b = kv_with(400, seed=1), kv_with(400, seed=2)
    assert list(a._data) != list(b._data), "dicts filled in different orders"
    # churn on b: delete and re-add keys, so its dict order differs further
    for j in range(0, 400, 7):
        b.apply(cmd_del(b"key:%06d" % j), 0)
    for j in reversed(range(0, 400, 7)):
        b.apply(cmd_set(b"key:%06d" % j, bytes([j % 251]) * 24), 0)
    table = make_log(config).table_bytes()
    sa = build_snapshot(config, 5, table, a, CHUNK)
    sb = build_snapshot(config, 5, table, b, CHUNK)
    assert sa.chunks == sb.chunks and sa.digest == sb.digest
    assert build_snapshot(config, 6, table, b, CHUNK).digest != sa.digest, "the clock counts"


def test_the_cut_into_pieces_does_not_matter(config: ClusterConfig) -> None:
    kv = kv_with(300)
    cfg = encode_config(config)
    table = busy_log(config).table_bytes()
    reference = build_snapshot(cfg, 9, table, kv, CHUNK)
    stream = kv.snapshot()
    rng = random.Random(5)
    for cuts in (
        [len(stream)],
        [1] * 3000,
        [CHUNK] * 20,
        [rng.randrange(1, 3000) for _ in range(40)],
    ):
        builder = SnapshotBuilder(cfg, 9, table, CHUNK)
        pos = 0
        for n in cuts:
            builder.feed(stream[pos : pos + n])
            pos += n
        builder.feed(stream[pos:])
        assert builder.finish().chunks == reference.chunks


def test_rest_stream_an_exact_multiple_of_chunk_size(config: ClusterConfig) -> None:
    table = make_log(config).table_bytes()
    kv = KVStore()
    kv.apply(cmd_set(b"k", b""), 0)
    rest_len = 16 + len(table) + len(kv.snapshot())
    pad = (-rest_len) % CHUNK + 3 * CHUNK
    kv.apply(cmd_set(b"k", b"v" * pad), 0)
    snap = build_snapshot(config, 0, table, kv, CHUNK)
    assert sum(len(c) for c in snap.chunks[1:]) % CHUNK == 0
    assert [len(c) for c in snap.chunks[1:]] == [CHUNK] * (len(snap.chunks) - 1), "no empty tail"
    _, app = restore_all(snap)
    assert app.snapshot() == kv.snapshot()


def test_empty_state(config: ClusterConfig) -> None:
    log = RequestLog({}, WINDOW, MAX_REPLY, max_clients=MAX_CLIENTS)
    snap = build_snapshot(config, 0, log.table_bytes(), KVStore(), CHUNK)
    assert len(snap.chunks) == 2, "configuration, then one short chunk"
    restored, app = restore_all(snap)
    assert app.digest() == KVStore().digest() and restored.table.clients == {}
    # a chunk larger than everything gives one rest chunk too
    big = build_snapshot(config, 0, log.table_bytes(), kv_with(10), 1 << 20)
    assert len(big.chunks) == 2


def test_builder_arguments_are_checked(config: ClusterConfig) -> None:
    cfg = encode_config(config)
    with pytest.raises(ValueError):
        SnapshotBuilder(cfg, -1, b"", CHUNK)
    with pytest.raises(ValueError):
        SnapshotBuilder(cfg, 1 << 64, b"", CHUNK)
    with pytest.raises(ValueError):
        SnapshotBuilder(b"", 0, b"", CHUNK)
    with pytest.raises(ValueError):
        SnapshotBuilder(cfg, 0, b"", 0)
    builder = SnapshotBuilder(cfg, 0, b"", CHUNK)
    builder.finish()
    with pytest.raises(RuntimeError):
        builder.feed(b"x")


def test_serving_by_index_and_by_digest(config: ClusterConfig) -> None:
    snap = build_snapshot(config, 0, make_log(config).table_bytes(), kv_with(200), CHUNK)
    assert snap.chunk(0) == snap.config_chunk and snap.chunk(len(snap.chunks)) is None
    assert snap.chunk(-1) is None
    last = len(snap.chunks) - 1
    assert snap.index_of(snap.chunk_digests[last]) == last
    assert snap.index_of(bytes(32)) is None
    assert snap.size() == sum(len(c) for c in snap.chunks)


# ----------------------------------------------------------------------------------- restorer


@pytest.fixture
def snap(config: ClusterConfig) -> Snapshot:
    return build_snapshot(config, 77, busy_log(config).table_bytes(), kv_with(300), CHUNK)


def test_out_of_order_and_duplicate_chunks(snap: Snapshot) -> None:
    restorer = SnapshotRestorer(CHUNK)
    assert restorer.c is None and restorer.add_chunk(0, snap.chunks[0]) == "no chunk list"
    assert restorer.offer_list(128, snap.digest, snap.chunk_digests) is None
    assert restorer.c == 128 and restorer.missing() == list(range(len(snap.chunks)))
    order = list(range(len(snap.chunks)))
    random.Random(9).shuffle(order)
    for n, i in enumerate(order):
        assert restorer.add_chunk(i, snap.chunks[i]) is None
        assert restorer.add_chunk(i, snap.chunks[i]) is None, "a duplicate is ignored"
        assert i not in restorer.missing() and len(restorer.missing()) == len(order) - n - 1
    assert restorer.held_bytes() <= snap.size()
    kv = KVStore()
    restored = restorer.restore(kv)
    assert restored.clock == 77 and kv.snapshot() == kv_with(300).snapshot()


def test_tampered_chunks_are_refused_with_a_reason(snap: Snapshot) -> None:
    restorer = SnapshotRestorer(CHUNK)
    assert restorer.offer_list(128, snap.digest, snap.chunk_digests) is None
    good = snap.chunks[3]
    flipped = good[:10] + bytes([good[10] ^ 1]) + good[11:]
    assert restorer.add_chunk(3, flipped) == "chunk digest does not match the list"
    assert restorer.add_chunk(4, good) == "chunk digest does not match the list", "wrong index"
    assert restorer.add_chunk(3, good + b"x") == "chunk larger than chunk_size"
    assert restorer.add_chunk(len(snap.chunks), good) == "chunk index out of range"
    assert restorer.add_chunk(-1, good) == "chunk index out of range"
    assert 3 in restorer.missing()
    with pytest.raises(SnapshotError, match="incomplete"):
        restorer.restore(KVStore())
    assert restorer.add_chunk(3, good) is None and 3 not in restorer.missing()


def test_a_list_that_does_not_match_the_digest_is_refused(snap: Snapshot) -> None:
    restorer = SnapshotRestorer(CHUNK)
    digests = list(snap.chunk_digests)
    swapped = [digests[0], digests[2], digests[1], *digests[3:]]
    assert restorer.offer_list(128, snap.digest, swapped) is not None
    assert restorer.offer_list(128, snap.digest, digests[:-1]) is not None
    assert restorer.offer_list(128, snap.digest, [*digests, digest(b"")]) is not None
    assert restorer.offer_list(128, snap.digest, []) == "empty chunk list"
    assert restorer.offer_list(128, snap.digest, [d[:31] for d in digests]) is not None
    assert restorer.offer_list(128, digest(b"other"), digests) is not None
    assert check_chunk_list(snap.digest, digests) is None
    assert restorer.c is None, "nothing accepted"
    assert restorer.offer_list(128, snap.digest, digests) is None
    assert restorer.offer_list(128, snap.digest, digests) is None, "the same list again"


def test_switching_to_a_newer_list_keeps_matching_chunks(config: ClusterConfig) -> None:
    kv = kv_with(300)
    table = make_log(config).table_bytes()
    old = build_snapshot(config, 10, table, kv, CHUNK)
    kv.apply(cmd_set(b"zzz-last", b"appended"), 0)  # changes only the stream's tail
    new = build_snapshot(config, 10, table, kv, CHUNK)
    shared = set(old.chunk_digests) & set(new.chunk_digests)
    assert len(shared) >= len(new.chunks) - 3

    restorer = SnapshotRestorer(CHUNK)
    assert restorer.offer_list(128, old.digest, old.chunk_digests) is None
    for i, chunk in enumerate(old.chunks):
        assert restorer.add_chunk(i, chunk) is None
    assert restorer.offer_list(64, new.digest, new.chunk_digests) is not None, "older c"
    assert restorer.offer_list(128, new.digest, new.chunk_digests) is not None, "same c"
    assert restorer.offer_list(256, new.digest, new.chunk_digests) is None
    assert restorer.c == 256 and restorer.digest == new.digest
    missing = restorer.missing()
    assert missing == [i for i, d in enumerate(new.chunk_digests) if d not in shared]
    assert 0 not in missing and 0 < len(missing) <= 3
    assert restorer.held_bytes() <= sum(len(c) for c in new.chunks)
    for i in missing:
        assert restorer.add_chunk(i, new.chunks[i]) is None
    app = KVStore()
    assert restorer.restore(app).c == 256 and app.snapshot() == kv.snapshot()


def test_a_certified_but_malformed_snapshot_raises_only_snapshot_error(
    config: ClusterConfig,
) -> None:
    """Chunk lists are certified, so this is a bug elsewhere: still one error type, and the
    application is left as it was."""
    cfg = encode_config(config)
    good = make_log(config).table_bytes()
    kv_stream = kv_with(50).snapshot()
    cases = [
        (cfg, good, kv_stream[:-1]),  # truncated application state
        (cfg, good, kv_stream + b"\x00"),  # trailing bytes
        (cfg, good[:-1], kv_stream),  # table one byte short
        (cfg, b"garbage", kv_stream),
        (b"{}", good, kv_stream),  # not a configuration
        (cfg.replace(b":", b": ", 1), good, kv_stream),  # not canonical
    ]
    for config_bytes, table, app_stream in cases:
        builder = SnapshotBuilder(config_bytes, 0, table, CHUNK)
        builder.feed(app_stream)
        snap = builder.finish()
        target = KVStore()
        target.apply(cmd_set(b"keep", b"me"), 0)
        before = target.snapshot()
        with pytest.raises(SnapshotError):
            restore_all(snap, app=target)
        assert target.snapshot() == before


def _certified(chunks: list[bytes]) -> Snapshot:
    """A snapshot made of exactly these chunks (whatever their bytes)."""
    digests = tuple(digest(c) for c in chunks)
    rest = rest_digest(digests[1:])
    return Snapshot(tuple(chunks), digests, rest, snapshot_digest(digests[0], rest))


_EMPTY_TABLE = RequestLog({}, WINDOW, MAX_REPLY, max_clients=MAX_CLIENTS).table_bytes()
_KV_HEAD = KVStore().snapshot()[:8]  # the state stream's magic


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.integers(0, 40), st.booleans(), st.booleans())
def test_restoring_arbitrary_rest_bytes_raises_only_snapshot_error(
    rest: bytes, table_len: int, valid_table: bool, kv_head: bool
) -> None:
    """Garbage at every depth (table, then application stream) fails only with SnapshotError."""
    table = _EMPTY_TABLE if valid_table else b""
    head = bytes(8) + (len(table) if valid_table else table_len).to_bytes(8, "big") + table
    stream = head + (_KV_HEAD if kv_head else b"") + rest
    chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]
    snap = _certified([_CONFIG_BYTES, *chunks])
    restorer = SnapshotRestorer(CHUNK)
    assert restorer.offer_list(1, snap.digest, snap.chunk_digests) is None
    for i, chunk in enumerate(snap.chunks):
        assert restorer.add_chunk(i, chunk) is None
    app = KVStore()
    try:
        restored = restorer.restore(app)
    except SnapshotError:
        assert app.snapshot() == KVStore().snapshot()
    else:
        assert b"".join(app.state_pieces()) == stream[len(head) :]
        assert restored.table.table_bytes() == table


def _config_bytes() -> bytes:
    """A valid configuration without fixtures (hypothesis tests take none)."""
    from nacl.signing import SigningKey

    def key(i: int) -> str:
        return bytes(SigningKey(bytes([i]) * 32).verify_key).hex()

    cfg = ClusterConfig.model_validate(
        {
            "cluster_id": "fuzz",
            "members": [{"id": i, "public_key": key(i + 1)} for i in range(3)],
            "memory_nodes": [{"id": 0, "public_key": key(9)}],
            "admin_public_key": key(10),
            "params": {"client_window": WINDOW, "max_reply_bytes": MAX_REPLY},
        }
    )
    return encode_config(cfg)


_CONFIG_BYTES = _config_bytes()


def test_restore_rejects_chunks_not_cut_at_chunk_size(config: ClusterConfig) -> None:
    snap = build_snapshot(config, 0, make_log(config).table_bytes(), kv_with(100), CHUNK)
    # recut the same stream at another size: a consistent list, but not this cluster's cut
    other = build_snapshot(config, 0, make_log(config).table_bytes(), kv_with(100), CHUNK // 2)
    restorer = SnapshotRestorer(CHUNK)
    assert restorer.offer_list(1, other.digest, other.chunk_digests) is None
    for i, chunk in enumerate(other.chunks):
        assert restorer.add_chunk(i, chunk) is None
    with pytest.raises(SnapshotError, match="chunk_size"):
        restorer.restore(KVStore())
    assert other.digest != snap.digest


# ------------------------------------------------------------------------------------- memory


def test_no_step_holds_the_whole_application_state(config: ClusterConfig) -> None:
    kv = KVStore()
    for j in range(300):
        kv.apply(cmd_set(b"big:%04d" % j, bytes([j % 256]) * 8000), 0)
    pieces = list(kv.state_pieces())
    total = sum(len(p) for p in pieces)
    assert total > 2_000_000
    assert max(len(p) for p in pieces) <= MAX_PIECE_BYTES < total // 20
    builder = SnapshotBuilder(encode_config(config), 0, make_log(config).table_bytes(), CHUNK)
    for piece in kv.state_pieces():
        builder.feed(piece)
        assert len(builder._buf) < CHUNK, "at most one partial chunk is buffered"
    snap = builder.finish()
    assert max(len(c) for c in snap.chunks[1:]) == CHUNK
    # restoring streams chunk by chunk: the store's parse buffer stays below a chunk + an entry
    app = KVStore()
    restorer = SnapshotRestorer(CHUNK)
    assert restorer.offer_list(1, snap.digest, snap.chunk_digests) is None
    for i, chunk in enumerate(snap.chunks):
        restorer.add_chunk(i, chunk)
    largest = 0
    original_feed = app.restore_feed

    def watching_feed(data: bytes) -> None:
        nonlocal largest
        largest = max(largest, len(data))
        original_feed(data)
        reader = app._restoring
        assert reader is not None and len(reader._buf) < CHUNK + 8100

    app.restore_feed = watching_feed  # type: ignore[method-assign]
    restorer.restore(app)
    assert largest <= CHUNK
    assert app.digest() == kv.digest()


# ------------------------------------------------------------------------- incremental checkpoints


def test_a_checkpoint_reencodes_only_the_buckets_written_since_the_last(
    config: ClusterConfig,
) -> None:
    kv = kv_with(2000)
    table = make_log(config).table_bytes()
    first = build_snapshot(config, 1, table, kv, CHUNK)
    encoded = kv.buckets_encoded
    rewritten = [b"key:%06d" % j for j in range(0, 2000, 400)]
    for key in rewritten:
        kv.apply(cmd_set(key, b"rewritten"), 0)
    second = build_snapshot(config, 2, table, kv, CHUNK)
    assert kv.buckets_encoded - encoded == len({bucket_of(key) for key in rewritten})
    assert second.digest != first.digest
    assert build_snapshot(config, 2, table, kv, CHUNK).chunks == second.chunks
    assert kv.buckets_encoded - encoded == len({bucket_of(key) for key in rewritten})

    _, copy = restore_all(second)
    assert copy.buckets_encoded == 0, "a restore rebuilds the caches without encoding"
    assert build_snapshot(config, 2, table, copy, CHUNK).chunks == second.chunks
    for app in (kv, copy):
        app.apply(cmd_del(b"key:000001"), 0)
        app.apply(cmd_incr(b"counter", 5), 0)
    third = build_snapshot(config, 3, table, kv, CHUNK)
    assert build_snapshot(config, 3, table, copy, CHUNK).chunks == third.chunks
    assert copy.digest() == kv.digest()
