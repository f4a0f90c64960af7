"""PROTOCOL.md section 4, "Prepare checks" (a)-(e), one rule per test.

A single real ``Replica`` (replica 1 of 3 unless a test says otherwise) is fed the frames of
the other members, whose keys the test holds, and judged by its actions only: a Promise it
sends means it accepted the Prepare, a ReportEvidence names the rule that failed. Each test
fails when the rule it names is weakened (a bound moved by one, a check dropped, the evidence
reason changed), so the mutation run of ``prepare_checks.py`` and ``consensus.py`` sees it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ubft.replica.core.actions import (
    SetTimer,
    TimerKey,
    TimerKind,
)
from ubft.replica.core.admission import ADMIN_CLIENT_ID, AdminOp, admin_command
from ubft.replica.core.bounds import MAX_INSTANCE, MAX_TS, MAX_VIEW
from ubft.replica.core.codec import (
    MAX_VALUE_BYTES,
    encode_payload,
)
from ubft.replica.core.crypto import Signer, Tag
from ubft.replica.core.messages import (
    Batch,
    Checkpoint,
    CkptShare,
    Entry,
    FastCommit,
    Prepare,
    Promise,
)
from ubft.replica.sim.scripted import LEADER, NOW, OTHER, One

CID = 100
CID2 = 101
NEW = 200


@pytest.fixture
def one(make_cluster: Callable[..., Any]) -> One:
    return One(make_cluster)


def _key(seed: int) -> Signer:
    return Signer(bytes([seed]) * 32)


# ============================================================ (a) sender and view


def test_a_prepare_from_a_replica_other_than_the_leader_is_evidence(one: One) -> None:
    one.deliver(encode_payload(Prepare(0, 0, Batch(NOW, ()))), OTHER)
    assert one.evidence() == [(OTHER, "prepare.not_leader")]
    assert one.promised() == []
    one.prepare(0)  # the leader's own instance 0 is still expected
    assert one.promised() == [0]
    assert one.evidence() == [(OTHER, "prepare.not_leader")]


def test_a_prepare_of_a_view_the_replica_is_not_in_is_ignored_without_evidence(one: One) -> None:
    one.prepare(0, view=2)  # sent by leader(2) = replica 2: sender check passes
    assert one.evidence() == [] and one.promised() == []
    one.prepare(0)
    assert one.promised() == [0] and one.evidence() == []


# ============================================================ (b) order


def test_b_the_first_prepare_must_be_low(one: One) -> None:
    one.prepare(1)
    assert one.evidence() == [(LEADER, "prepare.out_of_order")]
    assert one.promised() == []


def test_b_each_prepare_is_one_more_than_the_previous(one: One) -> None:
    for i in range(3):
        one.prepare(i)
    assert one.promised() == [0, 1, 2] and one.evidence() == []
    one.prepare(2)  # a repeated instance
    one.prepare(4)  # a gap
    assert one.evidence() == [(LEADER, "prepare.out_of_order")] * 2
    one.prepare(3)
    assert one.promised() == [0, 1, 2, 3]


# ============================================================ (c) window


def test_c_prepare_at_low_plus_window_is_evidence(make_cluster: Callable[..., Any]) -> None:
    one = One(make_cluster, window=4)
    for i in range(4):
        one.prepare(i)
    assert one.promised() == [0, 1, 2, 3]
    one.prepare(4)
    assert one.evidence() == [(LEADER, "prepare.beyond_window")]
    assert one.promised() == [0, 1, 2, 3]


def test_c_window_counts_from_the_leaders_last_checkpoint(make_cluster: Callable[..., Any]) -> None:
    one = One(make_cluster, window=4)
    one.checkpoint(LEADER, 2)  # c_r of the leader, from its own stream
    assert one.evidence() == []
    for i in range(6):
        one.prepare(i)
    assert one.promised() == list(range(6))
    one.prepare(6)
    assert one.evidence() == [(LEADER, "prepare.beyond_window")]


def test_c_another_replicas_checkpoint_does_not_move_the_leaders_window(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, window=4)
    one.checkpoint(OTHER, 2)
    for i in range(4):
        one.prepare(i)
    one.prepare(4)
    assert one.evidence() == [(LEADER, "prepare.beyond_window")]


# ============================================================ (e) size and ts order


def test_e_a_batch_of_batch_max_entries_is_accepted_one_more_is_evidence(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, batch_max=2)
    one.prepare(0, one.signed(CID, 1, b"a"), one.signed(CID, 2, b"b"))
    assert one.promised() == [0] and one.evidence() == []
    one.prepare(1, *(one.signed(CID, 3 + j, b"c") for j in range(3)))
    assert one.evidence() == [(LEADER, "prepare.bad_batch")]
    assert one.promised() == [0]


def test_e_ts_may_repeat_the_previous_fresh_ts_but_not_go_below(one: One) -> None:
    one.prepare(0, ts=NOW)
    one.prepare(1, ts=NOW)
    assert one.promised() == [0, 1]
    one.prepare(2, ts=NOW - 1)
    assert one.evidence() == [(LEADER, "prepare.bad_batch")]
    assert one.promised() == [0, 1]
    one.prepare(3, ts=NOW)  # the rejected ts did not become the previous fresh one
    assert one.promised() == [0, 1, 3]


def test_e_the_first_fresh_ts_has_no_lower_bound(one: One) -> None:
    one.prepare(0, ts=NOW - 5)
    assert one.promised() == [0] and one.evidence() == []


def _sized_prepare(one: One, size: int) -> bytes:
    """Prepare 0 whose CTBcast value is exactly ``size`` bytes (two signed entries)."""
    half = 1 << 20
    base = len(
        encode_payload(
            Prepare(0, 0, Batch(NOW, (one.signed(CID, 1, b""), one.signed(CID, 2, b""))))
        )
    )
    rest = size - base - half
    assert 0 <= rest <= half
    entries = (one.signed(CID, 1, b"a" * half), one.signed(CID, 2, b"b" * rest))
    m = encode_payload(Prepare(0, 0, Batch(NOW, entries)))
    assert len(m) == size
    return m


def test_e_a_prepare_that_just_fits_a_commit_is_accepted(make_cluster: Callable[..., Any]) -> None:
    one = One(make_cluster, max_request_bytes=1 << 20)
    overhead = 1 + (2 + 64) * 2  # a Commit adds a certificate of f+1 signers
    one.deliver(_sized_prepare(one, MAX_VALUE_BYTES - overhead))
    assert one.evidence() == []
    assert one.promised() == [0]


def test_e_a_prepare_one_byte_too_large_for_a_commit_is_evidence(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, max_request_bytes=1 << 20)
    overhead = 1 + (2 + 64) * 2
    one.deliver(_sized_prepare(one, MAX_VALUE_BYTES - overhead + 1))
    assert one.evidence() == [(LEADER, "prepare.too_large")]
    assert one.promised() == []


def test_e_a_request_of_max_request_bytes_is_accepted_one_more_is_evidence(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, max_request_bytes=64)
    one.prepare(0, one.signed(CID, 1, b"x" * 64))
    assert one.promised() == [0] and one.evidence() == []
    one.prepare(1, one.signed(CID, 2, b"y"), one.signed(CID, 3, b"x" * 65))
    assert one.evidence() == [(LEADER, "prepare.request_too_large")]
    assert one.promised() == [0]


@pytest.mark.parametrize(
    "payload",
    [
        Prepare(0, 0, Batch(MAX_TS + 1, ())),
        Prepare(MAX_VIEW + 1, 0, Batch(NOW, ())),
        Prepare(0, MAX_INSTANCE + 1, Batch(NOW, ())),
    ],
)
def test_out_of_range_integers_are_evidence(one: One, payload: Prepare) -> None:
    one.deliver(encode_payload(payload))
    assert one.evidence() == [(LEADER, "ctb.payload.out_of_range")]
    one.prepare(0)  # nothing of it was recorded: instance 0 is still expected
    assert one.promised() == [0]


def test_an_undecodable_ctbcast_value_is_evidence_with_its_decode_reason(one: One) -> None:
    one.deliver(b"\x09\x01")
    assert one.evidence() == [(LEADER, "ctb.payload.payload.bad_version")]
    one.prepare(0)
    assert one.promised() == [0]


# ============================================================ (e) clock


@pytest.mark.parametrize("offset", [1000, -1000])
def test_e_ts_exactly_skew_away_is_accepted(make_cluster: Callable[..., Any], offset: int) -> None:
    one = One(make_cluster, skew_ns=1000)
    one.prepare(0, ts=NOW + offset)
    assert one.promised() == [0] and one.evidence() == []


def test_e_ts_beyond_skew_ahead_waits_for_the_clock_without_evidence(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, skew_ns=1000)
    one.prepare(0, ts=NOW + 1001)
    assert one.promised() == [] and one.evidence() == []
    one.tick()  # re-checked: the clock has not moved
    assert one.promised() == []
    one.now += 1
    one.tick()
    assert one.promised() == [0] and one.evidence() == []


def test_e_ts_beyond_skew_behind_waits_without_evidence(make_cluster: Callable[..., Any]) -> None:
    one = One(make_cluster, skew_ns=1000)
    one.prepare(0, ts=NOW - 1001)
    one.tick()
    assert one.promised() == [] and one.evidence() == []


def test_e_a_clock_wait_is_not_rechecked_by_an_unrelated_execution(
    make_cluster: Callable[..., Any],
) -> None:
    """Time is re-checked at sync ticks; an execution re-checks only what it may settle."""
    one = One(make_cluster, skew_ns=1000)
    one.prepare(0)
    one.prepare(1, ts=NOW + 1500)
    one.now += 1000
    one.decide_fast(0)
    assert one.decided() == [0]
    assert one.promised() == [0]
    one.tick()
    assert one.promised() == [0, 1]


def test_a_waiting_prepare_keeps_the_sync_timer_armed_an_idle_replica_does_not(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, skew_ns=1000)
    one.drain()
    assert not [a for a in one.actions if isinstance(a, SetTimer)]
    one.prepare(0, ts=NOW + 5000)
    sync = TimerKey(TimerKind.SYNC)
    assert any(isinstance(a, SetTimer) and a.key == sync for a in one.actions)


# ============================================================ (e) log and signatures


def test_e_unsigned_entry_waits_for_the_request_then_is_accepted(one: One) -> None:
    one.prepare(0, Entry(CID, 1, b"p"))
    assert one.promised() == [] and one.evidence() == []
    one.request(CID, 1, b"p")
    assert one.promised() == [0] and one.evidence() == []


def test_e_unsigned_entry_with_other_bytes_than_the_log_waits(one: One) -> None:
    one.request(CID, 1, b"p")
    one.prepare(0, Entry(CID, 1, b"q"))
    one.tick()
    assert one.promised() == [] and one.evidence() == []


def test_e_entry_identical_to_the_log_is_accepted_at_once(one: One) -> None:
    one.request(CID, 1, b"p")
    one.prepare(0, Entry(CID, 1, b"p"))
    assert one.promised() == [0]


def test_e_entry_that_repeats_the_logged_signature_verifies_nothing(one: One) -> None:
    one.request(CID, 1, b"p", signed=True)
    counter = one.keys.counter
    before = counter.verified
    one.prepare(0, one.signed(CID, 1, b"p"))
    assert one.promised() == [0]
    assert counter.verified == before, "the log's copy was verified on reception already"


def test_e_unsigned_entry_of_a_request_logged_signed_is_accepted(one: One) -> None:
    one.request(CID, 1, b"p", signed=True)
    one.prepare(0, Entry(CID, 1, b"p"))
    assert one.promised() == [0]


def test_e_logged_bytes_with_a_forged_signature_are_not_identical(one: One) -> None:
    one.request(CID, 1, b"p")
    one.prepare(0, Entry(CID, 1, b"p", bytes(64)))
    one.tick()
    assert one.promised() == [] and one.evidence() == []


def test_e_valid_client_signature_needs_no_log(one: One) -> None:
    one.prepare(0, one.signed(CID, 1, b"p"))
    assert one.promised() == [0] and one.evidence() == []


@pytest.mark.parametrize("how", ["other key", "other payload", "other id"])
def test_e_invalid_client_signature_waits_without_evidence(one: One, how: str) -> None:
    if how == "other key":
        e = one.signed(CID, 1, b"p", one.keys.clients[CID2])
    elif how == "other payload":
        e = Entry(CID, 1, b"p", one.signed(CID, 1, b"q").sig)
    else:
        e = Entry(CID, 1, b"p", one.signed(CID, 2, b"p").sig)
    one.prepare(0, e)
    one.tick()
    assert one.promised() == [] and one.evidence() == []


def test_e_entry_of_an_unregistered_client_needs_nothing(one: One) -> None:
    one.prepare(0, Entry(999, 1, b"p"))
    assert one.promised() == [0]


def test_e_every_entry_is_checked_and_the_first_missing_one_is_awaited(one: One) -> None:
    one.request(CID, 1, b"a")
    one.prepare(0, Entry(CID, 1, b"a"), Entry(CID, 2, b"b"), Entry(CID2, 1, b"c"))
    assert one.promised() == []
    one.request(CID2, 1, b"c")
    assert one.promised() == []
    one.request(CID, 2, b"b")
    assert one.promised() == [0]


def test_e_a_request_two_prepares_wait_for_rechecks_both(one: One) -> None:
    one.prepare(0, Entry(CID, 1, b"a"))
    one.prepare(1, Entry(CID, 1, b"a"))
    one.request(CID, 1, b"a")
    assert one.promised() == [0, 1]


def test_e_an_executed_request_id_is_a_duplicate_left_to_execution(one: One) -> None:
    one.prepare(0, one.signed(CID, 1, b"a"))
    one.decide_fast(0)
    assert one.executed() == [(0, CID, 1)]
    one.prepare(1, Entry(CID, 1, b"forged, never sent"))
    assert one.promised() == [0, 1]


def test_e_an_executed_id_above_h_is_a_duplicate_too(one: One) -> None:
    one.prepare(0, one.signed(CID, 2, b"a"))
    one.decide_fast(0)
    assert one.rep.log.clients[CID].h == 0
    one.prepare(1, Entry(CID, 2, b"forged, never sent"))
    assert one.promised() == [0, 1]
    one.prepare(2, Entry(CID, 3, b"forged, never sent"))
    assert one.promised() == [0, 1]


def test_e_a_decided_batch_releases_what_waited_for_its_entries(one: One) -> None:
    one.prepare(0, Entry(CID, 1, b"x"))  # waits for (CID, 1)
    assert one.promised() == []
    # the same request decides in instance 0 through Commits of a batch signed by the client
    signed = one.signed(CID, 1, b"x")
    batch = Batch(NOW, (signed,))
    one.commit(LEADER, 0, batch)
    one.commit(OTHER, 0, batch)
    assert one.executed() == [(0, CID, 1)]
    assert one.rep.footprint()["waiting_requests"] == 0


# ============================================================ (e) admission changes in the pipeline


def test_e_entry_of_a_client_registered_earlier_waits_for_the_register(one: One) -> None:
    new = _key(7)
    one.prepare(0, one.admin(AdminOp.REGISTER, NEW, new.public_key))
    one.prepare(1, one.signed(NEW, 1, b"n", new))
    assert one.promised() == [0]
    one.tick()
    assert one.promised() == [0]
    one.decide_fast(0)
    assert one.promised() == [0, 1]
    assert one.evidence() == []


def test_e_forged_entry_of_a_client_registered_earlier_is_never_accepted(one: One) -> None:
    new = _key(7)
    one.prepare(0, one.admin(AdminOp.REGISTER, NEW, new.public_key))
    one.prepare(1, Entry(NEW, 1, b"forged"))
    one.decide_fast(0)
    one.tick()
    assert one.promised() == [0]


def test_e_deregister_earlier_makes_entries_of_that_client_wait(one: One) -> None:
    one.prepare(0, one.admin(AdminOp.DEREGISTER, CID, bytes(32)))
    one.prepare(1, Entry(CID, 1, b"n"))
    assert one.promised() == [0]
    one.decide_fast(0)
    assert one.promised() == [0, 1]


def test_e_an_admission_change_of_another_client_does_not_delay_an_entry(one: One) -> None:
    new = _key(7)
    one.request(CID, 1, b"c")
    one.prepare(0, one.admin(AdminOp.REGISTER, NEW, new.public_key))
    one.prepare(1, Entry(CID, 1, b"c"))
    assert one.promised() == [0, 1]


def test_e_an_admission_change_in_the_same_instance_does_not_delay_its_own_entries(
    one: One,
) -> None:
    new = _key(7)
    one.request(CID, 1, b"c")
    one.prepare(0, Entry(CID, 1, b"c"), one.admin(AdminOp.REGISTER, NEW, new.public_key))
    assert one.promised() == [0]


def test_e_entry_after_an_admin_command_naming_its_client_is_judged_before_the_batch(
    one: One,
) -> None:
    """Judged against the table before the batch, whatever the command will do: a forged
    entry is not accepted; a justified one is, and execution skips it once the command
    changed its client's registration."""
    forged = Entry(CID, 5, b"forged")
    one.prepare(0, one.admin(AdminOp.DEREGISTER, CID, bytes(32)), forged)
    one.tick()
    assert one.promised() == []


