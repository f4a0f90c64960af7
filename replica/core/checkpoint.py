"""Checkpoint certificates (PROTOCOL.md section 4, "Checkpoints"): this replica's snapshot
digest at every c that is a multiple of window/2, the "ckpt" shares of the others, and the f+1
matching ones that make c stable. Consensus owns what a stable checkpoint releases."""

from __future__ import annotations

from .context import Context
from .crypto import Tag, statement
from .messages import Certificate, Checkpoint, CkptShare
from .quorum import certificate_from_shares


class CheckpointTracker:
    __slots__ = (
        "ctx",
        "interval",
        "last_ctb_ckpt",
        "own",
        "shares",
        "stable_c",
        "to_ctbcast",
        "window",
    )

    def __init__(self, ctx: Context, low: int) -> None:
        self.ctx = ctx
        self.interval = ctx.params.checkpoint_interval
        self.window = ctx.params.window
        self.stable_c = low
        self.last_ctb_ckpt = low  # last checkpoint this replica CTBcast (sent, not queued)
        self.to_ctbcast: Checkpoint | None = None  # stable, waiting for room in our tail
        self.own: dict[int, bytes] = {}  # c -> snapshot digest computed here
        self.shares: dict[int, dict[int, tuple[bytes, bytes]]] = {}  # c -> signer -> (d, sig)

    def take(self, c: int, d: bytes) -> Certificate | None:
        """Record our digest for c, sign and send our share; the certificate if c is now stable."""
        ctx = self.ctx
        self.own[c] = d
        sig = ctx.signer.sign(Tag.CKPT, ctx.cluster, ctx.epoch, c, d)
        self.shares.setdefault(c, {})[ctx.me] = (d, sig)
        ctx.send_all(CkptShare(c, d, sig))
        return self.certificate(c)

    def on_share(self, sender: int, msg: CkptShare, exec_next: int) -> Certificate | None:
        c = msg.c
        ctx = self.ctx
        if c % self.interval:
            ctx.report(sender, "ckpt.bad_index")  # a correct replica signs no other c
            return None
        if c <= self.stable_c or c > exec_next + self.window:
            return None  # below our stable checkpoint, or far ahead of us: may be lag
        if not ctx.verifier.verify(
            sender, statement(Tag.CKPT, ctx.cluster, ctx.epoch, c, msg.digest), msg.sig
        ):
            ctx.report(sender, "ckpt.bad_signature")
            return None
        self.shares.setdefault(c, {})[sender] = (msg.digest, msg.sig)
        return self.certificate(c)

    def certificate(self, c: int) -> Certificate | None:
        """f+1 shares matching our own digest for c, once we have computed it."""
        own = self.own.get(c)
        if own is None or c <= self.stable_c:
            return None
        shares = {r: sig for r, (d, sig) in self.shares.get(c, {}).items() if d == own}
        return certificate_from_shares(shares, self.ctx.f + 1)

    def mark_stable(self, c: int) -> None:
        assert c > self.stable_c
        self.stable_c = c
        for x in [x for x in self.shares if x < c]:
            del self.shares[x]
        for x in [x for x in self.own if x < c]:
            del self.own[x]

    def offer_ctbcast(self, c: int, d: bytes, cert: Certificate) -> None:
        """A stable checkpoint to CTBcast; a newer one replaces one still waiting."""
        if c > self.last_ctb_ckpt and (self.to_ctbcast is None or c > self.to_ctbcast.c):
            self.to_ctbcast = Checkpoint(c, d, cert)

    def take_ctbcast(self) -> Checkpoint | None:
        """The checkpoint to CTBcast now, if any; the caller sends it at once."""
        cp = self.to_ctbcast
        if cp is None:
            return None
        self.to_ctbcast = None
        self.last_ctb_ckpt = cp.c
        return cp

    def own_shares(self, above: int) -> list[CkptShare]:
        """Our shares for the checkpoints above ``above`` that we still hold."""
        me = self.ctx.me
        out = []
        for c, d in sorted(self.own.items()):
            share = self.shares.get(c, {}).get(me)
            if c > above and share is not None:
                out.append(CkptShare(c, d, share[1]))
        return out

    def pending(self) -> bool:
        return self.to_ctbcast is not None or any(c > self.stable_c for c in self.own)

    def footprint(self) -> int:
        return sum(len(v) for v in self.shares.values()) + len(self.own)
