"""Pure counting and certificate checks (f+1 signatures of distinct replicas)."""

from __future__ import annotations

from .context import Context
from .messages import Certificate


def certificate_from_shares(shares: dict[int, bytes], need: int) -> Certificate | None:
    """A certificate from verified shares (signer -> signature), or None below ``need``."""
    if len(shares) < need:
        return None
    signers = sorted(shares)[:need]
    return Certificate(tuple(signers), tuple(shares[s] for s in signers))


def verify_certificate(
    ctx: Context, cert: Certificate, stmt: bytes, known: dict[int, bytes] | None = None
) -> bool:
    """f+1 distinct members signed ``stmt``. ``known`` maps signer -> a signature on the same
    statement already verified, which is then not verified again."""
    signers = cert.signers
    if len(signers) < ctx.f + 1 or len(signers) != len(cert.sigs):
        return False
    prev = -1
    members = ctx.members
    for signer, sig in zip(signers, cert.sigs, strict=True):
        if signer <= prev or signer not in members:
            return False
        prev = signer
        if known is not None and known.get(signer) == sig:
            continue
        if not ctx.verifier.verify(signer, stmt, sig):
            return False
    return True
