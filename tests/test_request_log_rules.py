"""PROTOCOL.md section 4, "Admission" and "Exactly-once execution": the client table of
``RequestLog``, one rule per test. Registration (reserved id, key history, retired ids,
max_clients), deregistration (bounded memory of retired ids), the reply cache, and every check
``from_table_bytes`` makes on a checkpointed table (the decoder must refuse, with its reason,
every table execution could never have produced).
"""

from __future__ import annotations

import struct

import pytest
from ubft.replica.core.crypto import Signer, digest
from ubft.replica.core.request_log import (
    REPLY_TOO_LARGE,
    RequestLog,
    TableDecodeError,
)

ADMIN = 0
A = 100
B = 101


def _key(seed: int) -> bytes:
    return Signer(seed.to_bytes(32, "big")).public_key


def _log(
    clients: dict[int, bytes] | None = None, max_clients: int = 4, window: int = 4
) -> RequestLog:
    if clients is None:
        clients = {A: _key(1), B: _key(2)}
    return RequestLog(clients, window, 64, admin_key=_key(99), max_clients=max_clients)


# ============================================================ construction


def test_the_admin_id_is_reserved_in_the_genesis_table() -> None:
    with pytest.raises(ValueError, match="reserved"):
        RequestLog({ADMIN: _key(1)}, 4, 64)


def test_genesis_clients_up_to_max_clients() -> None:
    assert RequestLog({1: _key(1), 2: _key(2)}, 4, 64, max_clients=2).registered() == 2
    with pytest.raises(ValueError, match="max_clients"):
        RequestLog({1: _key(1), 2: _key(2), 3: _key(3)}, 4, 64, max_clients=2)


def test_a_fresh_table_starts_at_admin_s_0() -> None:
    log = _log()
    assert log.admin_s == 0
    assert log.table_bytes()[:8] == bytes(8)


def test_registered_counts_clients_but_not_the_admin() -> None:
    assert _log().registered() == 2
    assert RequestLog({A: _key(1)}, 4, 64).registered() == 1
    assert RequestLog({}, 4, 64, admin_key=_key(9)).registered() == 0


# ============================================================ register


def test_the_admin_id_cannot_be_registered() -> None:
    assert _log().register(ADMIN, _key(5)) == "reserved client id"


def test_a_key_is_never_reused_for_an_id() -> None:
    log = _log()
    assert log.register(A, _key(1)) == "key already used for this client id"
    assert log.register(A, _key(5)) is None
    assert log.register(A, _key(1)) == "key already used for this client id"
    assert log.register(A, _key(5)) == "key already used for this client id"
    assert log.clients[A].key == _key(5)


def test_an_id_is_registered_with_at_most_8_keys() -> None:
    log = _log()
    for seed in range(10, 17):  # 7 rotations after the genesis key
        assert log.register(A, _key(seed)) is None
    assert log.used_keys[A] == [_key(1), *(_key(s) for s in range(10, 17))]
    assert log.register(A, _key(30)) == "key history full for this client id"
    assert log.clients[A].key == _key(16)


def test_a_new_key_is_a_fresh_table() -> None:
    log = _log()
    log.record(A, 1, b"r")
    assert log.clients[A].h == 1
    assert log.register(A, _key(5)) is None
    assert log.clients[A].h == 0 and log.clients[A].replies == {}


def test_an_unused_id_below_the_highest_registered_is_retired() -> None:
    log = _log({100: _key(1), 105: _key(2)})
    assert log.register(103, _key(3)) == "client id retired"
    assert log.register(106, _key(3)) is None
    assert log.register(104, _key(4)) == "client id retired"


