"""The Prepare checks (PROTOCOL.md section 4, "Prepare checks" (a)-(e)).

A Prepare is recorded in its sender's stream state before any check that depends on this
replica's own state. Failing (a)'s sender check, (b)-(d), or (e)'s size or ts-order part is
evidence against the leader; failing only (e)'s log or clock part keeps the Prepare, re-checked
as requests arrive, as time passes and as execution moves, until the view ends.

Check (e) judges each entry against the client table that will execute it: an entry of a
client that an admin command of an earlier, unexecuted instance names waits until that command
has executed; within one batch, an entry is judged against the table before the batch, and
execution skips it if an admin command before it in the batch changed its client's
registration (``execution.py``). So a registration or key that changes in the pipeline never
lets an entry through that its client did not send.
"""

from __future__ import annotations

from collections.abc import Callable

from .admission import ADMIN_CLIENT_ID, decode_admin_command
from .codec import MAX_VALUE_BYTES, SIGNATURE_BYTES
from .context import Context
from .crypto import Tag, digest, statement, verify_with_key
from .execution import Executor
from .instance import InstanceState
from .messages import Batch, Entry, Prepare
from .request_log import RequestLog
from .stream import Stream
from .view import ViewState

GetInstance = Callable[[int], InstanceState | None]
Accept = Callable[[int, InstanceState], None]


