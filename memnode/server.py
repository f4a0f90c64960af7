"""One memory node as a component: bytes in, bytes out.

``MemnodeServer.handle_frame(requester, frame)`` takes one frame from the authenticated member
``requester`` (the link says who it is, PROTOCOL.md section 1) and returns the encoded reply,
or None when nothing is to be sent back. In between: decode (``ubft.memnode.wire``), access
control and the registers (``MemoryNodeStore``). Every backend puts it behind its transport:
the simulator, ``ubft bench-core`` and the tests through ``ubft.replica.harness``, the TCP
memory-node process later.

Nothing a requester sends raises: a frame that does not decode, or that is no request, is a
drop counted in ``dropped_by_reason`` (no reply: the requester's retry timer covers it); a
request the access control refuses is answered "rejected" and counted by the store, never
applied.

The node's life cycle is here too: ``crash`` (frames are lost while it is down),
``restart`` (back with its memory, or, given a new incarnation, with an empty store: amnesia,
PROTOCOL.md section 1) and the provisioning hooks the operator's admin-signed Provision drives.
Sans-IO: the driver supplies the new incarnation (production draws it at random).
"""

from __future__ import annotations

from collections.abc import Sequence

from ubft.framing import DecodeError

from .store import MemoryNodeStore
from .wire import decode_request, encode

__all__ = ["DROP_DOWN", "MemnodeServer"]

DROP_DOWN = "node.down"  # a frame that reached the node while it was crashed


class MemnodeServer:
    """One memory node: its store, its incarnation and whether it is up."""

    __slots__ = ("dropped_by_reason", "node_id", "served", "store", "up")

    def __init__(self, node_id: int, incarnation: int) -> None:
        self.node_id = node_id
        self.store = MemoryNodeStore(node_id, incarnation)
        self.up = True
        self.served = 0  # requests answered (rejected ones included)
        self.dropped_by_reason: dict[str, int] = {}

    @property
    def incarnation(self) -> int:
        return self.store.incarnation

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped_by_reason.values())

    # ------------------------------------------------------------------ requests (wire)

    def handle_frame(self, requester: int, frame: bytes) -> bytes | None:
        """The reply frame to one request frame from member ``requester``, or None (dropped:
        the node is down, or the frame is malformed or no request). Never raises."""
        if not self.up:
            self._drop(DROP_DOWN)
            return None
        try:
            epoch, msg = decode_request(frame)
        except DecodeError as exc:
            self._drop(exc.reason)
            return None
        reply = self.store.handle(requester, msg)
        self.served += 1
        # the reply travels in the request's epoch, whatever it is: the store judged the request
        return encode(reply, epoch)

    def _drop(self, reason: str) -> None:
        self.dropped_by_reason[reason] = self.dropped_by_reason.get(reason, 0) + 1

    # ------------------------------------------------------------------ life cycle

    def crash(self) -> None:
        """Down: every frame is lost until ``restart``. Crashing a crashed node is a no-op."""
        self.up = False

    def restart(self, incarnation: int | None = None) -> None:
        """Up again. With ``incarnation`` (a new one), the node lost its memory: an empty store
        that holds no area until provisioned again (``provision_area(..., known=False)`` for
        areas it held: PROTOCOL.md section 2, "recovering")."""
        self.up = True
        if incarnation is None:
            return
        if incarnation == self.store.incarnation:
            raise ValueError("a restart that lost the memory needs a new incarnation")
        self.store = MemoryNodeStore(self.node_id, incarnation)

    # ------------------------------------------------------------------ provisioning (admin)

    def provision_area(
        self,
        epoch: int,
        writer: int,
        broadcasters: Sequence[int],
        tail: int,
        known: bool = True,
    ) -> None:
        """See ``MemoryNodeStore.provision_area``."""
        self.store.provision_area(epoch, writer, broadcasters, tail, known)

    def release_epoch(self, epoch: int) -> None:
        """See ``MemoryNodeStore.release_epoch``."""
        self.store.release_epoch(epoch)

    def allocated_bytes(self) -> int:
        """Bytes of register memory held, over all areas."""
        return self.store.allocated_bytes()