def test_e_justified_entry_after_a_deregister_in_its_batch_is_accepted_then_skipped(
    one: One,
) -> None:
    one.request(CID, 1, b"c")
    one.prepare(0, one.admin(AdminOp.DEREGISTER, CID, bytes(32)), Entry(CID, 1, b"c"))
    assert one.promised() == [0]
    one.decide_fast(0)
    assert one.executed() == [(0, ADMIN_CLIENT_ID, 1)]


def test_e_entry_before_an_admin_command_naming_its_client_is_checked(one: One) -> None:
    forged = Entry(CID, 5, b"forged")
    one.prepare(0, forged, one.admin(AdminOp.DEREGISTER, CID, bytes(32)))
    one.tick()
    assert one.promised() == []


def test_e_a_client_payload_shaped_like_an_admin_command_names_nobody(one: One) -> None:
    fake = admin_command(one.keys.admin, one.cluster, 0, AdminOp.DEREGISTER, CID2, bytes(32), 1)
    one.request(CID2, 1, b"c")
    one.prepare(0, one.signed(CID, 1, fake), Entry(CID2, 1, b"c"))
    one.prepare(1, Entry(CID2, 1, b"c"))
    assert one.promised() == [0, 1]


# ============================================================ (e) instances not held here


def test_e_after_a_prepare_not_held_here_entries_wait_until_execution_passes_it(
    make_cluster: Callable[..., Any],
) -> None:
    """Instances are held below our last CTBcast checkpoint + 2 windows. A Prepare beyond
    that is not held, so its admin commands are unknown here: a later entry waits until
    execution has passed it, then only for admin commands naming its client."""
    one = One(make_cluster, window=4)
    one.checkpoint(LEADER, 8)  # the leader's window now reaches instance 11
    one.checkpoint(OTHER, 8)
    for i in range(8):
        one.prepare(i)
    assert one.promised() == list(range(8))
    one.prepare(8)  # beyond 0 + 2 * window: not held here
    assert one.promised() == list(range(8)) and one.evidence() == []
    for i in range(4):
        one.decide_fast(i)
    one.stabilise(2)
    one.stabilise(4)
    assert [cp.c for cp in one.own_ctb(Checkpoint)] == [2, 4]  # now held up to 11
    new = _key(7)
    one.prepare(9, one.admin(AdminOp.REGISTER, NEW, new.public_key))
    one.prepare(10, one.signed(CID, 1, b"c"))
    for i in range(4, 8):
        one.decide_fast(i)
    assert one.rep.consensus.exec_next == 8
    assert one.promised() == list(range(8)), "instance 8 may hold admin commands"
    batch = Batch(NOW, ())
    one.commit(LEADER, 8, batch)
    one.commit(OTHER, 8, batch)
    assert one.rep.consensus.exec_next == 9
    # 9 names NEW only: 10's entry of CID does not wait for it
    assert one.promised() == [*range(8), 9, 10]
    assert one.evidence() == []


