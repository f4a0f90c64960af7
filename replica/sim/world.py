"""The deterministic simulator: n replicas, M memory nodes and many clients in one process on
virtual time. One heap of (time_ns, seq, ...) is the clock and the event queue; ``seq`` breaks
ties, and every random draw comes from a generator derived from the seed, so a seed replays
exactly.

Replicas, client sessions and memory nodes (``MemnodeServer``) are hosted by one
``ubft.replica.harness.Harness``: the simulation is its links (the virtual network) and its
timers (the heap), and the checkers observe the correct replicas through it."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any

from ubft.apps.kv import KVStore
from ubft.client.session import ClientSession
from ubft.memnode.store import MemoryNodeStore
from ubft.replica.core.actions import (
    Action,
    Decided,
    Delivered,
    Executed,
    ReportEvidence,
    TimerKey,
)
from ubft.replica.core.admission import ADMIN_CLIENT_ID, RESULT_OK, AdminOp, admin_command
from ubft.replica.core.config import ProtocolParams, SlowPathMode
from ubft.replica.core.crypto import SignatureCounter, digest
from ubft.replica.core.replica import Replica
from ubft.replica.harness import CLIENT, REPLICA, Harness, InstantStorage, Observer

from .byzantine import ByzantineReplica
from .checkers import Agreement, BoundedMemory, EvidenceAgainstCorrect, Validity, footprint_bounds
from .cluster import make_cluster, make_signer, provision, provision_memnodes
from .durability import PersistenceBarrier
from .faults import FaultPlan
from .history import HistoryRecorder, Op
from .linearizability import check as check_linearizable
from .network import Network, Node
from .trace import Tracer
from .workload import ByzantineClient, KVClient, key_names

_DELIVER, _TIMER, _CLIENT_START, _BYZ_CLIENT, _FAULT, _ADMIN = range(6)
CLIENT_BASE = 100
BYZ_CLIENT_BASE = 200
ADMITTED_CLIENT_BASE = 300


class _Barriered:
    """A correct replica whose actions the persistence-barrier checker sees, in order."""

    def __init__(self, replica: Replica, barrier: PersistenceBarrier) -> None:
        self.replica = replica
        self.barrier = barrier
        self.receive = replica.receive
        self.receive_client = replica.receive_client
        self.receive_memnode = replica.receive_memnode
        self.timer_fired = replica.timer_fired

    def take_actions(self) -> list[Action]:
        actions = self.replica.take_actions()
        self.barrier.observe(self.replica.me, actions)
        return actions


class _Checkers(Observer):
    """What the correct replicas report, to the simulation's checkers."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    def decided(self, r: int, a: Decided) -> None:
        sim = self.sim
        sim.agreement.on_decided(r, a)
        if r == 0:
            sim.decisions_at_leader.append((sim.now, a.fast))

    def delivered(self, r: int, a: Delivered) -> None:
        self.sim.agreement.on_delivered(r, a)

    def executed(self, r: int, a: Executed) -> None:
        self.sim.agreement.on_executed(r, a)
        self.sim.validity.on_executed(r, a)

    def evidence(self, r: int, a: ReportEvidence) -> None:
        self.sim.evidence.on_evidence(r, a)
        if a.is_client:
            self.sim.client_evidence += 1


@dataclass(slots=True)
class ScheduleResult:
    seed: int
    plan: str
    requests_completed: int = 0
    requests_issued: int = 0
    decisions_fast: int = 0
    decisions_slow: int = 0
    signatures_created: int = 0
    checkpoint_signatures_created: int = 0
    signatures_verified: int = 0
    violations: list[str] = field(default_factory=list)
    max_replica_state_entries: int = 0
    memnode_bytes_per_node: int = 0
    events: int = 0
    virtual_ns: int = 0
    frames_sent: int = 0
    proofs_held: dict[int, list[int]] = field(default_factory=dict)  # replica -> broadcasters
    decisions_after: list[tuple[int, bool]] = field(default_factory=list)  # (time, fast) at leader
    history: list[Op] = field(default_factory=list)
    linearizable: bool = True
    client_evidence: int = 0  # evidence correct replicas reported against clients


