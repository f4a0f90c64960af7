"""Receiver-driven retransmission (PROTOCOL.md section 4, "Retransmission"; design-decisions.md,
"Lost frames"): while work is pending a replica tells each peer, every sync_interval, where it
is; the peer resends only what it already sent or would send now, signing nothing for it."""

from __future__ import annotations

from collections.abc import Callable

from .checkpoint import CheckpointTracker
from .context import Context
from .ctbcast import CtbCast
from .instance import InstanceState
from .intake import RequestIntake
from .messages import FastCommit, PrepShare, Promise, Sync
from .view import ViewState


class SyncResponder:
    __slots__ = ("ckpt", "ctb", "ctx", "exec_next", "held", "intake", "last_answer_ns", "views")

    def __init__(
        self,
        ctx: Context,
        views: ViewState,
        ctb: CtbCast,
        ckpt: CheckpointTracker,
        intake: RequestIntake,
        held: dict[int, InstanceState],
        exec_next: Callable[[], int],
    ) -> None:
        self.ctx = ctx
        self.views = views
        self.ctb = ctb
        self.ckpt = ckpt
        self.intake = intake
        self.held = held
        self.exec_next = exec_next
        self.last_answer_ns: dict[int, int] = {}  # peer -> when we last answered its Sync

    def status(self, peer: int) -> Sync:
        rx = self.ctb.receivers[peer]
        return Sync(rx.k_d, rx.cert_c, self.exec_next(), self.ckpt.stable_c)

    def on_tick(self) -> None:
        """Resend what may have been lost: request echoes and checkpoint shares."""
        ctx = self.ctx
        self.intake.resend_pending(older_than_ns=ctx.now_ns - ctx.params.sync_interval_ns // 2)
        for share in self.ckpt.own_shares(above=self.ckpt.stable_c):
            ctx.send_all(share)

    def on_sync(self, sender: int, msg: Sync) -> None:
        """A peer reports where it is: resend it our votes for instances it has not executed.
        At most once per half sync interval per peer, so a faulty peer cannot make us flood."""
        ctx = self.ctx
        half = ctx.params.sync_interval_ns // 2
        last = self.last_answer_ns.get(sender)
        if last is not None and ctx.now_ns - last < half:
            return
        self.last_answer_ns[sender] = ctx.now_ns
        old = ctx.now_ns - half
        self.ctb.broadcaster.resend(sender, msg.next_k, with_sigs=False, sent_before_ns=old)
        to = (sender,)
        leader = self.views.is_leader()
        me = ctx.me
        for i, inst in sorted(self.held.items()):
            if i < msg.exec_next or not inst.accepted or inst.accepted_ns > old:
                continue
            if not leader:
                ctx.send(to, Promise(inst.view, i))
            if inst.fc_sent:
                ctx.send(to, FastCommit(inst.view, i))
            mine = inst.shares.get(me)
            if mine is not None:
                ctx.send(to, PrepShare(inst.view, i, mine[0], mine[1]))
        for share in self.ckpt.own_shares(above=msg.stable_c):
            ctx.send(to, share)