# ============================================================ below the stable checkpoint


def test_a_prepare_below_the_stable_checkpoint_is_ignored_but_advances_the_order(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, window=4, batch_max=1)
    for i in range(2):  # decided without our Prepares, through Commits
        batch = Batch(NOW, ())
        one.commit(LEADER, i, batch)
        one.commit(OTHER, i, batch)
    assert one.rep.consensus.exec_next == 2
    one.stabilise(2)
    assert one.rep.consensus.stable_c == 2
    bad = (one.signed(CID, 1, b"a"), one.signed(CID, 2, b"b"))  # over batch_max
    one.prepare(0, *bad)
    one.prepare(1)
    assert one.evidence() == [] and one.promised() == []
    one.prepare(2)
    assert one.promised() == [2]


# ============================================================ discarding at a checkpoint


def test_waiting_keys_of_instances_below_a_checkpoint_are_dropped(
    make_cluster: Callable[..., Any],
) -> None:
    """Instance 0 waits for (CID, 1) but decides another batch (certified by the leader and a
    colluder): the key must go when the checkpoint above 0 is CTBcast (bounded memory)."""
    one = One(make_cluster, window=4)
    one.prepare(0, Entry(CID, 1, b"x"))
    assert one.rep.footprint()["waiting_requests"] == 1
    other = Batch(NOW, ())
    for i in range(2):
        one.commit(LEADER, i, other)
        one.commit(OTHER, i, other)
    assert one.rep.footprint()["waiting_requests"] == 1
    one.stabilise(2)
    assert [cp.c for cp in one.own_ctb(Checkpoint)] == [2]
    assert one.rep.footprint()["waiting_requests"] == 0


