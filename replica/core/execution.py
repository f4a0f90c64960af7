"""Execution (PROTOCOL.md section 4, "Execution and replies", "Exactly-once execution",
"Admission"): decided batches run in instance order on the application; the application clock
is the only time source; admin commands change the client table; every entry gets its verdict
from the client table as it is when the entry executes.

This part lives across epochs (the application, the client table and the position), unlike
the view, the instances and the CTBcast streams, which belong to one epoch.
"""

from __future__ import annotations

from collections.abc import Callable

from .actions import Executed
from .admission import ADMIN_CLIENT_ID, RESULT_OK, AdminOp, command_statement, decode_admin_command
from .app import Application
from .context import Context
from .crypto import verify_with_key
from .messages import Batch
from .request_log import OUT_OF_WINDOW, RequestLog

Reply = Callable[[int, int, bytes], None]  # (client_id, request_id, result)


def _no_reply(_client_id: int, _request_id: int, _result: bytes) -> None:
    return None


def _noop() -> None:
    return None


def _noop_instance(_i: int, _batch: Batch) -> None:
    return None


def _noop_checkpoint(_c: int) -> None:
    return None


class Executor:
    __slots__ = (
        "admin_key",
        "after_instance",
        "after_run",
        "app",
        "app_clock",
        "at_checkpoint",
        "ctx",
        "decided",
        "exec_next",
        "interval",
        "log",
        "reply",
    )

    def __init__(
        self, app: Application, log: RequestLog, interval: int, admin_key: bytes, first: int
    ) -> None:
        self.app = app
        self.log = log
        self.interval = interval  # checkpoints at multiples of window/2, in every epoch
        self.admin_key = admin_key
        self.exec_next = first
        self.app_clock = 0
        self.decided: dict[int, Batch] = {}  # decided, not yet executed
        # the current epoch's context (its outbox, epoch number, keys) and hooks of its
        # consensus, set by ``bind`` when the epoch is built
        self.ctx: Context
        self.reply: Reply = _no_reply
        self.after_instance: Callable[[int, Batch], None] = _noop_instance  # i has executed
        self.at_checkpoint: Callable[[int], None] = _noop_checkpoint  # executed up to c - 1
        self.after_run: Callable[[], None] = _noop  # a run of executions ended

    def bind(self, ctx: Context) -> None:
        """Run in the epoch of ``ctx`` from now on (execution itself outlives epochs)."""
        self.ctx = ctx

    def decide(self, i: int, batch: Batch) -> None:
        if i >= self.exec_next:
            self.decided[i] = batch
            self.run()

    def run(self) -> None:
        decided = self.decided
        if self.exec_next not in decided:
            return
        while self.exec_next in decided:
            i = self.exec_next
            batch = decided.pop(i)
            self._execute(i, batch)
            self.exec_next = i + 1
            self.after_instance(i, batch)
            if self.exec_next % self.interval == 0:
                self.at_checkpoint(self.exec_next)
        self.after_run()

    def _execute(self, i: int, batch: Batch) -> None:
        log = self.log
        outbox = self.ctx.outbox
        reply = self.reply
        if batch.ts > self.app_clock:
            self.app_clock = batch.ts
        changed: set[int] = set()
        for e in batch.entries:
            cid = e.client_id
            if cid in changed:
                # An admin command earlier in this batch changed this client's registration:
                # the entry was judged against the table before it, so it is not executed.
                continue
            verdict, cached = log.execute(cid, e.request_id)
            if verdict == "execute":
                if cid == ADMIN_CLIENT_ID:
                    out = self._admin(e.payload)
                    if out == RESULT_OK:
                        cmd = decode_admin_command(e.payload)
                        assert cmd is not None
                        changed.add(cmd.client_id)
                else:
                    out = self.app.apply(e.payload, self.app_clock)
                result = log.record(cid, e.request_id, out)
                outbox.append(Executed(i, cid, e.request_id, e.payload, result))
                reply(cid, e.request_id, result)
            elif verdict == "skip" and cached is not None:
                reply(cid, e.request_id, cached)
            elif verdict == "out_of_window":
                reply(cid, e.request_id, OUT_OF_WINDOW)

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
