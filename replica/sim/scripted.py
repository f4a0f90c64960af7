"""A scripted peer set: drives one real replica with frames of the other members, whose keys it holds.

``ScriptedReplica`` (alias ``One``) builds replica ``me`` of a cluster and plays every other
member, the clients and the admin: it hand-makes their frames (CTBcast values delivered on the
fast path, Prepares, votes, certificates, checkpoints), fires timers, and reads the replica's
actions back (frames it sends, values it CTBcasts, what it decides and executes, the evidence it
reports). ``Echo`` is a small deterministic application for such drivers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ubft.replica.core.actions import (
    Action,
    Decided,
    Delivered,
    Executed,
    ReportEvidence,
    Send,
    TimerKey,
    TimerKind,
)
from ubft.replica.core.admission import ADMIN_CLIENT_ID, AdminOp, admin_command
from ubft.replica.core.app import Application
from ubft.replica.core.codec import decode, decode_payload, encode, encode_batch, encode_payload
from ubft.replica.core.crypto import Signer, Tag, digest
from ubft.replica.core.messages import (
    Batch,
    Certificate,
    Checkpoint,
    CkptShare,
    Commit,
    Ctb,
    CtbCkptCert,
    CtbEcho,
    Entry,
    FastCommit,
    Message,
    Prepare,
    PrepShare,
    Promise,
    Request,
    Sync,
)
from ubft.replica.core.replica import Replica
from ubft.replica.core.stream import Stream, encode_summary

LEADER, ME, OTHER = 0, 1, 2  # the leader of view 0, the default driven replica, the third member
NOW = 1_000_000_000  # the driver's default clock (ns)


class Echo:
    """A deterministic application that records what it runs and answers ``r:<command>``.

    Its state is the concatenation of the commands it ran; a restore replaces it by the
    restored bytes (recorded as one call at clock 0).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, int]] = []
        self._restoring: bytearray | None = None

    def apply(self, command: bytes, clock_ns: int) -> bytes:
        self.calls.append((command, clock_ns))
        return b"r:" + command

    def snapshot(self) -> bytes:
        return b"".join(c for c, _ in self.calls)

    def restore(self, snapshot: bytes) -> None:
        self.calls = [(snapshot, 0)] if snapshot else []

    def state_pieces(self) -> Iterator[bytes]:  # checkpoints snapshot the state in pieces
        yield self.snapshot()

    def restore_begin(self) -> None:
        self._restoring = bytearray()

    def restore_feed(self, data: bytes) -> None:
        if self._restoring is None:
            raise ValueError("restore_feed without restore_begin")
        self._restoring += data

    def restore_finish(self) -> None:
        if self._restoring is None:
            raise ValueError("restore_finish without restore_begin")
        self.restore(bytes(self._restoring))
        self._restoring = None

    def restore_abort(self) -> None:
        self._restoring = None

    def digest(self) -> bytes:
        return digest(self.snapshot())


Recorder = Echo


