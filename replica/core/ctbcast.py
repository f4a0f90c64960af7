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

from collections import deque
from typing import Protocol

from ubft.memnode.layout import RegisterAddress, pack_ctb_value, unpack_ctb_value
from ubft.memnode.register import ReadDone, RegisterClient, WriteDone

from .actions import Delivered, TimerKey, TimerKind
from .config import SlowPathMode
from .context import Context
from .crypto import Tag, digest, statement
from .errors import UsageError
from .messages import (
    Ctb,
    CtbCkptCert,
    CtbCkptShare,
    CtbEcho,
    CtbSig,
    CtbSigRequest,
    Equivocation,
)
from .quorum import certificate_from_shares, verify_certificate


class CtbUpcalls(Protocol):
    """What CTBcast needs from the layer above (consensus)."""

    def on_deliver(self, b: int, k: int, m: bytes) -> None: ...

    def ctb_summary(self, b: int, c: int) -> bytes: ...

    def adopt_ctb_summary(self, b: int, c: int, summary: bytes) -> None: ...


class _Unbound:
    """Placeholder until ``CtbCast.bind``: delivering before then is a driver bug."""

    def on_deliver(self, b: int, k: int, m: bytes) -> None:
        raise UsageError("CtbCast used before bind()")

    def ctb_summary(self, b: int, c: int) -> bytes:
        raise UsageError("CtbCast used before bind()")

    def adopt_ctb_summary(self, b: int, c: int, summary: bytes) -> None:
        raise UsageError("CtbCast used before bind()")


_UNBOUND = _Unbound()


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

    # ------------------------------------------------------------------ helpers

    def _slot(self, k: int) -> _Slot | None:
        """The slot for k if k may be handled now (not delivered, inside the tail)."""
        if self.faulty or k < self.k_d or k >= self.cert_c + self.ctx.params.tail:
            return None
        slot = self.slots.get(k)
        if slot is None:
            slot = self.slots[k] = _Slot()
            self.ctx.set_timer(
                TimerKey(TimerKind.FAST_PATH, self.b, k), self.ctx.params.fast_path_timeout_ns
            )
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
        ctx.set_timer(TimerKey(TimerKind.FAST_PATH, self.b, k), timeout << min(slot.timeouts, 4))

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
            self.k_d = k + 1
            assert slot.m is not None
            ctx.outbox.append(Delivered(self.b, k, slot.digest()))
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
        stmt = statement(Tag.CTB_CKPT, ctx.cluster, ctx.epoch, self.b, msg.c, digest(msg.summary))
        if not verify_certificate(ctx, msg.cert, stmt):
            ctx.report(sender, "ctbckpt.bad_certificate")
            return
        self.cert_c = msg.c
        self.cert = msg
        if msg.c > self.k_d:
            # Behind: the certified summary stands in for b's first c messages.
            for k in [k for k in self.slots if k < msg.c]:
                del self.slots[k]
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
            ctx.outbox.append(Delivered(ctx.me, k, digest(m)))
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

    def on_message(
        self,
        sender: int,
        msg: Ctb | CtbEcho | CtbSig | CtbSigRequest | CtbCkptShare | CtbCkptCert | Equivocation,
    ) -> None:
        me = self.ctx.me
        if isinstance(msg, Ctb):
            if msg.b == sender and sender != me:
                self.receivers[sender].on_ctb(msg.k, msg.m)
        elif isinstance(msg, CtbEcho):
            rx = self.receivers.get(msg.b)
            if rx is not None:
                rx.on_echo(sender, msg.k, msg.is_digest, msg.data)
        elif isinstance(msg, CtbSig):
            if msg.b == sender and sender != me:
                self.receivers[sender].on_sig(msg.k, msg.sig)
        elif isinstance(msg, CtbSigRequest):
            if msg.b == me:
                self.broadcaster.on_sig_request(sender, msg.from_k)
            else:
                rx = self.receivers.get(msg.b)
                if rx is not None and rx.cert is not None and rx.cert_c > msg.from_k:
                    self.ctx.send(
                        (sender,), rx.cert
                    )  # anyone returns the latest certificate it holds
        elif isinstance(msg, CtbCkptShare):
            if msg.b == me:
                self.broadcaster.on_share(sender, msg)
        elif isinstance(msg, CtbCkptCert):
            rx = self.receivers.get(msg.b)
            if rx is not None:
                rx.on_cert(sender, msg)
        else:
            self.on_equivocation(sender, msg)

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

    def on_timer(self, b: int, k: int) -> None:
        rx = self.receivers.get(b)
        if rx is not None:
            rx.on_fast_path_timeout(k)

    def pending(self) -> bool:
        return bool(self.broadcaster.queue) or any(rx.pending() for rx in self.receivers.values())

    def footprint(self) -> int:
        return self.broadcaster.footprint() + sum(rx.footprint() for rx in self.receivers.values())
