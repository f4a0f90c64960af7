"""Issue 2's acceptance points, each against the deterministic simulator."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from ubft.replica.core.config import ProtocolParams
from ubft.replica.core.replica import Replica
from ubft.replica.sim.checkers import footprint_bounds
from ubft.replica.sim.faults import FaultPlan
from ubft.replica.sim.run import run_schedule, run_schedules
from ubft.replica.sim.world import Simulation

MS = 1_000_000


@pytest.mark.parametrize("seed", range(5))
def test_all_correct_and_timely_every_decision_is_fast_and_unsigned(seed: int) -> None:
    res = run_schedule(seed, "timely")
    assert res.violations == []
    assert res.requests_completed == res.requests_issued > 0
    assert res.decisions_fast > 0
    assert res.decisions_slow == 0
    assert res.signatures_created == 0


@pytest.mark.parametrize("seed", range(4))
def test_silent_follower_slow_path_then_fast_path_resumes(seed: int) -> None:
    res = run_schedule(seed, "silent_follower")  # silent from 0 to 60 ms
    assert res.violations == []
    assert res.requests_completed == res.requests_issued > 0
    during = [fast for t, fast in res.decisions_after if t < 60 * MS]
    after = [fast for t, fast in res.decisions_after if t >= 60 * MS]
    assert during and not any(during), "while the follower is silent, decisions take the slow path"
    assert after and all(after[-3:]), "once it is back, the fast path resumes"
    assert res.signatures_created > 0


@pytest.mark.parametrize("seed", range(4))
def test_equivocating_broadcaster_leaves_proofs_and_no_disagreement(seed: int) -> None:
    res = run_schedule(seed, "equivocating_broadcaster")  # R0 equivocates its Prepares
    # violations include CTBcast consistency and agreement; an exception would be a "crash"
    assert res.violations == []
    assert res.proofs_held, "the correct replicas are checked"
    for replica, against in res.proofs_held.items():
        assert against == [0], f"replica {replica} holds no equivocation proof against R0"


@pytest.mark.parametrize("seed", range(3))
def test_one_memory_node_crashed_slow_path_completes(seed: int) -> None:
    res = run_schedule(seed, "memnode_crash_1")
    assert res.violations == []
    assert res.requests_completed == res.requests_issued > 0
    assert res.decisions_slow > 0


@pytest.mark.parametrize("seed", range(3))
def test_two_memory_nodes_crashed_slow_path_waits_then_completes(seed: int) -> None:
    res = run_schedule(seed, "memnode_crash_2")  # two of three down from 0 to 80 ms
    assert res.violations == []
    assert res.decisions_after, "decisions happen once a memory node returns"
    assert min(t for t, _ in res.decisions_after) >= 80 * MS, (
        "no slow-path decision without a majority"
    )
    assert res.requests_completed == res.requests_issued > 0


@pytest.mark.parametrize("seed", range(4))
def test_byzantine_clients_never_stall_or_crash_replicas(seed: int) -> None:
    res = run_schedule(seed, "byzantine_clients")
    assert res.violations == []
    assert res.requests_completed == res.requests_issued > 0
    assert res.client_evidence > 0, "malformed frames and bad signatures are reported"


def test_500_mixed_schedules_hold_every_invariant() -> None:
    summary = run_schedules(500, 20261125, "mixed")
    assert summary["violations"] == []
    assert summary["schedules"] == 500
    assert set(summary["scenarios"]) >= {
        "timely",
        "silent_follower",
        "equivocating_broadcaster",
        "memnode_crash_1",
        "memnode_crash_2",
        "byzantine_clients",
        "random",
    }
    assert summary["requests_completed"] > 0 and summary["decisions_slow"] > 0


def test_bounded_memory_after_100000_requests() -> None:
    params = ProtocolParams()
    plan = FaultPlan(
        "timely",
        clients=50,
        ops_per_client=2000,
        register_keys=64,
        counter_keys=16,
        safety_phase_ns=10**13,
        liveness_bound_ns=0,
    )
    sim = Simulation(11, plan, params=params)
    res = sim.run()
    assert res.violations == []
    assert res.requests_completed == 100_000
    bounds = footprint_bounds(params, 3, 50, 3)
    for r in sorted(sim.correct):
        for key, value in sim.replicas[r].footprint().items():
            assert value <= bounds[key], (r, key, value, bounds[key])
    for key, value in sim.memory.max_by_key.items():
        assert value <= bounds[key], (key, value, bounds[key])
    assert res.memnode_bytes_per_node < 1 << 20
    assert res.checkpoint_signatures_created > 0, (
        "checkpoints were taken, so old state was released"
    )


def test_cli_simulate_200_schedules_reports_no_violations() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ubft", "simulate", "--schedules", "200", "--seed", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
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
    assert summary["schedules"] == 200
    assert summary["violations"] == []
    assert summary["memnode_bytes_per_node"] < 1 << 20


def test_history_dir_verdict_matches_the_simulator(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ubft.replica.sim.history import read_jsonl
    from ubft.replica.sim.linearizability import check

    summary = run_schedules(6, 3, "random", history_dir=tmp_path)
    files = sorted(tmp_path.glob("*.jsonl"))
    assert len(files) == 6
    for path in files:
        ops = read_jsonl(path)
        assert ops, path
        assert check(ops).ok == (not any("linearizability" in v for v in summary["violations"]))


def _r2_cannot_send(seed: int) -> tuple[ProtocolParams, Simulation]:
    """Small tail and window; R2's frames to the other replicas are lost (one way)."""
    params = ProtocolParams(tail=8, window=16, inflight_max=4)
    plan = FaultPlan(
        "one_way", clients=4, ops_per_client=60, safety_phase_ns=10**13, liveness_bound_ns=0
    )
    sim = Simulation(seed, plan, params=params)
    for other in (0, 1):
        sim.net.partition(("R", 2), ("R", other), both=False)
    return params, sim


