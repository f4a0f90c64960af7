"""What a replica builds for one epoch (PROTOCOL.md section 4, "Reconfiguration").

A replica's state splits in two. What outlives an epoch is kept by ``Replica``: its signing
key, the application and the execution position (``Executor``), the client table
(``RequestLog``) and the evidence log. What belongs to one epoch is built here, from that
epoch's configuration: the context (members, f, keys that verify this epoch's statements, the
outbox), the register client over this epoch's memory nodes, the CTBcast streams and the
consensus state (view, instances, checkpoints). Entering another epoch replaces this object
and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ubft.memnode.register import RegisterClient

from .config import ClusterConfig
from .consensus import Consensus
from .context import Context
from .crypto import Signer, Verifier
from .ctbcast import CtbCast
from .evidence import EvidenceLog
from .execution import Executor
from .messages import (
    CkptShare,
    Ctb,
    CtbCkptCert,
    CtbCkptShare,
    CtbEcho,
    CtbSig,
    CtbSigRequest,
    Equivocation,
    FastCommit,
    PrepShare,
    Promise,
    RequestEcho,
    RequestEchoes,
    RequestForward,
    Sync,
)
from .request_log import RequestLog


class Epoch:
    __slots__ = ("consensus", "ctb", "ctx", "handlers", "peers", "regs")

    def __init__(
        self,
        config: ClusterConfig,
        me: int,
        signer: Signer,
        verifier: Verifier,
        evidence: EvidenceLog,
        executor: Executor,
        log: RequestLog,
    ) -> None:
        self.ctx = ctx = Context(config, me, signer, verifier, evidence)
        self.regs = RegisterClient(me, config.memnode_ids)
        self.ctb = ctb = CtbCast(ctx, self.regs)
        executor.bind(ctx)  # execution outlives the epoch; its actions go to this outbox
        self.consensus = cons = Consensus(ctx, ctb, executor, log)
        ctb.bind(cons)
        self.peers = frozenset(ctx.others)
        # one handler per replica-to-replica message type (no isinstance chain)
        self.handlers: dict[type, Callable[[int, Any], None]] = {
            Ctb: ctb.on_ctb,
            CtbEcho: ctb.on_echo,
            CtbSig: ctb.on_sig,
            CtbSigRequest: ctb.on_sig_request,
            CtbCkptShare: ctb.on_share,
            CtbCkptCert: ctb.on_cert,
            Equivocation: ctb.on_equivocation,
            Promise: cons.on_promise,
            FastCommit: cons.on_fast_commit,
            PrepShare: cons.on_prep_share,
            CkptShare: cons.on_ckpt_share,
            RequestEcho: cons.intake.on_request_echo,
            RequestEchoes: cons.intake.on_request_echoes,
            RequestForward: cons.on_request_forward,
            Sync: cons.on_sync,
        }

    @property
    def number(self) -> int:
        return self.ctx.epoch
