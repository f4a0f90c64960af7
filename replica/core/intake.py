"""Request admission (PROTOCOL.md section 4, "Submission"): a replica logs the requests its
clients send it; followers echo unsigned ones to the leader (one frame per burst) and forward
signed ones; the leader marks a request ready once every follower echoed identical bytes or it
holds the client's signature. It also sends replies."""

from __future__ import annotations

from collections import deque

from .actions import SendClient
from .codec import MAX_ECHOES, encode
from .context import Context
from .crypto import Tag, digest, statement, verify_with_key
from .messages import Reply, Request, RequestEcho, RequestEchoes, RequestForward
from .request_log import RequestLog
from .view import ViewState


class RequestIntake:
    __slots__ = ("ctx", "dropped", "echo_out", "log", "ready", "views")

    def __init__(self, ctx: Context, log: RequestLog, views: ViewState) -> None:
        self.ctx = ctx
        self.log = log
        self.views = views  # the leader of the current view is read there
        self.ready: deque[tuple[int, int]] = deque()  # leader: (client, request) to propose
        self.echo_out: list[RequestEcho] = []  # follower: this burst's echoes
        self.dropped = 0  # forwards refused on state that may lag here (counted, no evidence)

    def is_leader(self) -> bool:
        return self.views.leader == self.ctx.me

    def send_reply(self, client_id: int, request_id: int, result: bytes) -> None:
        ctx = self.ctx
        reply = Reply(ctx.epoch, client_id, request_id, result)
        ctx.outbox.append(SendClient(client_id, encode(reply, ctx.epoch)))

    def on_request(self, client_id: int, req: Request) -> bool:
        """A request from its client (signature already checked). True if it was stored."""
        log = self.log
        cached = log.cached_reply(log.clients[client_id], req.request_id)
        if cached is not None:
            self.send_reply(client_id, req.request_id, cached)
            return False
        stored = log.add(client_id, req.request_id, req.payload, req.sig, self.ctx.now_ns)
        if stored is None:
            return False
        if self.is_leader():
            self._maybe_ready(client_id, req.request_id)
        elif stored.sig:
            forward = RequestForward(Request(client_id, req.request_id, stored.payload, stored.sig))
            self.ctx.send((self.views.leader,), forward)
        else:
            self.echo_out.append(RequestEcho(client_id, req.request_id, stored.digest))
        return True

    def on_request_echo(self, sender: int, msg: RequestEcho) -> None:
        if not self.is_leader() or len(msg.digest) != 32:
            return
        if self.log.add_echo(msg.client_id, msg.request_id, sender, msg.digest) is not None:
            self._maybe_ready(msg.client_id, msg.request_id)

    def on_request_echoes(self, sender: int, msg: RequestEchoes) -> None:
        for echo in msg.echoes:
            self.on_request_echo(sender, echo)

    def flush_echoes(self) -> None:
        """Follower: send the burst's request echoes to the leader in one frame."""
        out = self.echo_out
        if not out:
            return
        self.echo_out = []
        if len(out) == 1:
            self.ctx.send((self.views.leader,), out[0])
            return
        for j in range(0, len(out), MAX_ECHOES):
            self.ctx.send((self.views.leader,), RequestEchoes(tuple(out[j : j + MAX_ECHOES])))

    def on_request_forward(self, sender: int, msg: RequestForward) -> bool:
        """A signed request a follower forwarded. True if it was stored."""
        req = msg.request
        client = self.log.clients.get(req.client_id)
        ctx = self.ctx
        if not req.sig:
            ctx.report(sender, "forward.unsigned")  # a correct follower forwards signed ones only
            return False
        # Whether the client is registered, and under which key, may legitimately differ between
        # correct replicas (an admission change executed at one and not yet at the other), so
        # an unknown client or a signature that does not verify here is dropped, not evidence.
        if client is None or len(req.payload) > ctx.params.max_request_bytes:
            self.dropped += 1
            return False
        stmt = statement(
            Tag.REQ, ctx.cluster, None, req.client_id, req.request_id, digest(req.payload)
        )
        if not verify_with_key(client.key, stmt, req.sig, ctx.verifier.counter):
            self.dropped += 1
            return False
        stored = self.log.add(req.client_id, req.request_id, req.payload, req.sig, ctx.now_ns)
        if stored is not None and self.is_leader():
            self._maybe_ready(req.client_id, req.request_id)
        return True

    def _maybe_ready(self, client_id: int, request_id: int) -> None:
        req = self.log.clients[client_id].pending.get(request_id)
        if req is None or req.proposed:
            return
        if not req.sig:
            need = self.ctx.n - 1
            if len(req.echoes) < need or any(d != req.digest for d in req.echoes.values()):
                return
        req.proposed = True
        self.ready.append((client_id, request_id))

    def resend_pending(self, older_than_ns: int) -> None:
        """Follower, each sync tick: echo (or forward) again what is still pending, the
        young ones excepted (their first echo is probably still in flight)."""
        if self.is_leader():
            return
        for cid, entry in self.log.clients.items():
            for x, req in entry.pending.items():
                if req.since_ns > older_than_ns:
                    continue
                if req.sig:
                    self.ctx.send(
                        (self.views.leader,), RequestForward(Request(cid, x, req.payload, req.sig))
                    )
                else:
                    self.echo_out.append(RequestEcho(cid, x, req.digest))