def test_the_highest_id_itself_is_retired_once_forgotten() -> None:
    log = RequestLog({1: _key(1), 2: _key(2)}, 4, 64, max_clients=2)
    assert log.deregister(2) is None
    assert log.register(7, _key(7)) is None
    assert log.deregister(7) is None
    assert log.register(2, _key(20)) is None  # back from the retired list
    assert log.retired == [7]
    assert log.deregister(1) is None
    assert log.deregister(2) is None
    assert log.retired == [1, 2] and 7 not in log.used_keys  # 7 is forgotten
    assert log.id_watermark == 7
    assert log.register(7, _key(77)) == "client id retired"


def test_register_beyond_max_clients_fails_but_a_new_key_for_a_member_does_not() -> None:
    log = _log(max_clients=3)
    assert log.register(102, _key(3)) is None
    assert log.registered() == 3
    assert log.register(103, _key(4)) == "max_clients reached"
    assert log.register(A, _key(5)) is None
    assert log.registered() == 3


def test_a_deregistered_id_comes_back_with_a_new_key() -> None:
    log = _log()
    assert log.deregister(A) is None
    assert log.retired == [A]
    assert log.register(A, _key(1)) == "key already used for this client id"
    assert log.register(A, _key(5)) is None
    assert log.retired == [] and log.used_keys[A] == [_key(1), _key(5)]


# ============================================================ deregister


def test_deregister_of_the_admin_or_an_unknown_id_fails() -> None:
    log = _log()
    assert log.deregister(ADMIN) == "not registered"
    assert log.deregister(555) == "not registered"
    assert ADMIN in log.clients and log.retired == []


def test_only_the_last_max_clients_deregistered_ids_are_remembered() -> None:
    log = RequestLog({1: _key(1), 2: _key(2), 3: _key(3)}, 4, 64, max_clients=3)
    assert log.deregister(1) is None
    assert log.deregister(2) is None
    assert log.deregister(3) is None
    assert log.retired == [1, 2, 3] and sorted(log.used_keys) == [1, 2, 3]
    assert log.register(4, _key(4)) is None
    assert log.deregister(4) is None
    assert log.retired == [2, 3, 4] and sorted(log.used_keys) == [2, 3, 4]
    assert log.register(1, _key(50)) == "client id retired"


def test_key_footprint_counts_keys_and_retired_ids() -> None:
    log = _log()
    assert log.key_footprint() == 2
    log.register(A, _key(5))
    log.deregister(B)
    assert log.key_footprint() == 3 + 1


# ============================================================ requests and the reply cache


def test_a_signed_request_never_replaces_a_signed_one() -> None:
    log = _log()
    first = log.add(A, 1, b"p", b"s" * 64, 0)
    assert first is not None
    assert log.add(A, 1, b"q", b"t" * 64, 1) is None
    assert log.clients[A].pending[1].payload == b"p"


def test_early_echoes_of_an_executed_request_are_forgotten() -> None:
    log = _log()
    assert log.add_echo(A, 1, 1, digest(b"p")) is None
    assert log.add_echo(A, 3, 1, digest(b"r")) is None
    assert log.clients[A].early_echoes.keys() == {1, 3}
    log.record(A, 1, b"ok")
    assert log.clients[A].early_echoes.keys() == {3}
    log.record(A, 3, b"ok")
    assert log.clients[A].early_echoes == {}


def test_footprint_counts_every_held_item() -> None:
    log = RequestLog({A: _key(1)}, 4, 64)
    assert log.footprint() == 1
    log.record(A, 2, b"r")  # executed above h, and its reply
    assert log.footprint() == 1 + 1 + 1
    log.add(A, 3, b"p", b"", 0)
    log.add_echo(A, 3, 1, digest(b"p"))
    log.add_echo(A, 3, 2, digest(b"p"))
    assert log.footprint() == 3 + 1 + 2
    log.add_echo(A, 4, 1, digest(b"q"))
    assert log.footprint() == 6 + 1


def test_the_reply_of_max_reply_bytes_is_kept_one_more_is_replaced() -> None:
    log = RequestLog({A: _key(1)}, 4, 16)
    assert log.record(A, 1, b"x" * 16) == b"x" * 16
    assert log.record(A, 2, b"x" * 17) == REPLY_TOO_LARGE


