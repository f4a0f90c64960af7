"""Consensus of one epoch (PROTOCOL.md section 4): the fast path (promises, n FastCommits),
the slow path (prep shares, prepare certificates, f+1 Commits), decisions, checkpoints, and
each broadcaster's CTBcast stream state with its checkpoint summaries.

The parts of the specification live beside it, one concept per module: the view state
(``view.py``), the Prepare checks (``prepare_checks.py``), the leader's proposals
(``proposer.py``), execution (``execution.py``, which outlives the epoch), retransmission
(``sync.py``). Instance state and votes belong to a (view, instance): ``InstanceState.view``
says which, and nothing of another view ever counts toward it.
"""

from __future__ import annotations

from .actions import Decided, PersistKind, TimerKey, TimerKind
from .bounds import payload_in_range
from .certifier import Certifier
from .checkpoint import CheckpointTracker
from .codec import batch_digest_in, decode_payload, encode_batch, encode_payload
from .config import SlowPathMode
from .context import Context
from .crypto import Tag, statement
from .ctbcast import CtbCast
from .errors import DecodeError
from .execution import Executor
from .instance import InstanceState
from .intake import RequestIntake
from .messages import (
    Batch,
    Certificate,
    Checkpoint,
    CkptShare,
    Commit,
    FastCommit,
    PrepShare,
    Promise,
    Request,
    RequestForward,
    SealView,
    Sync,
)
from .prepare_checks import PrepareChecks
from .proposer import Proposer
from .quorum import verify_certificate
from .request_log import RequestLog
from .snapshot import Snapshot, build_snapshot, encode_config
from .stream import Stream, decode_summary, encode_summary
from .sync import SyncResponder
from .timers import Deadlines
from .view import ViewState


