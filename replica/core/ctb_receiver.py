"""CTBcast receiver (PROTOCOL.md section 3): one per other broadcaster at each replica.

Fast path: echo b's (k, m) to the other receivers, deliver on unanimous matching echoes.
Slow path: verify b's signature, write {k, digest, sig} into our own register (b, k mod t),
then read that register of every other receiver and deliver once each is "checked". Every
buffer is bounded by the tail: nothing is held for k outside [k_d, c_b + t).
"""

from __future__ import annotations

from ubft.memnode.layout import RegisterAddress, pack_ctb_value, unpack_ctb_value
from ubft.memnode.register import RegisterClient

from .actions import Delivered, PersistKind, TimerKey, TimerKind
from .context import Context
from .crypto import Tag, digest, statement
from .ctb_upcalls import CtbUpcalls
from .messages import CtbCkptCert, CtbCkptShare, CtbEcho, CtbSigRequest, Equivocation
from .quorum import verify_certificate
from .timers import Deadlines


class _Slot:
    """Receiver state for one (b, k) inside the tail."""

    __slots__ = (
        "d",
        "echoes",
        "m",
        "pending_sig",
        "reads_left",
        "ready",
        "sig",
        "timeouts",
        "writing",
    )

    def __init__(self) -> None:
        self.m: bytes | None = None
        self.d: bytes | None = None  # digest(m), computed when first needed
        self.echoes: dict[int, tuple[bool, bytes]] = {}
        self.sig: bytes | None = None  # b's verified signature for (k, digest(m))
        self.pending_sig: bytes | None = None  # arrived before m
        self.writing = False
        self.reads_left: set[int] | None = None
        self.ready = False
        self.timeouts = 0  # fast-path timeouts so far: later ones back off

    def digest(self) -> bytes:
        d = self.d
        if d is None:
            assert self.m is not None
            d = self.d = digest(self.m)
        return d


