"""PROTOCOL.md section 4: the leader's proposals. Ready requests are cut into batches of at
most batch_max entries with ts = max(clock, previous fresh ts), at most inflight_max undecided
at a time, never at or beyond the last Checkpoint the leader CTBcast plus a window; a ready
request that is gone or replaced by then is not proposed. The leader is a single real
``Replica`` (replica 0 of 3) fed the frames of the followers and clients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ubft.replica.core.admission import ADMIN_CLIENT_ID, AdminOp, admin_command
from ubft.replica.core.codec import (
    encode,
)
from ubft.replica.core.crypto import Signer, digest
from ubft.replica.core.messages import (
    Checkpoint,
    FastCommit,
    Prepare,
    Promise,
    Request,
    RequestEcho,
)
from ubft.replica.sim.scripted import LEADER, ME, NOW, OTHER, One

CID = 100
CID2 = 101
NEW = 200


@pytest.fixture
def one(make_cluster: Callable[..., Any]) -> One:
    return One(make_cluster)


@pytest.fixture
def leader(make_cluster: Callable[..., Any]) -> One:
    return One(make_cluster, me=LEADER)


def _prepares(one: One) -> list[Prepare]:
    return one.own_ctb(Prepare)


def _burst(one: One, *reqs: tuple[int, int, bytes]) -> None:
    """Signed requests that arrive together (one take_actions after all of them)."""
    for cid, rid, payload in reqs:
        e = one.signed(cid, rid, payload)
        one.rep.receive_client(cid, encode(Request(cid, rid, payload, e.sig), 0), one.now)
    one.drain()


def test_the_leader_proposes_a_ready_request_at_its_clock(leader: One) -> None:
    _burst(leader, (CID, 1, b"a"))
    (p,) = _prepares(leader)
    assert (p.view, p.instance, p.batch.ts) == (0, 0, NOW)
    assert p.batch.entries == (leader.signed(CID, 1, b"a"),)


def test_a_follower_never_proposes(one: One) -> None:
    _burst(one, (CID, 1, b"a"), (CID, 2, b"b"))
    assert _prepares(one) == []


def test_a_batch_holds_at_most_batch_max_entries(make_cluster: Callable[..., Any]) -> None:
    leader = One(make_cluster, me=LEADER, batch_max=2)
    _burst(leader, (CID, 1, b"a"), (CID, 2, b"b"), (CID2, 1, b"c"))
    assert [[(e.client_id, e.request_id) for e in p.batch.entries] for p in _prepares(leader)] == [
        [(CID, 1), (CID, 2)],
        [(CID2, 1)],
    ]
    assert [p.instance for p in _prepares(leader)] == [0, 1]


def test_at_most_inflight_max_proposals_are_undecided(make_cluster: Callable[..., Any]) -> None:
    leader = One(make_cluster, me=LEADER, batch_max=1, inflight_max=2)
    _burst(leader, *((CID, rid, b"x%d" % rid) for rid in range(1, 6)))
    assert [p.instance for p in _prepares(leader)] == [0, 1]
    leader.decide_fast(0)
    assert [p.instance for p in _prepares(leader)] == [0, 1, 2]
    leader.decide_fast(1)
    leader.decide_fast(2)
    assert [p.instance for p in _prepares(leader)] == [0, 1, 2, 3, 4]
    assert [p.batch.entries[0].request_id for p in _prepares(leader)] == [1, 2, 3, 4, 5]


def test_one_proposal_at_a_time_with_inflight_max_1(make_cluster: Callable[..., Any]) -> None:
    leader = One(make_cluster, me=LEADER, batch_max=1, inflight_max=1)
    _burst(leader, (CID, 1, b"a"), (CID, 2, b"b"))
    assert [p.instance for p in _prepares(leader)] == [0]
    leader.decide_fast(0)
    assert [p.instance for p in _prepares(leader)] == [0, 1]


def test_proposals_stop_at_the_last_ctbcast_checkpoint_plus_window(
    make_cluster: Callable[..., Any],
) -> None:
    leader = One(make_cluster, me=LEADER, window=4, batch_max=1, inflight_max=2)
    _burst(leader, *((CID, rid, b"x%d" % rid) for rid in range(1, 7)))
    for i in range(4):
        leader.decide_fast(i)
    assert [p.instance for p in _prepares(leader)] == [0, 1, 2, 3], "4 = 0 + window"
    leader.stabilise(2)
    assert [cp.c for cp in leader.own_ctb(Checkpoint)] == [2]
    assert [p.instance for p in _prepares(leader)] == [0, 1, 2, 3, 4, 5]


def test_ts_never_goes_below_the_previous_fresh_ts(leader: One) -> None:
    _burst(leader, (CID, 1, b"a"))
    leader.now = NOW - 100  # the clock went back
    _burst(leader, (CID, 2, b"b"))
    assert [p.batch.ts for p in _prepares(leader)] == [NOW, NOW]
    leader.now = NOW + 100
    _burst(leader, (CID, 3, b"c"))
    assert [p.batch.ts for p in _prepares(leader)] == [NOW, NOW, NOW + 100]


def _admin_request(one: One, op: AdminOp, cid: int, key: bytes, s: int) -> None:
    payload = admin_command(one.keys.admin, one.cluster, 0, op, cid, key, s)
    e = one.signed(ADMIN_CLIENT_ID, s, payload, one.keys.admin)
    frame = encode(Request(ADMIN_CLIENT_ID, s, payload, e.sig), 0)
    one.rep.receive_client(ADMIN_CLIENT_ID, frame, one.now)
    one.drain()


def test_a_ready_request_of_a_client_deregistered_meanwhile_is_not_proposed(
    make_cluster: Callable[..., Any],
) -> None:
    leader = One(make_cluster, me=LEADER, inflight_max=1)
    _admin_request(leader, AdminOp.DEREGISTER, CID, bytes(32), 1)
    _burst(leader, (CID, 1, b"a"))
    assert [p.instance for p in _prepares(leader)] == [0]
    leader.decide_fast(0)
    assert CID not in leader.rep.log.clients
    assert [p.instance for p in _prepares(leader)] == [0], "no empty batch is proposed"


def test_a_ready_request_replaced_by_a_new_identity_is_not_proposed(
    make_cluster: Callable[..., Any],
) -> None:
    leader = One(make_cluster, me=LEADER, inflight_max=1)
    new = Signer(b"\x55" * 32)
    _admin_request(leader, AdminOp.REGISTER, CID, new.public_key, 1)
    _burst(leader, (CID, 1, b"old identity"))
    # instance 0 decides; before the leader cuts its next batch, CID (new key) sends its own
    # request 1, unsigned: it is not ready (no echoes yet)
    for r in (ME, OTHER):
        leader.rep.receive(r, encode(Promise(0, 0), 0), leader.now)
    for r in (ME, OTHER):
        leader.rep.receive(r, encode(FastCommit(0, 0), 0), leader.now)
    leader.rep.receive_client(CID, encode(Request(CID, 1, b"new identity"), 0), leader.now)
    leader.drain()
    assert leader.rep.log.clients[CID].key == new.public_key
    assert [p.instance for p in _prepares(leader)] == [0]
    for r in (ME, OTHER):
        leader.frame(r, RequestEcho(CID, 1, digest(b"new identity")))
    assert [[e.payload for e in p.batch.entries] for p in _prepares(leader)][1:] == [
        [b"new identity"]
    ]
