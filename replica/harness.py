"""One harness for every driver: feeds events to replicas, client sessions and memory nodes,
and routes what they ask for.

The simulator (virtual network with delays, drops and Byzantine wrappers), ``ubft bench-core``
(instant in-process queue, CPU accounting), the tests' direct driver and the runtime differ
only in how frames travel, how time passes and where records are made durable. Each hands a
``Harness``:

- ``Links.send(src, dst, frame)``: carry ``frame`` from node ``src`` to node ``dst``;
- ``Timers.set_timer(node, key, at_ns)``: call ``Harness.fire(node, key, now_ns)`` at
  ``at_ns`` (timers are never cancelled; a fire the node no longer cares about is ignored);
- optionally an ``Observer`` of what correct replicas report (deliveries, decisions,
  executions, evidence);
- in durable mode, a ``Storage`` for ``Persist`` records (below).

A node is ``(kind, id)``: ``(REPLICA, r)``, ``(CLIENT, c)`` or ``(MEMNODE, j)``.

Events go in through ``deliver`` (a frame arrived: the replica entry point is chosen by the
sender's kind; a memory node answers at once through ``Links``) and ``fire`` (a timer is due).
Neither drains the node: ``flush_replica`` / ``flush_client`` call its ``take_actions`` and
route the result, so a driver picks when to drain (after every event, or once per burst, as
raft's ``Ready``). Action routing, in list order:

- ``Send`` -> ``Links.send`` per target, ``SendClient`` and ``SendMemnode`` -> ``Links.send``;
- ``SetTimer`` -> ``Timers.set_timer``;
- ``Persist`` -> ``Storage.persist`` (the persistence barrier);
- ``Delivered``, ``Decided``, ``Executed``, ``ReportEvidence`` -> the ``Observer``, for
  replicas added with ``observed=True`` (a Byzantine replica's reports are not observed);
- a client session's ``Completed`` are returned by ``flush_client``.

The persistence barrier (durable mode, PROTOCOL.md section 1): a replica must not send a frame
or write a register before the ``Persist`` records that precede it in its actions are durable.
From a ``Persist`` on, that replica's frames (``Send``, ``SendClient``, ``SendMemnode``) and
further records wait in order; timers and observations pass at once (nothing leaves the
process). Consecutive records go to ``Storage.persist`` as one batch (a group commit). A
storage that made them durable at once returns True and the frames behind them leave at once;
one that returns False calls ``Harness.persisted(r)`` when they are, batch by batch in order,
and only then do the frames behind that batch leave.

Sans-IO like the core: no clock, socket, thread or randomness (pyproject.toml's import-linter
contract), so the simulator stays deterministic and the runtime plugs its transports in.
"""

from __future__ import annotations

from collections import deque
from typing import Final, Protocol, assert_never

from ubft.client.session import ClientSession, Completed
from ubft.memnode.server import MemnodeServer
from ubft.replica.core.actions import (
    Action,
    Decided,
    Delivered,
    Executed,
    Persist,
    ReportEvidence,
    Send,
    SendClient,
    SendMemnode,
    SetTimer,
    TimerKey,
)

__all__ = [
    "CLIENT",
    "MEMNODE",
    "REPLICA",
    "Harness",
    "InstantStorage",
    "Links",
    "Node",
    "Observer",
    "ReplicaLike",
    "Storage",
    "Timers",
]

REPLICA: Final = "R"
CLIENT: Final = "C"
MEMNODE: Final = "M"
Node = tuple[str, int]  # (REPLICA, replica id) | (CLIENT, client id) | (MEMNODE, node id)

_Waiting = Send | SendClient | SendMemnode | Persist  # what queues behind a barrier


class ReplicaLike(Protocol):
    """What the harness drives: a ``Replica``, or a wrapper of one (Byzantine, timed)."""

    def receive(self, sender: int, frame: bytes, now_ns: int) -> None: ...

    def receive_client(self, client_id: int, frame: bytes, now_ns: int) -> None: ...

    def receive_memnode(self, node: int, frame: bytes, now_ns: int) -> None: ...

    def timer_fired(self, key: TimerKey, now_ns: int) -> None: ...

    def take_actions(self) -> list[Action]: ...


class Links(Protocol):
    """The driver's network: carries one frame from one node to another."""

    def send(self, src: Node, dst: Node, frame: bytes) -> None: ...


class Timers(Protocol):
    """The driver's clock: calls ``Harness.fire(node, key, now_ns)`` once ``at_ns`` is due."""

    def set_timer(self, node: Node, key: TimerKey, at_ns: int) -> None: ...


class Storage(Protocol):
    """Durable mode's disk: one replica's ``Persist`` records, in order, as one group commit.

    Returns True if they are durable on return; False if the driver will call
    ``Harness.persisted(r)`` once they are (one call per batch, batches in order)."""

    def persist(self, r: int, records: list[Persist]) -> bool: ...