class CtbReceiver:
    """Receives broadcaster ``b``'s stream at this replica."""

    __slots__ = (
        "b",
        "cert",
        "cert_c",
        "ctx",
        "echo_peers",
        "faulty",
        "k_d",
        "last_request_ns",
        "last_share",
        "regs",
        "slots",
        "timers",
        "up",
    )

    def __init__(self, ctx: Context, b: int, regs: RegisterClient, up: CtbUpcalls) -> None:
        self.ctx = ctx
        self.b = b
        self.regs = regs
        self.up = up
        self.k_d = 0  # next index to deliver
        self.cert_c = 0  # latest certificate of b held (0 needs none)
        self.cert: CtbCkptCert | None = None
        self.slots: dict[int, _Slot] = {}
        self.faulty = False  # an equivocation proof against b is held
        self.echo_peers = tuple(r for r in ctx.others if r != b)
        self.last_share: CtbCkptShare | None = None
        self.last_request_ns = -(1 << 62)
        self.timers = Deadlines(ctx, TimerKey(TimerKind.FAST_PATH, b))  # per-slot fast path

    # ------------------------------------------------------------------ helpers

    def _slot(self, k: int) -> _Slot | None:
        """The slot for k if k may be handled now (not delivered, inside the tail)."""
        if self.faulty or k < self.k_d or k >= self.cert_c + self.ctx.params.tail:
            return None
        slot = self.slots.get(k)
        if slot is None:
            slot = self.slots[k] = _Slot()
            self.timers.set(k, self.ctx.params.fast_path_timeout_ns)
        return slot

    def _evidence(self, reason: str) -> None:
        self.ctx.report(self.b, reason)

    # ------------------------------------------------------------------ fast path

    def on_ctb(self, k: int, m: bytes) -> None:
        slot = self._slot(k)
        if slot is None:
            return
        if slot.m is not None:
            if slot.m != m:
                self._evidence("ctb.second_message")
            return
        slot.m = m
        ctx = self.ctx
        if ctx.durable:
            ctx.persist(PersistKind.CTB_ACCEPTED, self.b, k, slot.digest())
        if self.echo_peers:
            if len(m) > ctx.params.echo_digest_threshold_bytes:
                ctx.send(self.echo_peers, CtbEcho(self.b, k, True, slot.digest()))
            else:
                ctx.send(self.echo_peers, CtbEcho(self.b, k, False, m))
        if slot.pending_sig is not None:
            sig, slot.pending_sig = slot.pending_sig, None
            self._accept_sig(k, slot, sig)
        self._try_fast(k, slot)

    def on_echo(self, sender: int, k: int, is_digest: bool, data: bytes) -> None:
        if sender not in self.echo_peers:
            return
        slot = self._slot(k)
        if slot is None or sender in slot.echoes:
            return
        slot.echoes[sender] = (is_digest, data)
        self._try_fast(k, slot)

    def _try_fast(self, k: int, slot: _Slot) -> None:
        m = slot.m
        if m is None or slot.ready or len(slot.echoes) < len(self.echo_peers):
            return
        for is_digest, data in slot.echoes.values():
            if data != (slot.digest() if is_digest else m):
                return  # a mismatching echo is evidence against no one; wait for the slow path
        slot.ready = True
        self._deliver_ready()

    # ------------------------------------------------------------------ slow path

    def on_sig(self, k: int, sig: bytes) -> None:
        slot = self._slot(k)
        if slot is None or slot.sig is not None or slot.ready:
            return
        if slot.m is None:
            slot.pending_sig = sig
            return
        self._accept_sig(k, slot, sig)

    def _accept_sig(self, k: int, slot: _Slot, sig: bytes) -> None:
        ctx = self.ctx
        stmt = statement(Tag.CTB, ctx.cluster, ctx.epoch, self.b, k, slot.digest())
        if not ctx.verifier.verify(self.b, stmt, sig):
            self._evidence("ctb.bad_signature")
            return
        slot.sig = sig
        if slot.ready or slot.writing:
            return
        slot.writing = True
        t = ctx.params.tail
        self.regs.write(
            RegisterAddress(ctx.epoch, ctx.me, self.b, k % t),
            k // t + 1,
            pack_ctb_value(k, slot.digest(), sig),
            ("w", self.b, k),
        )

    def on_write_done(self, k: int) -> None:
        slot = self.slots.get(k)
        if slot is None or slot.ready or self.faulty:
            return
        slot.reads_left = set(self.echo_peers)
        t = self.ctx.params.tail
        for q in self.echo_peers:
            self.regs.read(RegisterAddress(self.ctx.epoch, q, self.b, k % t), ("r", self.b, k, q))
        if not slot.reads_left:
            slot.ready = True
            self._deliver_ready()

    def on_read_done(self, k: int, q: int, result: tuple[int, bytes] | None) -> None:
        slot = self.slots.get(k)
        if (
            slot is None
            or slot.ready
            or self.faulty
            or slot.reads_left is None
            or q not in slot.reads_left
        ):
            return
        verdict = self._classify(k, slot, result)
        if verdict == "checked":
            slot.reads_left.discard(q)
            if not slot.reads_left:
                slot.ready = True
                self._deliver_ready()
        elif verdict == "beyond":
            # k has left the tail: fetch a CTBcast checkpoint of b beyond k from anyone.
            self.ctx.send_all(CtbSigRequest(self.b, k))

    def _classify(self, k: int, slot: _Slot, result: tuple[int, bytes] | None) -> str:
        """Section 3, step 4: "checked", "equivocation" (proof kept) or "beyond"."""
        if result is None:
            return "checked"  # garbage: this writer supports nothing
        incarnation, value = result
        if incarnation == 0:
            return "checked"  # empty
        ctx = self.ctx
        t = ctx.params.tail
        k_q, d_q, s_q = unpack_ctb_value(value)
        if incarnation != k_q // t + 1 or k_q % t != k % t or k_q < k:
            return "checked"
        d = slot.digest()
        if k_q == k and d_q == d:
            return "checked"  # compare digests, never signatures
        stmt = statement(Tag.CTB, ctx.cluster, ctx.epoch, self.b, k_q, d_q)
        if not ctx.verifier.verify(self.b, stmt, s_q):
            return "checked"
        if k_q > k:
            return "beyond"
        assert slot.sig is not None
        self.found_proof(Equivocation(self.b, k, d, slot.sig, d_q, s_q), forward=True)
        return "equivocation"

    def found_proof(self, proof: Equivocation, forward: bool) -> None:
        """Keep the proof; drop every further message of b in this epoch."""
        if self.ctx.evidence.add_proof(proof):
            self._evidence("ctb.equivocation")
            if forward:
                self.ctx.send_all(proof)
        self.faulty = True
        self.slots.clear()
        self.timers.due.clear()

    def on_timer(self) -> None:
        """The fast-path timer fired: handle every slot whose deadline passed."""
        for k in self.timers.fired():
            self.on_fast_path_timeout(k)

    def on_fast_path_timeout(self, k: int) -> None:
        slot = self.slots.get(k)
        if slot is None or slot.ready or self.faulty or k < self.k_d:
            return
        ctx = self.ctx
        timeout = ctx.params.fast_path_timeout_ns
        if slot.sig is None and ctx.now_ns - self.last_request_ns >= timeout:
            # one request covers every index from k_d on: ask at most once per timeout
            self.last_request_ns = ctx.now_ns
            ctx.send((self.b,), CtbSigRequest(self.b, self.k_d))
        # a slot stuck behind a silent or garbling broadcaster backs off (up to 16x)
        slot.timeouts += 1
        self.timers.set(k, timeout << min(slot.timeouts, 4))

    # ------------------------------------------------------------------ delivery, tail

    def _deliver_ready(self) -> None:
        slots = self.slots
        ctx = self.ctx
        interval = ctx.params.ctb_checkpoint_interval
        while True:
            slot = slots.get(self.k_d)
            if slot is None or not slot.ready:
                return
            del slots[self.k_d]
            k = self.k_d
            self.timers.cancel(k)
            self.k_d = k + 1
            assert slot.m is not None
            ctx.outbox.append(Delivered(self.b, k, slot.m))
            self.up.on_deliver(self.b, k, slot.m)
            if self.faulty:
                return
            if self.k_d % interval == 0:
                self._send_share(self.k_d)

    def _send_share(self, c: int) -> None:
        ctx = self.ctx
        d = digest(self.up.ctb_summary(self.b, c))
        sig = ctx.signer.sign(Tag.CTB_CKPT, ctx.cluster, ctx.epoch, self.b, c, d)
        self.last_share = CtbCkptShare(self.b, c, d, sig)
        ctx.send((self.b,), self.last_share)

    def on_cert(self, sender: int, msg: CtbCkptCert) -> None:
        if msg.c <= self.cert_c or self.faulty:
            return
        ctx = self.ctx
        if msg.c % ctx.params.ctb_checkpoint_interval:
            ctx.report(sender, "ctbckpt.bad_index")
            return
        d = digest(msg.summary)
        stmt = statement(Tag.CTB_CKPT, ctx.cluster, ctx.epoch, self.b, msg.c, d)
        share = self.last_share
        known = (
            {ctx.me: share.sig}
            if share is not None and share.c == msg.c and share.digest == d
            else None
        )
        if not verify_certificate(ctx, msg.cert, stmt, known):
            ctx.report(sender, "ctbckpt.bad_certificate")
            return
        self.cert_c = msg.c
        self.cert = msg
        if msg.c > self.k_d:
            # Behind: the certified summary stands in for b's first c messages.
            for k in [k for k in self.slots if k < msg.c]:
                del self.slots[k]
                self.timers.cancel(k)
            self.k_d = msg.c
            self.up.adopt_ctb_summary(self.b, msg.c, msg.summary)
            self._deliver_ready()

    def resend_share(self) -> None:
        """While b has not shown a certificate for our latest share, send it again."""
        share = self.last_share
        if share is not None and share.c > self.cert_c and not self.faulty:
            self.ctx.send((self.b,), share)

    def pending(self) -> bool:
        return bool(self.slots) or (self.last_share is not None and self.last_share.c > self.cert_c)

    def footprint(self) -> int:
        return len(self.slots) + sum(len(s.echoes) for s in self.slots.values())
