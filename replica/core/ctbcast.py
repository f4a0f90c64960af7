"""Consistent Tail Broadcast (PROTOCOL.md section 3): one broadcaster per replica, one receiver
per other broadcaster.

Fast path: b sends (k, m); every receiver echoes it to the other receivers and delivers on
unanimous matching echoes. Slow path: b signs ("ctb", b, k, digest(m)); a receiver writes
{k, digest, sig} into its own SWMR register (b, k mod t), then reads the same register of every
other receiver and delivers once each is "checked" (section 3, step 4). Tail: b broadcasts k
only below c_b + t for a CTBcast checkpoint certificate c_b it has sent to all; receivers
enforce the same bound, so every buffer here is O(t).

Nothing a peer sends raises: bad input becomes evidence and is dropped.
"""

from __future__ import annotations

from ubft.memnode.register import ReadDone, RegisterClient, WriteDone

from .context import Context
from .crypto import Tag, statement
from .ctb_broadcaster import CtbBroadcaster
from .ctb_receiver import CtbReceiver
from .ctb_upcalls import _UNBOUND, CtbUpcalls
from .messages import Ctb, CtbCkptCert, CtbCkptShare, CtbEcho, CtbSig, CtbSigRequest, Equivocation

__all__ = ["CtbBroadcaster", "CtbCast", "CtbReceiver", "CtbUpcalls"]


class CtbCast:
    """Routes CTBcast traffic of one replica to its broadcaster and receivers."""

    __slots__ = ("broadcaster", "ctx", "receivers", "regs")

    def __init__(self, ctx: Context, regs: RegisterClient) -> None:
        self.ctx = ctx
        self.regs = regs
        self.broadcaster = CtbBroadcaster(ctx, _UNBOUND)
        self.receivers = {b: CtbReceiver(ctx, b, regs, _UNBOUND) for b in ctx.others}

    def bind(self, up: CtbUpcalls) -> None:
        """Set the layer above (consensus is built after CTBcast, which it broadcasts with)."""
        self.broadcaster.up = up
        for rx in self.receivers.values():
            rx.up = up

    # One handler per message type; Replica dispatches on the type (no isinstance chain).

    def on_ctb(self, sender: int, msg: Ctb) -> None:
        if msg.b != sender:  # a receiver accepts m for (b, k) from b itself only
            self.ctx.report(sender, "ctb.not_the_broadcaster")
            return
        self.receivers[sender].on_ctb(msg.k, msg.m)

    def on_echo(self, sender: int, msg: CtbEcho) -> None:
        rx = self.receivers.get(msg.b)
        if rx is not None:
            rx.on_echo(sender, msg.k, msg.is_digest, msg.data)

    def on_sig(self, sender: int, msg: CtbSig) -> None:
        if msg.b != sender:
            self.ctx.report(sender, "ctb.not_the_broadcaster")
            return
        self.receivers[sender].on_sig(msg.k, msg.sig)

    def on_sig_request(self, sender: int, msg: CtbSigRequest) -> None:
        if msg.b == self.ctx.me:
            self.broadcaster.on_sig_request(sender, msg.from_k)
            return
        rx = self.receivers.get(msg.b)
        if rx is not None and rx.cert is not None and rx.cert_c > msg.from_k:
            self.ctx.send((sender,), rx.cert)  # anyone returns the latest certificate it holds

    def on_share(self, sender: int, msg: CtbCkptShare) -> None:
        if msg.b == self.ctx.me:
            self.broadcaster.on_share(sender, msg)

    def on_cert(self, sender: int, msg: CtbCkptCert) -> None:
        rx = self.receivers.get(msg.b)
        if rx is not None:
            rx.on_cert(sender, msg)

    def on_equivocation(self, sender: int, proof: Equivocation) -> None:
        rx = self.receivers.get(proof.b)
        if rx is None or proof.b in self.ctx.evidence.proofs:
            return
        ctx = self.ctx
        ok = (
            proof.digest1 != proof.digest2
            and ctx.verifier.verify(
                proof.b,
                statement(Tag.CTB, ctx.cluster, ctx.epoch, proof.b, proof.k, proof.digest1),
                proof.sig1,
            )
            and ctx.verifier.verify(
                proof.b,
                statement(Tag.CTB, ctx.cluster, ctx.epoch, proof.b, proof.k, proof.digest2),
                proof.sig2,
            )
        )
        if not ok:
            ctx.report(sender, "ctb.bad_equivocation_proof")
            return
        rx.found_proof(proof, forward=False)

    def on_mem_done(self, done: list[WriteDone | ReadDone]) -> None:
        for op in done:
            token = op.token
            assert isinstance(token, tuple)
            rx = self.receivers.get(token[1])
            if rx is None:
                continue
            if isinstance(op, WriteDone):
                rx.on_write_done(token[2])
            else:
                rx.on_read_done(token[2], token[3], op.result)

    def on_timer(self, b: int) -> None:
        rx = self.receivers.get(b)
        if rx is not None:
            rx.on_timer()

    def timer_footprint(self) -> int:
        return sum(len(rx.timers) for rx in self.receivers.values())

    def pending(self) -> bool:
        return bool(self.broadcaster.queue) or any(rx.pending() for rx in self.receivers.values())

    def footprint(self) -> int:
        return self.broadcaster.footprint() + sum(rx.footprint() for rx in self.receivers.values())