class Simulation:
    def __init__(
        self,
        seed: int,
        plan: FaultPlan,
        n: int = 3,
        memnodes: int = 3,
        params: ProtocolParams | None = None,
    ) -> None:
        root = random.Random(seed)
        self.seed = seed
        self.plan = plan
        self.rng_net = random.Random(root.getrandbits(64))
        self.rng_clients = random.Random(root.getrandbits(64))
        self.rng_byz = random.Random(root.getrandbits(64))
        keys_rng = random.Random(root.getrandbits(64))
        self.counter = SignatureCounter()
        base = params or ProtocolParams()
        if plan.slow_path_always:
            base = base.model_copy(update={"slow_path_mode": SlowPathMode.ALWAYS})
        if plan.durable:
            base = base.model_copy(update={"durable": True})
        self.barrier = PersistenceBarrier() if plan.durable else None
        self.config, signers, admin = make_cluster("sim", n, memnodes, base, keys_rng, self.counter)
        # clients: correct ones record a history; Byzantine ones misbehave on their own keys
        self.history = HistoryRecorder()
        self.clients: dict[int, KVClient] = {}
        self.waiting_admission: set[int] = set()
        client_keys: dict[int, bytes] = {}
        for j in range(plan.clients):
            cid = CLIENT_BASE + j
            s = make_signer(keys_rng, self.counter)
            client_keys[cid] = s.public_key
            self.clients[cid] = KVClient(
                ClientSession(self.config, cid, s),
                random.Random(self.rng_clients.getrandbits(64)),
                plan.ops_per_client,
                self.history,
                key_names(plan.register_keys, plan.counter_keys),
            )
        self.byz_clients: dict[int, ByzantineClient] = {}
        for j in range(plan.byzantine_clients):
            cid = BYZ_CLIENT_BASE + j
            client_keys[cid] = make_signer(keys_rng, self.counter).public_key
            self.byz_clients[cid] = ByzantineClient(
                cid,
                self.config.member_ids,
                0,
                random.Random(self.rng_byz.getrandbits(64)),
                plan.byzantine_client_behaviour,
                rounds=20,
            )
        # admitted clients: registered by the admin (an ordered, admin-signed Register) and
        # started once it succeeded; then the admin checks that a reused key and a stale
        # sequence number are refused
        self.admin: ClientSession | None = None
        self.admin_commands: list[tuple[bytes, int, bytes]] = []  # payload, client, expected
        self.admin_results: list[tuple[int, bytes, bytes]] = []  # client, expected, got
        if plan.admitted_clients:
            self.admin = ClientSession(self.config, ADMIN_CLIENT_ID, admin)
            cluster, epoch = self.config.cluster_id_bytes, self.config.epoch
            seq = 0
            for j in range(plan.admitted_clients):
                cid = ADMITTED_CLIENT_BASE + j
                signer = make_signer(keys_rng, self.counter)
                self.clients[cid] = KVClient(
                    ClientSession(self.config, cid, signer),
                    random.Random(self.rng_clients.getrandbits(64)),
                    plan.ops_per_client,
                    self.history,
                    key_names(plan.register_keys, plan.counter_keys),
                )
                self.waiting_admission.add(cid)
                seq += 1
                cmd = admin_command(
                    admin, cluster, epoch, AdminOp.REGISTER, cid, signer.public_key, seq
                )
                self.admin_commands.append((cmd, cid, RESULT_OK))
            first = ADMITTED_CLIENT_BASE
            reused = self.clients[first].session.signer.public_key
            cmd = admin_command(admin, cluster, epoch, AdminOp.REGISTER, first, reused, seq + 1)
            self.admin_commands.append((cmd, -1, b"ERR key already used for this client id"))
            cmd = admin_command(admin, cluster, epoch, AdminOp.DEREGISTER, first, b"", 1)
            self.admin_commands.append((cmd, -1, b"ERR stale sequence number"))
            self.admin_commands.reverse()  # popped from the end
        # replicas
        self.replicas: dict[int, Replica | ByzantineReplica] = {}
        self.correct: set[int] = set()
        for i in range(n):
            rep = Replica(
                self.config,
                i,
                signers[i],
                KVStore(max_result_bytes=base.max_reply_bytes - 16),
                client_keys,
            )
            if plan.byzantine_replica == i:
                self.replicas[i] = ByzantineReplica(
                    rep,
                    plan.byzantine_behaviour,
                    random.Random(self.rng_byz.getrandbits(64)),
                    plan.silent_from_ns,
                    plan.silent_until_ns,
                )
            elif i in plan.more_byzantine:
                self.replicas[i] = ByzantineReplica(
                    rep, plan.more_byzantine[i], random.Random(self.rng_byz.getrandbits(64))
                )
            else:
                self.replicas[i] = rep
                self.correct.add(i)
        # memory nodes, provisioned for epoch 0
        self.memnodes = provision_memnodes(self.config)
        self.memnode_restarts = 0
        self.net = Network(plan.network, self.rng_net)
        # one harness hosts every node: this simulation is its links and its timers
        self.harness = harness = Harness(self, self, _Checkers(self), InstantStorage())
        for i, node in self.replicas.items():
            if self.barrier is not None and isinstance(node, Replica):
                harness.add_replica(i, _Barriered(node, self.barrier))
            else:
                harness.add_replica(i, node, observed=i in self.correct)
        for kv_client in self.clients.values():
            harness.add_client(kv_client.session)
        if self.admin is not None:
            harness.add_client(self.admin)
        for server in self.memnodes.values():
            harness.add_memnode(server)
        # checkers
        self.agreement = Agreement()
        self.validity = Validity()
        self.evidence = EvidenceAgainstCorrect(self.correct)
        self.memory = BoundedMemory(footprint_bounds(base, n, len(client_keys), memnodes))
        self.heap: list[tuple[Any, ...]] = []
        self.seq = 0
        self.now = 0
        self.events = 0
        self.decisions_at_leader: list[tuple[int, bool]] = []
        self.crash_errors: list[str] = []
        self.tracer: Tracer | None = None  # set to trace every event
        self._started = False
        self._issued_seen: set[tuple[int, int]] = set()
        self.client_evidence = 0

    # ------------------------------------------------------------------ scheduling

    def _push(self, at: int, *item: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, *item))

    def _send(self, src: Node, dst: Node, frame: bytes) -> None:
        for d in self.net.delays(src, dst, frame):
            self._push(self.now + d, _DELIVER, dst, src, frame)

    # ------------------------------------------------------------------ links and timers

    def send(self, src: Node, dst: Node, frame: bytes) -> None:
        """Onto the virtual network; frames to a client nobody runs are never sent."""
        if dst[0] == CLIENT and not self._runs_client(dst[1]):
            return
        self._send(src, dst, frame)

    def set_timer(self, node: Node, key: TimerKey, at_ns: int) -> None:
        self._push(at_ns, _TIMER, node, key)

    def _runs_client(self, cid: int) -> bool:
        return (
            cid in self.clients
            or cid in self.byz_clients
            or (cid == ADMIN_CLIENT_ID and self.admin is not None)
        )

    @property
    def stores(self) -> dict[int, MemoryNodeStore]:
        """Each memory node's registers (a restart that loses the memory replaces them)."""
        return {j: server.store for j, server in self.memnodes.items()}

    @property
    def crashed(self) -> set[int]:
        """The memory nodes down now."""
        return {j for j, server in self.memnodes.items() if not server.up}

    # ------------------------------------------------------------------ replicas and clients

    def _replica_actions(self, r: int) -> None:
        self.harness.flush_replica(r)

    def _client_actions(self, cid: int) -> None:
        client = self.clients[cid]
        for a in self.harness.flush_client(cid):
            if client.on_completed(a, self.now):
                self._push(self.now + self.rng_clients.randrange(1_000, 50_000), _CLIENT_START, cid)

    def _admin_next(self) -> None:
        admin = self.admin
        if admin is None or not self.admin_commands or admin.outstanding:
            return
        payload, _, _ = self.admin_commands[-1]
        x = admin.submit(payload, self.now)
        self.validity.issue(ADMIN_CLIENT_ID, x, digest(payload))
        self._admin_actions()

    def _admin_actions(self) -> None:
        admin = self.admin
        assert admin is not None
        for a in self.harness.flush_client(ADMIN_CLIENT_ID):
            _, cid, expected = self.admin_commands.pop()
            self.admin_results.append((cid, expected, a.result))
            if a.result == RESULT_OK and cid in self.waiting_admission:
                self.waiting_admission.discard(cid)
                self._push(self.now + 1_000, _CLIENT_START, cid)
            self._admin_next()

    def _start_client_op(self, cid: int) -> None:
        client = self.clients[cid]
        client.start_next(self.now)
        if client.current is not None and (cid, client.current_id) not in self._issued_seen:
            self._issued_seen.add((cid, client.current_id))
            self.validity.issue(cid, client.current_id, digest(client.current.payload))
        self._client_actions(cid)

    # ------------------------------------------------------------------ events

    def _deliver(self, dst: Node, src: Node, frame: bytes) -> None:
        if self.tracer is not None:
            self.tracer.deliver(self.now, src, dst, frame)
        kind, ident = dst
        harness = self.harness
        if kind == REPLICA:
            harness.deliver(src, dst, frame, self.now)
            harness.flush_replica(ident)
        elif kind == CLIENT:
            if ident in self.clients:
                harness.deliver(src, dst, frame, self.now)
                self._client_actions(ident)
            elif ident == ADMIN_CLIENT_ID and self.admin is not None:
                harness.deliver(src, dst, frame, self.now)
                self._admin_actions()
            # a Byzantine client reads nothing
        else:
            harness.deliver(src, dst, frame, self.now)  # answered, or lost if the node is down

    def _timer(self, node: Node, key: TimerKey) -> None:
        if self.tracer is not None:
            self.tracer.timer(self.now, node, key)
        kind, ident = node
        self.harness.fire(node, key, self.now)
        if kind == REPLICA:
            self.harness.flush_replica(ident)
        elif ident == ADMIN_CLIENT_ID and self.admin is not None:
            self._admin_actions()
        else:
            self._client_actions(ident)

    def _byz_client_round(self, cid: int) -> None:
        bc = self.byz_clients[cid]
        sent = bc.act()
        for r, frame in sent:
            self._send((CLIENT, cid), (REPLICA, r), frame)
        for x, payloads in bc.issued.items():
            for p in payloads:
                self.validity.issue(cid, x, digest(p))
        if sent:
            self._push(self.now + self.rng_byz.randrange(20_000, 300_000), _BYZ_CLIENT, cid)

    # ------------------------------------------------------------------ run

    def _schedule_faults(self) -> None:
        plan = self.plan
        for node, start, end in plan.memnode_crashes:
            self._push(start, _FAULT, ("crash", node))
            self._push(end, _FAULT, ("recover", node))
        for r, start, end in plan.partitions:
            self._push(start, _FAULT, ("partition", r))
            self._push(end, _FAULT, ("heal", r))

    def _fault(self, what: tuple[str, int]) -> None:
        action, x = what
        if self.tracer is not None:
            self.tracer.note(self.now, f"fault {action} {x}")
        if action == "crash":
            self.memnodes[x].crash()
        elif action == "recover":
            self._recover_memnode(x)
        elif action == "partition":
            for other in self.replicas:
                if other != x:
                    self.net.partition((REPLICA, x), (REPLICA, other))
        elif action == "heal":
            for other in self.replicas:
                if other != x:
                    self.net.heal((REPLICA, x), (REPLICA, other))

    def _recover_memnode(self, x: int) -> None:
        server = self.memnodes[x]
        if server.up:
            return
        if not self.plan.memnode_amnesia:
            server.restart()  # a transient outage: back with its memory
            return
        # back with an empty memory and a new incarnation; the operator provisions its
        # areas again, "unknown" until each writer has rewritten its own
        self.memnode_restarts += 1
        server.restart(incarnation=1 + self.memnode_restarts)
        provision(server, self.config, known=False)

    def _all_done(self) -> bool:
        return (
            all(c.done() for c in self.clients.values())
            and all(b.rounds == 0 for b in self.byz_clients.values())
            and not self.admin_commands
        )

    def _run_until(self, end_ns: int, stop_when_done: bool = True) -> None:
        heap = self.heap
        pop = heapq.heappop
        observe_every = 256
        while heap and not (stop_when_done and self._all_done()):
            if heap[0][0] > end_ns:
                break
            item = pop(heap)
            self.now = item[0]
            kind = item[2]
            self.events += 1
            if kind == _DELIVER:
                self._deliver(item[3], item[4], item[5])
            elif kind == _TIMER:
                self._timer(item[3], item[4])
            elif kind == _CLIENT_START:
                self._start_client_op(item[3])
            elif kind == _BYZ_CLIENT:
                self._byz_client_round(item[3])
            elif kind == _ADMIN:
                self._admin_next()
            else:
                self._fault(item[3])
            if self.events % observe_every == 0:
                self._observe()

    def _observe(self) -> None:
        for r in sorted(self.correct):
            rep = self.replicas[r]
            assert isinstance(rep, Replica)
            rep.check_invariants()
            self.memory.observe(r, rep.footprint())

    def start(self) -> None:
        """Schedule the clients and the plan's faults (once; ``run`` calls it if needed)."""
        if self._started:
            return
        self._started = True
        for cid in sorted(self.clients):
            if cid not in self.waiting_admission:
                self._push(self.rng_clients.randrange(0, 200_000), _CLIENT_START, cid)
        if self.admin is not None:
            self._push(0, _ADMIN, 0)
        for cid in sorted(self.byz_clients):
            self._push(self.rng_byz.randrange(0, 100_000), _BYZ_CLIENT, cid)
        self._schedule_faults()

    def run_until(self, end_ns: int, stop_when_done: bool = True) -> None:
        """Advance virtual time to ``end_ns`` (by default only until the workload is done):
        scripted tests change the network between calls."""
        self.start()
        self._run_until(end_ns, stop_when_done)

    def run(self) -> ScheduleResult:
        plan = self.plan
        self.start()
        result = ScheduleResult(self.seed, plan.describe())
        try:
            self._run_until(plan.safety_phase_ns)
            if plan.liveness_bound_ns:
                # liveness phase: heal the network and the memory nodes, then every request of
                # a correct client must be answered within the bound
                heal_at = max(self.now, plan.safety_phase_ns) if not self._all_done() else self.now
                self.net.faults_on = False
                self.net.heal_all()
                for x in sorted(self.crashed):
                    self._recover_memnode(x)
                self.heap = [x for x in self.heap if x[2] != _FAULT]
                heapq.heapify(self.heap)
                self._run_until(heal_at + plan.liveness_bound_ns)
            self._observe()
        except AssertionError as exc:  # a broken invariant inside our own code
            self.crash_errors.append(f"crash: assertion failed: {exc!r}")
        return self._result(result)

    def _result(self, res: ScheduleResult) -> ScheduleResult:
        plan = self.plan
        self.history.close(self.now)
        res.history = self.history.events()
        res.violations.extend(self.crash_errors)
        res.violations.extend(self.agreement.violations)
        res.violations.extend(self.validity.violations)
        res.violations.extend(self.evidence.violations)
        res.violations.extend(self.memory.violations)
        if self.barrier is not None:
            res.violations.extend(self.barrier.violations)
        # clients accept only the result of the execution
        for cid, client in self.clients.items():
            for x, result in client.results.items():
                executed = self.agreement.results.get((cid, x))
                if executed is not None and executed != result:
                    res.violations.append(
                        f"client {cid} accepted a result for #{x} that no correct replica produced"
                    )
        for cid, expected, got in self.admin_results:
            if got != expected:
                res.violations.append(
                    f"admission: command for client {cid} gave {got!r}, expected {expected!r}"
                )
        verdict = check_linearizable(res.history)
        res.linearizable = verdict.ok
        if not verdict.ok:
            res.violations.append(f"linearizability: key {verdict.key}: {verdict.reason}")
        if plan.expect_liveness and not self._all_done():
            stuck = {cid: c.current_id for cid, c in self.clients.items() if not c.done()}
            if not stuck:
                stuck = {cid: b.rounds for cid, b in self.byz_clients.items() if b.rounds}
            if not stuck and self.admin_commands:
                stuck = {ADMIN_CLIENT_ID: len(self.admin_commands)}
            res.violations.append(f"liveness: requests unanswered after healing: {stuck}")
        res.requests_issued = sum(
            c.completed + (1 if c.current else 0) for c in self.clients.values()
        )
        res.requests_completed = sum(c.completed for c in self.clients.values())
        res.decisions_fast = sum(1 for fast in self.agreement.fast.values() if fast)
        res.decisions_slow = sum(1 for fast in self.agreement.fast.values() if not fast)
        res.signatures_created = self.counter.on_path()
        res.checkpoint_signatures_created = self.counter.off_path()
        res.signatures_verified = self.counter.verified
        res.max_replica_state_entries = self.memory.max_total
        res.memnode_bytes_per_node = max(s.allocated_bytes() for s in self.memnodes.values())
        res.events = self.events
        res.virtual_ns = self.now
        res.frames_sent = self.net.sent
        res.decisions_after = self.decisions_at_leader
        res.client_evidence = self.client_evidence
        for r in sorted(self.correct):
            rep = self.replicas[r]
            assert isinstance(rep, Replica)
            res.proofs_held[r] = sorted(rep.ctx.evidence.proofs)
        return res


__all__ = ["ScheduleResult", "Simulation"]
