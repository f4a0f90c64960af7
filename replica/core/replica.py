"""One replica: decodes input, routes it to CTBcast and consensus, collects their actions.

It holds no protocol rule of its own (STYLE.md: the replica routes, each concept keeps its
file). Entry points never raise on anything a peer, client or memory node sent.
"""

from __future__ import annotations

from ubft.memnode.wire import MemReadReply, MemWriteReply

from .actions import Action, SendMemnode, TimerKey, TimerKind
from .admission import ADMIN_CLIENT_ID
from .app import Application
from .codec import decode, encode
from .config import ClusterConfig
from .crypto import Signer, Tag, Verifier, digest, statement, verify_with_key
from .epoch import Epoch
from .errors import DecodeError, UsageError
from .evidence import EvidenceLog
from .execution import Executor
from .messages import Request
from .request_log import RequestLog


class Replica:
    def __init__(
        self,
        config: ClusterConfig,
        me: int,
        signer: Signer,
        app: Application,
        clients: dict[int, bytes],
        verifier: Verifier | None = None,
    ) -> None:
        if not __debug__:
            raise UsageError("the replica relies on its assertions: do not run it with python -O")
        if me not in config.member_ids:
            raise UsageError(f"replica {me} is not a member of epoch {config.epoch}")
        if verifier is None:
            verifier = Verifier(config.member_keys(), signer.counter)
        p = config.params
        if len(clients) > p.max_clients or ADMIN_CLIENT_ID in clients:
            raise UsageError(
                f"genesis clients: at most max_clients, none with id {ADMIN_CLIENT_ID}"
            )
        self.log = RequestLog(
            clients,
            p.client_window,
            p.max_reply_bytes,
            admin_key=bytes.fromhex(config.admin_public_key),
            max_clients=p.max_clients,
        )
        # What outlives an epoch: keys, evidence, the client table, the application and the
        # execution position. What one epoch builds (configuration, CTBcast streams, register
        # client, view and instances) is ``self.epoch``; reconfiguration replaces only that.
        self.signer = signer
        self.evidence = EvidenceLog(p.evidence_per_peer_max)
        admin_key = bytes.fromhex(config.admin_public_key)
        self.executor = Executor(app, self.log, p.checkpoint_interval, admin_key, first=0)
        self._sync_armed = False
        self._mem_retry_armed = False
        self.rejected_frames = 0
        self._enter(Epoch(config, me, signer, verifier, self.evidence, self.executor, self.log))

    def _enter(self, epoch: Epoch) -> None:
        """Make ``epoch`` the current one (the hot paths read its parts as attributes)."""
        self.epoch = epoch
        self.ctx = epoch.ctx
        self.regs = epoch.regs
        self.ctb = epoch.ctb
        self.consensus = epoch.consensus
        self._peers = epoch.peers
        self._handlers = epoch.handlers

    # ------------------------------------------------------------------ entry points

    def receive(self, sender: int, frame: bytes, now_ns: int) -> None:
        """A frame from replica ``sender`` (authenticated by the link)."""
        ctx = self.ctx
        ctx.now_ns = now_ns
        if sender not in self._peers:
            raise UsageError(f"frame from non-member {sender}")
        try:
            epoch, msg = decode(frame)
        except DecodeError as exc:
            self._bad_frame(sender, exc.reason)
            return
        if epoch != ctx.epoch:
            return
        handler = self._handlers.get(type(msg))
        if handler is None:
            self._bad_frame(sender, "frame.unexpected_kind")
            return
        handler(sender, msg)
        self._settle()

    def receive_client(self, client_id: int, frame: bytes, now_ns: int) -> None:
        """A frame from client ``client_id`` (authenticated by the link; the admin is client
        ``ADMIN_CLIENT_ID``)."""
        ctx = self.ctx
        ctx.now_ns = now_ns
        client = self.log.clients.get(client_id)
        if client is None:
            self.rejected_frames += 1
            return  # links and requests only from registered clients
        try:
            epoch, msg = decode(frame)
        except DecodeError as exc:
            self._bad_frame(client_id, exc.reason, is_client=True)
            return
        if epoch != ctx.epoch:
            return  # a client still on another configuration (reconfiguration issue)
        if not isinstance(msg, Request) or msg.client_id != client_id:
            self._bad_frame(client_id, "client.unexpected_message", is_client=True)
            return
        if len(msg.payload) > ctx.params.max_request_bytes:
            self._bad_frame(client_id, "client.request_too_large", is_client=True)
            return
        if msg.sig:
            stmt = statement(
                Tag.REQ, ctx.cluster, None, client_id, msg.request_id, digest(msg.payload)
            )
            if not verify_with_key(client.key, stmt, msg.sig, ctx.verifier.counter):
                self._bad_frame(client_id, "client.bad_signature", is_client=True)
                return
        self.consensus.on_request(client_id, msg)
        self._settle()

    def receive_memnode(self, node: int, frame: bytes, now_ns: int) -> None:
        self.ctx.now_ns = now_ns
        try:
            _, msg = decode(frame)
        except DecodeError:
            self.rejected_frames += 1
            return
        if not isinstance(msg, MemReadReply | MemWriteReply):
            self.rejected_frames += 1
            return
        done = self.regs.on_reply(node, msg)
        if done:
            self.ctb.on_mem_done(done)
            self._settle()

    def timer_fired(self, key: TimerKey, now_ns: int) -> None:
        ctx = self.ctx
        ctx.now_ns = now_ns
        kind = key.kind
        if kind is TimerKind.FAST_PATH:
            self.ctb.on_timer(key.a)
        elif kind is TimerKind.FAST_TIMEOUT:
            self.consensus.on_fast_timeout()
        elif kind is TimerKind.SYNC:
            self._sync_armed = False
            if self._pending():
                for peer in ctx.others:
                    ctx.send((peer,), self.consensus.sync_status(peer))
                for rx in self.ctb.receivers.values():
                    rx.resend_share()
                self.ctb.broadcaster.on_sync_tick()
                self.consensus.on_sync_tick()
        elif kind is TimerKind.MEM_RETRY:
            self._mem_retry_armed = False
            self.regs.retry()
        else:
            raise UsageError(f"unknown timer {key}")
        self._settle()

    def take_actions(self) -> list[Action]:
        """Drain what the driver must do (raft's Ready): the leader cuts batches here, so
        requests that arrived in one burst share a Prepare."""
        cons = self.consensus
        if cons.intake.ready:
            cons.propose()
        if cons.intake.echo_out:
            cons.intake.flush_echoes()
        self._settle()
        out = self.ctx.outbox
        self.ctx.outbox = []
        return out

    # ------------------------------------------------------------------ internals

    def _bad_frame(self, peer: int, reason: str, is_client: bool = False) -> None:
        self.rejected_frames += 1
        self.ctx.report(peer, reason, is_client)

    def _pending(self) -> bool:
        return self.ctb.pending() or self.consensus.pending() or self.regs.pending_ops() > 0

    def _settle(self) -> None:
        """After every event: deliver our own broadcasts, CTBcast a checkpoint that waited
        for room, hand register operations out, keep the sync timer armed while work is
        pending. Runs after every frame, so the common case (nothing to do) is checked inline."""
        ctx = self.ctx
        bc = self.ctb.broadcaster
        if bc.self_deliveries:
            bc.drain_self()  # drains what delivering its own messages broadcasts, too
        if self.consensus.ckpt.to_ctbcast is not None:
            self.consensus.flush_checkpoint()
            bc.drain_self()
        regs = self.regs
        out = regs.take_outgoing() if regs.has_outgoing() else None
        if out:
            epoch = ctx.epoch
            ctx.outbox.extend(SendMemnode(node, encode(msg, epoch)) for node, msg in out)
            if not self._mem_retry_armed:
                self._mem_retry_armed = True
                ctx.set_timer(TimerKey(TimerKind.MEM_RETRY), ctx.params.memnode_retry_ns)
        if not self._sync_armed and self._pending():
            self._sync_armed = True
            ctx.set_timer(TimerKey(TimerKind.SYNC), ctx.params.sync_interval_ns)

    # ------------------------------------------------------------------ inspection

    @property
    def me(self) -> int:
        return self.ctx.me

    def check_invariants(self) -> None:
        """Assert what must hold between any two events (the simulator calls it); a failure
        is a bug in this code, never a peer's doing."""
        ctx = self.ctx
        t, w = ctx.params.tail, ctx.params.window
        bc = self.ctb.broadcaster
        assert bc.next_k <= bc.cert_c + t, "broadcast beyond the tail"
        assert len(bc.tail) <= t, "broadcaster tail holds more than t messages"
        for rx in self.ctb.receivers.values():
            assert rx.k_d <= rx.cert_c + t, "delivered beyond the tail"
            assert all(rx.k_d <= k < rx.cert_c + t for k in rx.slots), "slot outside the tail"
        cons = self.consensus
        ckpt = cons.ckpt
        assert ckpt.last_ctb_ckpt <= ckpt.stable_c <= cons.exec_next + w
        assert all(i < ckpt.last_ctb_ckpt + 2 * w for i in cons.inst), "instance beyond the bound"
        ex = self.executor
        assert all(i >= ex.exec_next for i in ex.decided), "decided below exec_next kept"
        if cons.is_leader():
            assert cons.proposer.next_propose <= ckpt.last_ctb_ckpt + w, (
                "proposed beyond the window"
            )
        assert all(inst.view == cons.view for inst in cons.inst.values()), "votes of another view"
        for entry in self.log.clients.values():
            assert all(entry.h < x <= entry.h + self.log.window for x in entry.pending)

    def footprint(self) -> dict[str, int]:
        """Sizes of every structure the network can fill (for bounded-memory checks)."""
        out = self.consensus.footprint()
        out["ctbcast"] = self.ctb.footprint()
        out["register_client"] = self.regs.footprint()
        out["request_log"] = self.log.footprint()
        out["client_keys"] = self.log.key_footprint()
        out["timers"] = self.ctb.timer_footprint() + len(self.consensus.fast_timers)
        out["evidence"] = self.ctx.evidence.footprint()
        return out