class ScriptedReplica:
    """Replica ``me``; the driver plays every other member, the clients and the admin.

    ``build(**params)`` returns ``(config, keys)`` (the keys of every member, client and the
    admin); ``clients`` defaults to 2 and, when ``window`` is given, ``inflight_max`` to
    ``min(8, window // 2)``. ``app`` defaults to a fresh ``Echo``.
    """

    def __init__(
        self,
        build: Callable[..., tuple[Any, Any]],
        me: int = ME,
        *,
        app: Application | None = None,
        now: int = NOW,
        **params: Any,
    ) -> None:
        params.setdefault("clients", 2)
        if "window" in params:
            params.setdefault("inflight_max", min(8, params["window"] // 2))
        self.config, self.keys = build(**params)
        self.n: int = self.config.n
        self.me = me
        self.app: Any = Echo() if app is None else app
        self.rep = Replica(
            self.config, me, self.keys.members[me], self.app, self.keys.client_keys()
        )
        self.cluster: bytes = self.config.cluster_id_bytes
        self.next_k = dict.fromkeys(range(self.n), 0)  # next CTBcast index of each member
        self.actions: list[Action] = []
        self.admin_s = 0
        self.now = now

    # ---- input

    def frame(self, sender: int, msg: Message) -> None:
        self.rep.receive(sender, encode(msg, 0), self.now)
        self.drain()

    def drain(self) -> None:
        self.actions.extend(self.rep.take_actions())

    def deliver(self, payload: bytes, b: int = LEADER) -> None:
        """b's next CTBcast value, delivered on the fast path (unanimous echoes)."""
        k = self.next_k[b]
        self.next_k[b] = k + 1
        self.frame(b, Ctb(b, k, payload))
        for r in range(self.n):
            if r not in (b, self.me):
                self.frame(r, CtbEcho(b, k, False, payload))

    def prepare(self, i: int, *entries: Entry, ts: int | None = None, view: int = 0) -> Batch:
        batch = Batch(self.now if ts is None else ts, tuple(entries))
        self.deliver(encode_payload(Prepare(view, i, batch)), self.config.leader(view))
        return batch

    def request(self, cid: int, rid: int, payload: bytes, signed: bool = False) -> None:
        sig = self.signed(cid, rid, payload).sig if signed else b""
        self.rep.receive_client(cid, encode(Request(cid, rid, payload, sig), 0), self.now)
        self.drain()

    def tick(self) -> None:
        self.rep.timer_fired(TimerKey(TimerKind.SYNC), self.now)
        self.drain()

    def decide_fast(self, i: int) -> None:
        """The other followers' Promises, then every other member's FastCommit, for (0, i)."""
        for r in range(self.n):
            if r not in (self.me, LEADER):
                self.frame(r, Promise(0, i))
        for r in range(self.n):
            if r != self.me:
                self.frame(r, FastCommit(0, i))

    def prep_cert(self, i: int, batch: Batch, signers: tuple[int, ...]) -> Certificate:
        d = digest(encode_batch(batch))
        sigs = tuple(self.keys.members[r].sign(Tag.PREP, self.cluster, 0, 0, i, d) for r in signers)
        return Certificate(signers, sigs)

    def commit(self, b: int, i: int, batch: Batch, signers: tuple[int, ...] = (0, 2)) -> None:
        self.deliver(encode_payload(Commit(0, i, batch, self.prep_cert(i, batch, signers))), b)

    def checkpoint(self, b: int, c: int, d: bytes = bytes(32)) -> None:
        sigs = tuple(self.keys.members[r].sign(Tag.CKPT, self.cluster, 0, c, d) for r in (0, 2))
        self.deliver(encode_payload(Checkpoint(c, d, Certificate((0, 2), sigs))), b)

    def stabilise(self, c: int) -> None:
        """Another member's (the lowest other than ``me``) matching "ckpt" share for our own
        checkpoint c."""
        (d,) = {s.digest for s in self.sent(CkptShare) if s.c == c}
        r = next(m for m in range(self.n) if m != self.me)
        sig = self.keys.members[r].sign(Tag.CKPT, self.cluster, 0, c, d)
        self.frame(r, CkptShare(c, d, sig))

    # ---- more input (votes, certificates, timers)

    def share(self, r: int, i: int, batch: Batch, view: int = 0, inst: int | None = None) -> None:
        d = digest(encode_batch(batch))
        sig = self.keys.members[r].sign(
            Tag.PREP, self.cluster, 0, view, i if inst is None else inst, d
        )
        self.frame(r, PrepShare(view, i, d, sig))

    def fast_timeout(self) -> None:
        self.now += self.config.params.fast_timeout_ns
        self.rep.timer_fired(TimerKey(TimerKind.FAST_TIMEOUT), self.now)
        self.drain()

    def adopt(self, b: int, c: int, stream: Stream, sender: int = LEADER) -> None:
        """A certified CTBcast checkpoint summary of b at c (signed by replicas 0 and 2)."""
        summary = encode_summary(c, stream)
        d = digest(summary)
        sigs = tuple(
            self.keys.members[r].sign(Tag.CTB_CKPT, self.cluster, 0, b, c, d) for r in (0, 2)
        )
        self.frame(sender, CtbCkptCert(b, c, summary, Certificate((0, 2), sigs)))
        self.next_k[b] = max(self.next_k[b], c)

    def syncs(self) -> int:
        """Fire the sync timer; the number of Sync frames sent (0: nothing pending)."""
        before = len(self.sent(Sync))
        self.tick()
        return len(self.sent(Sync)) - before

    # ---- entries

    def signed(self, cid: int, rid: int, payload: bytes, signer: Signer | None = None) -> Entry:
        s = signer or self.keys.clients[cid]
        return Entry(
            cid, rid, payload, s.sign(Tag.REQ, self.cluster, None, cid, rid, digest(payload))
        )

    def admin(self, op: AdminOp, cid: int, key: bytes) -> Entry:
        self.admin_s += 1
        payload = admin_command(self.keys.admin, self.cluster, 0, op, cid, key, self.admin_s)
        return self.signed(ADMIN_CLIENT_ID, self.admin_s, payload, self.keys.admin)

    # ---- output

    def sent(self, kind: type) -> list[Any]:
        out = []
        for a in self.actions:
            if isinstance(a, Send):
                msg = decode(a.frame)[1]
                if isinstance(msg, kind):
                    out.append(msg)
        return out

    def promised(self) -> list[int]:
        return [p.instance for p in self.sent(Promise)]

    def own_ctb(self, kind: type) -> list[Any]:
        out = []
        for a in self.actions:
            if isinstance(a, Delivered) and a.b == self.me:
                p = decode_payload(a.m)
                if isinstance(p, kind):
                    out.append(p)
        return out

    def executed(self) -> list[tuple[int, int, int]]:
        """(instance, client id, request id) of every Executed action, in order."""
        return [
            (a.instance, a.client_id, a.request_id) for a in self.actions if isinstance(a, Executed)
        ]

    def decided(self) -> list[int]:
        return [a.instance for a in self.actions if isinstance(a, Decided)]

    def evidence(self) -> list[tuple[int, str]]:
        return [(a.against, a.reason) for a in self.actions if isinstance(a, ReportEvidence)]


One = ScriptedReplica
