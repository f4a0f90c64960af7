"""What one replica holds about one consensus instance (bounded by the window)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .messages import Batch


@dataclass(slots=True)
class InstanceState:
    """Everything one replica holds about one instance (bounded by the window)."""

    view: int = 0  # the view every vote and share held here belongs to
    batch: Batch | None = None
    digest: bytes = b""
    accepted: bool = False
    waiting: bool = False  # Prepare kept: log or clock check not yet satisfied
    promises: set[int] = field(default_factory=set)
    fast_commits: set[int] = field(default_factory=set)
    fc_sent: bool = False
    shares: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # signer -> (d, sig)
    share_sent: bool = False
    commit_sent: bool = False
    commits: dict[int, bytes] = field(default_factory=dict)  # replica -> digest (this view)
    commit_batches: dict[bytes, Batch] = field(default_factory=dict)
    decided: bool = False
    accepted_ns: int = 0
