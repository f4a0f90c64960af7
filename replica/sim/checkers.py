"""Invariant checkers (PROTOCOL.md section 5). They see the actions of correct replicas and
their ``footprint()``, never private fields. Each returns violations as strings."""

from __future__ import annotations

from ubft.replica.core.actions import Decided, Delivered, Executed, ReportEvidence
from ubft.replica.core.bounds import footprint_bounds  # declared by the core, checked here
from ubft.replica.core.crypto import digest

__all__ = ["footprint_bounds"]


class Agreement:
    """No two correct replicas decide different batches for one instance; CTBcast consistency;
    exactly-once execution at one instance everywhere."""

    def __init__(self) -> None:
        self.decided: dict[int, bytes] = {}
        self.delivered: dict[tuple[int, int], bytes] = {}
        self.executed_at: dict[tuple[int, int], int] = {}  # (client, request) -> instance
        self.executed_by: dict[
            tuple[int, int, int], int
        ] = {}  # (replica, client, request) -> count
        self.results: dict[tuple[int, int], bytes] = {}
        self.violations: list[str] = []
        self.fast: dict[int, bool] = {}  # instance -> decided fast at every correct replica so far

    def on_decided(self, replica: int, a: Decided) -> None:
        d = self.decided.setdefault(a.instance, a.digest)
        if d != a.digest:
            self.violations.append(
                f"agreement: replica {replica} decided another batch for instance {a.instance}"
            )
        self.fast[a.instance] = self.fast.get(a.instance, True) and a.fast

    def on_delivered(self, replica: int, a: Delivered) -> None:
        d = digest(a.m)
        if self.delivered.setdefault((a.b, a.k), d) != d:
            self.violations.append(
                f"ctb consistency: replica {replica} delivered another m for (b={a.b}, k={a.k})"
            )

    def on_executed(self, replica: int, a: Executed) -> None:
        key = (a.client_id, a.request_id)
        count = self.executed_by.get((replica, *key), 0) + 1
        self.executed_by[(replica, *key)] = count
        if count > 1:
            self.violations.append(f"exactly-once: replica {replica} executed {key} twice")
        at = self.executed_at.setdefault(key, a.instance)
        if at != a.instance:
            self.violations.append(
                f"exactly-once: {key} executed at instances {at} and {a.instance}"
            )
        res = self.results.setdefault(key, a.result)
        if res != a.result:
            self.violations.append(f"agreement: {key} gave different results at replica {replica}")


class Validity:
    """Every executed request was issued by a registered client with that payload."""

    def __init__(self) -> None:
        self.issued: dict[tuple[int, int], set[bytes]] = {}  # (client, request) -> payload digests
        self.violations: list[str] = []

    def issue(self, client_id: int, request_id: int, payload_digest: bytes) -> None:
        self.issued.setdefault((client_id, request_id), set()).add(payload_digest)

    def on_executed(self, replica: int, a: Executed) -> None:
        if digest(a.payload) not in self.issued.get((a.client_id, a.request_id), ()):
            self.violations.append(
                f"validity: replica {replica} executed ({a.client_id}, {a.request_id}) with a payload its client never sent"
            )


class EvidenceAgainstCorrect:
    def __init__(self, correct: set[int]) -> None:
        self.correct = correct
        self.violations: list[str] = []

    def on_evidence(self, replica: int, a: ReportEvidence) -> None:
        if not a.is_client and a.against in self.correct:
            self.violations.append(
                f"evidence: correct replica {replica} reported {a.reason} against correct replica {a.against}"
            )


class BoundedMemory:
    def __init__(self, bounds: dict[str, int]) -> None:
        self.bounds = bounds
        self.max_total = 0
        self.max_by_key: dict[str, int] = {}
        self.violations: list[str] = []

    def observe(self, replica: int, footprint: dict[str, int]) -> None:
        total = 0
        for key, value in footprint.items():
            total += value
            if value > self.max_by_key.get(key, 0):
                self.max_by_key[key] = value
                bound = self.bounds.get(key)
                if bound is None or value > bound:
                    self.violations.append(
                        f"bounded memory: replica {replica} {key}={value} above bound {bound}"
                    )
        self.max_total = max(self.max_total, total)
