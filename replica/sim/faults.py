"""Fault plans: what goes wrong in one schedule, drawn per seed within the model (at most f
Byzantine replicas, memory-node crashes beyond m only transiently), swarm-testing style."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .network import NetworkModel

_MS = 1_000_000

SCENARIOS = (
    "timely",
    "silent_follower",
    "equivocating_broadcaster",
    "memnode_crash_1",
    "memnode_crash_2",
    "memnode_amnesia",
    "byzantine_clients",
    "byzantine_registers",
    "admission",
    "random",
)
# scenarios run by name only (not drawn by "mixed", whose draws stay as they were)
EXTRA_SCENARIOS = ("durable",)


@dataclass(slots=True)
class FaultPlan:
    scenario: str
    network: NetworkModel = field(default_factory=NetworkModel)
    clients: int = 3
    ops_per_client: int = 8
    register_keys: int = 2
    counter_keys: int = 1
    byzantine_clients: int = 0
    admitted_clients: int = 0  # not in the genesis table: the admin registers them first
    byzantine_client_behaviour: str = "mixed"
    byzantine_replica: int | None = None
    byzantine_behaviour: str = "silent"
    more_byzantine: dict[int, str] = field(default_factory=dict)  # n >= 5: replica -> behaviour
    silent_from_ns: int = 0
    silent_until_ns: int = 1 << 62
    partitions: list[tuple[int, int, int]] = field(default_factory=list)  # replica, from, until
    memnode_crashes: list[tuple[int, int, int]] = field(default_factory=list)  # node, from, until
    memnode_amnesia: bool = False  # a crashed memory node returns with a new, empty memory
    slow_path_always: bool = False
    durable: bool = False  # durable mode: the persistence barrier is checked on every action
    expect_liveness: bool = True
    safety_phase_ns: int = 400 * _MS
    liveness_bound_ns: int = 2000 * _MS

    def describe(self) -> str:
        parts = [self.scenario, f"clients={self.clients}x{self.ops_per_client}"]
        if self.byzantine_replica is not None:
            parts.append(f"byz=R{self.byzantine_replica}:{self.byzantine_behaviour}")
        for r, behaviour in sorted(self.more_byzantine.items()):
            parts.append(f"byz=R{r}:{behaviour}")
        if self.admitted_clients:
            parts.append(f"admitted={self.admitted_clients}")
        if self.byzantine_clients:
            parts.append(f"byz_clients={self.byzantine_clients}:{self.byzantine_client_behaviour}")
        if self.memnode_amnesia:
            parts.append("amnesia")
        if self.memnode_crashes:
            parts.append(
                "memnode_crashes="
                + ",".join(f"M{m}@{a // _MS}-{b // _MS}ms" for m, a, b in self.memnode_crashes)
            )
        if self.partitions:
            parts.append(
                "partitions="
                + ",".join(f"R{r}@{a // _MS}-{b // _MS}ms" for r, a, b in self.partitions)
            )
        m = self.network
        parts.append(
            f"net={m.base_delay_ns // 1000}+{m.jitter_ns // 1000}us drop={m.drop_probability} dup={m.duplicate_probability}"
        )
        return " ".join(parts)


def plan_for(scenario: str, rng: random.Random, n: int = 3, memnodes: int = 3) -> FaultPlan:
    """The plan of one schedule. "mixed" picks one of SCENARIOS per seed."""
    if scenario == "mixed":
        scenario = rng.choice(SCENARIOS)
    leader = 0
    followers = list(range(1, n))
    if scenario == "timely":
        return FaultPlan(scenario)
    if scenario == "durable":
        # durable mode with a follower silent for a while: the fast path, then the slow path
        # (signatures, register writes), each send checked against the Persist before it
        return FaultPlan(
            scenario,
            ops_per_client=10,
            byzantine_replica=rng.choice(followers),
            byzantine_behaviour="silent",
            silent_from_ns=0,
            silent_until_ns=60 * _MS,
            durable=True,
        )
    if scenario == "silent_follower":
        return FaultPlan(
            scenario,
            ops_per_client=10,
            byzantine_replica=rng.choice(followers),
            byzantine_behaviour="silent",
            silent_from_ns=0,
            silent_until_ns=60 * _MS,
        )
    if scenario == "equivocating_broadcaster":
        return FaultPlan(
            scenario,
            ops_per_client=4,
            byzantine_replica=leader,
            byzantine_behaviour="equivocate",
            expect_liveness=False,  # view change (next issue) replaces a faulty leader
            safety_phase_ns=200 * _MS,
            liveness_bound_ns=0,
        )
    if scenario == "memnode_crash_1":
        return FaultPlan(
            scenario,
            memnode_crashes=[(rng.randrange(memnodes), 0, 1 << 62)],
            slow_path_always=True,
            byzantine_replica=rng.choice(followers),
            byzantine_behaviour="silent",
        )
    if scenario == "memnode_crash_2":
        down = rng.sample(range(memnodes), 2)
        return FaultPlan(
            scenario,
            ops_per_client=4,
            memnode_crashes=[(down[0], 0, 80 * _MS), (down[1], 0, 80 * _MS)],
            byzantine_replica=rng.choice(followers),
            byzantine_behaviour="silent",
        )
    if scenario == "memnode_amnesia":
        # one memory node restarts empty; before a second one crashes, every writer must have
        # rewritten its registers there (a muted follower forces the slow path throughout)
        a, b = rng.sample(range(memnodes), 2)
        return FaultPlan(
            scenario,
            ops_per_client=24,
            memnode_crashes=[(a, 1 * _MS, 8 * _MS), (b, 15 * _MS, 1 << 62)],
            memnode_amnesia=True,
            byzantine_replica=rng.choice(followers),
            byzantine_behaviour="mute_fast_path",
        )
    if scenario == "byzantine_registers":
        # a follower lies in its own registers while every CTBcast message goes the slow way
        return FaultPlan(
            scenario,
            byzantine_replica=rng.choice(followers),
            byzantine_behaviour="bad_registers",
            slow_path_always=True,
        )
    if scenario == "admission":
        return FaultPlan(scenario, clients=1, admitted_clients=2)
    if scenario == "byzantine_clients":
        return FaultPlan(scenario, byzantine_clients=2, byzantine_client_behaviour="mixed")
    assert scenario == "random", scenario
    plan = FaultPlan(
        scenario,
        network=NetworkModel(
            base_delay_ns=rng.choice((5_000, 20_000, 100_000)),
            jitter_ns=rng.choice((10_000, 50_000, 500_000)),
            drop_probability=rng.choice((0.0, 0.0, 0.01, 0.03)),
            duplicate_probability=rng.choice((0.0, 0.02)),
        ),
        clients=rng.randint(1, 4),
        ops_per_client=rng.randint(3, 10),
        slow_path_always=rng.random() < 0.2,
    )
    if rng.random() < 0.5:
        plan.byzantine_replica = rng.randrange(n)
        plan.byzantine_behaviour = rng.choice(
            ("silent", "garble", "forge", "equivocate", "bad_registers")
        )
        plan.expect_liveness = plan.byzantine_replica != leader
        if plan.byzantine_behaviour == "silent":
            start = rng.randrange(0, 20 * _MS)
            plan.silent_from_ns, plan.silent_until_ns = start, start + rng.randrange(1, 80) * _MS
    f = (n - 1) // 2
    if f >= 2 and plan.byzantine_replica is not None and rng.random() < 0.6:
        # up to f Byzantine replicas: another follower misbehaves for the whole run
        others = [r for r in followers if r != plan.byzantine_replica]
        plan.more_byzantine[rng.choice(others)] = rng.choice(
            ("silent", "garble", "forge", "equivocate", "bad_registers", "mute_fast_path")
        )
    if rng.random() < 0.4:
        node = rng.randrange(memnodes)
        start = rng.randrange(0, 50 * _MS)
        plan.memnode_crashes.append((node, start, start + rng.randrange(1, 100) * _MS))
        plan.memnode_amnesia = rng.random() < 0.5
    if rng.random() < 0.3:
        r = rng.choice([x for x in followers if x != plan.byzantine_replica] or followers)
        start = rng.randrange(0, 30 * _MS)
        plan.partitions.append((r, start, start + rng.randrange(1, 40) * _MS))
    if rng.random() < 0.4:
        plan.byzantine_clients = rng.randint(1, 2)
    if rng.random() < 0.2:
        plan.admitted_clients = 1
    return plan
