"""One replica: decodes input, routes it to CTBcast and consensus, collects their actions.

It holds no protocol rule of its own (STYLE.md: the replica routes, each concept keeps its
file). Entry points never raise on anything a peer, client or memory node sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ubft.memnode.register import RegisterClient

from .actions import Action, SendMemnode, TimerKey, TimerKind
from .admission import ADMIN_CLIENT_ID
from .app import Application
from .codec import decode, encode
from .config import ClusterConfig
from .consensus import Consensus
from .context import Context
from .crypto import Signer, Tag, Verifier, digest, statement, verify_with_key
from .ctbcast import CtbCast
from .errors import DecodeError, UsageError
from .execution import Executor
from .messages import (
    CkptShare,
    Ctb,
    CtbCkptCert,
    CtbCkptShare,
    CtbEcho,
    CtbSig,
    CtbSigRequest,
    Equivocation,
    FastCommit,
    MemReadReply,
    MemWriteReply,
    PrepShare,
    Promise,
    Request,
    RequestEcho,
    RequestEchoes,
    RequestForward,
    Sync,
)
from .request_log import RequestLog


def _no_reply(_client_id: int, _request_id: int, _result: bytes) -> None:
    raise UsageError("the executor replies through the epoch's consensus")


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
        self.ctx = ctx = Context(config, me, signer, verifier)
        self.regs = RegisterClient(me, config.memnode_ids)
        self.ctb = CtbCast(ctx, self.regs)
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
        self.executor = Executor(ctx, app, self.log, _no_reply, first=0)
        self.consensus = Consensus(ctx, self.ctb, self.executor, self.log)
        self.ctb.bind(self.consensus)
        self._sync_armed = False
        self._mem_retry_armed = False
        self.rejected_frames = 0
        self._peers = frozenset(ctx.others)
        ctb, cons = self.ctb, self.consensus
        self._handlers: dict[type, Callable[[int, Any], None]] = {
            Ctb: ctb.on_ctb,
            CtbEcho: ctb.on_echo,
            CtbSig: ctb.on_sig,
            CtbSigRequest: ctb.on_sig_request,
            CtbCkptShare: ctb.on_share,
            CtbCkptCert: ctb.on_cert,
            Equivocation: ctb.on_equivocation,
            Promise: cons.on_promise,
            FastCommit: cons.on_fast_commit,
            PrepShare: cons.on_prep_share,
            CkptShare: cons.on_ckpt_share,
            RequestEcho: cons.intake.on_request_echo,
            RequestEchoes: cons.intake.on_request_echoes,
            RequestForward: cons.on_request_forward,
            Sync: cons.on_sync,
        }

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
        self.consensus.propose()
        self.consensus.intake.flush_echoes()
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
        ctx = self.ctx
        bc = self.ctb.broadcaster
        bc.drain_self()  # drains what delivering its own messages broadcasts, too
        if self.consensus.ckpt.to_ctbcast is not None:
            self.consensus.flush_checkpoint()
            bc.drain_self()
        out = self.regs.take_outgoing() if self.regs.has_outgoing() else None
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
            assert cons.proposer.next_propose <= ckpt.last_ctb_ckpt + w, "proposed beyond the window"
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