def test_waiting_key_of_an_instance_at_the_checkpoint_is_kept(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, window=4)
    one.prepare(0)
    one.prepare(1)
    one.prepare(2, Entry(CID, 1, b"x"))
    one.decide_fast(0)
    one.decide_fast(1)
    one.stabilise(2)
    assert [cp.c for cp in one.own_ctb(Checkpoint)] == [2]
    one.request(CID, 1, b"x")
    assert one.promised() == [0, 1, 2]


def test_an_admission_change_at_the_checkpoint_still_delays_entries_after_it(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, window=4)
    one.prepare(0)
    one.prepare(1)
    new = _key(7)
    one.prepare(2, one.admin(AdminOp.REGISTER, NEW, new.public_key))
    one.prepare(3, Entry(NEW, 1, b"forged"))
    one.decide_fast(0)
    one.decide_fast(1)
    one.stabilise(2)
    assert [cp.c for cp in one.own_ctb(Checkpoint)] == [2]
    one.tick()
    assert one.promised() == [0, 1, 2]


# ============================================================ which admission changes delay an entry


def test_e_an_admission_change_in_a_later_instance_does_not_delay_an_entry(one: One) -> None:
    new = _key(7)
    one.prepare(0, one.admin(AdminOp.REGISTER, NEW, new.public_key))  # unsettles instance 1
    one.prepare(1, Entry(CID, 1, b"c"))
    one.prepare(2, one.admin(AdminOp.DEREGISTER, CID, bytes(32)))
    assert one.promised() == [0, 2]
    one.request(CID, 1, b"c")
    assert one.promised() == [0, 2, 1]


