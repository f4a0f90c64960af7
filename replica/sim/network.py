"""The simulated network: per-link delay with jitter (reordering), loss, duplication and
(a)symmetric partitions, plus scripted link filters. It carries opaque bytes; the heap of the
world decides when they arrive. Deterministic given its ``random.Random``."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

Node = tuple[str, int]  # ("R", replica id) | ("C", client id) | ("M", memory node id)
LinkFilter = Callable[[Node, Node, bytes], bool]  # True: drop this frame


@dataclass(frozen=True, slots=True)
class NetworkModel:
    base_delay_ns: int = 20_000
    jitter_ns: int = 30_000
    drop_probability: float = 0.0
    duplicate_probability: float = 0.0


class Network:
    def __init__(self, model: NetworkModel, rng: random.Random) -> None:
        self.model = model
        self.rng = rng
        self.blocked: set[tuple[Node, Node]] = set()
        self.filters: list[LinkFilter] = []
        self.faults_on = True  # the liveness phase turns loss and duplication off
        self.sent = 0
        self.dropped = 0

    def partition(self, a: Node, b: Node, both: bool = True) -> None:
        self.blocked.add((a, b))
        if both:
            self.blocked.add((b, a))

    def heal(self, a: Node, b: Node) -> None:
        self.blocked.discard((a, b))
        self.blocked.discard((b, a))

    def heal_all(self) -> None:
        self.blocked.clear()

    def delays(self, src: Node, dst: Node, frame: bytes) -> tuple[int, ...]:
        """Arrival delays of this frame's copies (empty: lost)."""
        self.sent += 1
        if (src, dst) in self.blocked or any(f(src, dst, frame) for f in self.filters):
            self.dropped += 1
            return ()
        m = self.model
        rng = self.rng
        if self.faults_on and m.drop_probability and rng.random() < m.drop_probability:
            self.dropped += 1
            return ()
        first = m.base_delay_ns + int(rng.random() * m.jitter_ns)
        if self.faults_on and m.duplicate_probability and rng.random() < m.duplicate_probability:
            return (first, m.base_delay_ns + int(rng.random() * 4 * m.jitter_ns))
        return (first,)
