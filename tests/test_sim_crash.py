"""A schedule that raises is a "crash" violation with its seed, scenario and replay command;
it never aborts the run (``ubft simulate`` exits non-zero and prints how to replay it). Every
other violation string of the checkers is classed safety, liveness or bound."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from ubft.apps.kv import KVStore
from ubft.replica.core.actions import Decided, Delivered, Executed, ReportEvidence
from ubft.replica.core.config import ProtocolParams
from ubft.replica.core.replica import Replica
from ubft.replica.sim import world
from ubft.replica.sim.checkers import (
    Agreement,
    BoundedMemory,
    EvidenceAgainstCorrect,
    Validity,
    footprint_bounds,
)
from ubft.replica.sim.run import (
    BOUND,
    CRASH,
    LIVENESS,
    SAFETY,
    VIOLATION_CLASSES,
    classify,
    replay_command,
    run_schedule,
    run_schedule_violations,
    run_schedules,
)
from ubft.replica.sim.world import Simulation

from ubft.cli import main

SEED = 41
BAD = SEED + 1  # the second of three schedules


class _Faults:
    """Which seed is running now, and the seed whose schedule must fail."""

    def __init__(self) -> None:
        self.running = -1
        self.bad = BAD
        self.raised = 0


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Faults]:
    """Know which seed a Simulation runs (to make one schedule's component faulty)."""
    state = _Faults()
    original = Simulation.__init__

    def init(self: Simulation, seed: int, *args: Any, **kwargs: Any) -> None:
        state.running = seed
        original(self, seed, *args, **kwargs)

    monkeypatch.setattr(Simulation, "__init__", init)
    yield state


def _faulty_kv(monkeypatch: pytest.MonkeyPatch, state: _Faults, exc: Exception) -> None:
    """The KV application raises ``exc`` at its third command in schedule ``state.bad``."""

    class FaultyKV(KVStore):
        calls = 0

        def apply(self, command: bytes, clock_ns: int) -> bytes:
            self.calls += 1
            if state.running == state.bad and self.calls == 3:
                state.raised += 1
                raise exc
            return super().apply(command, clock_ns)

    monkeypatch.setattr(world, "KVStore", FaultyKV)


@pytest.mark.parametrize(
    ("exc", "name"),
    [(RuntimeError("deliberate fault"), "RuntimeError"), (KeyError(7), "KeyError")],
)
def test_an_exception_in_a_schedule_is_a_crash_violation_and_the_run_goes_on(
    monkeypatch: pytest.MonkeyPatch, faults: _Faults, exc: Exception, name: str
) -> None:
    _faulty_kv(monkeypatch, faults, exc)
    summary = run_schedules(3, SEED, "timely")
    assert faults.raised == 1
    assert summary["schedules"] == 3, "the schedules after the crash still ran"
    assert summary["scenarios"] == {"timely": 3}
    assert summary["requests_completed"] > 0
    assert summary["violation_counts"] == {SAFETY: 0, LIVENESS: 0, CRASH: 1, BOUND: 0}
    [line] = summary["violations"]
    [v] = summary["violation_details"]
    assert line.startswith(f"seed={BAD} [timely ") and f"crash: {name}: " in line
    assert v["class"] == "crash"
    assert v["seed"] == BAD
    assert v["scenario"] == "timely"
    assert v["plan"].startswith("timely ")
    assert v["exception"] == name
    assert str(exc) in v["message"]
    assert v["where"].startswith("tests/test_sim_crash.py:") and v["where"].endswith(" in apply")
    assert v["replay"] == f"ubft simulate --schedules 1 --seed {BAD} --scenario timely"
    json.dumps(summary)  # the summary stays JSON


def test_run_schedule_alone_reports_the_crash_too(
    monkeypatch: pytest.MonkeyPatch, faults: _Faults
) -> None:
    _faulty_kv(monkeypatch, faults, RuntimeError("boom"))
    res = run_schedule(BAD, "timely")
    assert len(res.violations) == 1 and res.violations[0].startswith("crash: RuntimeError: boom")
    assert res.seed == BAD and res.plan.startswith("timely ")
    assert res.events > 0


def test_the_replay_command_reproduces_the_crash(
    monkeypatch: pytest.MonkeyPatch, faults: _Faults
) -> None:
    _faulty_kv(monkeypatch, faults, RuntimeError("boom"))
    [v] = run_schedules(3, SEED, "timely")["violation_details"]
    argv = v["replay"].split()
    assert argv[0] == "ubft"
    faults.raised = 0
    replayed = run_schedules(int(argv[3]), int(argv[5]), argv[7])
    assert faults.raised == 1
    assert replayed["violation_details"] == [v]


def test_the_replay_command_names_non_default_sizes() -> None:
    assert replay_command(5, "mixed") == "ubft simulate --schedules 1 --seed 5 --scenario mixed"
    assert replay_command(5, "random", n=5, memnodes=5) == (
        "ubft simulate --schedules 1 --seed 5 --scenario random --replicas 5 --memnodes 5"
    )
    assert replay_command(5, "timely", n=3, memnodes=5).endswith("--scenario timely --memnodes 5")


def test_a_mixed_run_replays_with_scenario_mixed(
    monkeypatch: pytest.MonkeyPatch, faults: _Faults
) -> None:
    """Under "mixed" the seed draws the scenario, so the replay names "mixed" again."""

    def boom(self: Simulation) -> world.ScheduleResult:
        raise ValueError("no plan runs")

    monkeypatch.setattr(Simulation, "run", boom)
    summary = run_schedules(2, 7, "mixed", n=5, memnodes=5)
    assert summary["schedules"] == 2
    assert [v["seed"] for v in summary["violation_details"]] == [7, 8]
    for v in summary["violation_details"]:
        assert v["class"] == CRASH and v["exception"] == "ValueError"
        assert v["scenario"] == "mixed"
        assert v["replay"].endswith("--scenario mixed --replicas 5 --memnodes 5")
        assert v["where"].endswith(" in boom")


def test_cli_exits_non_zero_and_prints_the_replay_command(
    monkeypatch: pytest.MonkeyPatch, faults: _Faults, capsys: pytest.CaptureFixture[str]
) -> None:
    _faulty_kv(monkeypatch, faults, RuntimeError("deliberate fault"))
    code = main(["simulate", "--schedules", "3", "--seed", str(SEED), "--scenario", "timely"])
    out = capsys.readouterr().out
    assert code != 0
    assert "crash 1" in out
    assert "[crash] seed=42 " in out and "RuntimeError: deliberate fault" in out
    assert f"replay: ubft simulate --schedules 1 --seed {BAD} --scenario timely" in out
    assert "schedules                        3" in out


def test_cli_json_carries_the_structured_crash(
    monkeypatch: pytest.MonkeyPatch, faults: _Faults, capsys: pytest.CaptureFixture[str]
) -> None:
    _faulty_kv(monkeypatch, faults, KeyError("missing"))
    argv = ["simulate", "--schedules", "3", "--seed", str(SEED), "--scenario", "timely", "--json"]
    code = main(argv)
    summary = json.loads(capsys.readouterr().out)
    assert code != 0
    assert summary["schedules"] == 3
    assert summary["violation_counts"][CRASH] == 1
    [v] = summary["violation_details"]
    assert (v["class"], v["seed"], v["scenario"], v["exception"]) == (
        "crash",
        BAD,
        "timely",
        "KeyError",
    )
    assert v["replay"] == f"ubft simulate --schedules 1 --seed {BAD} --scenario timely"


def test_cli_exits_zero_without_violations(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--schedules", "1", "--seed", "3", "--scenario", "timely"])
    out = capsys.readouterr().out
    assert code == 0
    assert "violations                       0 (safety 0, liveness 0, crash 0, bound 0)" in out


def test_an_assertion_from_an_invariant_check_is_a_crash(
    monkeypatch: pytest.MonkeyPatch, faults: _Faults
) -> None:
    """world.py turns an AssertionError into "crash: assertion failed"; it is classed crash
    and keeps the frame that raised it."""
    original = Replica.check_invariants

    def broken(self: Replica) -> None:
        if faults.running == faults.bad:
            raise AssertionError("broadcast beyond the tail")
        original(self)

    monkeypatch.setattr(Replica, "check_invariants", broken)
    summary = run_schedules(2, SEED, "timely")
    assert summary["schedules"] == 2
    assert summary["violation_counts"] == {SAFETY: 0, LIVENESS: 0, CRASH: 1, BOUND: 0}
    [v] = summary["violation_details"]
    assert v["seed"] == BAD and v["class"] == CRASH
    assert "assertion failed" in v["message"] and "broadcast beyond the tail" in v["message"]
    assert v["exception"] == "AssertionError"
    assert v["where"].startswith("tests/test_sim_crash.py:") and v["where"].endswith(" in broken")


def test_cli_prints_where_an_invariant_assertion_was_raised(
    monkeypatch: pytest.MonkeyPatch, faults: _Faults, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(self: Replica) -> None:
        raise AssertionError("instance beyond the bound")

    monkeypatch.setattr(Replica, "check_invariants", broken)
    code = main(["simulate", "--schedules", "1", "--seed", "5", "--scenario", "timely"])
    out = capsys.readouterr().out
    assert code != 0
    assert "[crash] seed=5 " in out and "instance beyond the bound" in out
    assert "    raised at: tests/test_sim_crash.py:" in out
    assert "replay: ubft simulate --schedules 1 --seed 5 --scenario timely" in out


def test_bounded_memory_violations_of_a_schedule_are_class_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def tiny(params: ProtocolParams, n: int, clients: int, memnodes: int) -> dict[str, int]:
        return dict.fromkeys(footprint_bounds(params, n, clients, memnodes), 0)

    monkeypatch.setattr(world, "footprint_bounds", tiny)
    res, violations = run_schedule_violations(3, "timely")
    assert res.violations and len(violations) == len(res.violations)
    assert {v.cls for v in violations} == {BOUND}
    assert all(v.exception is None and v.where is None for v in violations)


def _checker_violations() -> dict[str, list[str]]:
    """Real violation strings from each checker, fed known-bad input."""
    a = Agreement()
    a.on_decided(0, Decided(5, 0, b"x" * 32, True))
    a.on_decided(1, Decided(5, 0, b"y" * 32, True))
    a.on_delivered(0, Delivered(1, 0, b"m1"))
    a.on_delivered(1, Delivered(1, 0, b"m2"))
    a.on_executed(0, Executed(1, 100, 1, b"p", b"r"))
    a.on_executed(0, Executed(2, 100, 1, b"p", b"r"))
    a.on_executed(1, Executed(1, 100, 1, b"p", b"other"))
    v = Validity()
    v.on_executed(0, Executed(1, 100, 1, b"never sent", b"r"))
    e = EvidenceAgainstCorrect({0, 1, 2})
    e.on_evidence(0, ReportEvidence(1, "prepare.bad_batch"))
    m = BoundedMemory({"instances": 1})
    m.observe(0, {"instances": 2, "unknown_structure": 1})
    return {
        "agreement": a.violations,
        "validity": v.violations,
        "evidence": e.violations,
        "memory": m.violations,
    }


def test_checker_violations_are_classed() -> None:
    found = _checker_violations()
    assert len(found["agreement"]) >= 4  # agreement, ctb consistency, exactly-once x2, result
    assert any(s.startswith("ctb consistency") for s in found["agreement"])
    assert any(s.startswith("exactly-once") for s in found["agreement"])
    for key in ("agreement", "validity", "evidence"):
        assert found[key], key
        assert {classify(s) for s in found[key]} == {SAFETY}, found[key]
    assert len(found["memory"]) == 2
    assert {classify(s) for s in found["memory"]} == {BOUND}


@pytest.mark.parametrize(
    ("message", "cls"),
    [
        # the strings Simulation._result and Simulation.run format themselves
        ("linearizability: key r0: no linearization of 4 operations", SAFETY),
        ("client 101 accepted a result for #3 that no correct replica produced", SAFETY),
        ("admission: command for client 300 gave b'ERR x', expected b'OK'", SAFETY),
        ("liveness: requests unanswered after healing: {100: 4}", LIVENESS),
        ("crash: assertion failed: AssertionError('instance beyond the bound')", CRASH),
        ("crash: RuntimeError: boom at replica/core/consensus.py:10 in _execute", CRASH),
        ("bounded memory: replica 1 instances=600 above bound 512", BOUND),
        ("footprint: replica 1 grew without bound", BOUND),
        ("something no checker says yet", SAFETY),  # unknown: the worst class
    ],
)
def test_world_violation_strings_are_classed(message: str, cls: str) -> None:
    assert classify(message) == cls


def test_summary_keeps_its_keys_and_counts_every_class() -> None:
    summary = run_schedules(1, 3, "timely")
    for key in (
        "schedules",
        "requests_completed",
        "decisions_fast",
        "decisions_slow",
        "signatures_created",
        "violations",
        "max_replica_state_entries",
        "memnode_bytes_per_node",
    ):
        assert key in summary
    assert summary["violations"] == [] and summary["violation_details"] == []
    assert summary["violation_counts"] == dict.fromkeys(VIOLATION_CLASSES, 0)
