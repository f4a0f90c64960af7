"""The client session (PROTOCOL.md section 4): f+1 identical replies of distinct replicas,
signed retransmission, the client window, and garbage that never raises."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from ubft.client.session import ClientSession, Completed
from ubft.replica.core.actions import Send, SetTimer, TimerKey, TimerKind
from ubft.replica.core.codec import decode, encode
from ubft.replica.core.crypto import SignatureCounter, Tag, digest, statement, verify_with_key
from ubft.replica.core.errors import UsageError
from ubft.replica.core.messages import Promise, Reply, Request
from ubft.replica.core.request_log import OUT_OF_WINDOW

CID = 100
MS = 1_000_000


@pytest.fixture
def setup(make_cluster: Callable[..., Any]) -> tuple[ClientSession, Any, Any]:
    config, keys = make_cluster(client_window=4, client_timeout_ns=10 * MS)
    return ClientSession(config, CID, keys.clients[CID]), config, keys


def _reply(rid: int, result: bytes, epoch: int = 0, cid: int = CID) -> bytes:
    return encode(Reply(epoch, cid, rid, result), epoch)


def _completed(session: ClientSession) -> list[Completed]:
    return [a for a in session.take_actions() if isinstance(a, Completed)]


def test_submit_sends_unsigned_to_all_and_arms_the_retry_timer(setup: Any) -> None:
    session, config, _ = setup
    rid = session.submit(b"cmd", now_ns=5)
    assert rid == 1
    actions = session.take_actions()
    sends = [a for a in actions if isinstance(a, Send)]
    timers = [a for a in actions if isinstance(a, SetTimer)]
    assert len(sends) == 1 and sends[0].targets == config.member_ids
    epoch, msg = decode(sends[0].frame)
    assert epoch == config.epoch and msg == Request(CID, 1, b"cmd", b"")
    assert timers == [SetTimer(TimerKey(TimerKind.CLIENT_RETRY, 1), 5 + 10 * MS)]
    assert session.submit(b"next", now_ns=6) == 2


def test_result_needs_f_plus_1_identical_replies_from_distinct_replicas(setup: Any) -> None:
    session, _, _ = setup
    rid = session.submit(b"cmd", 0)
    session.take_actions()
    session.receive(0, _reply(rid, b"ok"), 1)
    assert _completed(session) == []
    session.receive(0, _reply(rid, b"ok"), 2)  # the same replica again
    assert _completed(session) == []
    session.receive(1, _reply(rid, b"ok"), 3)
    assert _completed(session) == [Completed(rid, b"ok")]
    assert rid not in session.outstanding
    session.receive(2, _reply(rid, b"ok"), 4)  # late reply: nothing more
    assert _completed(session) == []
    assert session.rejected_replies == 0


def test_second_reply_of_one_replica_is_ignored_even_if_different(setup: Any) -> None:
    session, _, _ = setup
    rid = session.submit(b"cmd", 0)
    session.receive(0, _reply(rid, b"bad"), 1)
    session.receive(0, _reply(rid, b"good"), 2)  # R0 cannot change its vote
    session.receive(1, _reply(rid, b"good"), 3)
    assert _completed(session) == []
    session.receive(2, _reply(rid, b"good"), 4)
    assert _completed(session) == [Completed(rid, b"good")]


def test_mismatching_replies_never_complete_and_never_raise(setup: Any) -> None:
    session, _, _ = setup
    rid = session.submit(b"cmd", 0)
    for r, result in ((0, b"a"), (1, b"b"), (2, b"c")):
        session.receive(r, _reply(rid, result), r)
    assert _completed(session) == []
    assert rid in session.outstanding, "the client keeps waiting (and retransmitting)"
    session.timer_fired(TimerKey(TimerKind.CLIENT_RETRY, rid), 10 * MS)
    assert any(isinstance(a, Send) for a in session.take_actions())


def test_one_byzantine_mismatch_then_a_correct_quorum_completes(setup: Any) -> None:
    session, _, _ = setup
    rid = session.submit(b"cmd", 0)
    session.receive(0, _reply(rid, b"forged"), 1)
    session.receive(1, _reply(rid, b"real"), 2)
    assert _completed(session) == []
    session.receive(2, _reply(rid, b"real"), 3)
    assert _completed(session) == [Completed(rid, b"real")]


def test_out_of_window_is_not_a_result(setup: Any) -> None:
    session, _, _ = setup
    rid = session.submit(b"cmd", 0)
    for r in (0, 1, 2):
        session.receive(r, _reply(rid, OUT_OF_WINDOW), r)
    assert _completed(session) == []
    assert rid in session.outstanding
    # an "out of window" answer does not use up the replica's vote
    session.receive(0, _reply(rid, b"ok"), 5)
    session.receive(2, _reply(rid, b"ok"), 6)
    assert _completed(session) == [Completed(rid, b"ok")]


def test_replies_for_unknown_requests_or_other_epochs_are_ignored(setup: Any) -> None:
    session, _, _ = setup
    rid = session.submit(b"cmd", 0)
    session.receive(0, _reply(rid + 5, b"ok"), 1)
    session.receive(1, _reply(rid + 5, b"ok"), 1)
    session.receive(0, _reply(rid, b"ok", epoch=1), 1)
    session.receive(1, _reply(rid, b"ok", epoch=1), 1)
    assert _completed(session) == []
    assert rid in session.outstanding


def test_retry_timer_resends_signed(setup: Any) -> None:
    session, config, keys = setup
    rid = session.submit(b"payload", 0)
    session.take_actions()
    session.timer_fired(TimerKey(TimerKind.CLIENT_RETRY, rid), 10 * MS)
    actions = session.take_actions()
    sends = [a for a in actions if isinstance(a, Send)]
    assert len(sends) == 1 and sends[0].targets == config.member_ids
    _, msg = decode(sends[0].frame)
    assert isinstance(msg, Request)
    assert (msg.client_id, msg.request_id, msg.payload) == (CID, rid, b"payload")
    stmt = statement(Tag.REQ, config.cluster_id_bytes, None, CID, rid, digest(b"payload"))
    assert verify_with_key(keys.clients[CID].public_key, stmt, msg.sig, SignatureCounter())
    assert SetTimer(TimerKey(TimerKind.CLIENT_RETRY, rid), 20 * MS) in actions
    # a second retry resends the same signature, without signing again
    created = keys.counter.created
    session.timer_fired(TimerKey(TimerKind.CLIENT_RETRY, rid), 20 * MS)
    _, again = decode(next(a for a in session.take_actions() if isinstance(a, Send)).frame)
    assert again == msg and keys.counter.created == created


def test_retry_after_completion_does_nothing(setup: Any) -> None:
    session, _, _ = setup
    rid = session.submit(b"cmd", 0)
    session.receive(0, _reply(rid, b"ok"), 1)
    session.receive(1, _reply(rid, b"ok"), 2)
    session.take_actions()
    session.timer_fired(TimerKey(TimerKind.CLIENT_RETRY, rid), 10 * MS)
    assert session.take_actions() == []


def test_window_enforcement(setup: Any) -> None:
    session, _, _ = setup  # client_window = 4
    ids = [session.submit(b"c%d" % i, i) for i in range(4)]
    assert ids == [1, 2, 3, 4]
    assert not session.can_submit()
    with pytest.raises(UsageError):
        session.submit(b"too many", 10)
    # answering a later request does not open the window: the oldest unanswered one bounds it
    session.receive(0, _reply(4, b"ok"), 11)
    session.receive(1, _reply(4, b"ok"), 11)
    assert not session.can_submit()
    with pytest.raises(UsageError):
        session.submit(b"still too many", 12)
    session.receive(0, _reply(1, b"ok"), 13)
    session.receive(1, _reply(1, b"ok"), 13)
    assert session.can_submit()
    assert session.submit(b"fits", 14) == 5
    assert not session.can_submit(), "ids must stay below oldest unanswered (2) + window"


def test_garbage_frames_are_counted_not_raised(setup: Any) -> None:
    session, _, _ = setup
    rid = session.submit(b"cmd", 0)
    session.take_actions()
    rng = random.Random(7)
    frames = [
        b"",
        b"\x00",
        rng.randbytes(10),
        _reply(rid, b"ok")[:-1],
        _reply(rid, b"ok") + b"\x00",
    ]
    frames += [rng.randbytes(rng.randrange(0, 64)) for _ in range(200)]
    for frame in frames:
        session.receive(rng.randrange(3), frame, 1)
    bad_count = session.rejected_replies
    assert bad_count == len(frames)
    session.receive(0, encode(Promise(0, 0), 0), 1)  # not a reply
    session.receive(0, encode(Request(CID, rid, b"cmd"), 0), 1)  # not a reply
    session.receive(0, _reply(rid, b"ok", cid=CID + 1), 1)  # another client's reply
    session.receive(9, _reply(rid, b"ok"), 1)  # not a member
    assert session.rejected_replies == bad_count + 4
    assert _completed(session) == []
    # the session still works afterwards
    session.receive(0, _reply(rid, b"ok"), 2)
    session.receive(2, _reply(rid, b"ok"), 2)
    assert _completed(session) == [Completed(rid, b"ok")]


def test_f2_needs_three_replies(make_cluster: Callable[..., Any]) -> None:
    config, keys = make_cluster(f=2)
    session = ClientSession(config, CID, keys.clients[CID])
    rid = session.submit(b"cmd", 0)
    for r in (4, 0):
        session.receive(r, _reply(rid, b"ok"), 1)
    assert _completed(session) == []
    session.receive(3, _reply(rid, b"ok"), 1)
    assert _completed(session) == [Completed(rid, b"ok")]
