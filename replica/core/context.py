"""What every core component of one replica shares: identity, keys, the outbox, the time."""

from __future__ import annotations

from .actions import Action, Persist, PersistKind, ReportEvidence, Send, SetTimer, TimerKey
from .codec import encode
from .config import ClusterConfig
from .crypto import Signer, Verifier
from .evidence import EvidenceLog
from .messages import Message


class Context:
    """One per replica. ``now_ns`` is set by the driver with every event; nothing here reads a
    clock. Components append actions to ``outbox``; the replica drains it."""

    __slots__ = (
        "cluster",
        "config",
        "durable",
        "epoch",
        "evidence",
        "f",
        "me",
        "members",
        "n",
        "now_ns",
        "others",
        "outbox",
        "params",
        "signer",
        "verifier",
    )

    def __init__(
        self,
        config: ClusterConfig,
        me: int,
        signer: Signer,
        verifier: Verifier,
        evidence: EvidenceLog | None = None,
    ) -> None:
        self.config = config
        self.params = config.params
        self.me = me
        self.epoch = config.epoch
        self.cluster = config.cluster_id_bytes
        self.members = config.member_ids
        self.others = tuple(m for m in self.members if m != me)
        self.n = config.n
        self.f = config.f
        self.signer = signer
        self.verifier = verifier
        # evidence outlives the epoch: the replica hands the same log to every epoch's context
        self.evidence = evidence or EvidenceLog(config.params.evidence_per_peer_max)
        self.outbox: list[Action] = []
        self.now_ns = 0
        self.durable = config.params.durable  # emit Persist barriers (PROTOCOL.md section 1)

    def send(self, targets: tuple[int, ...], msg: Message) -> None:
        if targets:
            self.outbox.append(Send(targets, encode(msg, self.epoch)))

    def send_all(self, msg: Message) -> None:
        self.send(self.others, msg)

    def report(self, peer: int, reason: str, is_client: bool = False) -> None:
        """Record evidence against a peer and report it (log line + metric in the runtime)."""
        self.evidence.add(peer + (1 << 32) if is_client else peer, reason)
        self.outbox.append(ReportEvidence(peer, reason, is_client))

    def persist(self, kind: PersistKind, a: int, b: int, data: bytes) -> None:
        """Durable mode: what later actions depend on, to be on disk before them."""
        self.outbox.append(Persist(kind, a, b, data))

    def set_timer(self, key: TimerKey, after_ns: int) -> None:
        self.outbox.append(SetTimer(key, self.now_ns + after_ns))