# ============================================================ canonical table: decoding


def _table(
    admin_s: int = 0,
    watermark: int = 0,
    used: list[tuple[int, list[bytes]]] | None = None,
    retired: list[int] | None = None,
    clients: list[Client] | None = None,
    *,
    counts: dict[str, int] | None = None,
) -> bytes:
    """A client table in the canonical layout (``RequestLog.table_pieces``), built by hand;
    ``counts`` overrides a section's count to lie about it."""
    used = used or []
    retired = retired or []
    clients = clients or []
    counts = counts or {}
    out = struct.pack(">QI", admin_s, watermark)
    out += struct.pack(">I", counts.get("used", len(used)))
    for cid, keys in used:
        out += struct.pack(">IB", cid, counts.get("nkeys", len(keys)))
        for k in keys:
            out += struct.pack(">H", len(k)) + k
    out += struct.pack(">I", counts.get("retired", len(retired)))
    out += b"".join(struct.pack(">I", c) for c in retired)
    out += struct.pack(">I", counts.get("clients", len(clients)))
    for cid, key, h, executed, replies in clients:
        out += struct.pack(">IH", cid, len(key)) + key + struct.pack(">QI", h, len(executed))
        out += b"".join(struct.pack(">Q", x) for x in executed)
        out += struct.pack(">I", len(replies))
        for x, r in replies:
            out += struct.pack(">QI", x, len(r)) + r
    return out


K1, K2, K3 = _key(1), _key(2), _key(3)
Client = tuple[int, bytes, int, list[int], list[tuple[int, bytes]]]


def _decode(data: bytes, max_clients: int = 4, window: int = 4, max_reply: int = 64) -> RequestLog:
    return RequestLog.from_table_bytes(data, window, max_reply, max_clients)


def test_the_hand_built_layout_is_the_canonical_one() -> None:
    log = _log()
    log.record(A, 1, b"one")
    log.record(A, 3, b"three")
    log.register(B, K3)
    log.admin_s = 7
    built = _table(
        7,
        B,
        used=[(A, [K1]), (B, [K2, K3])],
        clients=[
            (ADMIN, _key(99), 0, [], []),
            (A, K1, 1, [3], [(1, b"one"), (3, b"three")]),
            (B, K3, 0, [], []),
        ],
    )
    assert log.table_bytes() == built
    back = _decode(built)
    assert back.table_bytes() == built
    assert back.admin_s == 7 and back.id_watermark == B
    assert back.used_keys == {A: [K1], B: [K2, K3]} and back.retired == []
    assert back.clients[A].h == 1 and back.clients[A].executed == {3}
    assert back.clients[A].replies == {1: b"one", 3: b"three"}
    assert back.clients[B].key == K3


def _ok(**kw: object) -> None:
    _decode(_table(**kw))  # type: ignore[arg-type]


def _bad(match: str, data: bytes, **kw: int) -> None:
    with pytest.raises(TableDecodeError, match=match):
        _decode(data, **kw)


def test_an_empty_table_decodes() -> None:
    log = _decode(_table())
    assert log.clients == {} and log.used_keys == {} and log.retired == []