class Consensus:
    def __init__(self, ctx: Context, ctb: CtbCast, executor: Executor, log: RequestLog) -> None:
        self.ctx = ctx
        self.ctb = ctb
        self.log = log
        self.executor = executor
        p = ctx.params
        self.window = p.window
        self.interval = p.checkpoint_interval
        first = executor.exec_next  # the epoch's first instance
        self.views = views = ViewState(ctx.config, ctx.me, first)
        self.inst: dict[int, InstanceState] = {}
        self.ckpt = CheckpointTracker(ctx, first)
        self.certifier = Certifier(ctx)
        self.intake = RequestIntake(ctx, log, views)
        self.streams = {r: Stream() for r in ctx.members}
        self.fast_timers = Deadlines(ctx, TimerKey(TimerKind.FAST_TIMEOUT))  # per instance
        self._config_bytes = encode_config(ctx.config)  # chunk 0 of every snapshot of the epoch
        # Snapshots: our own, for checkpoints not yet stable (the latest two), and the latest
        # stable one, which peers may fetch (state transfer serves it).
        self.snapshots: dict[int, Snapshot] = {}
        self.stable_snapshot: Snapshot | None = None
        ckpt = self.ckpt
        self.checks = PrepareChecks(
            ctx, views, log, executor, self._get, self._accept, lambda: ckpt.stable_c
        )
        self.proposer = Proposer(
            ctx, views, log, self.intake, ctb.broadcaster, lambda: ckpt.last_ctb_ckpt
        )
        self.sync = SyncResponder(
            ctx, views, ctb, ckpt, self.intake, self.inst, lambda: executor.exec_next
        )
        executor.reply = self.intake.send_reply
        executor.after_instance = self.checks.on_executed
        executor.at_checkpoint = self._take_checkpoint
        executor.after_run = self._after_run

    # ================================================================== helpers

    def _evidence(self, peer: int, reason: str) -> None:
        self.ctx.report(peer, reason)

    def _get(self, i: int) -> InstanceState | None:
        """Instance state for (current view, i) if i lies above the stable checkpoint and
        within two windows of the last checkpoint we CTBcast (what lies below that is
        discarded only once it is CTBcast, so this bounds the instances held even while our
        own tail is full)."""
        if i < self.ckpt.stable_c or i >= self.ckpt.last_ctb_ckpt + 2 * self.window:
            return None
        inst = self.inst.get(i)
        if inst is None:
            inst = self.inst[i] = InstanceState(self.views.view)
        return inst

    @property
    def view(self) -> int:
        return self.views.view

    @property
    def leader(self) -> int:
        return self.views.leader

    @property
    def stable_c(self) -> int:
        return self.ckpt.stable_c

    @property
    def exec_next(self) -> int:
        return self.executor.exec_next

    @property
    def last_fresh_ts(self) -> int:
        return self.checks.last_fresh_ts

    def is_leader(self) -> bool:
        return self.views.is_leader()

    # ================================================================== CTBcast upcalls

    def on_deliver(self, b: int, k: int, m: bytes) -> None:
        try:
            payload = decode_payload(m)
        except DecodeError as exc:
            self._evidence(b, "ctb.payload." + exc.reason)
            return
        if not payload_in_range(payload):
            self._evidence(b, "ctb.payload.out_of_range")
            return
        t = type(payload)
        if t is Commit:
            assert isinstance(payload, Commit)
            self._on_commit(b, payload, batch_digest_in(m, payload))
        elif t is Checkpoint:
            assert isinstance(payload, Checkpoint)
            self._on_checkpoint(b, payload)
        elif t is SealView:
            assert isinstance(payload, SealView)
            self._on_seal_view(b, payload)
        else:
            assert not isinstance(payload, Commit | Checkpoint | SealView)
            self.checks.on_prepare(b, payload, batch_digest_in(m, payload), len(m), self.streams[b])

    def ctb_summary(self, b: int, c: int) -> bytes:
        return encode_summary(c, self.streams[b])

    def adopt_ctb_summary(self, b: int, c: int, summary: bytes) -> None:
        s = decode_summary(c, summary)
        if s is None:
            return  # certified by f+1, so a correct replica built it: cannot happen
        self.streams[b] = s
        view = self.views.view
        for i, (v, d) in sorted(s.commits.items()):
            inst = self._get(i)
            if inst is not None and v == view and inst.view == view:
                inst.commits.setdefault(b, d)
                self._try_decide_commits(i, inst)
        checks = self.checks
        if (
            b == self.views.leader
            and s.prep_view == view
            and s.prep_instance + 1 > checks.next_prepare
        ):
            # Prepares up to prep_instance are summarised away; they decide through Commits.
            checks.next_prepare = checks.known_from = s.prep_instance + 1
            checks.last_fresh_ts = max(checks.last_fresh_ts, s.fresh_ts)

    # ================================================================== acceptance and fast path

    def _accept(self, i: int, inst: InstanceState) -> None:
        ctx = self.ctx
        inst.accepted = True
        inst.accepted_ns = ctx.now_ns
        if ctx.durable:
            ctx.persist(PersistKind.ACCEPTED, inst.view, i, inst.digest)
        if ctx.me != self.views.leader:
            ctx.send_all(Promise(inst.view, i))
        self.fast_timers.set(i, ctx.params.fast_timeout_ns)
        shares = inst.shares
        if ctx.params.slow_path_mode is SlowPathMode.ALWAYS or (
            shares and any(r != ctx.me for r in shares)
        ):
            self._send_share(i, inst)
        self._check_promises(i, inst)
        if inst.shares:
            self._try_certificate(i, inst)
        if inst.commits:
            self._try_decide_commits(i, inst)

    def recheck_clock(self) -> None:
        self.checks.recheck_all(self.inst)

    def _after_run(self) -> None:
        checks = self.checks
        if checks.recheck_due:
            checks.recheck_due = False
            checks.recheck_all(self.inst)

    def _get_in(self, view: int, i: int) -> InstanceState | None:
        """Instance state of (view, i): only the current view's is held (votes of another
        view never count). Runs for every vote, so the common case is looked up first."""
        inst = self.inst.get(i)
        if inst is not None and i >= self.ckpt.stable_c:
            return inst if inst.view == view else None
        if view != self.views.view:
            return None
        return self._get(i)

    def on_promise(self, sender: int, msg: Promise) -> None:
        if sender == self.views.leader:
            return
        inst = self._get_in(msg.view, msg.instance)
        if inst is None:
            return
        inst.promises.add(sender)
        self._check_promises(msg.instance, inst)

    def _check_promises(self, i: int, inst: InstanceState) -> None:
        ctx = self.ctx
        if not inst.accepted or inst.fc_sent or inst.decided:
            return
        # the leader's Prepare is its promise
        need = ctx.n - 1 if ctx.me == self.views.leader else ctx.n - 2
        if len(inst.promises) < need:  # promises come from peers only, never from us
            return
        inst.fc_sent = True
        inst.fast_commits.add(ctx.me)
        if ctx.durable:
            assert inst.batch is not None
            ctx.persist(PersistKind.FAST_COMMITTED, inst.view, i, encode_batch(inst.batch))
        ctx.send_all(FastCommit(inst.view, i))
        self._check_fast_commits(i, inst)

    def on_fast_commit(self, sender: int, msg: FastCommit) -> None:
        inst = self._get_in(msg.view, msg.instance)
        if inst is None:
            return
        inst.fast_commits.add(sender)
        self._check_fast_commits(msg.instance, inst)

    def _check_fast_commits(self, i: int, inst: InstanceState) -> None:
        if (
            inst.accepted
            and not inst.decided
            and len(inst.fast_commits) == self.ctx.n
            and self.ctx.me in inst.fast_commits
        ):
            assert inst.batch is not None
            self._decide(i, inst, inst.batch, inst.digest, fast=True)

    # ================================================================== slow path

    def on_fast_timeout(self) -> None:
        """Instances not decided within fast_timeout of acceptance send their share."""
        for i in self.fast_timers.fired():
            inst = self.inst.get(i)
            if (
                inst is not None
                and inst.view == self.views.view
                and inst.accepted
                and not inst.decided
            ):
                self._send_share(i, inst)

    def _send_share(self, i: int, inst: InstanceState) -> None:
        share = self.certifier.make_share(inst.view, i, inst)
        if share is not None:
            self.ctx.send_all(share)
            self._try_certificate(i, inst)

    def on_prep_share(self, sender: int, msg: PrepShare) -> None:
        inst = self._get_in(msg.view, msg.instance)
        if inst is None or not self.certifier.take_share(sender, msg, inst):
            return
        if inst.accepted:
            self._send_share(msg.instance, inst)  # another's share triggers ours
            self._try_certificate(msg.instance, inst)

    def _try_certificate(self, i: int, inst: InstanceState) -> None:
        if not inst.accepted or inst.commit_sent:
            return
        if i >= self.ckpt.last_ctb_ckpt + self.window:
            return  # section 4: Commit only below the last CTBcast checkpoint + window
        cert = self.certifier.certificate(inst)
        if cert is None:
            return
        inst.commit_sent = True
        assert inst.batch is not None
        self.ctb.broadcaster.broadcast(encode_payload(Commit(inst.view, i, inst.batch, cert)))

    def _on_commit(self, sender: int, c: Commit, d: bytes) -> None:
        s = self.streams[sender]
        i = c.instance
        if i >= s.ckpt_c + self.window:  # c_r from r's stream, never our own low
            self._evidence(sender, "commit.beyond_window")
            return
        # Verified and recorded in the sender's stream whatever its view (section 4: the
        # summary and S_r,w are functions of the stream alone); counted only in our view.
        view = self.views.view
        inst = self._get(i)
        if not self.certifier.commit_is_certified(c, d, inst):
            self._evidence(sender, "commit.bad_certificate")
            return
        old = s.commits.get(i)
        if old is None or old[0] < c.view:
            s.commits[i] = (c.view, d)
        if inst is None or c.view != view or inst.view != view:
            return
        inst.commits.setdefault(sender, d)
        inst.commit_batches.setdefault(d, c.batch)
        self._try_decide_commits(i, inst)

    def _try_decide_commits(self, i: int, inst: InstanceState) -> None:
        if inst.decided:
            return
        counts: dict[bytes, int] = {}
        for d in inst.commits.values():
            counts[d] = counts.get(d, 0) + 1
        for d, count in counts.items():
            if count >= self.ctx.f + 1:
                batch = inst.commit_batches.get(d)
                if batch is None and inst.batch is not None and inst.digest == d:
                    batch = inst.batch
                if batch is not None:
                    self._decide(i, inst, batch, d, fast=False)
                return

    # ================================================================== decision

    def _decide(self, i: int, inst: InstanceState, batch: Batch, d: bytes, fast: bool) -> None:
        inst.decided = True
        self.fast_timers.cancel(i)
        self.ctx.outbox.append(Decided(i, inst.view, d, fast))
        if i >= self.executor.exec_next:
            self.proposer.on_decided(i)
            self.executor.decide(i, batch)

    # ================================================================== checkpoints

    def snapshot(self) -> Snapshot:
        """The snapshot of the state after executing up to exec_next - 1 (PROTOCOL.md
        section 4, "Checkpoints"): configuration, application clock, client table and
        application state, in chunks."""
        ex = self.executor
        return build_snapshot(
            self._config_bytes,
            ex.app_clock,
            self.log.table_bytes(),
            ex.app,
            self.ctx.params.chunk_size,
        )

    def _take_checkpoint(self, c: int) -> None:
        snap = self.snapshot()
        d = snap.digest
        snapshots = self.snapshots
        snapshots[c] = snap
        while len(snapshots) > 2:
            del snapshots[min(snapshots)]
        cert = self.ckpt.take(c, d)
        if cert is not None:
            self._stable(c, d, cert)

    def on_ckpt_share(self, sender: int, msg: CkptShare) -> None:
        cert = self.ckpt.on_share(sender, msg, self.exec_next)
        if cert is not None:
            self._stable(msg.c, msg.digest, cert)

    def _stable(self, c: int, d: bytes, cert: Certificate) -> None:
        """c is stable here: CTBcast Checkpoint{c} (once), and only then discard below it."""
        if c > self.ckpt.stable_c:
            self.ckpt.mark_stable(c)
            snap = self.snapshots.get(c)
            if snap is not None and snap.digest == d:
                self.stable_snapshot = snap
            for x in [x for x in self.snapshots if x <= c]:
                del self.snapshots[x]
        self.ckpt.offer_ctbcast(c, d, cert)
        self.flush_checkpoint()

    def flush_checkpoint(self) -> None:
        """CTBcast the latest stable checkpoint once our tail has room for it. Until then it is
        not "the last checkpoint we CTBcast" (section 4), so Commits and Prepares stay within
        a window of the previous one and the broadcaster's queue stays bounded."""
        if self.ckpt.to_ctbcast is None or not self.ctb.broadcaster.has_room():
            return
        cp = self.ckpt.take_ctbcast()
        assert cp is not None
        self.ctb.broadcaster.broadcast(encode_payload(cp))
        c = cp.c
        for i in [i for i in self.inst if i < c]:
            del self.inst[i]
            self.fast_timers.cancel(i)
        self.checks.discard_below(c)
        for i, inst in sorted(self.inst.items()):
            if inst.accepted and not inst.commit_sent:
                self._try_certificate(i, inst)  # may have waited for this checkpoint

    def _on_checkpoint(self, sender: int, cp: Checkpoint) -> None:
        ctx = self.ctx
        s = self.streams[sender]
        if cp.c % self.interval:
            self._evidence(sender, "checkpoint.bad_index")
            return
        if cp.c <= s.ckpt_c:
            self._evidence(sender, "checkpoint.not_increasing")
            return
        stmt = statement(Tag.CKPT, ctx.cluster, ctx.epoch, cp.c, cp.digest)
        # signatures we already verified as shares (or made) on this statement are not re-verified
        known = {r: sig for r, (d, sig) in self.ckpt.shares.get(cp.c, {}).items() if d == cp.digest}
        if not verify_certificate(ctx, cp.cert, stmt, known):
            self._evidence(sender, "checkpoint.bad_certificate")
            return
        s.ckpt_c, s.ckpt_digest = cp.c, cp.digest
        for i in [i for i in s.commits if i < cp.c]:
            del s.commits[i]
        if cp.c > self.ckpt.stable_c and self.ckpt.own.get(cp.c) == cp.digest:
            self._stable(cp.c, cp.digest, cp.cert)
        # A certified checkpoint beyond exec_next needs state transfer (resilience issue).

    def _on_seal_view(self, sender: int, sv: SealView) -> None:
        s = self.streams[sender]
        if sv.view <= s.seal_view:
            self._evidence(sender, "sealview.not_increasing")
            return
        s.seal_view = sv.view  # acting on it is the view-change issue

    # ================================================================== requests

    def on_request(self, client_id: int, req: Request) -> None:
        """A request received directly from its client (signature already checked)."""
        if self.intake.on_request(client_id, req):
            self.checks.recheck_waiting(client_id, req.request_id, self.inst)

    def on_request_forward(self, sender: int, msg: RequestForward) -> None:
        if self.intake.on_request_forward(sender, msg):
            self.checks.recheck_waiting(msg.request.client_id, msg.request.request_id, self.inst)

    def propose(self) -> None:
        """Leader: cut batches from ready requests (called once per burst of events)."""
        self.proposer.propose(self.checks.last_fresh_ts)

    # ================================================================== sync (lost frames)

    def pending(self) -> bool:
        if self.checks.pending() or self.intake.ready:
            return True
        if any(not inst.decided and (inst.accepted or inst.waiting) for inst in self.inst.values()):
            return True
        if self.ckpt.pending():
            return True
        return any(e.pending for e in self.log.clients.values())

    def sync_status(self, peer: int) -> Sync:
        return self.sync.status(peer)

    def on_sync_tick(self) -> None:
        self.sync.on_tick()
        self.recheck_clock()

    def on_sync(self, sender: int, msg: Sync) -> None:
        self.sync.on_sync(sender, msg)

    def footprint(self) -> dict[str, int]:
        out = {
            "instances": len(self.inst),
            "instance_votes": sum(
                len(x.promises) + len(x.fast_commits) + len(x.shares) + len(x.commits)
                for x in self.inst.values()
            ),
            "decided_unexecuted": len(self.executor.decided),
            "checkpoint_shares": self.ckpt.footprint(),
            "stream_commits": sum(len(s.commits) for s in self.streams.values()),
            "ready": len(self.intake.ready),
            "snapshots": len(self.snapshots) + (self.stable_snapshot is not None),
        }
        out.update(self.checks.footprint())
        return out
