"""Run many seeded schedules and summarise them (behind ``ubft simulate``).

A schedule never aborts the run: any exception raised inside it (the simulator, a replica, the
application, a checker) becomes a violation of class "crash" carrying the exception, its
innermost frame, the seed, the scenario and the command that replays it. Every violation has
one class: "safety" (agreement, validity, exactly-once, CTBcast consistency, evidence against a
correct replica, linearizability, admission results, accepted results), "liveness" (requests
unanswered after healing), "bound" (bounded memory) or "crash".
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .faults import plan_for
from .history import write_jsonl
from .trace import Tracer
from .world import ScheduleResult, Simulation

DEFAULT_REPLICAS = 3
DEFAULT_MEMNODES = 3

SAFETY, LIVENESS, CRASH, BOUND = "safety", "liveness", "crash", "bound"
VIOLATION_CLASSES = (SAFETY, LIVENESS, CRASH, BOUND)

# Leading words of the violation strings that checkers.py and world.py produce, by class.
# Anything not listed is classed "safety": an unknown complaint is treated as the worst kind.
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("crash", CRASH),
    ("bounded memory", BOUND),
    ("footprint", BOUND),
    ("liveness", LIVENESS),
    ("agreement", SAFETY),
    ("ctb consistency", SAFETY),
    ("exactly-once", SAFETY),
    ("validity", SAFETY),
    ("evidence", SAFETY),
    ("linearizability", SAFETY),
    ("admission", SAFETY),
    ("client ", SAFETY),  # "client C accepted a result for #x that no correct replica produced"
)


def classify(message: str) -> str:
    """The class of one violation string of a ``ScheduleResult``."""
    text = message.lstrip().lower()
    for prefix, cls in _PREFIXES:
        if text.startswith(prefix):
            return cls
    return SAFETY


def replay_command(
    seed: int, scenario: str, n: int = DEFAULT_REPLICAS, memnodes: int = DEFAULT_MEMNODES
) -> str:
    """The command that runs exactly this one schedule again."""
    cmd = f"ubft simulate --schedules 1 --seed {seed} --scenario {scenario}"
    if n != DEFAULT_REPLICAS:
        cmd += f" --replicas {n}"
    if memnodes != DEFAULT_MEMNODES:
        cmd += f" --memnodes {memnodes}"
    return cmd


def _site(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame that raised ``exc``."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    path = Path(last.filename)
    root = Path(__file__).resolve().parents[2]
    try:
        shown = str(path.resolve().relative_to(root))
    except ValueError:
        shown = last.filename
    return f"{shown}:{last.lineno} in {last.name}"


@dataclass(frozen=True, slots=True)
class Crash:
    """An exception that ended a schedule: its type, message and where it was raised."""

    exception: str
    error: str
    where: str

    @classmethod
    def of(cls, exc: BaseException) -> Crash:
        return cls(type(exc).__name__, str(exc), _site(exc))

    def message(self) -> str:
        return f"crash: {self.exception}: {self.error} at {self.where}"


@dataclass(frozen=True, slots=True)
class Violation:
    """One violation of one schedule, with what it takes to replay it."""

    cls: str
    seed: int
    scenario: str  # as given to the run ("mixed" included): the replay command uses it
    plan: str  # the plan the seed drew (its first word is the scenario actually run)
    message: str
    replay: str
    exception: str | None = None  # crash only
    where: str | None = None  # crash only: file:line of the innermost frame

    def line(self) -> str:
        """The one-line form of the summary's ``violations`` list."""
        return f"seed={self.seed} [{self.plan}] {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "class": self.cls,
            "seed": self.seed,
            "scenario": self.scenario,
            "plan": self.plan,
            "message": self.message,
            "replay": self.replay,
            "exception": self.exception,
            "where": self.where,
        }


class _Simulation(Simulation):
    """Notes where an assertion escaped the event loop: ``Simulation.run`` turns it into a
    "crash: assertion failed" line, which would otherwise lose its frame."""

    crash: Crash | None = None

    def _run_until(self, end_ns: int, stop_when_done: bool = True) -> None:
        try:
            super()._run_until(end_ns, stop_when_done)
        except AssertionError as exc:
            self.crash = Crash.of(exc)
            raise

    def _observe(self) -> None:
        try:
            super()._observe()
        except AssertionError as exc:
            self.crash = Crash.of(exc)
            raise