def test_truncated_and_trailing_bytes_are_refused() -> None:
    data = _table(5, A, used=[(A, [K1])], clients=[(A, K1, 0, [], [])])
    _decode(data)
    for cut in (1, 5, len(data) // 2, len(data) - 1):
        _bad("truncated client table", data[:cut])
    _bad("trailing bytes", data + b"\x00")


def test_used_key_ids_up_to_twice_max_clients() -> None:
    used = [(c, [_key(c)]) for c in range(1, 9)]
    clients: list[Client] = [(c, _key(c), 0, [], []) for c in range(1, 5)]
    _ok(watermark=8, used=used, retired=[5, 6, 7, 8], clients=clients)
    _bad("too many used key ids", _table(watermark=8, counts={"used": 10}))
    _bad("too many used key ids", _table(watermark=8, counts={"used": 9 + 1}), max_clients=4)


def test_used_key_ids_count_limit_is_2_max_clients_plus_1() -> None:
    # 9 = 2 * 4 + 1 passes the count check (and fails later for another reason)
    _bad("used key id out of range", _table(watermark=9, counts={"used": 9}))
    _bad("too many used key ids", _table(watermark=9, counts={"used": 10}))


@pytest.mark.parametrize("ids", [[A, A], [B, A]])
def test_used_key_ids_strictly_ascend(ids: list[int]) -> None:
    data = _table(watermark=B, used=[(c, [_key(j)]) for j, c in enumerate(ids)])
    _bad("used key ids not strictly ascending", data)


@pytest.mark.parametrize("cid", [0, B + 1])
def test_used_key_id_out_of_range(cid: int) -> None:
    _bad("used key id out of range", _table(watermark=B, used=[(cid, [K1])], retired=[cid]))


def test_a_used_key_id_at_the_watermark_is_in_range() -> None:
    _ok(watermark=B, used=[(B, [K1])], retired=[B])


def test_key_history_of_1_to_8_keys() -> None:
    _ok(watermark=A, used=[(A, [K1])], retired=[A])
    eight = [_key(s) for s in range(10, 18)]
    _ok(watermark=A, used=[(A, eight)], retired=[A])
    _bad("bad key history length", _table(watermark=A, used=[(A, [])], retired=[A]))
    nine = [_key(s) for s in range(10, 19)]
    _bad("bad key history length", _table(watermark=A, used=[(A, nine)], retired=[A]))


def test_a_key_history_holds_distinct_keys() -> None:
    _bad("duplicate key", _table(watermark=A, used=[(A, [K1, K2, K1])], retired=[A]))


def test_retired_ids_are_distinct_remembered_ids() -> None:
    _ok(watermark=B, used=[(A, [K1]), (B, [K2])], retired=[B, A])
    data = _table(watermark=B, used=[(A, [K1]), (B, [K2])], retired=[A, A])
    _bad("retired ids not distinct remembered ids", data)
    data = _table(watermark=B, used=[(A, [K1])], retired=[A, B])
    _bad("retired ids not distinct remembered ids", data)


def test_retired_ids_up_to_max_clients() -> None:
    used = [(c, [_key(c)]) for c in range(1, 5)]
    _ok(watermark=4, used=used, retired=[1, 2, 3, 4])
    _bad("too many retired ids", _table(watermark=5, counts={"retired": 5}))


def test_clients_up_to_max_clients_and_the_admin() -> None:
    used = [(c, [_key(c)]) for c in range(1, 5)]
    clients: list[Client] = [(ADMIN, _key(99), 0, [], [])]
    clients += [(c, _key(c), 0, [], []) for c in range(1, 5)]
    log = _decode(_table(watermark=4, used=used, clients=clients))
    assert log.registered() == 4
    _bad("too many clients", _table(counts={"clients": 6}))


def test_more_registered_clients_than_max_clients_are_refused() -> None:
    used = [(c, [_key(c)]) for c in range(1, 6)]
    clients: list[Client] = [(c, _key(c), 0, [], []) for c in range(1, 6)]
    _bad("more clients than max_clients", _table(watermark=5, used=used, clients=clients))


@pytest.mark.parametrize("ids", [[A, A], [B, A]])
def test_client_ids_strictly_ascend(ids: list[int]) -> None:
    clients: list[Client] = [(c, _key(c), 0, [], []) for c in ids]
    data = _table(watermark=B, used=[(A, [_key(A)]), (B, [_key(B)])], clients=clients)
    _bad("client ids not strictly ascending", data)


def test_a_client_key_is_its_ids_latest_used_key() -> None:
    used = [(A, [K1, K2])]
    _ok(watermark=A, used=used, clients=[(A, K2, 0, [], [])])
    _bad("latest used key", _table(watermark=A, used=used, clients=[(A, K1, 0, [], [])]))
    _bad(
        "latest used key", _table(watermark=B, used=used, retired=[], clients=[(B, K1, 0, [], [])])
    )


def test_the_admin_entry_needs_no_used_key() -> None:
    log = _decode(_table(clients=[(ADMIN, _key(99), 3, [], [(3, b"OK")])]))
    assert log.clients[ADMIN].h == 3 and log.registered() == 0


@pytest.mark.parametrize("executed", [[7, 7], [8, 7]])
def test_executed_ids_strictly_ascend(executed: list[int]) -> None:
    data = _table(watermark=A, used=[(A, [K1])], clients=[(A, K1, 5, executed, [])])
    _bad("executed ids not strictly ascending", data)


def test_executed_ids_lie_in_h_plus_2_to_h_plus_window() -> None:
    def table(executed: list[int]) -> bytes:
        return _table(watermark=A, used=[(A, [K1])], clients=[(A, K1, 5, executed, [])])

    assert _decode(table([7])).clients[A].executed == {7}
    assert _decode(table([7, 9])).clients[A].executed == {7, 9}
    _bad(r"executed id outside", table([6]))  # h + 1 executed would have advanced h
    _bad(r"executed id outside", table([6, 8]))
    _bad(r"executed id outside", table([7, 10]))  # beyond h + window = 9
    _bad(r"executed id outside", table([10]))


def test_replies_only_for_executed_requests_once_each() -> None:
    def table(replies: list[tuple[int, bytes]]) -> bytes:
        return _table(watermark=A, used=[(A, [K1])], clients=[(A, K1, 5, [7], replies)])

    log = _decode(table([(4, b"a"), (5, b"b"), (7, b"c")]))
    assert log.clients[A].replies == {4: b"a", 5: b"b", 7: b"c"}
    _bad("reply for a request not executed or repeated", table([(6, b"x")]))
    _bad("reply for a request not executed or repeated", table([(8, b"x")]))
    _bad("reply for a request not executed or repeated", table([(5, b"x"), (5, b"x")]))


def test_replies_up_to_max_reply_or_the_fixed_error() -> None:
    def table(result: bytes) -> bytes:
        return _table(watermark=A, used=[(A, [K1])], clients=[(A, K1, 1, [], [(1, result)])])

    _decode(table(b"x" * 16), max_reply=16)
    assert len(REPLY_TOO_LARGE) > 16
    _decode(table(REPLY_TOO_LARGE), max_reply=16)
    _bad("reply larger than max_reply", table(b"x" * 17), max_reply=16)


def test_executed_and_reply_counts_are_bounded_by_the_window() -> None:
    head = _table(watermark=A, used=[(A, [K1])], counts={"clients": 1})
    client = struct.pack(">IH", A, 32) + K1 + struct.pack(">QI", 0, 5)
    _bad("too many executed ids", head + client)
    client = struct.pack(">IH", A, 32) + K1 + struct.pack(">QI", 0, 0) + struct.pack(">I", 5)
    _bad("too many replies", head + client)


def test_remembered_ids_are_exactly_the_registered_and_retired_ones() -> None:
    used = [(A, [K1]), (B, [K2])]
    _ok(watermark=B, used=used, retired=[B], clients=[(A, K1, 0, [], [])])
    data = _table(watermark=B, used=used, retired=[], clients=[(A, K1, 0, [], [])])
    _bad("remembered ids are not the registered and retired ones", data)
    data = _table(watermark=B, used=used, retired=[A, B], clients=[(A, K1, 0, [], [])])
    _bad("remembered ids are not the registered and retired ones", data)
