"""What the core asks its driver to do, and what it reports for checkers and metrics.

NamedTuples, not frozen dataclasses: these are built on every message (STYLE.md measured
frozen+slots construction at ~470 ns against ~200 ns for a NamedTuple).
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple


class TimerKind(IntEnum):
    FAST_PATH = 1  # CTBcast receiver held (b, k) too long: ask b for signatures
    FAST_TIMEOUT = 2  # consensus instance not decided fast: send the "prep" share
    SYNC = 3  # resend status to peers while work is pending
    MEM_RETRY = 4  # re-send memory-node operations that got no answer
    CLIENT_RETRY = 5  # client: resend a request signed


class PersistKind(IntEnum):
    """What durable mode (PROTOCOL.md section 1) must have on disk before later actions."""

    CTB_SENT = 1  # a = k: this replica's CTBcast index k carries data = m (its tail)
    CTB_ACCEPTED = 2  # a = b, b = k: the m accepted for (b, k), data = digest(m)
    ACCEPTED = 3  # a = view, b = instance: the Prepare accepted, data = digest(B)
    FAST_COMMITTED = 4  # a = view, b = instance: FastCommit sent, data = B (encoded)


class TimerKey(NamedTuple):
    kind: TimerKind
    a: int = 0
    b: int = 0


class Send(NamedTuple):
    """A frame to other replicas."""

    targets: tuple[int, ...]
    frame: bytes


class SendClient(NamedTuple):
    client_id: int
    frame: bytes


class SendMemnode(NamedTuple):
    node: int
    frame: bytes


class SetTimer(NamedTuple):
    """Fire ``TimerFired(key)`` at virtual time ``at_ns``. Timers are never cancelled: a fire
    the core no longer cares about is ignored."""

    key: TimerKey
    at_ns: int


class Persist(NamedTuple):
    """The persistence barrier (raft's MustSync): in durable mode the driver makes this
    durable (fsync; consecutive ones may share one group commit) before it performs any action
    that follows it in the list. Emitted only when ``params.durable`` is set."""

    kind: PersistKind
    a: int
    b: int
    data: bytes


class ReportEvidence(NamedTuple):
    against: int  # replica or client id (see ``is_client``)
    reason: str
    is_client: bool = False


# ---- observations, for the simulator's checkers and the runtime's metrics


class Delivered(NamedTuple):
    b: int
    k: int
    m: bytes  # the delivered value (observers digest it if they need to)


class Decided(NamedTuple):
    instance: int
    view: int
    digest: bytes  # digest of the batch's canonical encoding
    fast: bool


class Executed(NamedTuple):
    instance: int
    client_id: int
    request_id: int
    payload: bytes  # the executed command (digest it only where needed: observers)
    result: bytes


Action = (
    Send
    | SendClient
    | SendMemnode
    | SetTimer
    | Persist
    | ReportEvidence
    | Delivered
    | Decided
    | Executed
)
