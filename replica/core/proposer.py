"""The leader's proposals (PROTOCOL.md section 4): batches cut from ready requests, at most
``inflight_max`` undecided at a time (a local pacing rule that lets batches fill under load),
never at or beyond the last Checkpoint it CTBcast plus a window."""

from __future__ import annotations

from collections.abc import Callable

from .codec import encode_payload
from .context import Context
from .ctb_broadcaster import CtbBroadcaster
from .intake import RequestIntake
from .messages import Batch, Entry, Prepare
from .request_log import RequestLog
from .view import ViewState


class Proposer:
    __slots__ = (
        "broadcaster",
        "ctx",
        "inflight",
        "intake",
        "last_ctb_ckpt",
        "log",
        "next_propose",
        "views",
    )

    def __init__(
        self,
        ctx: Context,
        views: ViewState,
        log: RequestLog,
        intake: RequestIntake,
        broadcaster: CtbBroadcaster,
        last_ctb_ckpt: Callable[[], int],
    ) -> None:
        self.ctx = ctx
        self.views = views
        self.log = log
        self.intake = intake
        self.broadcaster = broadcaster
        self.last_ctb_ckpt = last_ctb_ckpt
        self.next_propose = views.low
        self.inflight = 0

    def on_decided(self, i: int) -> None:
        if self.views.is_leader():
            self.inflight = max(0, self.inflight - 1)

    def propose(self, last_fresh_ts: int) -> None:
        """Cut batches from ready requests (called once per burst of events)."""
        if not self.views.is_leader():
            return
        ctx = self.ctx
        p = ctx.params
        ready = self.intake.ready
        clients = self.log.clients
        limit = self.last_ctb_ckpt() + p.window
        while ready and self.inflight < p.inflight_max and self.next_propose < limit:
            entries: list[Entry] = []
            while ready and len(entries) < p.batch_max:
                cid, x = ready.popleft()
                client = clients.get(cid)
                req = None if client is None else client.pending.get(x)
                if req is None or not req.proposed:
                    continue  # executed, deregistered or registered anew meanwhile
                entries.append(Entry(cid, x, req.payload, req.sig))
            if not entries:
                return
            ts = max(ctx.now_ns, last_fresh_ts)
            i = self.next_propose
            self.next_propose = i + 1
            self.inflight += 1
            view = self.views.view
            self.broadcaster.broadcast(encode_payload(Prepare(view, i, Batch(ts, tuple(entries)))))