class InstantStorage:
    """A storage whose writes are durable at once (the simulator, bench-core, tests). It counts
    batches and records; with ``keep`` it also keeps every replica's records, in order."""

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.records: dict[int, list[Persist]] = {}
        self.commits = 0  # batches written (group commits)
        self.persisted = 0  # records written

    def persist(self, r: int, records: list[Persist]) -> bool:
        self.commits += 1
        self.persisted += len(records)
        if self.keep:
            self.records.setdefault(r, []).extend(records)
        return True


class Observer:
    """What correct replicas report, for checkers and metrics; override what you need."""

    def delivered(self, r: int, a: Delivered) -> None:
        """Replica ``r`` delivered a CTBcast message."""

    def decided(self, r: int, a: Decided) -> None:
        """Replica ``r`` decided an instance."""

    def executed(self, r: int, a: Executed) -> None:
        """Replica ``r`` executed a request."""

    def evidence(self, r: int, a: ReportEvidence) -> None:
        """Replica ``r`` reports misbehaviour of a peer or client."""


_NO_OBSERVER: Final = Observer()


class Harness:
    """Routes for every replica, client session and memory node one driver hosts."""

    __slots__ = (
        "_client_nodes",
        "_memnode_nodes",
        "_observed",
        "_replica_nodes",
        "_syncing",
        "_waiting",
        "clients",
        "links",
        "memnodes",
        "observer",
        "replicas",
        "storage",
        "timers",
    )

    def __init__(
        self,
        links: Links,
        timers: Timers,
        observer: Observer | None = None,
        storage: Storage | None = None,
    ) -> None:
        self.links = links
        self.timers = timers
        self.observer = observer if observer is not None else _NO_OBSERVER
        self.storage = storage
        self.replicas: dict[int, ReplicaLike] = {}
        self.clients: dict[int, ClientSession] = {}
        self.memnodes: dict[int, MemnodeServer] = {}
        self._observed: set[int] = set()
        # the node tuples of hosted nodes, built once (routing a frame allocates none)
        self._replica_nodes: dict[int, Node] = {}
        self._client_nodes: dict[int, Node] = {}
        self._memnode_nodes: dict[int, Node] = {}
        # per replica behind a barrier: what waits, in order; replicas whose batch is syncing
        self._waiting: dict[int, deque[_Waiting]] = {}
        self._syncing: set[int] = set()

    # ------------------------------------------------------------------ membership

    def add_replica(self, r: int, replica: ReplicaLike, observed: bool = True) -> None:
        """Host ``replica`` as replica ``r``; ``observed``: its reports reach the observer."""
        if r in self.replicas:
            raise ValueError(f"replica {r} is hosted already")
        self.replicas[r] = replica
        self._replica_nodes[r] = (REPLICA, r)
        if observed:
            self._observed.add(r)

    def add_client(self, session: ClientSession) -> None:
        cid = session.client_id
        if cid in self.clients:
            raise ValueError(f"client {cid} is hosted already")
        self.clients[cid] = session
        self._client_nodes[cid] = (CLIENT, cid)

    def add_memnode(self, server: MemnodeServer) -> None:
        j = server.node_id
        if j in self.memnodes:
            raise ValueError(f"memory node {j} is hosted already")
        self.memnodes[j] = server
        self._memnode_nodes[j] = (MEMNODE, j)

    # ------------------------------------------------------------------ events in

    def deliver(self, src: Node, dst: Node, frame: bytes, now_ns: int) -> None:
        """``frame`` from ``src`` reached ``dst`` at ``now_ns`` (the link authenticated
        ``src``). A replica or client takes it in (``flush_*`` drains it); a memory node
        answers at once. ``dst`` must be hosted here."""
        kind, ident = dst
        if kind == REPLICA:
            replica = self.replicas[ident]
            skind, sid = src
            if skind == REPLICA:
                replica.receive(sid, frame, now_ns)
            elif skind == CLIENT:
                replica.receive_client(sid, frame, now_ns)
            else:
                replica.receive_memnode(sid, frame, now_ns)
        elif kind == CLIENT:
            self.clients[ident].receive(src[1], frame, now_ns)
        else:
            self._serve(self.memnodes[ident], src, dst, frame)

    def fire(self, node: Node, key: TimerKey, now_ns: int) -> None:
        """The timer ``key`` that ``node`` set is due (``flush_*`` drains the node)."""
        kind, ident = node
        if kind == REPLICA:
            self.replicas[ident].timer_fired(key, now_ns)
        elif kind == CLIENT:
            self.clients[ident].timer_fired(key, now_ns)
        else:
            raise ValueError(f"memory nodes set no timers: {node}")

    def persisted(self, r: int) -> None:
        """The oldest batch of replica ``r``'s records that ``Storage.persist`` left pending is
        durable now: what waited behind it leaves (up to the next barrier)."""
        if r not in self._syncing:
            raise ValueError(f"replica {r} has no batch being persisted")
        self._syncing.discard(r)
        self._drain(r)

    def _serve(self, server: MemnodeServer, src: Node, dst: Node, frame: bytes) -> None:
        if src[0] != REPLICA:
            # only members have links to memory nodes; a driver that routes otherwise errs
            raise ValueError(f"a memory node serves replicas only, not {src}")
        reply = server.handle_frame(src[1], frame)
        if reply is not None:
            self.links.send(dst, src, reply)

    # ------------------------------------------------------------------ actions out

    def flush_replica(self, r: int) -> None:
        """Drain replica ``r`` (``take_actions``) and route what it asked for."""
        self.route(r, self.replicas[r].take_actions())

    def flush_client(self, cid: int) -> list[Completed]:
        """Drain client ``cid``'s session: send its frames, set its timers; returns the
        requests it completed."""
        src = self._client_nodes[cid]
        links = self.links
        replica_nodes = self._replica_nodes
        done: list[Completed] = []
        for a in self.clients[cid].take_actions():
            if isinstance(a, Send):
                frame = a.frame
                for dst in a.targets:
                    links.send(src, replica_nodes.get(dst) or (REPLICA, dst), frame)
            elif isinstance(a, SetTimer):
                self.timers.set_timer(src, a.key, a.at_ns)
            else:
                done.append(a)
        return done

    def route(self, r: int, actions: list[Action]) -> None:
        """Route the actions replica ``r`` produced, in order (``flush_replica`` uses it; a
        driver that drains the replica itself hands the list here)."""
        src = self._replica_nodes[r]
        links = self.links
        replica_nodes = self._replica_nodes
        waiting = self._waiting.get(r)
        observer = self.observer if r in self._observed else None
        for a in actions:
            if waiting is not None and isinstance(a, _Waiting):
                waiting.append(a)
            elif isinstance(a, Send):
                frame = a.frame
                for dst in a.targets:
                    links.send(src, replica_nodes.get(dst) or (REPLICA, dst), frame)
            elif isinstance(a, SendMemnode):
                links.send(src, self._memnode_node(a.node), a.frame)
            elif isinstance(a, SetTimer):
                self.timers.set_timer(src, a.key, a.at_ns)
            elif isinstance(a, SendClient):
                links.send(src, self._client_node(a.client_id), a.frame)
            elif isinstance(a, Persist):
                if self.storage is None:
                    raise ValueError(f"replica {r} persists (durable mode) but there is no storage")
                waiting = self._waiting[r] = deque((a,))
            elif observer is None:
                continue
            elif isinstance(a, Decided):
                observer.decided(r, a)
            elif isinstance(a, Delivered):
                observer.delivered(r, a)
            elif isinstance(a, Executed):
                observer.executed(r, a)
            elif isinstance(a, ReportEvidence):
                observer.evidence(r, a)
            else:
                assert_never(a)
        if waiting is not None:
            self._drain(r)

    def _drain(self, r: int) -> None:
        """Send what waits behind replica ``r``'s barriers, persisting each run of records as
        one batch, until a batch is left syncing or nothing waits."""
        waiting = self._waiting[r]
        storage = self.storage
        assert storage is not None
        src = self._replica_nodes[r]
        links = self.links
        while waiting:
            if r in self._syncing:
                return
            a = waiting.popleft()
            if isinstance(a, Persist):
                batch = [a]
                while waiting and isinstance(waiting[0], Persist):
                    nxt = waiting.popleft()
                    assert isinstance(nxt, Persist)
                    batch.append(nxt)
                if not storage.persist(r, batch):
                    self._syncing.add(r)
            elif isinstance(a, Send):
                for dst in a.targets:
                    links.send(src, self._replica_nodes.get(dst) or (REPLICA, dst), a.frame)
            elif isinstance(a, SendMemnode):
                links.send(src, self._memnode_node(a.node), a.frame)
            else:
                links.send(src, self._client_node(a.client_id), a.frame)
        if r not in self._syncing:
            del self._waiting[r]  # nothing waits: frames leave as routed again

    def _client_node(self, cid: int) -> Node:
        return self._client_nodes.get(cid) or (CLIENT, cid)

    def _memnode_node(self, j: int) -> Node:
        return self._memnode_nodes.get(j) or (MEMNODE, j)

    def behind_barrier(self, r: int) -> int:
        """How many of replica ``r``'s frames and records wait for a barrier."""
        waiting = self._waiting.get(r)
        return len(waiting) if waiting is not None else 0
