"""The slow path's signatures (PROTOCOL.md section 4): one "prep" share per accepted (v, i),
prepare certificates of f+1 matching shares of distinct replicas, and the check of the
certificate a Commit carries (signatures already verified as shares are not verified again)."""

from __future__ import annotations

from .context import Context
from .crypto import Tag, statement
from .instance import InstanceState
from .messages import Certificate, Commit, PrepShare
from .quorum import certificate_from_shares, verify_certificate


class Certifier:
    __slots__ = ("ctx",)

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def make_share(self, view: int, i: int, inst: InstanceState) -> PrepShare | None:
        """Our share for the Prepare we accepted at (view, i): signed at most once."""
        if inst.share_sent:
            return None
        assert inst.accepted
        ctx = self.ctx
        inst.share_sent = True
        sig = ctx.signer.sign(Tag.PREP, ctx.cluster, ctx.epoch, view, i, inst.digest)
        inst.shares[ctx.me] = (inst.digest, sig)
        return PrepShare(view, i, inst.digest, sig)

    def take_share(self, sender: int, msg: PrepShare, inst: InstanceState) -> bool:
        """Keep another replica's valid share (the first per replica); False if not kept."""
        if sender in inst.shares or msg.view != inst.view:
            return False
        ctx = self.ctx
        stmt = statement(Tag.PREP, ctx.cluster, ctx.epoch, msg.view, msg.instance, msg.digest)
        if not ctx.verifier.verify(sender, stmt, msg.sig):
            ctx.report(sender, "prep.bad_signature")
            return False
        inst.shares[sender] = (msg.digest, msg.sig)
        return True

    def certificate(self, inst: InstanceState) -> Certificate | None:
        """f+1 shares on the digest of the Prepare we accepted, or None yet."""
        shares = {r: sig for r, (d, sig) in inst.shares.items() if d == inst.digest}
        return certificate_from_shares(shares, self.ctx.f + 1)

    def commit_is_certified(self, c: Commit, d: bytes, inst: InstanceState | None) -> bool:
        """The Commit's certificate holds f+1 valid "prep" signatures on (v, i, d)."""
        ctx = self.ctx
        known = None
        if inst is not None and inst.view == c.view:
            # only shares verified on this very statement (same view, instance and digest)
            known = {r: sig for r, (dd, sig) in inst.shares.items() if dd == d}
        stmt = statement(Tag.PREP, ctx.cluster, ctx.epoch, c.view, c.instance, d)
        return verify_certificate(ctx, c.cert, stmt, known)