def test_e_an_admission_change_later_in_its_own_batch_does_not_delay_an_entry(one: One) -> None:
    new = _key(7)
    one.request(CID, 1, b"c")
    one.prepare(0, one.admin(AdminOp.REGISTER, NEW, new.public_key))
    one.prepare(1, Entry(CID, 1, b"c"), one.admin(AdminOp.DEREGISTER, CID, bytes(32)))
    assert one.promised() == [0, 1]


def test_e_a_request_two_prepares_wait_for_survives_a_checkpoint_between_them(
    make_cluster: Callable[..., Any],
) -> None:
    one = One(make_cluster, window=4)
    one.prepare(0, Entry(CID, 1, b"x"))
    one.prepare(1)
    one.prepare(2, Entry(CID, 1, b"x"))
    for i in range(2):  # 0 and 1 decide other batches, through Commits
        one.commit(LEADER, i, Batch(NOW, ()))
        one.commit(OTHER, i, Batch(NOW, ()))
    one.stabilise(2)
    assert [cp.c for cp in one.own_ctb(Checkpoint)] == [2]
    one.request(CID, 1, b"x")
    assert one.promised() == [1, 2]


def _digest_at_2(make_cluster: Callable[..., Any], ts: int) -> bytes:
    """Our snapshot digest at checkpoint 2 after two empty batches of ``ts`` (a twin replica
    computes it: the digest is deterministic)."""
    twin = One(make_cluster, window=4, skew_ns=1000)
    twin.prepare(0, ts=ts)
    twin.prepare(1, ts=ts)
    twin.now = ts
    twin.tick()
    twin.decide_fast(0)
    twin.decide_fast(1)
    d: bytes
    (d,) = {s.digest for s in twin.sent(CkptShare) if s.c == 2}
    return d


