"""The sans-IO protocol core of a ubft replica: what a driver needs, importable from here.

A driver builds a ``Replica`` from a ``ClusterConfig`` and a ``Signer``, feeds it events
(``receive``, ``receive_client``, ``receive_memnode``, ``timer_fired``, each with the current
time) and performs the actions ``take_actions()`` returns, in order (``docs/architecture.md``).
Tests and observers read ``footprint()`` against ``footprint_bounds`` and call
``check_invariants()``.
"""

from .actions import (
    Action,
    Decided,
    Delivered,
    Executed,
    Persist,
    PersistKind,
    ReportEvidence,
    Send,
    SendClient,
    SendMemnode,
    SetTimer,
    TimerKey,
    TimerKind,
)
from .admission import ADMIN_CLIENT_ID, AdminOp, admin_command
from .app import Application, StateStream
from .bounds import MAX_INSTANCE, MAX_TS, MAX_VIEW, footprint_bounds
from .codec import decode, encode
from .config import ClusterConfig, Member, MemoryNode, ProtocolParams, SlowPathMode
from .crypto import SignatureCounter, Signer, Verifier
from .errors import DecodeError, UsageError
from .replica import Replica
from .snapshot import Snapshot, SnapshotError, SnapshotRestorer, build_snapshot

__all__ = [
    "ADMIN_CLIENT_ID",
    "MAX_INSTANCE",
    "MAX_TS",
    "MAX_VIEW",
    "Action",
    "AdminOp",
    "Application",
    "ClusterConfig",
    "Decided",
    "DecodeError",
    "Delivered",
    "Executed",
    "Member",
    "MemoryNode",
    "Persist",
    "PersistKind",
    "ProtocolParams",
    "Replica",
    "ReportEvidence",
    "Send",
    "SendClient",
    "SendMemnode",
    "SetTimer",
    "SignatureCounter",
    "Signer",
    "SlowPathMode",
    "Snapshot",
    "SnapshotError",
    "SnapshotRestorer",
    "StateStream",
    "TimerKey",
    "TimerKind",
    "UsageError",
    "Verifier",
    "admin_command",
    "build_snapshot",
    "decode",
    "encode",
    "footprint_bounds",
]
