"""Consensus normal case (PROTOCOL.md section 4): Prepare checks, fast path (promises, n
FastCommits), slow path (prep shares, prepare certificates, f+1 Commits), in-order execution,
checkpoints, and the CTBcast checkpoint summaries of each broadcaster's stream.

View change, state transfer and reconfiguration slot in later: the view is a field, every
message carries it, and per-broadcaster stream state (``_Stream``) already records what a
SealView / NewView needs.
"""

from __future__ import annotations

from .actions import Decided, Executed, TimerKey, TimerKind
from .admission import ADMIN_CLIENT_ID, RESULT_OK, AdminOp, command_statement, decode_admin_command
from .app import Application
from .bounds import payload_in_range
from .certifier import Certifier
from .checkpoint import CheckpointTracker
from .codec import MAX_VALUE_BYTES, SIGNATURE_BYTES, batch_digest_in, decode_payload, encode_payload
from .config import SlowPathMode
from .context import Context
from .crypto import Tag, digest, statement, verify_with_key
from .ctbcast import CtbCast
from .errors import DecodeError
from .instance import InstanceState
from .intake import RequestIntake
from .messages import (
    Batch,
    Certificate,
    Checkpoint,
    CkptShare,
    Commit,
    Entry,
    FastCommit,
    Prepare,
    PrepShare,
    Promise,
    Request,
    RequestForward,
    SealView,
    Sync,
)
from .quorum import verify_certificate
from .request_log import OUT_OF_WINDOW, RequestLog
from .stream import Stream, decode_summary, encode_summary
from .timers import Deadlines