def _run_one(
    seed: int, scenario: str, trace: TextIO | None, n: int, memnodes: int
) -> tuple[ScheduleResult, list[Violation]]:
    replay = replay_command(seed, scenario, n, memnodes)
    plan_text = scenario
    sim: _Simulation | None = None
    try:
        plan = plan_for(scenario, random.Random(seed ^ 0x5EED), n=n, memnodes=memnodes)
        plan_text = plan.describe()
        sim = _Simulation(seed, plan, n=n, memnodes=memnodes)
        if trace is not None:
            sim.tracer = Tracer(trace)
        res = sim.run()
    except Exception as exc:  # any exception inside a schedule is a crash, never an abort
        crash = Crash.of(exc)
        res = ScheduleResult(seed, plan_text)
        if sim is not None:
            res.events = sim.events
            res.virtual_ns = sim.now
        res.violations.append(crash.message())
        v = Violation(
            CRASH, seed, scenario, plan_text, crash.message(), replay, crash.exception, crash.where
        )
        return res, [v]
    assert sim is not None
    if any(classify(message) == CRASH for message in res.violations):
        # the schedule stopped at the crash: its requests were never given the time to finish
        res.violations = [m for m in res.violations if classify(m) != LIVENESS]
    out = []
    for message in res.violations:
        cls = classify(message)
        exception = where = None
        if cls == CRASH:
            exception = "AssertionError" if "assertion failed" in message else None
            if sim.crash is not None:
                exception, where = sim.crash.exception, sim.crash.where
        out.append(Violation(cls, seed, scenario, res.plan, message, replay, exception, where))
    return res, out


def run_schedule(
    seed: int,
    scenario: str = "mixed",
    trace: TextIO | None = None,
    n: int = DEFAULT_REPLICAS,
    memnodes: int = DEFAULT_MEMNODES,
) -> ScheduleResult:
    """One schedule; an exception inside it is reported as a "crash: ..." violation."""
    res, _ = _run_one(seed, scenario, trace, n, memnodes)
    return res


def run_schedule_violations(
    seed: int,
    scenario: str = "mixed",
    trace: TextIO | None = None,
    n: int = DEFAULT_REPLICAS,
    memnodes: int = DEFAULT_MEMNODES,
) -> tuple[ScheduleResult, list[Violation]]:
    """One schedule and its violations, classed and with their replay command."""
    return _run_one(seed, scenario, trace, n, memnodes)


def run_schedules(
    schedules: int,
    seed: int,
    scenario: str = "mixed",
    history_dir: Path | None = None,
    trace: TextIO | None = None,
    n: int = DEFAULT_REPLICAS,
    memnodes: int = DEFAULT_MEMNODES,
    progress: Callable[[int, ScheduleResult, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Schedule j runs with seed ``seed + j``. Returns the JSON summary: ``violations`` holds
    one line per violation (``seed=S [plan] message``), ``violation_details`` the same as
    objects (class, seed, scenario, plan, message, replay, exception, where) and
    ``violation_counts`` their number per class."""
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
        "violation_counts": dict.fromkeys(VIOLATION_CLASSES, 0),
        "violation_details": [],
        "max_replica_state_entries": 0,
        "memnode_bytes_per_node": 0,
        "events": 0,
        "scenarios": {},
    }
    if history_dir is not None:
        history_dir.mkdir(parents=True, exist_ok=True)
    for j in range(schedules):
        s = seed + j
        res, violations = _run_one(s, scenario, trace, n, memnodes)
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
        for v in violations:
            summary["violations"].append(v.line())
            summary["violation_details"].append(v.to_json())
            summary["violation_counts"][v.cls] += 1
        if history_dir is not None:
            write_jsonl(history_dir / f"schedule-{s}.jsonl", res.history)
        if progress is not None:
            progress(j, res, summary)
    summary["elapsed_s"] = round(time.perf_counter() - started, 3)
    return summary
