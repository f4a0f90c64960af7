"""Checks the persistence barrier (PROTOCOL.md section 1, durable mode): every send and
register write that depends on durable state comes after the ``Persist`` action recording it,
in the order the replica emitted its actions.

What depends on what:
- ``Ctb(me, k, m)`` on ``CTB_SENT(k, m)``;
- ``CtbEcho(b, k)`` and a register write of (b, k) on ``CTB_ACCEPTED(b, k)``;
- ``Promise(v, i)`` and ``PrepShare(v, i)`` on ``ACCEPTED(v, i)``, with the same digest;
- ``FastCommit(v, i)`` on ``FAST_COMMITTED(v, i)``.
Facts persisted once stay persisted: a resend needs no new barrier.
"""

from __future__ import annotations

from collections.abc import Iterable

from ubft.memnode.layout import unpack_ctb_value
from ubft.memnode.wire import MemWrite, decode_request
from ubft.replica.core.actions import Action, Persist, PersistKind, Send, SendMemnode
from ubft.replica.core.codec import decode
from ubft.replica.core.crypto import digest
from ubft.replica.core.errors import DecodeError
from ubft.replica.core.messages import Ctb, CtbEcho, FastCommit, PrepShare, Promise

Fact = tuple[int, int, int, bytes]  # (kind, a, b, digest of the data)


class PersistenceBarrier:
    def __init__(self) -> None:
        self.facts: dict[int, set[Fact]] = {}
        self.keys: dict[int, set[tuple[int, int, int]]] = {}  # the facts without their digest
        self.violations: list[str] = []
        self.checked = 0

    def observe(self, replica: int, actions: Iterable[Action]) -> None:
        facts = self.facts.setdefault(replica, set())
        keys = self.keys.setdefault(replica, set())
        for a in actions:
            if isinstance(a, Persist):
                kind = int(a.kind)
                raw = a.kind is PersistKind.CTB_SENT or a.kind is PersistKind.FAST_COMMITTED
                facts.add((kind, a.a, a.b, digest(a.data) if raw else a.data))
                keys.add((kind, a.a, a.b))
            elif isinstance(a, Send):
                self._check_send(replica, a.frame)
            elif isinstance(a, SendMemnode):
                self._check_write(replica, a.frame)

    def _need(
        self, replica: int, kind: PersistKind, a: int, b: int, d: bytes | None, what: str
    ) -> None:
        self.checked += 1
        if d is None:
            ok = (int(kind), a, b) in self.keys[replica]
        else:
            ok = (int(kind), a, b, d) in self.facts[replica]
        if not ok:
            self.violations.append(f"persistence barrier: replica {replica} sent {what} first")

    def _check_send(self, replica: int, frame: bytes) -> None:
        try:
            _, msg = decode(frame)
        except DecodeError:
            return  # a Byzantine wrapper's garbage: not this replica's doing
        if isinstance(msg, Ctb):
            if msg.b == replica:
                self._need(replica, PersistKind.CTB_SENT, msg.k, 0, digest(msg.m), f"Ctb {msg.k}")
        elif isinstance(msg, CtbEcho):
            self._need(
                replica, PersistKind.CTB_ACCEPTED, msg.b, msg.k, None, f"CtbEcho {msg.b}/{msg.k}"
            )
        elif isinstance(msg, Promise):
            self._need(
                replica,
                PersistKind.ACCEPTED,
                msg.view,
                msg.instance,
                None,
                f"Promise {msg.instance}",
            )
        elif isinstance(msg, FastCommit):
            what = f"FastCommit {msg.instance}"
            self._need(replica, PersistKind.FAST_COMMITTED, msg.view, msg.instance, None, what)
        elif isinstance(msg, PrepShare):
            what = f"PrepShare {msg.instance}"
            self._need(replica, PersistKind.ACCEPTED, msg.view, msg.instance, msg.digest, what)

    def _check_write(self, replica: int, frame: bytes) -> None:
        try:
            _, msg = decode_request(frame)
        except DecodeError:
            return
        if isinstance(msg, MemWrite):
            k, d, _sig = unpack_ctb_value(msg.data[16:])  # sub-slot: checksum, incarnation, value
            self._need(
                replica, PersistKind.CTB_ACCEPTED, msg.b, k, d, f"register write {msg.b}/{k}"
            )
