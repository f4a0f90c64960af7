"""The memory node's store: passive register bytes plus the access control the node enforces.

The node never interprets register contents. It only checks who may touch which bytes
(PROTOCOL.md section 2): members of an epoch may read every area of that epoch, and only a
writer may write its own area, one whole sub-slot at a time (the TCP backend's atomic write).
Anything else is rejected, counted and never applied; ``handle`` never raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .layout import EMPTY_REGISTER, REGISTER_BYTES, SUBSLOT_BYTES
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

__all__ = [
    "REASON_BAD_LENGTH",
    "REASON_BAD_SUBSLOT",
    "REASON_MALFORMED",
    "REASON_NOT_MEMBER",
    "REASON_NOT_WRITER",
    "REASON_UNKNOWN_AREA",
    "REASON_UNKNOWN_EPOCH",
    "REASON_UNKNOWN_REGISTER",
    "STATUS_OK",
    "STATUS_REJECTED",
    "STATUS_UNKNOWN",
    "MemoryNodeStore",
]

# Reasons a request is rejected, the keys of ``rejected_by_reason``.
REASON_UNKNOWN_EPOCH = "unknown_epoch"
REASON_NOT_MEMBER = "not_member"
REASON_NOT_WRITER = "not_writer"
REASON_UNKNOWN_AREA = "unknown_area"
REASON_UNKNOWN_REGISTER = "unknown_register"
REASON_BAD_SUBSLOT = "bad_subslot"
REASON_BAD_LENGTH = "bad_length"
REASON_MALFORMED = "malformed"


def _ints(*fields: object) -> bool:
    # A decoder bug must not turn into an exception (or a float offset) inside the node.
    return all(type(field) is int for field in fields)


@dataclass(slots=True)
class _Area:
    """One writer's registers of one epoch: ``rows[b]`` indexes the broadcaster's tail."""

    rows: dict[int, int]
    tail: int
    memory: bytearray
    known: bool

    def offset(self, b: int, slot: int) -> int | None:
        row = self.rows.get(b)
        if row is None or not 0 <= slot < self.tail:
            return None
        return (row * self.tail + slot) * REGISTER_BYTES


class MemoryNodeStore:
    """Registers of every provisioned (epoch, writer) area held by one memory node."""

    __slots__ = ("_areas", "_members", "incarnation", "node_id", "rejected_by_reason")

    def __init__(self, node_id: int, incarnation: int) -> None:
        self.node_id = node_id
        self.incarnation = incarnation
        self._areas: dict[tuple[int, int], _Area] = {}
        self._members: dict[int, set[int]] = {}
        self.rejected_by_reason: dict[str, int] = {}

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected_by_reason.values())

    # ------------------------------------------------------------------ provisioning (admin)

    def provision_area(
        self,
        epoch: int,
        writer: int,
        broadcasters: Sequence[int],
        tail: int,
        known: bool = True,
    ) -> None:
        """Create ``writer``'s area of ``epoch``: register (b, slot) per broadcaster b != writer.

        Re-provisioning an area with the same shape keeps it as is (a Provision lists every area
        the node holds each time); a different shape is a provisioning bug, so it raises.
        """
        if tail < 1:
            raise ValueError("tail must be at least 1")
        # The writer never locks its own broadcasts, so callers may pass the full member list.
        bs = sorted({b for b in broadcasters if b != writer})
        rows = {b: row for row, b in enumerate(bs)}
        existing = self._areas.get((epoch, writer))
        if existing is not None:
            if existing.rows != rows or existing.tail != tail:
                raise ValueError(f"area ({epoch}, {writer}) already exists with another shape")
            return
        self._areas[(epoch, writer)] = _Area(
            rows=rows, tail=tail, memory=bytearray(EMPTY_REGISTER * (len(bs) * tail)), known=known
        )
        self._members.setdefault(epoch, set()).add(writer)

    def mark_known(
        self, requester: int, epoch: int, writer: int, node_incarnation: int | None = None
    ) -> int:
        """The writer says it has rewritten its unknown area: reads are served from now on.
        ``node_incarnation`` is the incarnation its rewrites were acknowledged in: if this node
        restarted since, they were lost and the area stays unknown."""
        if requester != writer:
            return self._reject(REASON_NOT_WRITER)
        if node_incarnation is not None and node_incarnation != self.incarnation:
            return STATUS_UNKNOWN
        area = self._areas.get((epoch, writer))
        if area is None:
            return self._reject(REASON_UNKNOWN_AREA)
        area.known = True
        return STATUS_OK

    def release_epoch(self, epoch: int) -> None:
        """Free every area of ``epoch``; its members lose access with it."""
        for key in [key for key in self._areas if key[0] == epoch]:
            del self._areas[key]
        self._members.pop(epoch, None)

    def allocated_bytes(self) -> int:
        """Bytes of register memory held, over all areas."""
        return sum(len(area.memory) for area in self._areas.values())

    # ------------------------------------------------------------------ requests (wire)

    def handle(
        self, requester: int, msg: MemRead | MemWrite | MemMarkKnown
    ) -> MemReadReply | MemWriteReply:
        """Serve one request from the authenticated member ``requester``; never raises."""
        if isinstance(msg, MemWrite):
            return MemWriteReply(msg.op_id, self.incarnation, self._write(requester, msg))
        if isinstance(msg, MemMarkKnown):
            if not _ints(msg.epoch, msg.writer, msg.node_incarnation):
                return MemWriteReply(msg.op_id, self.incarnation, self._reject(REASON_MALFORMED))
            status = self.mark_known(requester, msg.epoch, msg.writer, msg.node_incarnation)
            return MemWriteReply(msg.op_id, self.incarnation, status)
        status, data = self._read(requester, msg)
        return MemReadReply(msg.op_id, self.incarnation, status, data)

    def _read(self, requester: int, msg: MemRead) -> tuple[int, bytes]:
        if not _ints(msg.epoch, msg.writer, msg.b, msg.slot):
            return self._reject(REASON_MALFORMED), b""
        members = self._members.get(msg.epoch)
        if members is None:
            return self._reject(REASON_UNKNOWN_EPOCH), b""
        if requester not in members:
            return self._reject(REASON_NOT_MEMBER), b""
        area = self._areas.get((msg.epoch, msg.writer))
        if area is None:
            return self._reject(REASON_UNKNOWN_AREA), b""
        offset = area.offset(msg.b, msg.slot)
        if offset is None:
            return self._reject(REASON_UNKNOWN_REGISTER), b""
        if not area.known:
            # Not a rejection: the writer has yet to rewrite what this node lost.
            return STATUS_UNKNOWN, b""
        return STATUS_OK, bytes(area.memory[offset : offset + REGISTER_BYTES])

    def _write(self, requester: int, msg: MemWrite) -> int:
        if not _ints(msg.epoch, msg.writer, msg.b, msg.slot, msg.subslot):
            return self._reject(REASON_MALFORMED)
        members = self._members.get(msg.epoch)
        if members is None:
            return self._reject(REASON_UNKNOWN_EPOCH)
        if requester not in members:
            return self._reject(REASON_NOT_MEMBER)
        if requester != msg.writer:
            return self._reject(REASON_NOT_WRITER)
        area = self._areas.get((msg.epoch, msg.writer))
        if area is None:
            return self._reject(REASON_UNKNOWN_AREA)
        offset = area.offset(msg.b, msg.slot)
        if offset is None:
            return self._reject(REASON_UNKNOWN_REGISTER)
        if msg.subslot not in (0, 1):
            return self._reject(REASON_BAD_SUBSLOT)
        if not isinstance(msg.data, bytes | bytearray) or len(msg.data) != SUBSLOT_BYTES:
            return self._reject(REASON_BAD_LENGTH)
        start = offset + msg.subslot * SUBSLOT_BYTES
        # A whole sub-slot in one assignment: the TCP backend's writes are atomic.
        area.memory[start : start + SUBSLOT_BYTES] = msg.data
        # Applied, but in an area readers cannot see yet: not an acknowledgement for the
        # writer's quorum; it tells the writer to rewrite the area and mark it known.
        return STATUS_OK if area.known else STATUS_UNKNOWN

    def _reject(self, reason: str) -> int:
        self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + 1
        return STATUS_REJECTED
