"""Scripted Byzantine replicas, built on honest code: each wraps a correct ``Replica`` and
rewrites the actions it emits (STYLE.md: Equivocate, Silent, Garble, ForgeSignature)."""

from __future__ import annotations

import dataclasses
import random

from ubft.memnode.layout import encode_subslot, pack_ctb_value
from ubft.memnode.wire import MemWrite
from ubft.replica.core.actions import Action, Send, SendClient, SendMemnode
from ubft.replica.core.codec import decode, decode_payload, encode, encode_payload
from ubft.replica.core.crypto import Tag, digest
from ubft.replica.core.errors import DecodeError
from ubft.replica.core.messages import Batch, Ctb, CtbSig, MsgKind, Prepare
from ubft.replica.core.replica import Replica

BEHAVIOURS = ("equivocate", "silent", "garble", "forge", "bad_registers", "mute_fast_path")
# what a replica muted on the fast paths withholds: the votes those paths wait for
_FAST_PATH_VOTES = frozenset((MsgKind.CTB_ECHO, MsgKind.PROMISE, MsgKind.FAST_COMMIT))


class ByzantineReplica:
    """Drives an honest replica and corrupts what it sends according to ``behaviour``.

    - "equivocate": for the indices it picks, its CTBcast broadcasts carry a different value
      to each half of the receivers, each consistently signed (a real equivocation);
    - "silent": sends nothing between ``silent_from_ns`` and ``silent_until_ns``;
    - "garble": flips bytes in some frames;
    - "forge": replaces signatures in its frames with random bytes;
    - "bad_registers": writes garbage, forged or replayed values into its own registers;
    - "mute_fast_path": withholds its CTBcast echoes, promises and FastCommits (and nothing
      else), so every message and decision goes the slow way.
    """

    def __init__(
        self,
        inner: Replica,
        behaviour: str,
        rng: random.Random,
        silent_from_ns: int = 0,
        silent_until_ns: int = 1 << 62,
    ) -> None:
        assert behaviour in BEHAVIOURS
        self.inner = inner
        self.behaviour = behaviour
        self.rng = rng
        self.silent_from_ns = silent_from_ns
        self.silent_until_ns = silent_until_ns
        self.variants: dict[tuple[int, int], bytes] = {}  # (k, receiver) -> m sent to it
        self.equivocate_every = 3
        self.old_writes: list[bytes] = []

    # the driver talks to it exactly like to a Replica
    def receive(self, sender: int, frame: bytes, now_ns: int) -> None:
        self.inner.receive(sender, frame, now_ns)

    def receive_client(self, client_id: int, frame: bytes, now_ns: int) -> None:
        self.inner.receive_client(client_id, frame, now_ns)

    def receive_memnode(self, node: int, frame: bytes, now_ns: int) -> None:
        self.inner.receive_memnode(node, frame, now_ns)

    def timer_fired(self, key: object, now_ns: int) -> None:
        self.inner.timer_fired(key, now_ns)  # type: ignore[arg-type]

    @property
    def me(self) -> int:
        return self.inner.me

    def footprint(self) -> dict[str, int]:
        return self.inner.footprint()

    def take_actions(self) -> list[Action]:
        actions = self.inner.take_actions()
        now = self.inner.ctx.now_ns
        if self.behaviour == "silent":
            if self.silent_from_ns <= now < self.silent_until_ns:
                return [a for a in actions if not isinstance(a, Send | SendClient | SendMemnode)]
            return actions
        if self.behaviour == "mute_fast_path":
            return [
                a for a in actions if not (isinstance(a, Send) and a.frame[5] in _FAST_PATH_VOTES)
            ]
        out: list[Action] = []
        for a in actions:
            if isinstance(a, Send):
                out.extend(self._rewrite(a))
            elif isinstance(a, SendMemnode) and self.behaviour == "bad_registers":
                out.append(self._bad_register_write(a))
            else:
                out.append(a)
        return out

    def _bad_register_write(self, a: SendMemnode) -> SendMemnode:
        """Its own registers are the only ones it can write (the memory node enforces it), so
        it lies there: torn sub-slots, well-formed values with forged signatures, replays."""
        try:
            epoch, msg = decode(a.frame)
        except DecodeError:
            return a
        if not isinstance(msg, MemWrite):
            return a
        rng = self.rng
        roll = rng.random()
        if roll < 0.25:
            data = rng.randbytes(len(msg.data))  # checksum fails: reads as garbage
        elif roll < 0.5:
            k = rng.randrange(0, 1 << 20)
            value = pack_ctb_value(k, rng.randbytes(32), rng.randbytes(64))
            data = encode_subslot(k // self.inner.ctx.params.tail + 1, value)  # forged sig
        elif roll < 0.75 and self.old_writes:
            data = rng.choice(self.old_writes)  # a replay of an earlier value
        else:
            data = msg.data
        if len(self.old_writes) < 64:
            self.old_writes.append(msg.data)
        return SendMemnode(a.node, encode(dataclasses.replace(msg, data=data), epoch))

    def _rewrite(self, a: Send) -> list[Action]:
        if self.behaviour == "garble":
            if self.rng.random() < 0.3:
                f = bytearray(a.frame)
                pos = self.rng.randrange(len(f))
                f[pos] ^= 1 + self.rng.randrange(255)
                return [Send(a.targets, bytes(f))]
            return [a]
        try:
            epoch, msg = decode(a.frame)
        except DecodeError:
            return [a]
        if self.behaviour == "forge":
            sig = getattr(msg, "sig", None)
            if isinstance(sig, bytes) and len(sig) == 64 and self.rng.random() < 0.5:
                forged = dataclasses.replace(msg, sig=self.rng.randbytes(64))  # type: ignore[arg-type]
                return [Send(a.targets, encode(forged, epoch))]
            return [a]
        # equivocate
        if isinstance(msg, Ctb) and msg.k % self.equivocate_every == 0:
            out: list[Action] = []
            for j, r in enumerate(sorted(a.targets)):
                m = self.variants.get((msg.k, r))
                if m is None:
                    m = msg.m if j % 2 == 0 else self._variant(msg.m)
                    self.variants[(msg.k, r)] = m
                out.append(Send((r,), encode(Ctb(msg.b, msg.k, m), epoch)))
            return out
        if isinstance(msg, CtbSig) and msg.k % self.equivocate_every == 0:
            ctx = self.inner.ctx
            out = []
            for r in a.targets:
                m = self.variants.get((msg.k, r))
                if m is None:
                    out.append(Send((r,), a.frame))
                    continue
                sig = ctx.signer.sign(Tag.CTB, ctx.cluster, ctx.epoch, ctx.me, msg.k, digest(m))
                out.append(Send((r,), encode(CtbSig(msg.b, msg.k, sig), epoch)))
            return out
        return [a]

    @staticmethod
    def _variant(m: bytes) -> bytes:
        """Another valid CTBcast value for the same index."""
        try:
            p = decode_payload(m)
        except DecodeError:
            return m + b"\x00"
        if isinstance(p, Prepare):
            return encode_payload(
                Prepare(p.view, p.instance, Batch(p.batch.ts + 1, p.batch.entries))
            )
        return m + b"\x00"
