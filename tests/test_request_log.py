"""The per-client request log and exactly-once client table (PROTOCOL.md section 4,
"Clients and requests" and "Exactly-once execution")."""

from __future__ import annotations

from ubft.replica.core.crypto import digest
from ubft.replica.core.request_log import REPLY_TOO_LARGE, RequestLog

CID = 100
OTHER = 101
W = 4  # client window
MAX_REPLY = 32
SIG = b"s" * 64


def _log(window: int = W) -> RequestLog:
    return RequestLog({CID: b"k" * 32, OTHER: b"o" * 32}, window, MAX_REPLY)


def _run(log: RequestLog, x: int, result: bytes = b"r", cid: int = CID) -> bytes:
    verdict, _ = log.execute(cid, x)
    assert verdict == "execute"
    return log.record(cid, x, result)


# --------------------------------------------------------------------------- window


def test_only_ids_in_h_to_h_plus_window_are_stored() -> None:
    log = _log()
    assert log.add(CID, 0, b"p", b"", 0) is None
    assert log.add(CID, W + 1, b"p", b"", 0) is None
    for x in range(1, W + 1):
        assert log.add(CID, x, b"p%d" % x, b"", 0) is not None
    assert sorted(log.clients[CID].pending) == list(range(1, W + 1))


def test_window_slides_with_h() -> None:
    log = _log()
    _run(log, 1)
    _run(log, 2)
    entry = log.clients[CID]
    assert entry.h == 2
    assert log.add(CID, 2, b"p", b"", 0) is None, "executed ids are not stored again"
    assert log.add(CID, W + 2, b"p", b"", 0) is not None
    assert log.add(CID, W + 3, b"p", b"", 0) is None


def test_executed_id_above_h_is_not_in_window() -> None:
    log = _log()
    _run(log, 3)
    entry = log.clients[CID]
    assert entry.h == 0 and entry.executed == {3}
    assert not log.in_window(entry, 3)
    assert log.add(CID, 3, b"p", b"", 0) is None
    assert log.in_window(entry, 1)


# --------------------------------------------------------------------------- one request per id


def test_one_request_per_id() -> None:
    log = _log()
    first = log.add(CID, 1, b"a", b"", 5)
    assert first is not None and first.payload == b"a" and first.digest == digest(b"a")
    assert first.since_ns == 5
    assert log.add(CID, 1, b"b", b"", 6) is None, "an unsigned request never replaces another"
    assert log.add(CID, 1, b"a", b"", 6) is None, "a repeat changes nothing"
    assert log.clients[CID].pending[1].payload == b"a"


def test_signed_completes_unsigned_with_same_bytes() -> None:
    log = _log()
    first = log.add(CID, 1, b"a", b"", 0)
    again = log.add(CID, 1, b"a", SIG, 0)
    assert again is first and first.sig == SIG
    assert log.add(CID, 1, b"a", SIG, 0) is None, "already signed: nothing changes"
    assert log.add(CID, 1, b"a", b"t" * 64, 0) is None, "a signed one is never replaced"


def test_signed_replaces_unsigned_with_other_bytes() -> None:
    log = _log()
    log.add(CID, 1, b"a", b"", 0)
    log.add_echo(CID, 1, 2, digest(b"a"))
    new = log.add(CID, 1, b"b", SIG, 9)
    assert new is not None and new.payload == b"b" and new.sig == SIG
    assert new.digest == digest(b"b") and new.since_ns == 9
    assert new.echoes == {}, "echoes of the old bytes do not carry over"
    assert log.clients[CID].pending[1] is new


def test_signed_does_not_replace_a_proposed_unsigned_request() -> None:
    log = _log()
    req = log.add(CID, 1, b"a", b"", 0)
    assert req is not None
    req.proposed = True
    assert log.add(CID, 1, b"b", SIG, 0) is None
    assert log.clients[CID].pending[1] is req and req.payload == b"a"


def test_clients_are_independent() -> None:
    log = _log()
    log.add(CID, 1, b"a", b"", 0)
    assert log.add(OTHER, 1, b"b", b"", 0) is not None
    _run(log, 1, cid=OTHER)
    assert log.clients[CID].h == 0 and log.clients[OTHER].h == 1
    assert 1 in log.clients[CID].pending


# --------------------------------------------------------------------------- echoes


def test_echoes_before_the_request_are_buffered() -> None:
    log = _log()
    assert log.add_echo(CID, 2, 1, digest(b"x")) is None
    assert log.add_echo(CID, 2, 2, digest(b"y")) is None
    assert log.clients[CID].early_echoes == {2: {1: digest(b"x"), 2: digest(b"y")}}
    req = log.add(CID, 2, b"x", b"", 0)
    assert req is not None and req.echoes == {1: digest(b"x"), 2: digest(b"y")}
    assert log.clients[CID].early_echoes == {}


def test_first_echo_per_follower_counts() -> None:
    log = _log()
    log.add_echo(CID, 1, 1, digest(b"x"))
    log.add_echo(CID, 1, 1, digest(b"y"))
    req = log.add(CID, 1, b"y", b"", 0)
    assert req is not None and req.echoes == {1: digest(b"x")}
    assert log.add_echo(CID, 1, 1, digest(b"y")) is req
    assert req.echoes == {1: digest(b"x")}
    assert log.add_echo(CID, 1, 2, digest(b"y")) is req
    assert req.echoes[2] == digest(b"y")


