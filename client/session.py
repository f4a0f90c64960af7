"""The client-side state machine (sans-IO): send each request to every replica, accept a
result once f+1 distinct replicas of one epoch returned it identically, retransmit signed
after ``client_timeout``. A mismatching or repeated reply is never fatal: the client keeps
waiting while a correct quorum may still answer (PROTOCOL.md section 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from ubft.replica.core.actions import Send, SetTimer, TimerKey, TimerKind
from ubft.replica.core.codec import decode, encode
from ubft.replica.core.config import ClusterConfig
from ubft.replica.core.crypto import Signer, Tag, digest
from ubft.replica.core.errors import DecodeError, UsageError
from ubft.replica.core.messages import Reply, Request
from ubft.replica.core.request_log import OUT_OF_WINDOW


class Completed(NamedTuple):
    request_id: int
    result: bytes


@dataclass(slots=True)
class _Outstanding:
    payload: bytes
    replies: dict[int, bytes] = field(default_factory=dict)  # replica -> result
    sig: bytes = b""


class ClientSession:
    def __init__(self, config: ClusterConfig, client_id: int, signer: Signer) -> None:
        self.config = config
        self.client_id = client_id
        self.signer = signer
        self.epoch = config.epoch
        self.replicas = config.member_ids
        self.need = config.f + 1
        self.window = config.params.client_window
        self.timeout_ns = config.params.client_timeout_ns
        self.next_id = 1
        self.outstanding: dict[int, _Outstanding] = {}
        self.now_ns = 0
        self.rejected_replies = 0
        self._out: list[Send | SetTimer | Completed] = []

    def can_submit(self) -> bool:
        oldest = min(self.outstanding, default=self.next_id)
        return self.next_id < oldest + self.window

    def submit(self, payload: bytes, now_ns: int) -> int:
        """Send a new request to all replicas, unsigned. Returns its request id."""
        if not self.can_submit():
            raise UsageError("client window full: wait for a reply before submitting more")
        self.now_ns = now_ns
        x = self.next_id
        self.next_id += 1
        self.outstanding[x] = _Outstanding(payload)
        self._send(Request(self.client_id, x, payload))
        self._out.append(SetTimer(TimerKey(TimerKind.CLIENT_RETRY, x), now_ns + self.timeout_ns))
        return x

    def _send(self, req: Request) -> None:
        self._out.append(Send(self.replicas, encode(req, self.epoch)))

    def receive(self, replica: int, frame: bytes, now_ns: int) -> None:
        self.now_ns = now_ns
        try:
            _, msg = decode(frame)
        except DecodeError:
            self.rejected_replies += 1
            return
        if (
            not isinstance(msg, Reply)
            or msg.client_id != self.client_id
            or replica not in self.replicas
        ):
            self.rejected_replies += 1
            return
        if msg.epoch != self.epoch:
            return  # reconfiguration: adopting a newer epoch is a later issue
        out = self.outstanding.get(msg.request_id)
        if out is None or replica in out.replies or msg.result == OUT_OF_WINDOW:
            return  # "out of window" is not a result: the retry timer resends later
        out.replies[replica] = msg.result
        matching = sum(1 for r in out.replies.values() if r == msg.result)
        if matching >= self.need:
            del self.outstanding[msg.request_id]
            self._out.append(Completed(msg.request_id, msg.result))

    def timer_fired(self, key: TimerKey, now_ns: int) -> None:
        self.now_ns = now_ns
        x = key.a
        out = self.outstanding.get(x)
        if out is None:
            return
        if not out.sig:
            out.sig = self.signer.sign(
                Tag.REQ, self.config.cluster_id_bytes, None, self.client_id, x, digest(out.payload)
            )
        self._send(Request(self.client_id, x, out.payload, out.sig))
        self._out.append(SetTimer(key, now_ns + self.timeout_ns))

    def take_actions(self) -> list[Send | SetTimer | Completed]:
        out, self._out = self._out, []
        return out
