"""The simulator's checkers catch known-bad input (a checker that cannot fail proves nothing)."""

from __future__ import annotations

from ubft.replica.core.actions import Decided, Delivered, Executed, ReportEvidence
from ubft.replica.core.config import ProtocolParams
from ubft.replica.core.crypto import digest
from ubft.replica.sim.checkers import (
    Agreement,
    BoundedMemory,
    EvidenceAgainstCorrect,
    Validity,
    footprint_bounds,
)

D1, D2 = b"\x01" * 32, b"\x02" * 32


def test_agreement_flags_two_batches_for_one_instance() -> None:
    a = Agreement()
    a.on_decided(0, Decided(5, 0, D1, True))
    a.on_decided(1, Decided(5, 0, D1, False))
    assert a.violations == []
    a.on_decided(2, Decided(5, 0, D2, True))
    assert len(a.violations) == 1 and "instance 5" in a.violations[0]
    assert a.fast[5] is False


def test_ctb_consistency_flags_two_values_for_one_index() -> None:
    a = Agreement()
    a.on_delivered(1, Delivered(0, 3, b"m1"))
    a.on_delivered(2, Delivered(0, 3, b"m1"))
    assert a.violations == []
    a.on_delivered(2, Delivered(0, 3, b"m2"))
    assert a.violations and "ctb consistency" in a.violations[0]


def test_exactly_once_flags_double_execution_and_moved_instance() -> None:
    a = Agreement()
    a.on_executed(0, Executed(1, 100, 1, D1, b"ok"))
    a.on_executed(0, Executed(1, 100, 1, D1, b"ok"))
    a.on_executed(1, Executed(2, 100, 1, D1, b"ok"))
    a.on_executed(2, Executed(1, 100, 1, D1, b"other"))
    text = " | ".join(a.violations)
    assert "executed (100, 1) twice" in text
    assert "instances 1 and 2" in text
    assert "different results" in text


def test_validity_flags_payload_never_sent() -> None:
    v = Validity()
    v.issue(100, 1, digest(b"SET x 1"))
    v.on_executed(0, Executed(1, 100, 1, b"SET x 1", b"ok"))
    assert v.violations == []
    v.on_executed(0, Executed(1, 100, 1, b"SET x 2", b"ok"))
    v.on_executed(0, Executed(1, 999, 1, b"SET x 1", b"ok"))
    assert len(v.violations) == 2


def test_evidence_against_correct_replica_is_a_violation() -> None:
    e = EvidenceAgainstCorrect({0, 2})
    e.on_evidence(0, ReportEvidence(1, "ctb.equivocation"))
    e.on_evidence(0, ReportEvidence(2, "client.bad_signature", is_client=True))
    assert e.violations == []
    e.on_evidence(0, ReportEvidence(2, "prepare.not_leader"))
    assert len(e.violations) == 1


def test_bounded_memory_flags_structure_above_its_bound() -> None:
    bounds = footprint_bounds(ProtocolParams(), 3, 4, 3)
    m = BoundedMemory(bounds)
    m.observe(0, {"instances": 10, "ctbcast": 5})
    assert m.violations == [] and m.max_total == 15
    m.observe(1, {"instances": bounds["instances"] + 1})
    m.observe(1, {"unknown_structure": 1})
    assert len(m.violations) == 2