class Consensus:
    def __init__(self, ctx: Context, ctb: CtbCast, app: Application, log: RequestLog) -> None:
        self.ctx = ctx
        self.ctb = ctb
        self.app = app
        self.log = log
        p = ctx.params
        self.window = p.window
        self.interval = p.checkpoint_interval
        self.view = 0
        self.low = 0  # the epoch's first instance
        self.leader = ctx.config.leader(0)
        self.next_prepare = self.low  # check (b): next instance expected from the leader
        self.last_fresh_ts = -1
        self.inst: dict[int, InstanceState] = {}
        self.decided: dict[int, Batch] = {}
        self.exec_next = self.low
        self.app_clock = 0
        self.ckpt = CheckpointTracker(ctx, self.low)
        self.certifier = Certifier(ctx)
        self.admin_key = bytes.fromhex(ctx.config.admin_public_key)
        self.intake = RequestIntake(ctx, log, self.leader)
        self.streams = {r: Stream() for r in ctx.members}
        # (client, request) -> instances whose Prepare waits for it (one key per waiting
        # instance: the first entry it misses, so at most the instances held)
        self.waiting_requests: dict[tuple[int, int], set[int]] = {}
        # Admission changes in the pipeline: instance -> client ids its batch's admin commands
        # name, for instances not yet executed. An entry of such a client in a later instance
        # is judged only once they have executed (validity across admission changes).
        self.admin_named: dict[int, frozenset[int]] = {}
        self.known_from = self.low  # every Prepare from here to next_prepare - 1 was seen
        self._recheck_all = False
        self.fast_timers = Deadlines(ctx, TimerKey(TimerKind.FAST_TIMEOUT))  # per instance
        self.last_sync_answer_ns: dict[int, int] = {}  # peer -> when we last answered its Sync
        # leader side
        self.next_propose = self.low
        self.inflight = 0

    # ================================================================== helpers

    def _evidence(self, peer: int, reason: str) -> None:
        self.ctx.report(peer, reason)

    def _get(self, i: int) -> InstanceState | None:
        """Instance state for i if i lies above the stable checkpoint and within two windows of
        the last checkpoint we CTBcast (what lies below that is discarded only once it is
        CTBcast, so this bounds the instances held even while our own tail is full)."""
        if i < self.ckpt.stable_c or i >= self.ckpt.last_ctb_ckpt + 2 * self.window:
            return None
        inst = self.inst.get(i)
        if inst is None:
            inst = self.inst[i] = InstanceState(self.view)
        return inst

    @property
    def stable_c(self) -> int:
        return self.ckpt.stable_c

    def is_leader(self) -> bool:
        return self.leader == self.ctx.me

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
        if isinstance(payload, Prepare):
            self._on_prepare(b, payload, batch_digest_in(m, payload), len(m))
        elif isinstance(payload, Commit):
            self._on_commit(b, payload, batch_digest_in(m, payload))
        elif isinstance(payload, Checkpoint):
            self._on_checkpoint(b, payload)
        elif isinstance(payload, SealView):
            self._on_seal_view(b, payload)

    def ctb_summary(self, b: int, c: int) -> bytes:
        return encode_summary(c, self.streams[b])

    def adopt_ctb_summary(self, b: int, c: int, summary: bytes) -> None:
        s = decode_summary(c, summary)
        if s is None:
            return  # certified by f+1, so a correct replica built it: cannot happen
        self.streams[b] = s
        for i, (v, d) in sorted(s.commits.items()):
            inst = self._get(i)
            if inst is not None and v == self.view:
                inst.commits.setdefault(b, d)
                self._try_decide_commits(i, inst)
        if (
            b == self.leader
            and s.prep_view == self.view
            and s.prep_instance + 1 > self.next_prepare
        ):
            # Prepares up to prep_instance are summarised away; they decide through Commits.
            self.next_prepare = self.known_from = s.prep_instance + 1
            self.last_fresh_ts = max(self.last_fresh_ts, s.fresh_ts)

    # ================================================================== Prepare and fast path

    def _on_prepare(self, sender: int, p: Prepare, batch_digest: bytes, size: int) -> None:
        ctx = self.ctx
        if sender != ctx.config.leader(p.view):
            self._evidence(sender, "prepare.not_leader")
            return
        if p.view != self.view:
            return  # a view we left (or, before view change lands, one we never enter)
        i = p.instance
        if i != self.next_prepare:
            self._evidence(sender, "prepare.out_of_order")
            return
        self.next_prepare = i + 1
        s = self.streams[sender]
        s.prep_view, s.prep_instance = p.view, i
        if i < self.ckpt.stable_c:
            return
        if i >= max(self.low, s.ckpt_c) + self.window:
            self._evidence(sender, "prepare.beyond_window")
            return
        batch = p.batch
        if len(batch.entries) > ctx.params.batch_max or batch.ts < self.last_fresh_ts:
            self._evidence(sender, "prepare.bad_batch")
            return
        if size + self._commit_overhead > MAX_VALUE_BYTES:
            # it could never be re-wrapped in a Commit: fails check (e)'s size part
            self._evidence(sender, "prepare.too_large")
            return
        max_request = ctx.params.max_request_bytes
        if any(len(e.payload) > max_request for e in batch.entries):
            self._evidence(sender, "prepare.request_too_large")
            return
        self.last_fresh_ts = batch.ts
        s.fresh_ts = batch.ts
        inst = self._get(i)
        if inst is None:
            # not held (beyond two windows of our last Checkpoint): its admin commands, if
            # any, are unknown here, so later entries wait until execution passes it
            self.known_from = i + 1
            return
        named = self._admin_names(batch)
        if named:
            self.admin_named[i] = named
        inst.batch = batch
        inst.digest = batch_digest
        self._check_e(i, inst)

    @property
    def _commit_overhead(self) -> int:
        """Bytes a Commit adds to its Prepare's value: a certificate of f+1 signers."""
        return 1 + (2 + SIGNATURE_BYTES) * (self.ctx.f + 1)

    @staticmethod
    def _admin_names(batch: Batch) -> frozenset[int]:
        """Client ids that the batch's admin commands name (whether or not they will succeed)."""
        named = [
            cmd.client_id
            for e in batch.entries
            if e.client_id == ADMIN_CLIENT_ID
            and (cmd := decode_admin_command(e.payload)) is not None
        ]
        return frozenset(named)

    def _check_e(self, i: int, inst: InstanceState) -> None:
        """Check (e)'s log and clock parts; keep the Prepare while they fail."""
        batch = inst.batch
        assert batch is not None
        ctx = self.ctx
        if abs(batch.ts - ctx.now_ns) > ctx.params.skew_ns:
            inst.waiting = True
            return
        named_here: set[int] = set()
        for e in batch.entries:
            cid = e.client_id
            if cid in named_here:
                continue  # skipped at execution: an admin command before it in B names it
            if cid == ADMIN_CLIENT_ID:
                cmd = decode_admin_command(e.payload)
                if cmd is not None:
                    named_here.add(cmd.client_id)
            if not self._admission_settled(cid, i):
                inst.waiting = True  # re-checked once the admission change has executed
                return
            if not self._entry_ok(e):
                inst.waiting = True
                self.waiting_requests.setdefault((cid, e.request_id), set()).add(i)
                return
        inst.waiting = False
        self._accept(i, inst)

    def _admission_settled(self, client_id: int, i: int) -> bool:
        """The client table that will execute instance i is known here for this client: no
        unexecuted instance before i may change its registration."""
        exec_next = self.exec_next
        if exec_next < self.known_from:
            return False  # Prepares we never saw lie before i: they may hold admin commands
        named = self.admin_named
        return not named or not any(
            exec_next <= j < i and client_id in ids for j, ids in named.items()
        )

    def _entry_ok(self, e: Entry) -> bool:
        """Check (e) for one entry, against the client table as it will be at execution."""
        client = self.log.clients.get(e.client_id)
        if client is None:
            return True  # not registered: skipped at execution, nothing to check
        req = client.pending.get(e.request_id)
        if req is not None and req.payload == e.payload and (not e.sig or e.sig == req.sig):
            return True
        if e.request_id <= client.h or e.request_id in client.executed:
            return True  # a duplicate: execution skips it
        if e.sig:
            stmt = statement(
                Tag.REQ, self.ctx.cluster, None, e.client_id, e.request_id, digest(e.payload)
            )
            return verify_with_key(client.key, stmt, e.sig, self.ctx.verifier.counter)
        return False

    def _accept(self, i: int, inst: InstanceState) -> None:
        ctx = self.ctx
        inst.accepted = True
        inst.accepted_ns = ctx.now_ns
        if ctx.me != self.leader:
            ctx.send_all(Promise(self.view, i))
        self.fast_timers.set(i, ctx.params.fast_timeout_ns)
        if ctx.params.slow_path_mode is SlowPathMode.ALWAYS or any(
            r != ctx.me for r in inst.shares
        ):
            self._send_share(i, inst)
        self._check_promises(i, inst)
        self._try_certificate(i, inst)
        self._try_decide_commits(i, inst)

    def recheck_waiting(self, client_id: int, request_id: int) -> None:
        instances = self.waiting_requests.pop((client_id, request_id), None)
        for i in sorted(instances or ()):
            inst = self.inst.get(i)
            if inst is not None and inst.waiting and not inst.accepted:
                self._check_e(i, inst)

    def recheck_clock(self) -> None:
        for i in sorted(self.inst):
            inst = self.inst.get(i)  # accepting one may discard those below a checkpoint
            if inst is not None and inst.waiting and not inst.accepted:
                self._check_e(i, inst)

    def on_promise(self, sender: int, msg: Promise) -> None:
        if msg.view != self.view or sender == self.leader:
            return
        inst = self._get(msg.instance)
        if inst is None:
            return
        inst.promises.add(sender)
        self._check_promises(msg.instance, inst)

    def _check_promises(self, i: int, inst: InstanceState) -> None:
        ctx = self.ctx
        if not inst.accepted or inst.fc_sent or inst.decided:
            return
        # the leader's Prepare is its promise
        need = ctx.n - 1 if ctx.me == self.leader else ctx.n - 2
        if len(inst.promises - {ctx.me}) < need:
            return
        inst.fc_sent = True
        inst.fast_commits.add(ctx.me)
        ctx.send_all(FastCommit(self.view, i))
        self._check_fast_commits(i, inst)

    def on_fast_commit(self, sender: int, msg: FastCommit) -> None:
        if msg.view != self.view:
            return
        inst = self._get(msg.instance)
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
            if inst is not None and inst.view == self.view and inst.accepted and not inst.decided:
                self._send_share(i, inst)

    def _send_share(self, i: int, inst: InstanceState) -> None:
        share = self.certifier.make_share(self.view, i, inst)
        if share is not None:
            self.ctx.send_all(share)
            self._try_certificate(i, inst)

    def on_prep_share(self, sender: int, msg: PrepShare) -> None:
        if msg.view != self.view:
            return
        inst = self._get(msg.instance)
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
        self.ctb.broadcaster.broadcast(encode_payload(Commit(self.view, i, inst.batch, cert)))

    def _on_commit(self, sender: int, c: Commit, d: bytes) -> None:
        ctx = self.ctx
        s = self.streams[sender]
        i = c.instance
        if i >= max(self.low, s.ckpt_c) + self.window:
            self._evidence(sender, "commit.beyond_window")
            return
        if c.view > self.view and sender != ctx.me:
            return  # a later view; view change lands in the next issue
        inst = self._get(i)
        if not self.certifier.commit_is_certified(c, d, inst):
            self._evidence(sender, "commit.bad_certificate")
            return
        old = s.commits.get(i)
        if old is None or old[0] < c.view:
            s.commits[i] = (c.view, d)
        if inst is None or c.view != self.view:
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

    # ================================================================== decision and execution

    def _decide(self, i: int, inst: InstanceState, batch: Batch, d: bytes, fast: bool) -> None:
        inst.decided = True
        self.fast_timers.cancel(i)
        self.ctx.outbox.append(Decided(i, self.view, d, fast))
        if self.is_leader() and i >= self.exec_next:
            self.inflight = max(0, self.inflight - 1)
        if i >= self.exec_next:
            self.decided[i] = batch
        self._execute()

    def _execute(self) -> None:
        ctx = self.ctx
        log = self.log
        while self.exec_next in self.decided:
            i = self.exec_next
            batch = self.decided.pop(i)
            if batch.ts > self.app_clock:
                self.app_clock = batch.ts
            named_here: set[int] = set()
            for e in batch.entries:
                if e.client_id in named_here:
                    # An admin command earlier in this batch named this client: the entry was
                    # judged against the table before that command, so it is not executed.
                    self.waiting_requests.pop((e.client_id, e.request_id), None)
                    continue
                if e.client_id == ADMIN_CLIENT_ID:
                    cmd = decode_admin_command(e.payload)
                    if cmd is not None:
                        named_here.add(cmd.client_id)
                verdict, cached = log.execute(e.client_id, e.request_id)
                if verdict == "execute":
                    if e.client_id == ADMIN_CLIENT_ID:
                        out = self._admin(e.payload)
                    else:
                        out = self.app.apply(e.payload, self.app_clock)
                    result = log.record(e.client_id, e.request_id, out)
                    ctx.outbox.append(Executed(i, e.client_id, e.request_id, e.payload, result))
                    self.intake.send_reply(e.client_id, e.request_id, result)
                elif verdict == "skip" and cached is not None:
                    self.intake.send_reply(e.client_id, e.request_id, cached)
                elif verdict == "out_of_window":
                    self.intake.send_reply(e.client_id, e.request_id, OUT_OF_WINDOW)
                self.waiting_requests.pop((e.client_id, e.request_id), None)
            self.exec_next = i + 1
            if self.admin_named.pop(i, None) is not None or self.exec_next == self.known_from:
                self._recheck_all = True  # Prepares may have waited for this admission change
            if self.exec_next % self.interval == 0:
                self._take_checkpoint(self.exec_next)
        if self._recheck_all:
            self._recheck_all = False
            self.recheck_clock()

    def _admin(self, payload: bytes) -> bytes:
        """Execute an admin request: Register or Deregister, checked identically everywhere.
        Only a command that succeeds consumes its sequence number."""
        ctx = self.ctx
        cmd = decode_admin_command(payload)
        if cmd is None:
            return b"ERR malformed admin command"
        stmt = command_statement(cmd, ctx.cluster, ctx.epoch)
        if not verify_with_key(self.admin_key, stmt, cmd.sig, ctx.verifier.counter):
            return b"ERR bad admin signature"
        if cmd.s <= self.log.admin_s:
            return b"ERR stale sequence number"
        if cmd.op is AdminOp.REGISTER:
            err = self.log.register(cmd.client_id, cmd.key)
        else:
            err = self.log.deregister(cmd.client_id)
        if err is not None:
            return b"ERR " + err.encode()
        self.log.admin_s = cmd.s
        return RESULT_OK

    # ================================================================== checkpoints

    def snapshot_bytes(self) -> bytes:
        return b"".join(
            (
                self.app_clock.to_bytes(8, "big"),
                self.app.digest(),
                digest(self.log.table_bytes()),
            )
        )

    def _take_checkpoint(self, c: int) -> None:
        d = digest(self.snapshot_bytes())
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
        for key in [k for k, v in self.waiting_requests.items() if all(i < c for i in v)]:
            del self.waiting_requests[key]
        for i in [i for i in self.admin_named if i < c]:
            del self.admin_named[i]
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
            self.recheck_waiting(client_id, req.request_id)

    def on_request_forward(self, sender: int, msg: RequestForward) -> None:
        if self.intake.on_request_forward(sender, msg):
            self.recheck_waiting(msg.request.client_id, msg.request.request_id)

    def propose(self) -> None:
        """Leader: cut batches from ready requests (called once per burst of events)."""
        if not self.is_leader():
            return
        ctx = self.ctx
        p = ctx.params
        ready = self.intake.ready
        while (
            ready
            and self.inflight < p.inflight_max
            and self.next_propose < self.ckpt.last_ctb_ckpt + self.window
        ):
            entries: list[Entry] = []
            while ready and len(entries) < p.batch_max:
                cid, x = ready.popleft()
                client = self.log.clients.get(cid)
                req = None if client is None else client.pending.get(x)
                if req is None or not req.proposed:
                    continue  # executed, deregistered or registered anew meanwhile
                entries.append(Entry(cid, x, req.payload, req.sig))
            if not entries:
                return
            ts = max(ctx.now_ns, self.last_fresh_ts)
            i = self.next_propose
            self.next_propose = i + 1
            self.inflight += 1
            self.ctb.broadcaster.broadcast(
                encode_payload(Prepare(self.view, i, Batch(ts, tuple(entries))))
            )

    # ================================================================== sync (lost frames)

    def pending(self) -> bool:
        if self.waiting_requests or self.intake.ready:
            return True
        if any(not inst.decided and (inst.accepted or inst.waiting) for inst in self.inst.values()):
            return True
        if self.ckpt.pending():
            return True
        return any(e.pending for e in self.log.clients.values())

    def sync_status(self, peer: int) -> Sync:
        rx = self.ctb.receivers[peer]
        return Sync(rx.k_d, rx.cert_c, self.exec_next, self.ckpt.stable_c)

    def on_sync_tick(self) -> None:
        """Resend what may have been lost: request echoes, undecided votes, checkpoint shares."""
        ctx = self.ctx
        old = ctx.now_ns - ctx.params.sync_interval_ns // 2
        self.intake.resend_pending(older_than_ns=old)
        for share in self.ckpt.own_shares(above=self.ckpt.stable_c):
            ctx.send_all(share)
        self.recheck_clock()

    def on_sync(self, sender: int, msg: Sync) -> None:
        """A peer reports where it is: resend it our votes for instances it has not executed.
        At most once per half sync interval per peer, so a faulty peer cannot make us flood."""
        ctx = self.ctx
        last = self.last_sync_answer_ns.get(sender)
        if last is not None and ctx.now_ns - last < ctx.params.sync_interval_ns // 2:
            return
        self.last_sync_answer_ns[sender] = ctx.now_ns
        old = ctx.now_ns - ctx.params.sync_interval_ns // 2
        self.ctb.broadcaster.resend(sender, msg.next_k, with_sigs=False, sent_before_ns=old)
        to = (sender,)
        for i, inst in sorted(self.inst.items()):
            if i < msg.exec_next or not inst.accepted or inst.accepted_ns > old:
                continue
            if ctx.me != self.leader:
                ctx.send(to, Promise(self.view, i))
            if inst.fc_sent:
                ctx.send(to, FastCommit(self.view, i))
            mine = inst.shares.get(ctx.me)
            if mine is not None:
                ctx.send(to, PrepShare(self.view, i, mine[0], mine[1]))
        for share in self.ckpt.own_shares(above=msg.stable_c):
            ctx.send(to, share)

    def footprint(self) -> dict[str, int]:
        return {
            "instances": len(self.inst),
            "instance_votes": sum(
                len(x.promises) + len(x.fast_commits) + len(x.shares) + len(x.commits)
                for x in self.inst.values()
            ),
            "decided_unexecuted": len(self.decided),
            "checkpoint_shares": self.ckpt.footprint(),
            "stream_commits": sum(len(s.commits) for s in self.streams.values()),
            "waiting_requests": sum(len(v) for v in self.waiting_requests.values()),
            "admission_pending": sum(len(v) for v in self.admin_named.values()),
            "ready": len(self.intake.ready),
        }
