"""Evidence against peers: bounded per peer, counted by reason (never an exception)."""

from __future__ import annotations

from collections import deque

from .messages import Equivocation


class EvidenceLog:
    """Keeps the newest ``per_peer_max`` reasons per peer and a counter per (peer, reason)."""

    __slots__ = ("_per_peer_max", "counts", "proofs", "recent")

    def __init__(self, per_peer_max: int) -> None:
        self._per_peer_max = per_peer_max
        self.recent: dict[int, deque[str]] = {}
        self.counts: dict[tuple[int, str], int] = {}
        self.proofs: dict[int, Equivocation] = {}  # first equivocation proof per broadcaster

    def add(self, peer: int, reason: str) -> None:
        q = self.recent.get(peer)
        if q is None:
            q = self.recent[peer] = deque(maxlen=self._per_peer_max)
        q.append(reason)
        key = (peer, reason)
        self.counts[key] = self.counts.get(key, 0) + 1

    def add_proof(self, proof: Equivocation) -> bool:
        """Keep the first proof against ``proof.b``; True if it is new."""
        if proof.b in self.proofs:
            return False
        self.proofs[proof.b] = proof
        return True

    def against(self, peer: int) -> int:
        return sum(c for (p, _), c in self.counts.items() if p == peer)

    def footprint(self) -> int:
        return sum(len(q) for q in self.recent.values()) + len(self.counts) + len(self.proofs)