def test_e_a_recheck_survives_instances_discarded_by_the_acceptance_it_causes(
    make_cluster: Callable[..., Any],
) -> None:
    """Accepting instance 0 at a clock re-check decides it at once (its votes are buffered),
    which executes 0 and 1 and makes checkpoint 2 stable: instance 1, still waiting for the
    clock, is discarded in the middle of the re-check."""
    ts = NOW + 5000
    d = _digest_at_2(make_cluster, ts)
    one = One(make_cluster, window=4, skew_ns=1000)
    one.prepare(0, ts=ts)
    one.prepare(1, ts=ts)
    assert one.promised() == []
    batch1 = Batch(ts, ())
    one.commit(LEADER, 1, batch1)
    one.commit(OTHER, 1, batch1)
    one.frame(OTHER, Promise(0, 0))
    one.frame(LEADER, FastCommit(0, 0))
    one.frame(OTHER, FastCommit(0, 0))
    one.frame(
        LEADER, CkptShare(2, d, one.keys.members[LEADER].sign(Tag.CKPT, one.cluster, 0, 2, d))
    )
    one.now = ts
    one.tick()
    assert one.decided() == [1, 0]
    assert [cp.c for cp in one.own_ctb(Checkpoint)] == [2]
    assert one.promised() == [0]


def test_e_beside_a_real_admin_command_a_client_payload_shaped_like_one_names_nobody(
    one: One,
) -> None:
    new = _key(7)
    fake = admin_command(one.keys.admin, one.cluster, 0, AdminOp.DEREGISTER, CID2, bytes(32), 9)
    one.request(CID2, 1, b"c")
    one.prepare(0, one.admin(AdminOp.REGISTER, NEW, new.public_key), one.signed(CID, 1, fake))
    one.prepare(1, Entry(CID2, 1, b"c"))
    assert one.promised() == [0, 1], "instance 0 names NEW only"