def test_bounded_memory_when_a_correct_follower_cannot_send() -> None:
    """R2 receives everything but its frames to replicas are lost: its own CTBcast stream gets
    no checkpoint certificates, so its tail fills; what it still has to CTBcast (Commits,
    Checkpoints) must stay bounded instead of queueing one entry per decided instance."""
    params, sim = _r2_cannot_send(seed=5)
    res = sim.run()
    assert res.violations == []
    assert res.requests_completed == 240
    assert 2 in sim.correct
    bounds = footprint_bounds(params, 3, 4, 3)
    fp = sim.replicas[2].footprint()
    assert fp["ctbcast"] <= bounds["ctbcast"], fp
    assert fp["instances"] <= 2 * params.window, fp
    # it discards below a stable checkpoint only once it CTBcast it, so it waits for its tail
    assert sim.replicas[2].consensus.exec_next <= 2 * params.window


def test_a_follower_whose_frames_were_lost_unblocks_its_stream_once_they_flow_again() -> None:
    """As above, then the one-way partition heals: R2 pushes its stuck tail again, its CTBcast
    checkpoint gets certified, its queue drains and it CTBcasts its stable checkpoint.
    (Executing what the others decided meanwhile needs state transfer: the next issue.)"""
    _, sim = _r2_cannot_send(seed=6)
    res = sim.run()  # the workload completes without R2
    assert res.violations == []
    assert res.requests_completed == 240
    r2 = sim.replicas[2]
    assert isinstance(r2, Replica)
    assert r2.ctb.broadcaster.queue, "R2's tail is full and its stream is stuck"
    assert r2.consensus.ckpt.last_ctb_ckpt == 0
    sim.net.heal_all()  # the others are idle now: R2 itself must push its tail again
    sim.run_until(sim.now + 200 * MS, stop_when_done=False)
    assert not r2.ctb.broadcaster.queue
    assert r2.ctb.broadcaster.cert_c > 0
    assert r2.consensus.ckpt.last_ctb_ckpt > 0


def test_cli_history_dir_writes_one_file_per_schedule_with_the_same_verdict(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ubft.replica.sim.history import read_jsonl
    from ubft.replica.sim.linearizability import check

    out = subprocess.run(
        [
            *(sys.executable, "-m", "ubft", "simulate", "--schedules", "4", "--seed", "9"),
            *("--scenario", "random", "--json", "--history-dir", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    summary = json.loads(out.stdout)
    files = sorted(tmp_path.glob("*.jsonl"))
    assert len(files) == summary["schedules"] == 4
    reported_bad = {v.split()[0] for v in summary["violations"] if "linearizability" in v}
    for path in files:
        seed = path.stem.split("-")[-1]
        lines = path.read_text().splitlines()
        assert lines and all(
            json.loads(line)["type"] in ("invoke", "ok", "fail", "info") for line in lines
        )
        assert check(read_jsonl(path)).ok == (f"seed={seed}" not in reported_bad)


def test_trace_describes_every_event_of_a_schedule() -> None:
    import io

    out = io.StringIO()
    res = run_schedule(3, "timely", trace=out)
    lines = out.getvalue().splitlines()
    assert res.violations == [] and 0 < len(lines) <= res.events
    text = out.getvalue()
    for needle in ("Request(", "Ctb(b=0, k=0, m=Prepare(", "Promise(", "FastCommit(", "Reply("):
        assert needle in text


@pytest.mark.parametrize("seed", range(3))
def test_a_memory_node_that_restarts_empty_is_rewritten_before_it_counts(seed: int) -> None:
    """PROTOCOL.md section 1, amnesia: memory node A crashes and returns with an empty memory
    (new incarnation, areas "unknown"); then memory node B crashes for good. A follower muted on
    the fast paths forces every delivery through the registers, so the correct replicas keep
    deciding only if every writer rewrote its registers on A and marked them known."""
    import random

    from ubft.replica.sim.faults import plan_for

    plan = plan_for("memnode_amnesia", random.Random(seed ^ 0x5EED))
    sim = Simulation(seed, plan)
    res = sim.run()
    sim.run_until(sim.now + 100 * MS, stop_when_done=False)  # let the slowest replica finish
    assert res.violations == []
    assert res.requests_completed == res.requests_issued > 0
    restarted = plan.memnode_crashes[0][0]
    assert sim.stores[restarted].incarnation > 1
    assert all(area.known for area in sim.stores[restarted]._areas.values())
    executed = {r: sim.replicas[r].consensus.exec_next for r in sim.correct}  # type: ignore[union-attr]
    assert len(set(executed.values())) == 1, executed


def test_five_replicas_and_five_memory_nodes_hold_every_invariant() -> None:
    summary = run_schedules(40, 77, "mixed", n=5, memnodes=5)
    assert summary["violations"] == []
    assert summary["requests_completed"] > 0
    # n*(n-1)*t registers of 240 B per epoch: 600 KiB for n=5, t=128 (PROTOCOL.md section 2)
    assert summary["memnode_bytes_per_node"] == 5 * 4 * 128 * 240


def test_five_replicas_with_up_to_two_byzantine_hold_every_invariant() -> None:
    summary = run_schedules(60, 11, "random", n=5)
    assert summary["violations"] == []
    assert summary["requests_completed"] > 0
