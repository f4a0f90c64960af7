"""Run many seeded schedules and summarise them (behind ``ubft simulate``)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from .faults import plan_for
from .history import write_jsonl
from .trace import Tracer
from .world import ScheduleResult, Simulation


def run_schedule(
    seed: int,
    scenario: str = "mixed",
    trace: TextIO | None = None,
    n: int = 3,
    memnodes: int = 3,
) -> ScheduleResult:
    plan = plan_for(scenario, random.Random(seed ^ 0x5EED), n=n, memnodes=memnodes)
    sim = Simulation(seed, plan, n=n, memnodes=memnodes)
    if trace is not None:
        sim.tracer = Tracer(trace)
    return sim.run()


def run_schedules(
    schedules: int,
    seed: int,
    scenario: str = "mixed",
    history_dir: Path | None = None,
    trace: TextIO | None = None,
    n: int = 3,
    memnodes: int = 3,
    progress: Callable[[int, ScheduleResult, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Schedule j runs with seed ``seed + j``. Returns the JSON summary."""
    started = time.perf_counter()
    summary: dict[str, Any] = {
        "schedules": 0,
        "seed": seed,
        "scenario": scenario,
        "replicas": n,
        "memory_nodes": memnodes,
        "requests_completed": 0,
        "decisions_fast": 0,
        "decisions_slow": 0,
        "signatures_created": 0,
        "checkpoint_signatures_created": 0,
        "violations": [],
        "max_replica_state_entries": 0,
        "memnode_bytes_per_node": 0,
        "events": 0,
        "scenarios": {},
    }
    if history_dir is not None:
        history_dir.mkdir(parents=True, exist_ok=True)
    for j in range(schedules):
        s = seed + j
        res = run_schedule(s, scenario, trace, n, memnodes)
        summary["schedules"] += 1
        for key in (
            "requests_completed",
            "decisions_fast",
            "decisions_slow",
            "signatures_created",
            "checkpoint_signatures_created",
            "events",
        ):
            summary[key] += getattr(res, key)
        summary["max_replica_state_entries"] = max(
            summary["max_replica_state_entries"], res.max_replica_state_entries
        )
        summary["memnode_bytes_per_node"] = max(
            summary["memnode_bytes_per_node"], res.memnode_bytes_per_node
        )
        name = res.plan.split(" ", 1)[0]
        summary["scenarios"][name] = summary["scenarios"].get(name, 0) + 1
        summary["violations"].extend(f"seed={s} [{res.plan}] {v}" for v in res.violations)
        if history_dir is not None:
            write_jsonl(history_dir / f"schedule-{s}.jsonl", res.history)
        if progress is not None:
            progress(j, res, summary)
    summary["elapsed_s"] = round(time.perf_counter() - started, 3)
    return summary
