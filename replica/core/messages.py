"""Every message of PROTOCOL.md as one frozen class, and the numbers that tag them on the wire.

Frames between processes carry a ``Message``; the CTBcast value ``m`` that a broadcaster sends
is a ``Payload`` (encoded separately, because its bytes are what receivers echo, digest, sign
and write to disaggregated memory). Kind numbers are fixed forever; a retired one stays
reserved. The memory-node messages live in ``ubft.memnode.wire``, below the core (the memory
node never imports the replica); ``MsgKind`` lists their kind numbers and ``Message`` joins
them, so that one ``decode`` reads every frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ubft.memnode.wire import MemKind, MemMessage


class MsgKind(IntEnum):
    # replica <-> replica, point to point
    CTB = 1  # (b, k, m): broadcaster to receivers
    CTB_ECHO = 2
    CTB_SIG = 3
    CTB_SIG_REQUEST = 4
    CTB_CKPT_SHARE = 5
    CTB_CKPT_CERT = 6
    PROMISE = 7
    FAST_COMMIT = 8
    PREP_SHARE = 9
    CKPT_SHARE = 10
    REQUEST_ECHO = 11
    REQUEST_FORWARD = 12
    EQUIVOCATION = 13
    SYNC = 14
    REQUEST_ECHOES = 15  # several request echoes in one frame (a follower's burst)
    # client <-> replica
    REQUEST = 32
    REPLY = 33
    # memory node protocol (TCP backend): messages and frames in ubft.memnode.wire
    MEM_READ = int(MemKind.MEM_READ)  # 48
    MEM_WRITE = int(MemKind.MEM_WRITE)  # 49
    MEM_READ_REPLY = int(MemKind.MEM_READ_REPLY)  # 50
    MEM_WRITE_REPLY = int(MemKind.MEM_WRITE_REPLY)  # 51
    MEM_MARK_KNOWN = int(MemKind.MEM_MARK_KNOWN)  # 52


class PayloadKind(IntEnum):
    """CTBcast values (``m``)."""

    PREPARE = 1
    COMMIT = 2
    CHECKPOINT = 3
    SEAL_VIEW = 4
    NEW_VIEW = 5  # reserved for the view-change issue


# --------------------------------------------------------------------------- shared parts


@dataclass(frozen=True, slots=True)
class Entry:
    """One client request inside a batch; ``sig`` is empty when unsigned."""

    client_id: int
    request_id: int
    payload: bytes
    sig: bytes = b""


@dataclass(frozen=True, slots=True)
class Batch:
    ts: int
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class Certificate:
    """f+1 signatures of distinct replicas on one statement; signers sorted ascending."""

    signers: tuple[int, ...]
    sigs: tuple[bytes, ...]


# --------------------------------------------------------------------------- CTBcast values


@dataclass(frozen=True, slots=True)
class Prepare:
    view: int
    instance: int
    batch: Batch


@dataclass(frozen=True, slots=True)
class Commit:
    view: int
    instance: int
    batch: Batch
    cert: Certificate  # f+1 "prep" shares on (view, instance, digest(batch))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    c: int
    digest: bytes
    cert: Certificate  # f+1 "ckpt" shares on (c, digest)


@dataclass(frozen=True, slots=True)
class SealView:
    view: int


Payload = Prepare | Commit | Checkpoint | SealView


# --------------------------------------------------------------------------- replica <-> replica


@dataclass(frozen=True, slots=True)
class Ctb:
    b: int
    k: int
    m: bytes  # encoded Payload


@dataclass(frozen=True, slots=True)
class CtbEcho:
    b: int
    k: int
    is_digest: bool
    data: bytes  # m itself, or digest(m) when m is above the echo threshold


@dataclass(frozen=True, slots=True)
class CtbSig:
    b: int
    k: int
    sig: bytes  # over ("ctb", b, k, digest(m))


@dataclass(frozen=True, slots=True)
class CtbSigRequest:
    b: int
    from_k: int


@dataclass(frozen=True, slots=True)
class CtbCkptShare:
    b: int
    c: int
    digest: bytes  # digest(summary)
    sig: bytes


@dataclass(frozen=True, slots=True)
class CtbCkptCert:
    b: int
    c: int
    summary: bytes
    cert: Certificate


@dataclass(frozen=True, slots=True)
class Promise:
    view: int
    instance: int


@dataclass(frozen=True, slots=True)
class FastCommit:
    view: int
    instance: int


@dataclass(frozen=True, slots=True)
class PrepShare:
    view: int
    instance: int
    digest: bytes  # digest(batch)
    sig: bytes


@dataclass(frozen=True, slots=True)
class CkptShare:
    c: int
    digest: bytes
    sig: bytes


@dataclass(frozen=True, slots=True)
class RequestEcho:
    client_id: int
    request_id: int
    digest: bytes  # digest of the request's payload as the echoing follower received it


@dataclass(frozen=True, slots=True)
class RequestEchoes:
    """The request echoes of one burst, to the leader in one frame."""

    echoes: tuple[RequestEcho, ...]


@dataclass(frozen=True, slots=True)
class RequestForward:
    request: Request  # a client-signed request, forwarded to the leader


@dataclass(frozen=True, slots=True)
class Equivocation:
    """Two "ctb" statements of ``b`` for one index with different digests."""

    b: int
    k: int
    digest1: bytes
    sig1: bytes
    digest2: bytes
    sig2: bytes


@dataclass(frozen=True, slots=True)
class Sync:
    """Status a replica sends a peer while it has work pending, so lost frames get resent.

    ``next_k``: the next CTBcast index it expects from the peer; ``cert_c``: the peer's latest
    CTBcast checkpoint it holds; ``exec_next``: its next instance to execute; ``stable_c``: its
    latest stable checkpoint.
    """

    next_k: int
    cert_c: int
    exec_next: int
    stable_c: int


# --------------------------------------------------------------------------- client <-> replica


@dataclass(frozen=True, slots=True)
class Request:
    client_id: int
    request_id: int
    payload: bytes
    sig: bytes = b""  # over ("req", client_id, request_id, digest(payload)), or empty


@dataclass(frozen=True, slots=True)
class Reply:
    epoch: int
    client_id: int
    request_id: int
    result: bytes


Message = (
    Ctb
    | CtbEcho
    | CtbSig
    | CtbSigRequest
    | CtbCkptShare
    | CtbCkptCert
    | Promise
    | FastCommit
    | PrepShare
    | CkptShare
    | RequestEcho
    | RequestEchoes
    | RequestForward
    | Equivocation
    | Sync
    | Request
    | Reply
    | MemMessage  # MemRead, MemWrite, MemMarkKnown, MemReadReply, MemWriteReply
)