def test_echoes_outside_window_or_of_unknown_clients_are_dropped() -> None:
    log = _log()
    assert log.add_echo(CID, 0, 1, digest(b"x")) is None
    assert log.add_echo(CID, W + 1, 1, digest(b"x")) is None
    assert log.add_echo(999, 1, 1, digest(b"x")) is None
    assert log.clients[CID].early_echoes == {}
    assert 999 not in log.clients


# --------------------------------------------------------------------------- execute / record


def test_execute_verdicts() -> None:
    log = _log()
    assert log.execute(999, 1) == ("unregistered", None)
    assert log.execute(CID, 1) == ("execute", None)
    assert log.execute(CID, W) == ("execute", None)
    assert log.execute(CID, W + 1) == ("out_of_window", None)
    log.record(CID, 1, b"one")
    log.record(CID, 3, b"three")
    assert log.execute(CID, 1) == ("skip", b"one"), "x <= h: cached reply"
    assert log.execute(CID, 3) == ("skip", b"three"), "recorded above h: cached reply"
    assert log.execute(CID, 0) == ("skip", None), "below h with no reply kept"
    assert log.execute(CID, 2) == ("execute", None)
    assert log.execute(CID, 1 + W) == ("execute", None)
    assert log.execute(CID, 2 + W) == ("out_of_window", None)


def test_record_advances_h_over_contiguous_ids() -> None:
    log = _log()
    entry = log.clients[CID]
    log.record(CID, 2, b"b")
    log.record(CID, 4, b"d")
    assert entry.h == 0 and entry.executed == {2, 4}
    log.record(CID, 1, b"a")
    assert entry.h == 2 and entry.executed == {4}
    log.record(CID, 3, b"c")
    assert entry.h == 4 and entry.executed == set()
    assert log.cached_reply(entry, 3) == b"c"


def test_record_forgets_the_request_and_stale_ones() -> None:
    log = _log()
    for x in (1, 2, 3):
        log.add(CID, x, b"p", b"", 0)
    log.add_echo(CID, 4, 1, digest(b"q"))
    log.record(CID, 2, b"r")
    entry = log.clients[CID]
    assert sorted(entry.pending) == [1, 3]
    log.record(CID, 1, b"r")
    assert sorted(entry.pending) == [3]
    log.record(CID, 4, b"r")
    log.record(CID, 3, b"r")
    assert entry.pending == {} and entry.early_echoes == {}


def test_only_client_window_replies_are_kept() -> None:
    log = _log()
    for x in range(1, 3 * W + 1):
        _run(log, x, b"r%d" % x)
    entry = log.clients[CID]
    assert sorted(entry.replies) == list(range(2 * W + 1, 3 * W + 1))
    assert log.execute(CID, 3 * W) == ("skip", b"r%d" % (3 * W))
    assert log.execute(CID, 1) == ("skip", None)


def test_oversized_reply_is_replaced() -> None:
    log = _log()
    assert log.record(CID, 1, b"x" * MAX_REPLY) == b"x" * MAX_REPLY
    assert log.record(CID, 2, b"x" * (MAX_REPLY + 1)) == REPLY_TOO_LARGE
    assert log.cached_reply(log.clients[CID], 2) == REPLY_TOO_LARGE


def test_table_bytes_reflect_execution_only() -> None:
    a, b = _log(), _log()
    a.add(CID, 1, b"p", b"", 0)
    a.add_echo(CID, 2, 1, digest(b"p"))
    assert a.table_bytes() == b.table_bytes(), "pending requests are not checkpointed state"
    a.record(CID, 1, b"r")
    assert a.table_bytes() != b.table_bytes()
    b.record(CID, 1, b"r")
    assert a.table_bytes() == b.table_bytes()


# --------------------------------------------------------------------------- bounded memory


def test_footprint_bounded_after_many_requests() -> None:
    log = _log()
    followers = (1, 2)
    # per client: the entry, executed ids, replies, pending and their echoes, early echoes
    bound = len(log.clients) * (1 + W + W + W + 2 * len(followers) * W)
    peak = 0
    for x in range(1, 2001):
        # a flood of echoes for every id the window could hold, including ids never sent
        for y in range(x, x + 3 * W):
            for f in followers:
                log.add_echo(CID, y, f, digest(b"%d" % y))
                log.add_echo(OTHER, y, f, digest(b"%d" % y))
        log.add(CID, x, b"p", b"", 0)
        log.add(CID, x + 1, b"q", SIG, 0)
        log.add(OTHER, x, b"p", b"", 0)
        peak = max(peak, log.footprint())
        _run(log, x, b"r" * 8)
        # the other client stalls at its first gap (id 7): later ids fall out of its window
        verdict, _ = log.execute(OTHER, x)
        if x % 7 and verdict == "execute":
            log.record(OTHER, x, b"x")
        peak = max(peak, log.footprint())
    assert peak <= bound, (peak, bound)
    entry = log.clients[CID]
    assert entry.h == 2000
    assert len(entry.replies) == W
