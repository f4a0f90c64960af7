"""PROTOCOL.md section 4, "Clients and requests" (submission), one rule per test: what a
replica logs, echoes and forwards, when the leader holds a request ready to propose, what a
forwarded request must carry, and the replies. A single real ``Replica`` is fed the frames of
the other members and of clients, and judged by the frames it sends and the Prepares it
CTBcasts (its own ``Delivered`` actions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ubft.replica.core.actions import (
    Send,
    SendClient,
)
from ubft.replica.core.codec import (
    decode,
    encode,
)
from ubft.replica.core.crypto import Signer, digest
from ubft.replica.core.messages import (
    Entry,
    Prepare,
    Reply,
    Request,
    RequestEcho,
    RequestEchoes,
    RequestForward,
)
from ubft.replica.sim.scripted import LEADER, ME, OTHER, One

CID = 100
CID2 = 101
NEW = 200


@pytest.fixture
def one(make_cluster: Callable[..., Any]) -> One:
    return One(make_cluster)


@pytest.fixture
def leader(make_cluster: Callable[..., Any]) -> One:
    return One(make_cluster, me=LEADER)


def _proposed(one: One) -> list[tuple[int, tuple[tuple[int, int, bytes, bool], ...]]]:
    """(instance, entries as (client, request, payload, signed)) of each Prepare it CTBcast."""
    return [
        (
            p.instance,
            tuple((e.client_id, e.request_id, e.payload, bool(e.sig)) for e in p.batch.entries),
        )
        for p in one.own_ctb(Prepare)
    ]


def _echo(one: One, r: int, cid: int, rid: int, payload: bytes) -> None:
    one.frame(r, RequestEcho(cid, rid, digest(payload)))


def _forward(one: One, sender: int, e: Entry) -> None:
    one.frame(sender, RequestForward(Request(e.client_id, e.request_id, e.payload, e.sig)))


def _to_leader(one: One, kind: type) -> list[tuple[tuple[int, ...], Any]]:
    out = []
    for a in one.actions:
        if isinstance(a, Send):
            msg = decode(a.frame)[1]
            if isinstance(msg, kind):
                out.append((a.targets, msg))
    return out


def _replies(one: One) -> list[Reply]:
    out = []
    for a in one.actions:
        if isinstance(a, SendClient):
            msg = decode(a.frame)[1]
            assert isinstance(msg, Reply)
            out.append(msg)
    return out


# ============================================================ the leader: ready to propose


def test_a_signed_request_is_ready_at_once(leader: One) -> None:
    leader.request(CID, 1, b"p", signed=True)
    assert _proposed(leader) == [(0, ((CID, 1, b"p", True),))]


def test_an_unsigned_request_needs_identical_echoes_from_all_followers(leader: One) -> None:
    leader.request(CID, 1, b"p")
    assert _proposed(leader) == []
    _echo(leader, ME, CID, 1, b"p")
    assert _proposed(leader) == []
    _echo(leader, OTHER, CID, 1, b"p")
    assert _proposed(leader) == [(0, ((CID, 1, b"p", False),))]


def test_with_f_2_the_leader_needs_all_four_echoes(make_cluster: Callable[..., Any]) -> None:
    leader = One(make_cluster, me=LEADER, f=2)
    leader.request(CID, 1, b"p")
    for r in (1, 2, 3):
        _echo(leader, r, CID, 1, b"p")
    assert _proposed(leader) == []
    _echo(leader, 4, CID, 1, b"p")
    assert [i for i, _ in _proposed(leader)] == [0]


def test_a_mismatching_echo_keeps_the_request_unready(leader: One) -> None:
    leader.request(CID, 1, b"p")
    _echo(leader, ME, CID, 1, b"p")
    _echo(leader, OTHER, CID, 1, b"q")
    assert _proposed(leader) == []
    _echo(leader, OTHER, CID, 1, b"p")  # the first echo of a follower is the one that counts
    assert _proposed(leader) == []
    leader.request(CID, 1, b"p", signed=True)  # the client resends it signed
    assert _proposed(leader) == [(0, ((CID, 1, b"p", True),))]


def test_echoes_before_the_request_are_buffered(leader: One) -> None:
    _echo(leader, ME, CID, 1, b"p")
    _echo(leader, OTHER, CID, 1, b"p")
    assert _proposed(leader) == []
    leader.request(CID, 1, b"p")
    assert _proposed(leader) == [(0, ((CID, 1, b"p", False),))]


def test_echoes_in_one_frame_count_like_single_ones(leader: One) -> None:
    leader.request(CID, 1, b"p")
    leader.request(CID2, 1, b"q")
    leader.frame(
        ME, RequestEchoes((RequestEcho(CID, 1, digest(b"p")), RequestEcho(CID2, 1, digest(b"q"))))
    )
    leader.frame(
        OTHER,
        RequestEchoes((RequestEcho(CID, 1, digest(b"p")), RequestEcho(CID2, 1, digest(b"q")))),
    )
    assert [sorted((c, r) for c, r, _, _ in entries) for _, entries in _proposed(leader)] == [
        [(CID, 1), (CID2, 1)]
    ]


def test_a_ready_request_is_proposed_once(leader: One) -> None:
    leader.request(CID, 1, b"p")
    _echo(leader, ME, CID, 1, b"p")
    _echo(leader, OTHER, CID, 1, b"p")
    _echo(leader, OTHER, CID, 1, b"p")
    leader.request(CID, 1, b"p", signed=True)
    e = leader.signed(CID, 1, b"p")
    _forward(leader, ME, e)
    assert [i for i, _ in _proposed(leader)] == [0]
    assert leader.rep.footprint()["ready"] == 0


def test_a_signed_forward_makes_a_request_ready_at_the_leader(leader: One) -> None:
    _forward(leader, ME, leader.signed(CID, 1, b"p"))
    assert _proposed(leader) == [(0, ((CID, 1, b"p", True),))]
    assert leader.evidence() == []


def test_a_forward_of_exactly_max_request_bytes_is_taken(make_cluster: Callable[..., Any]) -> None:
    leader = One(make_cluster, me=LEADER, max_request_bytes=64)
    _forward(leader, ME, leader.signed(CID, 1, b"x" * 64))
    assert [i for i, _ in _proposed(leader)] == [0]
    assert leader.rep.consensus.intake.dropped == 0


# ============================================================ forwards the leader refuses


def test_an_unsigned_forward_is_evidence(leader: One) -> None:
    _forward(leader, ME, Entry(CID, 1, b"p"))
    assert leader.evidence() == [(ME, "forward.unsigned")]
    assert leader.rep.consensus.intake.dropped == 0
    _echo(leader, ME, CID, 1, b"p")
    _echo(leader, OTHER, CID, 1, b"p")
    assert _proposed(leader) == [], "the unsigned forward was not logged"


@pytest.mark.parametrize("why", ["unknown client", "bad signature", "over max_request"])
def test_a_forward_that_cannot_be_checked_here_is_dropped_without_evidence(
    make_cluster: Callable[..., Any], why: str
) -> None:
    leader = One(make_cluster, me=LEADER, max_request_bytes=64)
    if why == "unknown client":
        e = leader.signed(NEW, 1, b"p", Signer(b"\x33" * 32))
    elif why == "bad signature":
        e = leader.signed(CID, 1, b"p", leader.keys.clients[CID2])
    else:
        e = leader.signed(CID, 1, b"x" * 65)
    _forward(leader, ME, e)
    assert leader.evidence() == []
    assert leader.rep.consensus.intake.dropped == 1
    assert _proposed(leader) == []
    assert leader.rep.footprint()["request_log"] == 3, "nothing logged (one unit per client)"


# ============================================================ followers: echo and forward


def test_a_follower_echoes_an_unsigned_request_to_the_leader(one: One) -> None:
    one.request(CID, 1, b"p")
    assert _to_leader(one, RequestEcho) == [((LEADER,), RequestEcho(CID, 1, digest(b"p")))]
    assert _to_leader(one, RequestEchoes) == [] and _to_leader(one, RequestForward) == []


def test_a_follower_sends_a_bursts_echoes_in_one_frame(one: One) -> None:
    for rid in (1, 2, 3):
        one.rep.receive_client(CID, encode(Request(CID, rid, b"p%d" % rid), 0), one.now)
    one.drain()
    assert _to_leader(one, RequestEcho) == []
    (frame,) = _to_leader(one, RequestEchoes)
    assert frame[0] == (LEADER,)
    assert [e.request_id for e in frame[1].echoes] == [1, 2, 3]


def test_a_follower_forwards_a_signed_request_to_the_leader(one: One) -> None:
    one.request(CID, 1, b"p", signed=True)
    e = one.signed(CID, 1, b"p")
    assert _to_leader(one, RequestForward) == [
        ((LEADER,), RequestForward(Request(CID, 1, b"p", e.sig)))
    ]
    assert _to_leader(one, RequestEcho) == []


def test_a_repeated_request_sends_nothing_more(one: One) -> None:
    one.request(CID, 1, b"p")
    one.request(CID, 1, b"p")
    one.request(CID, 1, b"other")
    assert len(_to_leader(one, RequestEcho)) == 1


def test_a_follower_ignores_echoes(one: One) -> None:
    before = one.rep.footprint()["request_log"]
    one.request(CID, 1, b"p")
    logged = one.rep.footprint()["request_log"]
    assert logged == before + 1
    _echo(one, OTHER, CID, 1, b"p")
    _echo(one, OTHER, CID, 2, b"q")
    assert one.rep.footprint()["request_log"] == logged


def test_a_forward_to_a_follower_is_logged_but_never_made_ready(one: One) -> None:
    _forward(one, OTHER, one.signed(CID, 1, b"p"))
    assert one.rep.footprint()["ready"] == 0
    one.prepare(0, Entry(CID, 1, b"p"))
    assert one.promised() == [0], "the forwarded copy is in the log"


def test_a_waiting_prepare_is_rechecked_when_its_request_arrives(one: One) -> None:
    one.prepare(0, Entry(CID, 1, b"p"))
    assert one.promised() == []
    one.request(CID, 1, b"p")
    assert one.promised() == [0]


def test_a_waiting_prepare_is_rechecked_when_a_forward_brings_its_request(one: One) -> None:
    one.prepare(0, Entry(CID, 1, b"p"))
    _forward(one, OTHER, one.signed(CID, 1, b"p"))
    assert one.promised() == [0]


def test_the_leader_neither_echoes_nor_forwards(leader: One) -> None:
    leader.request(CID, 1, b"p")
    leader.request(CID2, 1, b"q", signed=True)
    assert _to_leader(leader, RequestEcho) == [] and _to_leader(leader, RequestForward) == []


# ============================================================ windows and replies


def test_requests_outside_h_to_h_plus_client_window_are_dropped(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, client_window=4)
    one.request(CID, 0, b"p")
    one.request(CID, 5, b"p")
    assert _to_leader(one, RequestEcho) == []
    one.request(CID, 4, b"p")
    assert [m.request_id for _, m in _to_leader(one, RequestEcho)] == [4]


def test_an_executed_request_is_answered_from_the_table(one: One) -> None:
    one.prepare(0, one.signed(CID, 1, b"p"))
    one.decide_fast(0)
    assert _replies(one) == [Reply(0, CID, 1, b"r:p")]
    one.request(CID, 1, b"p")
    assert _replies(one) == [Reply(0, CID, 1, b"r:p")] * 2
    assert _to_leader(one, RequestEcho) == []


# ============================================================ re-echo at sync ticks


def test_a_follower_re_echoes_and_re_forwards_pending_requests(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, sync_interval_ns=1000)
    one.request(CID, 1, b"p")
    one.request(CID2, 1, b"q", signed=True)
    one.now += 500  # exactly half a sync interval old: resent
    one.tick()
    assert [m.request_id for _, m in _to_leader(one, RequestEcho)] == [1, 1]
    assert len(_to_leader(one, RequestForward)) == 2


def test_a_request_younger_than_half_a_sync_interval_is_not_resent(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, sync_interval_ns=1000)
    one.request(CID, 1, b"p")
    one.now += 499
    one.tick()
    assert len(_to_leader(one, RequestEcho)) == 1


def test_the_leader_resends_nothing_at_a_tick(make_cluster: Callable[..., Any]) -> None:
    leader = One(make_cluster, me=LEADER, sync_interval_ns=1000)
    leader.request(CID, 1, b"p")
    leader.now += 5000
    leader.tick()
    assert _to_leader(leader, RequestEcho) == [] and _to_leader(leader, RequestEchoes) == []