class PrepareChecks:
    __slots__ = (
        "accept",
        "admin_named",
        "commit_overhead",
        "ctx",
        "executor",
        "get",
        "known_from",
        "last_fresh_ts",
        "log",
        "next_prepare",
        "recheck_due",
        "stable_c",
        "views",
        "waiting_requests",
        "window",
    )

    def __init__(
        self,
        ctx: Context,
        views: ViewState,
        log: RequestLog,
        executor: Executor,
        get: GetInstance,
        accept: Accept,
        stable_c: Callable[[], int],
    ) -> None:
        self.ctx = ctx
        self.views = views
        self.log = log
        self.executor = executor
        self.get = get
        self.accept = accept
        self.stable_c = stable_c
        self.window = ctx.params.window
        # a Commit adds a certificate of f+1 signers to its Prepare's value
        self.commit_overhead = 1 + (2 + SIGNATURE_BYTES) * (ctx.f + 1)
        self.next_prepare = views.low  # check (b): next instance expected from the leader
        self.last_fresh_ts = -1
        # (client, request) -> instances whose Prepare waits for it (one key per waiting
        # instance: the first entry it misses, so at most the instances held)
        self.waiting_requests: dict[tuple[int, int], set[int]] = {}
        # instance -> client ids its batch's admin commands name, for instances not executed
        self.admin_named: dict[int, frozenset[int]] = {}
        self.known_from = views.low  # every Prepare from here to next_prepare - 1 was seen
        self.recheck_due = False

    # ------------------------------------------------------------------ (a)-(e)

    def on_prepare(
        self, sender: int, p: Prepare, batch_digest: bytes, size: int, s: Stream
    ) -> None:
        ctx = self.ctx
        views = self.views
        if sender != views.leader_of(p.view):
            ctx.report(sender, "prepare.not_leader")
            return
        if not views.active_in(p.view):
            return  # a view we left or sealed (or, before view change lands, one we never enter)
        i = p.instance
        if i != self.next_prepare:
            ctx.report(sender, "prepare.out_of_order")
            return
        self.next_prepare = i + 1
        s.prep_view, s.prep_instance = p.view, i
        if i < self.stable_c():
            return
        if i >= max(views.low, s.ckpt_c) + self.window:
            ctx.report(sender, "prepare.beyond_window")
            return
        batch = p.batch
        if len(batch.entries) > ctx.params.batch_max or batch.ts < self.last_fresh_ts:
            ctx.report(sender, "prepare.bad_batch")
            return
        if size + self.commit_overhead > MAX_VALUE_BYTES:
            # it could never be re-wrapped in a Commit: fails check (e)'s size part
            ctx.report(sender, "prepare.too_large")
            return
        max_request = ctx.params.max_request_bytes
        for e in batch.entries:
            if len(e.payload) > max_request:
                ctx.report(sender, "prepare.request_too_large")
                return
        self.last_fresh_ts = batch.ts
        s.fresh_ts = batch.ts
        inst = self.get(i)
        if inst is None:
            # not held (beyond two windows of our last Checkpoint): its admin commands, if
            # any, are unknown here, so later entries wait until execution passes it
            self.known_from = i + 1
            return
        for e in batch.entries:
            if e.client_id == ADMIN_CLIENT_ID:
                named = _admin_names(batch)
                if named:
                    self.admin_named[i] = named
                break
        inst.batch = batch
        inst.digest = batch_digest
        self.check_e(i, inst)

    def check_e(self, i: int, inst: InstanceState) -> None:
        """Check (e)'s log and clock parts; keep the Prepare while they fail."""
        batch = inst.batch
        assert batch is not None
        ctx = self.ctx
        if abs(batch.ts - ctx.now_ns) > ctx.params.skew_ns:
            inst.waiting = True
            return
        # Every entry is judged against the table as it is before this batch: an admin command
        # earlier in the batch that changes the entry's client makes execution skip the entry,
        # one that fails leaves the table as judged here.
        settled = self._settled_for_all(i)
        for e in batch.entries:
            cid = e.client_id
            if not settled and not self._admission_settled(cid, i):
                inst.waiting = True  # re-checked once the admission change has executed
                return
            if not self._entry_ok(e):
                inst.waiting = True
                self.waiting_requests.setdefault((cid, e.request_id), set()).add(i)
                return
        inst.waiting = False
        self.accept(i, inst)

    def _settled_for_all(self, i: int) -> bool:
        """No unexecuted instance before i may change any registration."""
        exec_next = self.executor.exec_next
        if exec_next < self.known_from:
            return False
        named = self.admin_named
        return not named or not any(exec_next <= j < i for j in named)

    def _admission_settled(self, client_id: int, i: int) -> bool:
        """The client table that will execute instance i is known here for this client."""
        exec_next = self.executor.exec_next
        if exec_next < self.known_from:
            return False  # Prepares we never saw lie before i: they may hold admin commands
        return not any(
            exec_next <= j < i and client_id in ids for j, ids in self.admin_named.items()
        )

    def _entry_ok(self, e: Entry) -> bool:
        """Check (e) for one entry: the client's signature, or our own copy of the request."""
        client = self.log.clients.get(e.client_id)
        if client is None:
            return True  # not registered: skipped at execution, nothing to check
        req = client.pending.get(e.request_id)
        if req is not None and req.payload == e.payload and (not e.sig or e.sig == req.sig):
            return True
        if e.request_id <= client.h or e.request_id in client.executed:
            return True  # a duplicate: execution skips it
        if e.sig:
            ctx = self.ctx
            stmt = statement(
                Tag.REQ, ctx.cluster, None, e.client_id, e.request_id, digest(e.payload)
            )
            return verify_with_key(client.key, stmt, e.sig, ctx.verifier.counter)
        return False

    # ------------------------------------------------------------------ re-checks

    def recheck_waiting(
        self, client_id: int, request_id: int, held: dict[int, InstanceState]
    ) -> None:
        instances = self.waiting_requests.pop((client_id, request_id), None)
        for i in sorted(instances or ()):
            inst = held.get(i)
            if inst is not None and inst.waiting and not inst.accepted:
                self.check_e(i, inst)

    def recheck_all(self, held: dict[int, InstanceState]) -> None:
        for i in sorted(held):
            inst = held.get(i)  # accepting one may discard those below a checkpoint
            if inst is not None and inst.waiting and not inst.accepted:
                self.check_e(i, inst)

    def on_executed(self, i: int, batch: Batch) -> None:
        waiting = self.waiting_requests
        if waiting:
            for e in batch.entries:
                waiting.pop((e.client_id, e.request_id), None)
        if self.admin_named.pop(i, None) is not None or i + 1 == self.known_from:
            self.recheck_due = True  # Prepares may have waited for this admission change

    def discard_below(self, c: int) -> None:
        waiting = self.waiting_requests
        for key in [k for k, v in waiting.items() if all(i < c for i in v)]:
            del waiting[key]
        for i in [i for i in self.admin_named if i < c]:
            del self.admin_named[i]

    def pending(self) -> bool:
        return bool(self.waiting_requests)

    def footprint(self) -> dict[str, int]:
        return {
            "waiting_requests": sum(len(v) for v in self.waiting_requests.values()),
            "admission_pending": sum(len(v) for v in self.admin_named.values()),
        }


def _admin_names(batch: Batch) -> frozenset[int]:
    """Client ids that the batch's admin commands name (whether or not they will succeed)."""
    return frozenset(
        cmd.client_id
        for e in batch.entries
        if e.client_id == ADMIN_CLIENT_ID and (cmd := decode_admin_command(e.payload)) is not None
    )
