"""CTBcast broadcaster (PROTOCOL.md section 3): this replica's own stream, its tail buffer,
signatures on demand, and the CTBcast checkpoint certificates that move the tail on."""

from __future__ import annotations

from collections import deque

from .actions import Delivered, PersistKind
from .config import SlowPathMode
from .context import Context
from .crypto import Tag, digest, statement
from .ctb_upcalls import CtbUpcalls
from .messages import Ctb, CtbCkptCert, CtbCkptShare, CtbSig
from .quorum import certificate_from_shares


class CtbBroadcaster:
    """This replica's own CTBcast stream."""

    __slots__ = (
        "cert",
        "cert_c",
        "ctx",
        "last_resend_ns",
        "next_k",
        "own_digests",
        "queue",
        "self_deliveries",
        "sent_ns",
        "shares",
        "sign_until_ns",
        "tail",
        "up",
    )

    def __init__(self, ctx: Context, up: CtbUpcalls) -> None:
        self.ctx = ctx
        self.up = up
        self.next_k = 0
        self.cert_c = 0
        self.cert: CtbCkptCert | None = None
        self.tail: dict[int, list[bytes | None]] = {}  # k -> [m, sig or None]
        self.sent_ns: dict[int, int] = {}  # k -> when first sent
        self.queue: deque[bytes] = deque()  # waiting for tail space
        self.shares: dict[int, dict[int, tuple[bytes, bytes]]] = {}  # c -> signer -> (d, sig)
        self.own_digests: dict[int, tuple[bytes, bytes]] = {}  # c -> (summary, digest)
        self.sign_until_ns = -1
        self.last_resend_ns: dict[int, int] = {}  # requester -> when we last resent to it
        self.self_deliveries: deque[tuple[int, bytes]] = deque()

    def _signing(self) -> bool:
        ctx = self.ctx
        return ctx.params.slow_path_mode is SlowPathMode.ALWAYS or ctx.now_ns < self.sign_until_ns

    def has_room(self) -> bool:
        """A broadcast now would be sent at once, not queued behind the tail bound."""
        return not self.queue and self.next_k < self.cert_c + self.ctx.params.tail

    def broadcast(self, m: bytes) -> None:
        if self.queue or self.next_k >= self.cert_c + self.ctx.params.tail:
            self.queue.append(m)
            return
        self._send(m)

    def _send(self, m: bytes) -> None:
        ctx = self.ctx
        k = self.next_k
        self.next_k = k + 1
        entry: list[bytes | None] = [m, None]
        self.tail[k] = entry
        self.sent_ns[k] = ctx.now_ns
        if ctx.durable:
            ctx.persist(PersistKind.CTB_SENT, k, 0, m)
        ctx.send_all(Ctb(ctx.me, k, m))
        if self._signing():
            ctx.send_all(CtbSig(ctx.me, k, self._sign(k, entry)))
        # b delivers its own message as it broadcasts it; the replica hands it up after the
        # current handler returns, so consensus never re-enters itself.
        self.self_deliveries.append((k, m))

    def _sign(self, k: int, entry: list[bytes | None]) -> bytes:
        sig = entry[1]
        if sig is None:
            ctx = self.ctx
            m = entry[0]
            assert m is not None
            sig = entry[1] = ctx.signer.sign(Tag.CTB, ctx.cluster, ctx.epoch, ctx.me, k, digest(m))
        return sig

    def drain_self(self) -> None:
        """Deliver own messages (called by the replica between handlers)."""
        ctx = self.ctx
        interval = ctx.params.ctb_checkpoint_interval
        while self.self_deliveries:
            k, m = self.self_deliveries.popleft()
            ctx.outbox.append(Delivered(ctx.me, k, m))
            self.up.on_deliver(ctx.me, k, m)
            if (k + 1) % interval == 0:
                c = k + 1
                summary = self.up.ctb_summary(ctx.me, c)
                d = digest(summary)
                self.own_digests[c] = (summary, d)
                sig = ctx.signer.sign(Tag.CTB_CKPT, ctx.cluster, ctx.epoch, ctx.me, c, d)
                self.shares.setdefault(c, {})[ctx.me] = (d, sig)
                self._try_certify(c)

    def on_share(self, sender: int, msg: CtbCkptShare) -> None:
        ctx = self.ctx
        c = msg.c
        if c <= self.cert_c:
            return
        if c % ctx.params.ctb_checkpoint_interval or c > self.next_k:
            ctx.report(sender, "ctbckpt.bad_share")
            return
        stmt = statement(Tag.CTB_CKPT, ctx.cluster, ctx.epoch, ctx.me, c, msg.digest)
        if not ctx.verifier.verify(sender, stmt, msg.sig):
            ctx.report(sender, "ctbckpt.bad_signature")
            return
        self.shares.setdefault(c, {})[sender] = (msg.digest, msg.sig)
        self._try_certify(c)

    def _try_certify(self, c: int) -> None:
        own = self.own_digests.get(c)
        if own is None or c <= self.cert_c:
            return
        summary, d = own
        shares = {r: sig for r, (dd, sig) in self.shares.get(c, {}).items() if dd == d}
        cert = certificate_from_shares(shares, self.ctx.f + 1)
        if cert is None:
            return
        self.cert_c = c
        self.cert = CtbCkptCert(self.ctx.me, c, summary, cert)
        for old in [x for x in self.shares if x <= c]:
            del self.shares[old]
        for old in [x for x in self.own_digests if x <= c]:
            del self.own_digests[old]
        for old in [x for x in self.tail if x < c]:
            del self.tail[old]
            del self.sent_ns[old]
        self.ctx.send_all(self.cert)
        tail = self.ctx.params.tail
        while self.queue and self.next_k < self.cert_c + tail:
            self._send(self.queue.popleft())

    def resend(
        self, to: int, from_k: int, with_sigs: bool, sent_before_ns: int | None = None
    ) -> None:
        """Send ``to`` our certificate and every message from ``from_k`` still in the tail
        (only those first sent before ``sent_before_ns``, when given: younger ones are
        probably still in flight)."""
        ctx = self.ctx
        if self.cert is not None:
            ctx.send((to,), self.cert)
        for k in range(max(from_k, self.cert_c), self.next_k):
            entry = self.tail.get(k)
            if entry is None:
                continue
            if sent_before_ns is not None and self.sent_ns[k] > sent_before_ns:
                break
            m = entry[0]
            assert m is not None
            ctx.send((to,), Ctb(ctx.me, k, m))
            if with_sigs or entry[1] is not None:
                ctx.send((to,), CtbSig(ctx.me, k, self._sign(k, entry)))

    def on_sync_tick(self) -> None:
        """With the tail full, nothing moves until receivers certify a CTBcast checkpoint; if
        they never got our messages (lost frames) they do not know to ask, so push the
        uncertified part of the tail again."""
        if not self.queue:
            return
        old = self.ctx.now_ns - self.ctx.params.sync_interval_ns // 2
        for peer in self.ctx.others:
            self.resend(peer, self.cert_c, with_sigs=False, sent_before_ns=old)

    def on_sig_request(self, sender: int, from_k: int) -> None:
        ctx = self.ctx
        self.sign_until_ns = ctx.now_ns + ctx.params.sign_hold_ns
        # a faulty receiver must not turn requests into a flood: one resend per requester
        # per half fast-path timeout (a correct one asks at most once per timeout)
        last = self.last_resend_ns.get(sender)
        if last is not None and ctx.now_ns - last < ctx.params.fast_path_timeout_ns // 2:
            return
        self.last_resend_ns[sender] = ctx.now_ns
        self.resend(sender, from_k, with_sigs=True)

    def footprint(self) -> int:
        return (
            len(self.tail)
            + len(self.queue)
            + sum(len(s) for s in self.shares.values())
            + len(self.own_digests)
        )
