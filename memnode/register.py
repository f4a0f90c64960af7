"""SWMR registers replicated over M memory nodes with majority quorums (PROTOCOL.md section 2).

Sans-IO: a ``RegisterClient`` turns writes and reads into messages (``take_outgoing``) and
replies into completions (``on_reply``); a driver carries the messages and calls ``retry`` on a
timer. Any two majorities intersect, so a read that starts after a write completed sees it (or
something newer): regular-register semantics, which is what CTBcast needs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from .layout import VALUE_BYTES, RegisterAddress, encode_subslot, parse_register
from .wire import (
    STATUS_OK,
    STATUS_REJECTED,
    STATUS_UNKNOWN,
    MemMarkKnown,
    MemRead,
    MemReadReply,
    MemWrite,
    MemWriteReply,
)


@dataclass(frozen=True, slots=True)
class WriteDone:
    token: object
    addr: RegisterAddress


@dataclass(frozen=True, slots=True)
class ReadDone:
    token: object
    addr: RegisterAddress
    result: tuple[int, bytes] | None  # None: garbage, "this writer supports nothing"


Done = WriteDone | ReadDone


@dataclass(slots=True)
class _Op:
    """One request in flight: the message every node gets and the nodes that answered OK."""

    msg: MemRead | MemWrite
    addr: RegisterAddress
    token: object
    answered: set[int] = field(default_factory=set)
    results: list[tuple[int, bytes]] = field(default_factory=list)  # reads: valid replies


@dataclass(slots=True)
class _Recovery:
    """Rewriting our area of one epoch on a node that lost its memory (PROTOCOL.md section 1):
    every register's latest value again, then MemMarkKnown bound to the node's incarnation."""

    incarnation: int
    writes: dict[int, MemWrite] = field(default_factory=dict)  # op id -> not yet acknowledged
    mark: MemMarkKnown | None = None


@dataclass(frozen=True, slots=True)
class _QueuedWrite:
    incarnation: int
    value: bytes
    token: object


class RegisterClient:
    """A replica's view of the registers: writer of its own, reader of everyone's."""

    __slots__ = (
        "_latest_data",
        "_latest_subslot",
        "_next_op_id",
        "_node_incarnations",
        "_nodes",
        "_ops",
        "_outgoing",
        "_recoveries",
        "_recovery_ops",
        "_write_queues",
        "_writing",
        "incarnation_changes",
        "majority",
        "owner",
    )

    def __init__(self, owner: int, memnode_ids: Sequence[int]) -> None:
        nodes = tuple(dict.fromkeys(memnode_ids))  # dedupe, keep order
        if not nodes:
            raise ValueError("at least one memory node is needed")
        self.owner = owner
        self._nodes = nodes
        self.majority = len(nodes) // 2 + 1
        self._next_op_id = 1
        self._ops: dict[int, _Op] = {}
        self._outgoing: list[tuple[int, MemRead | MemWrite | MemMarkKnown]] = []
        # Per register: the sub-slot holding the latest completed write (absent: none yet), the
        # op id of the one write in flight, and the writes waiting behind it.
        self._latest_subslot: dict[RegisterAddress, int] = {}
        self._writing: dict[RegisterAddress, int] = {}
        self._write_queues: dict[RegisterAddress, deque[_QueuedWrite]] = {}
        self._node_incarnations: dict[int, int] = {}
        self.incarnation_changes = 0
        # The sub-slot bytes of each register's latest completed write, to rewrite them on a
        # node that restarted; and the rewrites under way, per (node, epoch).
        self._latest_data: dict[RegisterAddress, bytes] = {}
        self._recoveries: dict[tuple[int, int], _Recovery] = {}
        self._recovery_ops: dict[int, tuple[int, int]] = {}

    # ------------------------------------------------------------------ requests

    def write(self, addr: RegisterAddress, incarnation: int, value: bytes, token: object) -> None:
        """Write ``value`` at ``incarnation``; a WriteDone(token, addr) reports completion.

        Writes to one register run one at a time, in call order: a write must not overwrite the
        sub-slot of a previous one before that one is known to be on a majority.
        """
        if addr.writer != self.owner:
            raise ValueError(f"replica {self.owner} cannot write {addr.writer}'s registers")
        if len(value) != VALUE_BYTES:
            raise ValueError(f"a register value is {VALUE_BYTES} bytes, got {len(value)}")
        queued = _QueuedWrite(incarnation, bytes(value), token)
        if addr in self._writing:
            self._write_queues.setdefault(addr, deque()).append(queued)
        else:
            self._start_write(addr, queued)

    def read(self, addr: RegisterAddress, token: object) -> None:
        """Read ``addr`` from a majority; a ReadDone(token, addr, result) reports the value."""
        op_id = self._new_op_id()
        msg = MemRead(op_id, addr.epoch, addr.writer, addr.b, addr.slot)
        self._send(op_id, _Op(msg, addr, token))

    def take_outgoing(self) -> list[tuple[int, MemRead | MemWrite | MemMarkKnown]]:
        """Drain the (memory node id, message) pairs to send."""
        out, self._outgoing = self._outgoing, []
        return out

    def has_outgoing(self) -> bool:
        return bool(self._outgoing)

    def retry(self) -> bool:
        """Re-send every pending op to the nodes that have not answered it; True iff any pending.

        A memory node that crashed lost what it was sent; once it is back, the re-sent request
        lets it help complete the op.
        """
        for op in self._ops.values():
            self._outgoing.extend((node, op.msg) for node in self._nodes if node not in op.answered)
        for (node, _), rec in self._recoveries.items():
            self._outgoing.extend((node, msg) for msg in rec.writes.values())
            if rec.mark is not None:
                self._outgoing.append((node, rec.mark))
        return bool(self._ops) or bool(self._recoveries)

    # ------------------------------------------------------------------ replies

    def on_reply(self, node: int, reply: MemReadReply | MemWriteReply) -> list[Done]:
        """Consume one reply; returns the ops it completed. Never raises on stray replies."""
        if node not in self._nodes:
            return []
        self._note_incarnation(node, reply.node_incarnation)
        recovering = self._recovery_ops.get(reply.op_id)
        if recovering is not None:
            if recovering[0] == node and isinstance(reply, MemWriteReply):
                self._on_recovery_reply(node, recovering[1], reply)
            return []
        op = self._ops.get(reply.op_id)
        if op is None or node in op.answered:
            return []
        if reply.status == STATUS_UNKNOWN and isinstance(op.msg, MemWrite):
            # applied in an area the node lost and readers cannot see: rewrite it all there
            self._recover(node, op.addr.epoch, reply.node_incarnation)
            return []
        # "unknown" and "rejected" count as no reply: retry asks that node again later.
        if reply.status != STATUS_OK:
            return []
        if isinstance(op.msg, MemRead):
            if not isinstance(reply, MemReadReply):
                return []
            parsed = parse_register(reply.data)
            if parsed is not None:
                op.results.append(parsed)
        elif not isinstance(reply, MemWriteReply):
            return []
        op.answered.add(node)
        if len(op.answered) < self.majority:
            return []
        del self._ops[reply.op_id]  # completed ops are forgotten; later replies are stray
        if isinstance(op.msg, MemRead):
            return [ReadDone(op.token, op.addr, max(op.results) if op.results else None)]
        self._finish_write(op.addr, op.msg)
        return [WriteDone(op.token, op.addr)]

    # ------------------------------------------------------------------ bookkeeping

    def forget_epoch(self, epoch: int) -> None:
        """Drop all state of ``epoch`` (its areas were released): pending ops never complete."""
        for op_id in [op_id for op_id, op in self._ops.items() if op.addr.epoch == epoch]:
            del self._ops[op_id]
        for key in [key for key in self._recoveries if key[1] == epoch]:
            self._end_recovery(*key)
        for table in (self._latest_subslot, self._latest_data, self._writing, self._write_queues):
            for addr in [addr for addr in table if addr.epoch == epoch]:
                del table[addr]

    def pending_ops(self) -> int:
        """Ops not completed yet: in flight, writes queued behind another, recoveries."""
        return (
            len(self._ops)
            + sum(len(queue) for queue in self._write_queues.values())
            + len(self._recovery_ops)
        )

    def footprint(self) -> int:
        """Entries held in every table, for bounded-memory checks."""
        return (
            self.pending_ops()
            + len(self._latest_subslot)
            + len(self._latest_data)
            + len(self._recoveries)
            + len(self._writing)
            + len(self._write_queues)
            + len(self._node_incarnations)
            + len(self._outgoing)
        )

    def _new_op_id(self) -> int:
        op_id = self._next_op_id
        self._next_op_id += 1
        return op_id

    def _send(self, op_id: int, op: _Op) -> None:
        self._ops[op_id] = op
        self._outgoing.extend((node, op.msg) for node in self._nodes)

    def _start_write(self, addr: RegisterAddress, queued: _QueuedWrite) -> None:
        latest = self._latest_subslot.get(addr)
        subslot = 0 if latest is None else 1 - latest
        op_id = self._new_op_id()
        data = encode_subslot(queued.incarnation, queued.value)
        msg = MemWrite(op_id, addr.epoch, addr.writer, addr.b, addr.slot, subslot, data)
        self._writing[addr] = op_id
        self._send(op_id, _Op(msg, addr, queued.token))

    def _finish_write(self, addr: RegisterAddress, msg: MemWrite) -> None:
        self._latest_subslot[addr] = msg.subslot
        self._latest_data[addr] = msg.data
        del self._writing[addr]
        queue = self._write_queues.get(addr)
        if queue:
            nxt = queue.popleft()
            if not queue:
                del self._write_queues[addr]
            self._start_write(addr, nxt)

    def _note_incarnation(self, node: int, incarnation: int) -> None:
        previous = self._node_incarnations.get(node)
        self._node_incarnations[node] = incarnation
        if previous is None or previous == incarnation:
            return
        # The node restarted and lost its memory: what it acknowledged before is gone, so its
        # acknowledgements of writes still in flight no longer count; they go to it again.
        self.incarnation_changes += 1
        for op in self._ops.values():
            if isinstance(op.msg, MemWrite) and node in op.answered:
                op.answered.discard(node)
                self._outgoing.append((node, op.msg))

    # ------------------------------------------------------------------ recovery after amnesia

    def _recover(self, node: int, epoch: int, incarnation: int) -> None:
        key = (node, epoch)
        if key in self._recoveries:
            return
        rec = self._recoveries[key] = _Recovery(incarnation)
        for addr, data in self._latest_data.items():
            if addr.epoch != epoch:
                continue
            op_id = self._new_op_id()
            msg = MemWrite(
                op_id, epoch, self.owner, addr.b, addr.slot, self._latest_subslot[addr], data
            )
            rec.writes[op_id] = msg
            self._recovery_ops[op_id] = key
            self._outgoing.append((node, msg))
        if not rec.writes:
            self._send_mark(node, epoch, rec)

    def _send_mark(self, node: int, epoch: int, rec: _Recovery) -> None:
        op_id = self._new_op_id()
        rec.mark = MemMarkKnown(op_id, epoch, self.owner, rec.incarnation)
        self._recovery_ops[op_id] = (node, epoch)
        self._outgoing.append((node, rec.mark))

    def _end_recovery(self, node: int, epoch: int) -> None:
        rec = self._recoveries.pop((node, epoch))
        for op_id in rec.writes:
            del self._recovery_ops[op_id]
        if rec.mark is not None:
            del self._recovery_ops[rec.mark.op_id]

    def _on_recovery_reply(self, node: int, epoch: int, reply: MemWriteReply) -> None:
        rec = self._recoveries[(node, epoch)]
        if reply.node_incarnation != rec.incarnation:
            # it restarted again: what we rewrote is lost too, start over
            self._end_recovery(node, epoch)
            self._recover(node, epoch, reply.node_incarnation)
            return
        if rec.mark is not None and reply.op_id == rec.mark.op_id:
            if reply.status == STATUS_OK:
                self._end_recovery(node, epoch)  # readers see our area on this node again
            return
        if reply.status == STATUS_REJECTED or reply.op_id not in rec.writes:
            return
        del rec.writes[reply.op_id]
        del self._recovery_ops[reply.op_id]
        if not rec.writes:
            self._send_mark(node, epoch, rec)
