"""A Hypothesis state machine drives ONE real ``Replica`` with arbitrary interleavings of what
its peers, clients, the admin and the memory nodes can send, and of timer fires and time.

The two peers hold real keys, so about as many frames are validly signed as not, and "macro"
rules play whole protocol exchanges (a Prepare with its echoes, promises and FastCommits; the
checkpoint and CTBcast-checkpoint shares) so examples reach accepted Prepares, decisions,
stable checkpoints and CTBcast checkpoint certificates within a few dozen steps. Every integer a
peer chooses is drawn over its full wire range, biased towards edge values and towards the
values the replica is at (its next CTBcast index, next instance, window bounds).

After every step: the replica raised nothing (a ``UsageError`` would be a driver bug, which this
test must not commit: the one deliberate misuse is checked to raise exactly that),
``check_invariants()`` holds, and every ``footprint()`` entry is within the bounds the core
declares (``footprint_bounds``, which the simulator checks), computed for ``max_clients`` clients
plus the admin; an entry without a declared bound must stay 0.

Fault model: by default (``collude=False`` for the example) a certificate (f+1 signatures)
carries two peers' valid signatures only on a statement this replica itself signed or
delivered, so at most one peer behaves arbitrarily where it counts (f = 1). With
``collude=True`` both peers sign anything: beyond the model, so failures found only that way
are reported apart.

Environment:
- ``UBFT_STATEFUL_EXAMPLES=N``: run N examples (default 200, derandomized for CI); with it,
  examples are random unless ``UBFT_STATEFUL_DERANDOMIZE=1`` (use ``--hypothesis-seed=S`` to
  pick a reproducible run).
- ``UBFT_STATEFUL_STEPS=N``: steps per example (default 40).
- ``UBFT_STATEFUL_FINDINGS=path``: exploration: record every failure (signature, traceback
  tail, the entry-point calls of the example) as one JSON line in ``path`` and discard the
  example instead of failing, so one long run collects every distinct failure.
- ``UBFT_STATEFUL_IGNORE=sig,sig``: more failure signatures to discard (to shrink another one).
- ``UBFT_STATEFUL_STRICT=1``: fail on the known findings too (``KNOWN_FINDINGS``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, reject, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from ubft.apps.kv import KVStore, cmd_get, cmd_incr, cmd_set
from ubft.memnode.layout import REGISTER_BYTES, SUBSLOT_BYTES, encode_subslot, pack_ctb_value
from ubft.memnode.store import MemoryNodeStore
from ubft.memnode.wire import MemMarkKnown, MemRead, MemReadReply, MemWrite, MemWriteReply
from ubft.replica.core.actions import (
    Action,
    Decided,
    Delivered,
    Executed,
    ReportEvidence,
    Send,
    SendMemnode,
    SetTimer,
    TimerKey,
    TimerKind,
)
from ubft.replica.core.admission import (
    ADMIN_CLIENT_ID,
    AdminCommand,
    AdminOp,
    encode_admin_command,
)
from ubft.replica.core.bounds import footprint_bounds
from ubft.replica.core.codec import (
    decode,
    decode_payload,
    encode,
    encode_batch,
    encode_payload,
)
from ubft.replica.core.config import ClusterConfig, ProtocolParams, SlowPathMode
from ubft.replica.core.crypto import SignatureCounter, Signer, Tag, digest, statement
from ubft.replica.core.errors import DecodeError, UsageError
from ubft.replica.core.messages import (
    Batch,
    Certificate,
    Checkpoint,
    CkptShare,
    Commit,
    Ctb,
    CtbCkptCert,
    CtbCkptShare,
    CtbEcho,
    CtbSig,
    CtbSigRequest,
    Entry,
    Equivocation,
    FastCommit,
    Message,
    MsgKind,
    Prepare,
    PrepShare,
    Promise,
    Request,
    RequestEcho,
    RequestEchoes,
    RequestForward,
    SealView,
    Sync,
)
from ubft.replica.core.replica import Replica
from ubft.replica.core.stream import Stream, encode_summary
from ubft.replica.sim.cluster import make_cluster, make_signer

# ----------------------------------------------------------------------------- the cluster

N, MEMNODES = 3, 3
PARAMS = ProtocolParams(
    tail=8,
    window=8,
    batch_max=4,
    client_window=4,
    inflight_max=2,
    echo_digest_threshold_bytes=64,
    max_clients=4,
    max_request_bytes=256,
    evidence_per_peer_max=4,
)
W, T, CW = PARAMS.window, PARAMS.tail, PARAMS.client_window
INTERVAL, CTB_INTERVAL = PARAMS.checkpoint_interval, PARAMS.ctb_checkpoint_interval
BOUNDS = footprint_bounds(PARAMS, N, PARAMS.max_clients + 1, MEMNODES)

_COUNTER = SignatureCounter()
_RNG = random.Random(20260101)
CLUSTERS: dict[SlowPathMode, tuple[ClusterConfig, list[Signer], Signer]] = {
    mode: make_cluster(
        "stateful", N, MEMNODES, PARAMS.model_copy(update={"slow_path_mode": mode}), _RNG, _COUNTER
    )
    for mode in SlowPathMode
}
GENESIS = (100, 101)
CLIENT_IDS = (100, 101, 102, 103, 104, 1, (1 << 32) - 1)
CLIENT_SIGNERS = {cid: [make_signer(_RNG, _COUNTER) for _ in range(2)] for cid in CLIENT_IDS}
BAD_KEYS = (bytes(32), b"\xff" * 32, bytes([1]) + bytes(31))  # not usable Ed25519 keys

# ----------------------------------------------------------------------------- integers


def _edges(bits: int) -> list[int]:
    top = (1 << bits) - 1
    near = {0, 1, 2, W - 1, W, W + 1, 2 * W, T - 1, T, T + 1, CW, CW + 1}
    wide = {(1 << 15) - 1, 1 << 15, (1 << 16) - 1, 1 << 16, (1 << 31) - 1, 1 << 31}
    wide |= {(1 << 32) - 1, 1 << 32, (1 << 63) - 1, 1 << 63, top - 1, top}
    return sorted(x for x in near | wide if 0 <= x <= top)


def wire_int(bits: int) -> st.SearchStrategy[int]:
    """Any value of a ``bits``-wide unsigned wire field, edge values about half the time."""
    return st.one_of(st.sampled_from(_edges(bits)), st.integers(0, (1 << bits) - 1))


U8, U16, U32, U64 = wire_int(8), wire_int(16), wire_int(32), wire_int(64)

# A peer-chosen integer: ``(True, j)`` picks the j-th value the replica is near (its next index,
# window bounds, ...), ``(False, x)`` is x itself.
PICK = st.tuples(st.booleans(), U64)

SIG = st.sampled_from(["valid", "bad", "empty"])  # how a frame is signed
# ("unsorted" and duplicate signers do not encode; the decoder's tests cover those bytes)
CERT = st.sampled_from(["quorum", "all", "one", "none", "swapped", "stranger", "bad"])
PAYLOAD_SIZE = st.sampled_from([0, 1, 32, 63, 64, 65, 255, 256, 257, 4096, 70_000])
PEER = st.sampled_from([0, 1])  # index into the replica's peers
MEMBER_OR_NOT = st.one_of(st.sampled_from([0, 1, 2]), U16)

# ----------------------------------------------------------------------------- findings

# Open failures: signature (``signature_of``) -> what it is. The CI run discards the examples
# that hit them, so it stays green and deterministic while they are fixed; each has a
# regression test below, marked xfail(strict=True) until its fix lands. Empty: none is open.
KNOWN_FINDINGS: dict[str, str] = {}

_FINDINGS = os.environ.get("UBFT_STATEFUL_FINDINGS")
_IGNORED = {s for s in os.environ.get("UBFT_STATEFUL_IGNORE", "").split(",") if s}
if os.environ.get("UBFT_STATEFUL_STRICT") != "1":
    _IGNORED |= set(KNOWN_FINDINGS)
_ROOT = Path(__file__).resolve().parents[1]


class Finding(Exception):
    """A failure that is not an exception of the replica: an invariant or a bound."""

    def __init__(self, signature: str, detail: str) -> None:
        super().__init__(f"{signature}: {detail}")
        self.signature = signature


def signature_of(exc: BaseException) -> str:
    """``Type@file:function`` of the innermost frame in this repository outside tests/ (an
    AssertionError also names its message: one function holds many assertions)."""
    if isinstance(exc, Finding):
        return exc.signature
    where = "?"
    for fr in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(fr.filename).resolve()
        if _ROOT in path.parents and "tests" not in path.parts and ".venv" not in path.parts:
            where = f"{path.relative_to(_ROOT)}:{fr.name}"
            break
    sig = f"{type(exc).__name__}@{where}"
    if isinstance(exc, AssertionError):
        sig += f":{str(exc).splitlines()[0] if str(exc) else ''}"
    return sig


# ----------------------------------------------------------------------------- the machine


def _b(x: int) -> bytes:
    return x.to_bytes(8, "big")


class ReplicaMachine(RuleBasedStateMachine):
    # ------------------------------------------------------------------ setup

    def __init__(self) -> None:
        super().__init__()
        self.rep: Replica | None = None
        self.now = 0
        self.calls: list[str] = []  # the entry-point calls of this example (for findings)
        self.timers: list[tuple[int, TimerKey]] = []
        self.mem_out: deque[tuple[int, bytes]] = deque(maxlen=256)  # (node, frame) to answer
        self.mem_replies: deque[tuple[int, bytes]] = deque(maxlen=32)  # answered, for replays
        self.frames: deque[tuple[int, bytes]] = deque(maxlen=64)  # (sender, frame) seen
        self.client_frames: deque[tuple[int, bytes]] = deque(maxlen=32)
        self.requests: deque[Request] = deque(maxlen=32)  # requests sent to the replica
        self.prepares: deque[tuple[Prepare, bytes]] = deque(maxlen=32)  # (Prepare, digest)
        self.trusted: set[bytes] = set()  # statements the replica signed or would sign
        self.my_sigs: dict[bytes, bytes] = {}  # statement -> the replica's own signature
        self.ckpts: deque[tuple[int, bytes]] = deque(maxlen=16)  # (c, digest) it computed
        self.summaries: deque[tuple[int, int, bytes]] = deque(maxlen=16)  # (b, c, summary)
        self.values: deque[bytes] = deque(maxlen=16)  # CTBcast values seen (for echoes)
        self.peer_k: dict[int, int] = {}
        self.sent_m: dict[tuple[int, int], bytes] = {}  # what each peer CTBcast at k
        self.admin_s = 0
        self.stats: dict[str, int] = {}
        self.collude = False

    @initialize(
        me=st.sampled_from([0, 1, 2]),
        mode=st.sampled_from(list(SlowPathMode)),
        collude=st.booleans(),
        start=st.sampled_from([0, 1, 10**9, 10**15]),
    )
    def setup(self, me: int, mode: SlowPathMode, collude: bool, start: int) -> None:
        config, signers, admin = CLUSTERS[mode]
        self.config = config
        self.signers = signers
        self.admin = admin
        self.me = me
        self.peers = tuple(r for r in config.member_ids if r != me)
        self.collude = collude
        self.cluster = config.cluster_id_bytes
        self.epoch = config.epoch
        self.now = start
        self.stores = {j: self._store(j, 1, True) for j in config.memnode_ids}
        clients = {cid: CLIENT_SIGNERS[cid][0].public_key for cid in GENESIS}
        self.rep = Replica(
            config,
            me,
            signers[me],
            KVStore(max_result_bytes=PARAMS.max_reply_bytes - 16),
            clients,
        )
        self.peer_k = dict.fromkeys(self.peers, 0)
        self.calls.append(f"Replica(me={me}, mode={mode.value}, collude={collude}, now={start})")

    # ------------------------------------------------------------------ calling the replica

    def _guard(self, what: str, fn: Callable[[], object]) -> None:
        """Call one entry point, then ``take_actions`` (as every driver does); exceptions are
        failures (or findings when exploring)."""
        self.calls.append(what)
        try:
            fn()
            actions = self.replica.take_actions()
        except UsageError:
            raise
        except Exception as exc:
            self._failed(exc)
            return
        self._collect(actions)

    def _failed(self, exc: BaseException) -> None:
        sig = signature_of(exc)
        if _FINDINGS is not None or sig in _IGNORED:
            if _FINDINGS is not None:
                record = {
                    "signature": sig,
                    "known": KNOWN_FINDINGS.get(sig),
                    "collude": self.collude,
                    "exception": type(exc).__name__,
                    "message": str(exc)[:500],
                    "traceback": traceback.format_exception(exc)[-12:],
                    "calls": self.calls[-60:],
                }
                with open(_FINDINGS, "a", encoding="utf-8") as out:
                    out.write(json.dumps(record) + "\n")
            reject()
        raise exc

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    @property
    def replica(self) -> Replica:
        assert self.rep is not None
        return self.rep

    def _collect(self, actions: list[Action]) -> None:
        """Route the replica's actions as a driver does, and learn from them."""
        for a in actions:
            if isinstance(a, Send):
                self._learn_frame(a.frame)
            elif isinstance(a, SendMemnode):
                self.mem_out.append((a.node, a.frame))
            elif isinstance(a, SetTimer):
                self.timers.append((a.at_ns, a.key))
            elif isinstance(a, Delivered):
                self._count("delivered")
                self._learn_value(a.m, delivered=True)
            elif isinstance(a, Decided):
                self._count("decided_fast" if a.fast else "decided_slow")
            elif isinstance(a, Executed):
                self._count("executed")
                if a.client_id == ADMIN_CLIENT_ID:
                    self._count("admin_ok" if a.result == b"OK" else "admin_err")
            elif isinstance(a, ReportEvidence):
                self._count("evidence")
        if len(self.timers) > 512:
            # keep the earliest ones of each key: a dropped SYNC or MEM_RETRY would stall it
            seen: dict[TimerKey, int] = {}
            for at, key in self.timers:
                seen[key] = min(at, seen.get(key, at))
            self.timers = [(at, key) for key, at in seen.items()]
        self.timers.sort()

    def _learn_frame(self, frame: bytes) -> None:
        self.frames.append((self.me, frame))
        try:
            _, msg = decode(frame)
        except DecodeError:
            return
        if isinstance(msg, Ctb):
            self._learn_value(msg.m, delivered=False)
        elif isinstance(msg, PrepShare):
            stmt = self._stmt(Tag.PREP, msg.view, msg.instance, msg.digest)
            self.trusted.add(stmt)
            self.my_sigs[stmt] = msg.sig
        elif isinstance(msg, CkptShare):
            stmt = self._stmt(Tag.CKPT, msg.c, msg.digest)
            self.trusted.add(stmt)
            self.my_sigs[stmt] = msg.sig
            if (msg.c, msg.digest) not in self.ckpts:
                self.ckpts.append((msg.c, msg.digest))
                self._count("checkpoint_share")
        elif isinstance(msg, CtbCkptShare):
            stmt = self._stmt(Tag.CTB_CKPT, msg.b, msg.c, msg.digest)
            self.trusted.add(stmt)
            self.my_sigs[stmt] = msg.sig
            summary = self._summary(msg.b, msg.c)
            if digest(summary) == msg.digest:
                self.summaries.append((msg.b, msg.c, summary))
        elif isinstance(msg, CtbCkptCert) and msg.b == self.me:
            self._count("own_ctb_cert")

    def _learn_value(self, m: bytes, delivered: bool) -> None:
        if m not in self.values:
            self.values.append(m)
        try:
            p = decode_payload(m)
        except DecodeError:
            return
        if isinstance(p, Prepare):
            d = digest(encode_batch(p.batch))
            if (p, d) not in self.prepares:
                self.prepares.append((p, d))
            self.trusted.add(self._stmt(Tag.PREP, p.view, p.instance, d))
        elif isinstance(p, Checkpoint) and delivered:
            self._count("checkpoint_delivered")

    # ------------------------------------------------------------------ building frames

    def _stmt(self, tag: Tag, *fields: int | bytes) -> bytes:
        return statement(tag, self.cluster, self.epoch, *fields)

    def _sign(self, signer_id: int, tag: Tag, *fields: int | bytes) -> bytes:
        """``signer_id``'s signature; the replica's own only as it made it (else garbage)."""
        if signer_id == self.me:
            return self.my_sigs.get(self._stmt(tag, *fields), b"\x01" * 64)
        if signer_id not in self.peers:
            return b"\x02" * 64
        return self.signers[signer_id].sign(tag, self.cluster, self.epoch, *fields)

    def _signed(self, how: str, signer_id: int, tag: Tag, *fields: int | bytes) -> bytes:
        if how == "valid":
            return self._sign(signer_id, tag, *fields)
        if how == "bad":
            return self._sign(signer_id, tag, *fields, 1)  # valid, but on another statement
        return b""

    def _cert(self, how: str, tag: Tag, *fields: int | bytes) -> Certificate:
        """A certificate on (tag, fields). Two peers sign the same statement only when the
        replica trusts it or the example colludes (f = 1)."""
        stmt = self._stmt(tag, *fields)
        both = self.collude or stmt in self.trusted
        p0, p1 = self.peers
        if how == "quorum":
            signers = [self.me, p0] if stmt in self.my_sigs else [p0, p1]
        elif how == "all":
            signers = sorted([self.me, p0, p1])
        elif how == "one":
            signers = [p0]
        elif how == "none":
            signers = []
        elif how == "swapped":
            signers = [p0, p1] if p0 < p1 else [p1, p0]
        elif how == "stranger":
            signers = sorted([p0, 7])
        else:
            return Certificate(tuple(sorted(self.peers)), (b"\x03" * 64, b"\x04" * 64))
        sigs = []
        peers_signed = 0
        for s in signers:
            if s in self.peers:
                peers_signed += 1
                if peers_signed == 2 and not both:
                    sigs.append(b"\x05" * 64)  # the second peer is correct: it does not sign
                    continue
            sigs.append(self._sign(s, tag, *fields))
        order = sorted(signers)
        by = dict(zip(signers, sigs, strict=True))
        if how == "swapped":  # valid signatures, each under the other signer's id
            return Certificate(tuple(order), tuple(by[s] for s in reversed(order)))
        return Certificate(tuple(order), tuple(by[s] for s in order))

    def _near(self, pick: tuple[bool, int], anchors: list[int], bits: int = 64) -> int:
        use, x = pick
        top = (1 << bits) - 1
        if use and anchors:
            return min(max(anchors[x % len(anchors)], 0), top)
        return x & top

    # What the replica is at. Read by name, with fallbacks: these only bias the values
    # drawn towards interesting ones, so a renamed field must not break the test.

    def _probe(self, *paths: str, default: Any = 0) -> Any:
        for path in paths:
            obj: Any = self.rep
            try:
                for name in path.split("."):
                    obj = getattr(obj, name)
            except AttributeError:
                continue
            return obj
        return default

    def _view(self) -> int:
        return int(self._probe("consensus.view", "consensus.views.view"))

    def _leader(self) -> int:
        return self.config.leader(self._view())

    def _next_prepare(self) -> int:
        return int(self._probe("consensus.next_prepare", "consensus.checks.next_prepare"))

    def _exec_next(self) -> int:
        return int(self._probe("consensus.exec_next", "consensus.executor.exec_next"))

    def _stable_c(self) -> int:
        return int(self._probe("consensus.ckpt.stable_c", "consensus.stable_c"))

    def _last_fresh_ts(self) -> int:
        return int(self._probe("consensus.last_fresh_ts", "consensus.checks.last_fresh_ts"))

    def _instances(self) -> dict[int, Any]:
        inst = self._probe("consensus.inst", default={})
        return inst if isinstance(inst, dict) else {}

    def _own_digests(self) -> dict[int, tuple[bytes, bytes]]:
        own = self._probe("ctb.broadcaster.own_digests", default={})
        return own if isinstance(own, dict) else {}

    def _rx(self, b: int) -> Any:
        receivers = self._probe("ctb.receivers", default={})
        return receivers.get(b) if isinstance(receivers, dict) else None

    def _summary(self, b: int, c: int) -> bytes:
        try:
            return bytes(self.replica.consensus.ctb_summary(b, c))
        except Exception:  # a probe only: the replica meets the same failure itself
            return b""

    def _anchors_k(self, b: int) -> list[int]:
        """CTBcast indices of b near the replica's: the next one to deliver (weighted), its
        neighbours, and the ends of the tail."""
        rx = self._rx(b)
        if rx is None:
            k = int(self._probe("ctb.broadcaster.next_k"))
            c = int(self._probe("ctb.broadcaster.cert_c"))
        else:
            k, c = getattr(rx, "k_d", 0), getattr(rx, "cert_c", 0)
        return [k, k, k, k + 1, k - 1, c + T - 1, c + T, c, self.peer_k.get(b, 0)]

    def _anchors_i(self) -> list[int]:
        nxt = self._next_prepare()
        last = int(self._probe("consensus.ckpt.last_ctb_ckpt"))
        base = [
            nxt,
            nxt - 1,
            int(self._probe("consensus.next_propose", "consensus.proposer.next_propose")) - 1,
            self._exec_next(),
            self._stable_c(),
            last + W - 1,
            last + W,
            last + 2 * W - 1,
            last + 2 * W,
        ]
        return base + sorted(self._instances())

    def _anchors_c(self) -> list[int]:
        x = self._exec_next()
        base = x - x % INTERVAL
        return [base, base + INTERVAL, base - INTERVAL, self._stable_c() + INTERVAL, 1]

    def _anchors_ctb_c(self, b: int) -> list[int]:
        k = self._anchors_k(b)[0]
        base = k - k % CTB_INTERVAL
        return [base, base + CTB_INTERVAL, base - CTB_INTERVAL, base + 1]

    def _anchors_req(self, cid: int) -> list[int]:
        entry = self.replica.log.clients.get(cid)
        h = entry.h if entry is not None else 0
        pending = sorted(entry.pending) if entry is not None else []
        return [h + 1, h + 2, h + CW, h + CW + 1, h, *pending]

    def _batch(
        self, ts: tuple[bool, int], entries: list[tuple[int, int, int, tuple[bool, int], str]]
    ) -> Batch:
        out = []
        for src, j, cid_raw, x, how in entries:
            if src == 0 and self.requests:
                r = self.requests[j % len(self.requests)]
                out.append(Entry(r.client_id, r.request_id, r.payload, r.sig))
                continue
            cid = CLIENT_IDS[cid_raw % len(CLIENT_IDS)] if src == 1 else cid_raw
            rid = self._near(x, self._anchors_req(cid))
            payload = cmd_incr(b"k%d" % (j % 3)) if j % 2 else cmd_set(b"s", _b(j))
            sig = b""
            if how != "empty":
                signer = self._client_signer(cid, j)
                stmt_fields = (cid, rid, digest(payload))
                if how == "bad":
                    stmt_fields = (cid, rid + 1 if rid < (1 << 64) - 1 else 0, digest(payload))
                sig = signer.sign(Tag.REQ, self.cluster, None, *stmt_fields)
            out.append(Entry(cid, rid, payload, sig))
        ts_v = self._near(ts, [self.now, self._last_fresh_ts(), self.now + 1, 0])
        return Batch(ts_v, tuple(out))

    def _client_signer(self, cid: int, j: int) -> Signer:
        pool = CLIENT_SIGNERS.get(cid)
        if pool is None:
            return self.admin
        entry = self.replica.log.clients.get(cid)
        for s in pool:
            if entry is not None and s.public_key == entry.key:
                return s
        return pool[j % len(pool)]

    def _payload(self, kind: int, a: tuple[bool, int], b: tuple[bool, int], how: str) -> bytes:
        """An encoded CTBcast value of kind ``kind`` (0 Prepare, 1 Commit, 2 Checkpoint,
        3 SealView) from fields near the replica's state."""
        if kind == 1 and self.prepares:
            p, d = self.prepares[a[1] % len(self.prepares)]
            v = p.view if a[0] else self._near(b, [self._view(), self._view() + 1])
            cert = self._cert(how, Tag.PREP, v, p.instance, d)
            return encode_payload(Commit(v, p.instance, p.batch, cert))
        if kind == 2:
            if self.ckpts and a[0]:
                c, d = self.ckpts[a[1] % len(self.ckpts)]
            else:
                c, d = self._near(b, self._anchors_c()), digest(_b(a[1]))
            return encode_payload(Checkpoint(c, d, self._cert(how, Tag.CKPT, c, d)))
        if kind == 3:
            return encode_payload(SealView(self._near(a, [self._view(), self._view() + 1, 0])))
        v = self._near(b, [self._view(), self._view() + 1, self._view() + N])
        i = self._near(a, self._anchors_i())
        return encode_payload(Prepare(v, i, self._batch((True, 0), [])))

    def _send(self, sender: int, msg: Message, keep: bool = True) -> None:
        frame = encode(msg, self.epoch)
        self._frame(sender, frame, repr(msg)[:300], keep)

    def _frame(self, sender: int, frame: bytes, what: str, keep: bool = True) -> None:
        if keep:
            self.frames.append((sender, frame))
        rep = self.replica
        self._guard(
            f"now={self.now} receive({sender}, {what})",
            lambda: rep.receive(sender, frame, self.now),
        )

    def _ctbcast(self, b: int, k: int, m: bytes, echo: bool, sig: str) -> None:
        """Peer b sends (k, m); the other peer echoes it; b may sign it."""
        self._send(b, Ctb(b, k, m))
        if echo:
            other = next(p for p in self.peers if p != b)
            big = len(m) > PARAMS.echo_digest_threshold_bytes
            self._send(other, CtbEcho(b, k, big, digest(m) if big else m))
        if sig != "empty":
            self._send(b, CtbSig(b, k, self._signed(sig, b, Tag.CTB, b, k, digest(m))))
        if k == self.peer_k.get(b):
            self.peer_k[b] = k + 1
        self.sent_m.setdefault((b, k), m)

    # ================================================================== rules: peers, CTBcast

    @rule(
        peer=PEER,
        k=PICK,
        kind=st.integers(0, 4),
        a=PICK,
        b=PICK,
        cert=CERT,
        echo=st.booleans(),
        sig=SIG,
        garbage=st.binary(max_size=40),
    )
    def peer_ctbcast(
        self,
        peer: int,
        k: tuple[bool, int],
        kind: int,
        a: tuple[bool, int],
        b: tuple[bool, int],
        cert: str,
        echo: bool,
        sig: str,
        garbage: bytes,
    ) -> None:
        """A peer CTBcasts a Prepare, Commit, Checkpoint, SealView or garbage value."""
        sender = self.peers[peer]
        m = garbage if kind == 4 else self._payload(kind, a, b, cert)
        self._ctbcast(sender, self._near(k, self._anchors_k(sender)), m, echo, sig)

    @rule(
        peer=PEER,
        kind=st.integers(0, 4),
        a=PICK,
        b=PICK,
        cert=CERT,
        garbage=st.binary(max_size=40),
    )
    def peer_ctbcasts_next(
        self,
        peer: int,
        kind: int,
        a: tuple[bool, int],
        b: tuple[bool, int],
        cert: str,
        garbage: bytes,
    ) -> None:
        """As peer_ctbcast, at the index the replica delivers next, echoed: delivered."""
        sender = self.peers[peer]
        m = garbage if kind == 4 else self._payload(kind, a, b, cert)
        self._ctbcast(sender, self._next_k(sender), m, True, "empty")

    @rule(
        peer=PEER,
        k=PICK,
        ts=PICK,
        view=PICK,
        i=PICK,
        entries=st.lists(
            st.tuples(
                st.integers(0, 2), st.integers(0, 63), U32, PICK, SIG
            ),  # source, index, client, request id, signature
            max_size=6,
        ),
        echo=st.booleans(),
        sig=SIG,
    )
    def peer_prepare(
        self,
        peer: int,
        k: tuple[bool, int],
        ts: tuple[bool, int],
        view: tuple[bool, int],
        i: tuple[bool, int],
        entries: list[tuple[int, int, int, tuple[bool, int], str]],
        echo: bool,
        sig: str,
    ) -> None:
        """A peer CTBcasts a Prepare with entries taken from requests the replica holds, from
        known clients or from anyone."""
        sender = self.peers[peer]
        v = self._near(view, [self._view(), self._view(), self._view() + 1, self._view() + N])
        nxt = self._next_prepare()
        ii = self._near(i, [nxt, nxt, nxt, nxt + 1, nxt - 1, *self._anchors_i()])
        p = Prepare(v, ii, self._batch(ts, entries))
        m = encode_payload(p)
        kk = self._next_k(sender) if k == (True, 0) else self._near(k, self._anchors_k(sender))
        self._ctbcast(sender, kk, m, echo, sig)

    @rule(
        peer=PEER,
        ts=PICK,
        view=PICK,
        i=PICK,
        entries=st.lists(
            st.tuples(st.integers(0, 2), st.integers(0, 63), U32, PICK, SIG), max_size=6
        ),
    )
    def peer_prepares_next(
        self,
        peer: int,
        ts: tuple[bool, int],
        view: tuple[bool, int],
        i: tuple[bool, int],
        entries: list[tuple[int, int, int, tuple[bool, int], str]],
    ) -> None:
        """As peer_prepare, at the index the replica delivers next, echoed: delivered."""
        self.peer_prepare(peer, (True, 0), ts, view, i, entries, True, "empty")

    @rule(sender=PEER, b=MEMBER_OR_NOT, k=PICK, value=st.integers(0, 63), form=st.integers(0, 3))
    def peer_echo(self, sender: int, b: int, k: tuple[bool, int], value: int, form: int) -> None:
        """An echo of any broadcaster's value (or its digest, or garbage)."""
        m = self.values[value % len(self.values)] if self.values else b"\x01\x01"
        data = [m, digest(m), bytes(32), m + b"x"][form]
        kk = self._near(k, self._anchors_k(b) if b < N else [])
        self._send(self.peers[sender], CtbEcho(b, kk, form in (1, 2), data))

    @rule(sender=PEER, b=MEMBER_OR_NOT, k=PICK, value=st.integers(0, 63), sig=SIG)
    def peer_ctb_sig(self, sender: int, b: int, k: tuple[bool, int], value: int, sig: str) -> None:
        kk = self._near(k, self._anchors_k(b) if b < N else [])
        m = self.sent_m.get((b, kk)) or (
            self.values[value % len(self.values)] if self.values else b""
        )
        s = self._signed(sig, b, Tag.CTB, b, kk, digest(m)) or b"\x00" * 64
        self._send(self.peers[sender], CtbSig(b, kk, s))

    @rule(sender=PEER, b=MEMBER_OR_NOT, from_k=PICK)
    def peer_sig_request(self, sender: int, b: int, from_k: tuple[bool, int]) -> None:
        kk = self._near(from_k, self._anchors_k(b) if b < N else [])
        self._send(self.peers[sender], CtbSigRequest(b, kk))

    @rule(sender=PEER, c=PICK, j=st.integers(0, 15), sig=SIG, b=MEMBER_OR_NOT, own=st.booleans())
    def peer_ctb_ckpt_share(
        self, sender: int, c: tuple[bool, int], j: int, sig: str, b: int, own: bool
    ) -> None:
        """A CTBcast checkpoint share for the replica's own stream (or someone else's)."""
        own_digests = self._own_digests()
        target = self.me if own else b
        if own and own_digests and c[0]:
            cc = sorted(own_digests)[j % len(own_digests)]
            d = own_digests[cc][1]
        else:
            cc = self._near(c, self._anchors_ctb_c(self.me) + sorted(own_digests))
            d = digest(_b(j))
        s = self._signed(sig, self.peers[sender], Tag.CTB_CKPT, target, cc, d) or b"\x00" * 64
        self._send(self.peers[sender], CtbCkptShare(target, cc, d, s))

    @rule(
        sender=PEER,
        b=PEER,
        c=PICK,
        j=st.integers(0, 15),
        form=st.integers(0, 3),
        cert=CERT,
        fields=st.tuples(
            st.integers(-(1 << 63), (1 << 63) - 1),
            st.integers(0, (1 << 64) - 1),
            st.integers(-(1 << 63), (1 << 63) - 1),
            st.integers(-(1 << 63), (1 << 63) - 1),
            st.integers(-(1 << 63), (1 << 63) - 1),
            st.lists(st.tuples(U64, U64), max_size=4),
        ),
    )
    def peer_ctb_ckpt_cert(
        self,
        sender: int,
        b: int,
        c: tuple[bool, int],
        j: int,
        form: int,
        cert: str,
        fields: tuple[int, int, int, int, int, list[tuple[int, int]]],
    ) -> None:
        """A CTBcast checkpoint certificate of a peer's stream: on the summary the replica
        computed, on a crafted summary, or on garbage."""
        bb = self.peers[b]
        mine = [(c_, s) for b_, c_, s in self.summaries if b_ == bb]
        if form == 0 and mine:
            cc, summary = mine[j % len(mine)]
        else:
            cc = self._near(c, self._anchors_ctb_c(bb))
            if form == 1:
                seal, ck_c, pv, pi, ts, commits = fields
                s = Stream(seal, ck_c, bytes(32), pv, pi, ts)
                for i, v in commits:
                    s.commits[i] = (v, digest(_b(v)))
                summary = encode_summary(cc, s)
            elif form == 2:
                summary = self._summary(bb, cc)
            else:
                summary = _b(j) * j
        crt = self._cert(cert, Tag.CTB_CKPT, bb, cc, digest(summary))
        self._send(self.peers[sender], CtbCkptCert(bb, cc, summary, crt))

    @rule(
        b=PEER,
        sender=PEER,
        ahead=st.integers(1, 3),
        seal=PICK,
        pv=PICK,
        pi=PICK,
        ts=PICK,
        ck=st.integers(0, 2),
        commits=st.lists(st.tuples(st.booleans(), st.integers(0, 31), PICK), max_size=3),
        cert=CERT,
    )
    def peer_summary_ahead(
        self,
        b: int,
        sender: int,
        ahead: int,
        seal: tuple[bool, int],
        pv: tuple[bool, int],
        pi: tuple[bool, int],
        ts: tuple[bool, int],
        ck: int,
        commits: list[tuple[bool, int, tuple[bool, int]]],
        cert: str,
    ) -> None:
        """A certificate on a summary of b's stream beyond what the replica delivered (it is
        behind): the replica adopts it. A summary is a function of b's messages alone, so
        correct replicas certify any value b's own messages can put in it (views, instances,
        timestamps); Commits and checkpoints in it need certificates of their own, so only
        known ones are in the model (others only when the example colludes)."""
        bb = self.peers[b]
        k = self._anchors_k(bb)[0]
        c = (k // CTB_INTERVAL + ahead) * CTB_INTERVAL
        view, nxt = self._view(), self._next_prepare()
        signed_max = (1 << 63) - 1
        stream = Stream(
            self._near(seal, [view, view + 1, 0]) & signed_max,
            0,
            bytes(32),
            self._near(pv, [view, view + 1]) & signed_max,
            self._near(pi, [nxt, nxt + 1, nxt + W, nxt - 1]) & signed_max,
            self._near(ts, [self.now, self._last_fresh_ts(), 0]) & signed_max,
        )
        in_model = True
        if ck == 1 and self.ckpts:
            stream.ckpt_c, stream.ckpt_digest = self.ckpts[-1]
        elif ck == 2:
            stream.ckpt_c, stream.ckpt_digest = self._near(pi, self._anchors_c()), digest(b"x")
            in_model = False
        for known, j, i in commits:
            if known and self.prepares:
                p, d = self.prepares[j % len(self.prepares)]
                stream.commits[p.instance] = (p.view, d)
            else:
                stream.commits[self._near(i, self._anchors_i())] = (view, digest(_b(j)))
                in_model = False
        summary = encode_summary(c, stream)
        if in_model:
            self.trusted.add(self._stmt(Tag.CTB_CKPT, bb, c, digest(summary)))
        crt = self._cert(cert, Tag.CTB_CKPT, bb, c, digest(summary))
        self._count("summary_ahead")
        self._send(self.peers[sender], CtbCkptCert(bb, c, summary, crt))

    @rule(sender=PEER, b=MEMBER_OR_NOT, k=PICK, sigs=st.tuples(SIG, SIG), same=st.booleans())
    def peer_equivocation(
        self, sender: int, b: int, k: tuple[bool, int], sigs: tuple[str, str], same: bool
    ) -> None:
        kk = self._near(k, self._anchors_k(b) if b < N else [])
        d1 = digest(self.sent_m.get((b, kk), b"one"))
        d2 = d1 if same else digest(b"two" + _b(kk))
        s1 = self._signed(sigs[0], b, Tag.CTB, b, kk, d1) or b"\x00" * 64
        s2 = self._signed(sigs[1], b, Tag.CTB, b, kk, d2) or b"\x00" * 64
        self._send(self.peers[sender], Equivocation(b, kk, d1, s1, d2, s2))

    # ================================================================== rules: consensus votes

    @rule(sender=PEER, kind=st.integers(0, 1), view=PICK, i=PICK)
    def peer_vote(
        self, sender: int, kind: int, view: tuple[bool, int], i: tuple[bool, int]
    ) -> None:
        """A Promise or FastCommit for any (view, instance)."""
        v = self._near(view, [self._view(), self._view() + 1])
        ii = self._near(i, self._anchors_i())
        self._send(self.peers[sender], (Promise, FastCommit)[kind](v, ii))

    @rule(sender=PEER, j=st.integers(0, 31), view=PICK, i=PICK, sig=SIG, known=st.booleans())
    def peer_prep_share(
        self,
        sender: int,
        j: int,
        view: tuple[bool, int],
        i: tuple[bool, int],
        sig: str,
        known: bool,
    ) -> None:
        if known and self.prepares:
            p, d = self.prepares[j % len(self.prepares)]
            v, ii = p.view, p.instance
        else:
            v = self._near(view, [self._view(), self._view() + 1])
            ii, d = self._near(i, self._anchors_i()), digest(_b(j))
        who = self.peers[sender]
        s = self._signed(sig, who, Tag.PREP, v, ii, d) or b"\x00" * 64
        self._send(who, PrepShare(v, ii, d, s))

    @rule(sender=PEER, j=st.integers(0, 15), c=PICK, sig=SIG, known=st.booleans())
    def peer_ckpt_share(
        self, sender: int, j: int, c: tuple[bool, int], sig: str, known: bool
    ) -> None:
        if known and self.ckpts:
            cc, d = self.ckpts[j % len(self.ckpts)]
        else:
            cc, d = self._near(c, self._anchors_c()), digest(_b(j))
        who = self.peers[sender]
        s = self._signed(sig, who, Tag.CKPT, cc, d) or b"\x00" * 64
        self._send(who, CkptShare(cc, d, s))

    @rule(sender=PEER, a=PICK, b=PICK, c=PICK, d=PICK)
    def peer_sync(
        self,
        sender: int,
        a: tuple[bool, int],
        b: tuple[bool, int],
        c: tuple[bool, int],
        d: tuple[bool, int],
    ) -> None:
        k = self._anchors_k(self.me)
        msg = Sync(
            self._near(a, k),
            self._near(b, k),
            self._near(c, self._anchors_i()),
            self._near(d, [self._stable_c(), *self._anchors_c()]),
        )
        self._send(self.peers[sender], msg)

    # ================================================================== rules: requests

    def _request(self, cid: int, x: tuple[bool, int], size: int, j: int, sig: str) -> Request:
        rid = self._near(x, self._anchors_req(cid))
        if size == 0 and j % 3 == 0:
            payload = b""
        elif size < 64:
            payload = [cmd_incr(b"c"), cmd_get(b"c"), cmd_set(b"k", _b(j))][j % 3]
        else:
            payload = bytes([j & 0xFF]) * size
        s = b""
        if sig != "empty":
            signer = self._client_signer(cid, j)
            s = signer.sign(Tag.REQ, self.cluster, None, cid, rid, digest(payload))
            if sig == "bad":
                s = bytes([s[0] ^ 1]) + s[1:]
        return Request(cid, rid, payload, s)

    @rule(
        link=st.one_of(st.sampled_from((*CLIENT_IDS, ADMIN_CLIENT_ID)), U32),
        other=st.one_of(st.none(), U32),
        x=PICK,
        size=PAYLOAD_SIZE,
        j=st.integers(0, 255),
        sig=SIG,
    )
    def client_request(
        self,
        link: int,
        other: int | None,
        x: tuple[bool, int],
        size: int,
        j: int,
        sig: str,
    ) -> None:
        """A request from a registered, unregistered or any client (maybe naming another)."""
        req = self._request(link if other is None else other, x, size, j, sig)
        self.requests.append(req)
        self._client_frame(link, encode(req, self.epoch), repr(req)[:200])

    def _client_frame(self, link: int, frame: bytes, what: str) -> None:
        self.client_frames.append((link, frame))
        rep = self.replica
        self._guard(
            f"now={self.now} receive_client({link}, {what})",
            lambda: rep.receive_client(link, frame, self.now),
        )

    @rule(
        op=st.sampled_from([1, 2, 3]),
        cid=st.one_of(st.sampled_from(CLIENT_IDS), U32),
        key=st.integers(0, 5),
        s=PICK,
        sig=SIG,
        req_sig=st.booleans(),
    )
    def admin_command(
        self, op: int, cid: int, key: int, s: tuple[bool, int], sig: str, req_sig: bool
    ) -> None:
        """The admin submits Register / Deregister (or an unknown op): fresh keys, rotations,
        re-registrations with a used key, garbage keys, any sequence number."""
        log_s = self.replica.log.admin_s
        seq = self._near(s, [log_s + 1, log_s, self.admin_s + 1, log_s + 2])
        self.admin_s = max(self.admin_s, seq) if seq < (1 << 63) else self.admin_s
        pool = CLIENT_SIGNERS.get(cid)
        if op == 2:
            k = bytes(32)
        elif key < 2 and pool is not None:
            k = pool[key].public_key
        elif key < 5:
            k = BAD_KEYS[key % len(BAD_KEYS)]
        else:
            k = make_signer(random.Random(seq ^ cid), SignatureCounter()).public_key
        signature = b"\x00" * 64
        if sig != "empty":
            signature = self.admin.sign(Tag.CLIENT, self.cluster, self.epoch, op, cid, k, seq)
            if sig == "bad":
                signature = bytes([signature[0] ^ 1]) + signature[1:]
        payload = encode_admin_command(AdminCommand(AdminOp.REGISTER, cid, k, seq, signature))
        if op != 1:  # the encoder takes any op byte through the enum's value
            payload = payload[:11] + bytes([op]) + payload[12:]
        entry = self.replica.log.clients[ADMIN_CLIENT_ID]
        rid = entry.h + 1 + len(entry.pending)
        rs = b""
        if req_sig:
            rs = self.admin.sign(Tag.REQ, self.cluster, None, ADMIN_CLIENT_ID, rid, digest(payload))
        req = Request(ADMIN_CLIENT_ID, rid, payload, rs)
        self.requests.append(req)
        self._count("admin_command")
        self._client_frame(ADMIN_CLIENT_ID, encode(req, self.epoch), repr(req)[:200])

    @rule(
        register=st.booleans(),
        cid=st.sampled_from(CLIENT_IDS),
        key=st.integers(0, 1),
        rounds=st.integers(0, 3),
    )
    def admin_valid(self, register: bool, cid: int, key: int, rounds: int) -> None:
        """A valid admin command (the next sequence number, a pool key: new clients, key
        rotations, re-registrations), then a few normal-case rounds to execute it."""
        self.admin_command(1 if register else 2, cid, key, (True, 0), "valid", rounds % 2 == 0)
        for n in range(rounds):  # the client named keeps sending meanwhile
            self._fresh_request(cid, n % 2 == 0, n)
        if rounds:
            self.protocol_rounds(rounds, cid % 32, False, False, 1000)

    @rule(sender=PEER, j=st.integers(0, 31), x=PICK, form=st.integers(0, 3), many=st.integers(0, 5))
    def peer_request_echo(
        self, sender: int, j: int, x: tuple[bool, int], form: int, many: int
    ) -> None:
        """A follower echoes requests (as the leader's peers do), right or wrong."""
        echoes = []
        for n in range(max(1, many)):
            if self.requests and form < 2:
                r = self.requests[(j + n) % len(self.requests)]
                d = digest(r.payload) if form == 0 else digest(r.payload + b"!")
                echoes.append(RequestEcho(r.client_id, r.request_id, d))
            else:
                cid = CLIENT_IDS[(j + n) % len(CLIENT_IDS)]
                echoes.append(RequestEcho(cid, self._near(x, self._anchors_req(cid)), bytes(32)))
        msg: Message = echoes[0] if many == 0 else RequestEchoes(tuple(echoes))
        self._send(self.peers[sender], msg)

    @rule(sender=PEER, j=st.integers(0, 31), sig=SIG, fresh=st.booleans())
    def peer_request_forward(self, sender: int, j: int, sig: str, fresh: bool) -> None:
        if self.requests and not fresh:
            r = self.requests[j % len(self.requests)]
            if sig == "valid" and not r.sig and r.client_id in CLIENT_SIGNERS:
                s = self._client_signer(r.client_id, j)
                r = Request(
                    r.client_id,
                    r.request_id,
                    r.payload,
                    s.sign(
                        Tag.REQ, self.cluster, None, r.client_id, r.request_id, digest(r.payload)
                    ),
                )
        else:
            cid = CLIENT_IDS[j % len(CLIENT_IDS)]
            r = self._request(cid, (True, j), 8, j, sig)
        self._send(self.peers[sender], RequestForward(r))

    # ================================================================== rules: macros

    @rule(
        rounds=st.integers(1, 6),
        j=st.integers(0, 31),
        fresh=st.booleans(),
        signed=st.booleans(),
        dt=st.sampled_from([0, 1000, 10**6]),
        slow=st.booleans(),
    )
    def protocol_rounds(
        self, rounds: int, j: int, fresh: bool, signed: bool, dt: int, slow: bool = False
    ) -> None:
        """Correct peers run the normal case for a few rounds: a registered client submits a
        request, it is decided on the fast path, and the checkpoint and CTBcast-checkpoint
        shares and certificates the replica needs follow (what gets examples deep)."""
        for r in range(rounds):
            self.now += dt
            if fresh:
                self._fresh_request(GENESIS[(j + r) % 2], signed, j + r)
            if self._leader() == self.me:
                self._followers_vote(slow)
            else:
                self._leader_peer_proposes(j + r, slow)
            self._certify_progress()

    @rule(rounds=st.integers(1, 6), j=st.integers(0, 31))
    def protocol_rounds_again(self, rounds: int, j: int) -> None:
        """The same, without new requests (weights the normal case a little more)."""
        self.protocol_rounds(rounds, j, False, False, 1000)

    def _fresh_request(self, cid: int, signed: bool, j: int) -> None:
        entry = self.replica.log.clients.get(cid)
        if entry is None:
            return
        x = entry.h + 1 + len(entry.pending)
        if x > entry.h + CW:
            return
        payload = cmd_incr(b"c%d" % (j % 2)) if j % 3 else cmd_set(b"k", _b(j))
        sig = b""
        if signed:
            sig = self._client_signer(cid, j).sign(
                Tag.REQ, self.cluster, None, cid, x, digest(payload)
            )
        req = Request(cid, x, payload, sig)
        self.requests.append(req)
        self._client_frame(cid, encode(req, self.epoch), repr(req)[:200])

    def _next_k(self, b: int) -> int:
        """Peer b's next index at the replica, once whatever sits there is delivered."""
        rx = self._rx(b)
        if rx is None:
            return self.peer_k.get(b, 0)
        slot = getattr(rx, "slots", {}).get(rx.k_d)
        if slot is not None and getattr(slot, "m", None) is not None:
            other = next(q for q in self.peers if q != b)
            big = len(slot.m) > PARAMS.echo_digest_threshold_bytes
            self._send(other, CtbEcho(b, rx.k_d, big, digest(slot.m) if big else slot.m))
        return rx.k_d

    def _slow_path(self, p: Prepare) -> None:
        """Both peers send their "prep" share on p, then CTBcast a Commit with a certificate."""
        d = digest(encode_batch(p.batch))
        for q in self.peers:
            self._send(
                q, PrepShare(p.view, p.instance, d, self._sign(q, Tag.PREP, p.view, p.instance, d))
            )
        cert = self._cert("quorum", Tag.PREP, p.view, p.instance, d)
        m = encode_payload(Commit(p.view, p.instance, p.batch, cert))
        for q in self.peers:
            self._ctbcast(q, self._next_k(q), m, True, "empty")

    def _leader_peer_proposes(self, j: int, slow: bool = False) -> None:
        """A peer leads: it CTBcasts the next Prepare with requests the replica holds, the
        other peer echoes it and promises, and both send FastCommit (or run the slow path)."""
        rep = self.replica
        leader = self.config.leader(self._view())
        other = next(q for q in self.peers if q != leader)
        k = self._next_k(leader)
        entries: list[Entry] = []
        for cid, entry in sorted(rep.log.clients.items()):
            for x, req in sorted(entry.pending.items()):
                if len(entries) < min(PARAMS.batch_max, 1 + j % PARAMS.batch_max):
                    entries.append(Entry(cid, x, req.payload, req.sig))
        ts = max(self.now, self._last_fresh_ts(), 0)
        p = Prepare(self._view(), self._next_prepare(), Batch(ts, tuple(entries)))
        self._ctbcast(leader, k, encode_payload(p), True, "empty")
        if slow:
            return self._slow_path(p)
        self._send(other, Promise(self._view(), p.instance))
        for q in self.peers:
            self._send(q, FastCommit(self._view(), p.instance))

    def _followers_vote(self, slow: bool = False) -> None:
        """The replica leads: both peers echo the requests it holds, then promise and
        FastCommit its undecided Prepares."""
        rep = self.replica
        for cid, entry in sorted(rep.log.clients.items()):
            for x, req in sorted(entry.pending.items())[: PARAMS.batch_max]:
                if not req.proposed:
                    for q in self.peers:
                        self._send(q, RequestEcho(cid, x, req.digest))
        self._guard(f"now={self.now} take_actions()", lambda: None)
        instances = self._instances()
        undecided = [i for i, inst in sorted(instances.items()) if not inst.decided]
        for i in undecided[:3]:
            inst = instances[i]
            if slow and getattr(inst, "batch", None) is not None:
                self._slow_path(Prepare(self._view(), i, inst.batch))
                continue
            for q in self.peers:
                self._send(q, Promise(self._view(), i))
            for q in self.peers:
                self._send(q, FastCommit(self._view(), i))

    def _certify_progress(self) -> None:
        """Correct peers' checkpoint shares on the digests the replica computed, their
        CTBcast-checkpoint shares on its own stream, and each peer broadcaster's certificate
        on the summary the replica signed."""
        stable = self._stable_c()
        for c, d in list(self.ckpts):
            if c > stable:
                q = self.peers[c // INTERVAL % 2]
                self._send(q, CkptShare(c, d, self._sign(q, Tag.CKPT, c, d)))
        cert_c = self._probe("ctb.broadcaster.cert_c")
        for c, (_, d) in sorted(self._own_digests().items())[:2]:
            if c > cert_c:
                q = self.peers[c // CTB_INTERVAL % 2]
                self._send(
                    q, CtbCkptShare(self.me, c, d, self._sign(q, Tag.CTB_CKPT, self.me, c, d))
                )
        for b, c, summary in list(self.summaries):
            rx = self._rx(b)
            if rx is not None and c > getattr(rx, "cert_c", 0):
                cert = self._cert("quorum", Tag.CTB_CKPT, b, c, digest(summary))
                self._send(b, CtbCkptCert(b, c, summary, cert))

    @rule(j=st.integers(0, 15))
    def peers_share_checkpoints(self, j: int) -> None:
        """Both peers send their "ckpt" share on a checkpoint digest the replica computed, and
        their "ctbckpt" shares on its own stream's summaries."""
        if self.ckpts:
            c, d = self.ckpts[j % len(self.ckpts)]
            for q in self.peers:
                self._send(q, CkptShare(c, d, self._sign(q, Tag.CKPT, c, d)))
        for c, (_, d) in sorted(self._own_digests().items())[:2]:
            for q in self.peers:
                self._send(
                    q, CtbCkptShare(self.me, c, d, self._sign(q, Tag.CTB_CKPT, self.me, c, d))
                )

    @rule(j=st.integers(0, 15))
    def peer_certifies_my_summary(self, j: int) -> None:
        """A peer broadcaster's CTBcast checkpoint certificate on the summary the replica
        computed (as a correct peer would send it)."""
        if not self.summaries:
            return
        b, c, summary = self.summaries[j % len(self.summaries)]
        cert = self._cert("quorum", Tag.CTB_CKPT, b, c, digest(summary))
        self._send(b, CtbCkptCert(b, c, summary, cert))

    # ================================================================== rules: bytes

    @rule(
        j=st.integers(0, 63),
        sender=PEER,
        how=st.integers(0, 3),
        pos=U32,
        byte=U8,
        fix=st.booleans(),
    )
    def mutated_frame(self, j: int, sender: int, how: int, pos: int, byte: int, fix: bool) -> None:
        """An earlier frame with a bit flipped, truncated, extended or a byte set; with
        ``fix`` its length field is corrected so the body decoder sees it."""
        if not self.frames:
            return
        _, frame = self.frames[j % len(self.frames)]
        f = bytearray(frame)
        p = pos % max(1, len(f))
        if how == 0 and f:
            f[p] ^= 1 << (byte % 8)
        elif how == 1:
            del f[p:]
        elif how == 2:
            f += bytes([byte]) * (1 + pos % 70)
        elif f:
            f[p] = byte
        if fix and len(f) >= 4:
            f[0:4] = (len(f) - 4).to_bytes(4, "big")
        self._frame(self.peers[sender], bytes(f), f"mutated {bytes(f)[:80].hex()}", keep=False)

    @rule(j=st.integers(0, 63), sender=PEER)
    def replayed_frame(self, j: int, sender: int) -> None:
        """An earlier frame again, from either peer (the replica's own frames included)."""
        if not self.frames:
            return
        _, frame = self.frames[j % len(self.frames)]
        self._frame(self.peers[sender], frame, f"replay {frame[:80].hex()}", keep=False)

    @rule(
        sender=PEER,
        kind=st.one_of(st.sampled_from([int(k) for k in MsgKind]), U8),
        epoch=st.one_of(st.just(0), U32),
        body=st.binary(max_size=200),
        raw=st.booleans(),
    )
    def garbage_frame(self, sender: int, kind: int, epoch: int, body: bytes, raw: bool) -> None:
        if raw:
            frame = body
        else:
            frame = (6 + len(body)).to_bytes(4, "big") + bytes([1, kind]) + epoch.to_bytes(4, "big")
            frame += body
        self._frame(self.peers[sender], frame, f"garbage {frame[:80].hex()}", keep=False)

    @rule(
        link=st.one_of(st.sampled_from((*CLIENT_IDS, ADMIN_CLIENT_ID)), U32),
        j=st.integers(0, 31),
        how=st.integers(0, 2),
        body=st.binary(max_size=100),
    )
    def client_garbage(self, link: int, j: int, how: int, body: bytes) -> None:
        """Garbage, a replayed client frame, or a replica frame from a client link."""
        if how == 0 or not self.client_frames:
            frame = body
        elif how == 1:
            frame = self.client_frames[j % len(self.client_frames)][1]
        else:
            frame = self.frames[j % len(self.frames)][1] if self.frames else body
        self._client_frame(link, frame, f"bytes {frame[:80].hex()}")

    # ================================================================== rules: memory nodes

    @rule(
        j=st.integers(0, 255),
        how=st.integers(0, 6),
        op=U64,
        node=st.one_of(st.sampled_from([0, 1, 2]), U16),
    )
    def memnode_reply(self, j: int, how: int, op: int, node: int) -> None:
        """A memory node answers a request the replica sent: validly (most often), with a
        stale or arbitrary op id, garbage, a mutated reply, or a replay; or the node that
        answers is not the one asked."""
        if how == 6 and self.mem_replies:
            nd, frame = self.mem_replies[j % len(self.mem_replies)]
        elif not self.mem_out:
            nd, frame = node % 3 if node < 3 else node, encode(MemWriteReply(op, 1, 0), self.epoch)
        else:
            nd, request = self.mem_out[j % len(self.mem_out)]
            if how <= 2:
                del self.mem_out[j % len(self.mem_out)]
            msg = decode(request)[1]
            assert isinstance(msg, MemRead | MemWrite | MemMarkKnown)
            store = self.stores.get(nd)
            reply: MemReadReply | MemWriteReply
            if store is None:
                reply = MemWriteReply(msg.op_id, 1, 2)
            else:
                reply = store.handle(self.me, msg)
            if how == 3:
                reply = dataclasses.replace(reply, op_id=op)
            elif how == 4 and isinstance(reply, MemReadReply):
                reply = MemReadReply(
                    reply.op_id, reply.node_incarnation, op % 3, bytes([j]) * REGISTER_BYTES
                )
            elif how == 4:
                reply = MemWriteReply(reply.op_id, op, op % 3)
            frame = encode(reply, self.epoch)
            if how == 5:
                frame = frame[: j % len(frame)] if j % 2 else frame + b"\x00"
            if node >= 3 and how == 5:
                nd = node
            self.mem_replies.append((nd, frame))
        rep = self.replica
        self._guard(
            f"now={self.now} receive_memnode({nd}, {frame[:60].hex()})",
            lambda: rep.receive_memnode(nd, frame, self.now),
        )

    @rule(rounds=st.integers(1, 4), down=st.sampled_from([None, 0, 1, 2]))
    def memnodes_serve(self, rounds: int, down: int | None) -> None:
        """Every memory node (but ``down``) answers everything the replica has sent it, for a
        few rounds (what the slow CTBcast path needs: a write, then reads)."""
        rep = self.replica
        for _ in range(rounds):
            queued = list(self.mem_out)
            self.mem_out.clear()
            for nd, request in queued:
                if nd == down or nd not in self.stores:
                    continue
                msg = decode(request)[1]
                assert isinstance(msg, MemRead | MemWrite | MemMarkKnown)
                frame = encode(self.stores[nd].handle(self.me, msg), self.epoch)
                self._guard(
                    f"now={self.now} receive_memnode({nd}, {frame[:40].hex()})",
                    lambda nd=nd, frame=frame: rep.receive_memnode(nd, frame, self.now),
                )

    @rule(
        writer=PEER,
        b=st.sampled_from([0, 1, 2]),
        k=PICK,
        form=st.integers(0, 4),
        sig=SIG,
        nodes=st.sampled_from([(0, 1, 2), (0, 1), (2,)]),
    )
    def peer_writes_register(
        self,
        writer: int,
        b: int,
        k: tuple[bool, int],
        form: int,
        sig: str,
        nodes: tuple[int, ...],
    ) -> None:
        """A peer writes into its own register (b, k mod t) on memory nodes: b's signed
        (k, digest) of what b sent (as a correct receiver does), of another value (b
        equivocated), of a later index, or garbage."""
        q = self.peers[writer]
        if b == q:
            return
        kk = self._near(k, self._anchors_k(b)) % (1 << 63)
        m = self.sent_m.get((b, kk), b"")
        if form == 1:
            m = m + b"other"
        elif form == 2:
            kk += T
            m = self.sent_m.get((b, kk), b"later")
        d = digest(m)
        s = self._signed(sig, b, Tag.CTB, b, kk, d) or bytes(64)
        inc = kk // T + 1 if form != 3 else kk + 2
        value = pack_ctb_value(kk, d, s)
        data = encode_subslot(inc, value) if form != 4 else bytes([kk & 0xFF]) * SUBSLOT_BYTES
        for nd in nodes:
            store = self.stores[nd]
            for subslot in (0, 1):
                msg = MemWrite(0, self.epoch, q, b, kk % T, subslot, data)
                store.handle(q, msg)

    @rule(j=st.integers(0, 255), amnesia=st.booleans())
    def memnode_restart(self, j: int, amnesia: bool) -> None:
        """A memory node comes back with a new incarnation (its memory lost or not)."""
        node = j % MEMNODES
        self.stores[node] = self._store(node, self.stores[node].incarnation + 1, not amnesia)

    def _store(self, node: int, incarnation: int, known: bool) -> MemoryNodeStore:
        """A memory node provisioned with every member's area (as the operator does)."""
        store = MemoryNodeStore(node, incarnation=incarnation)
        for w in self.config.member_ids:
            store.provision_area(self.epoch, w, self.config.member_ids, T, known=known)
        return store

    # ================================================================== rules: time

    @rule(
        dt=st.sampled_from(
            [0, 1, 10**6 // 2, 10**6, 2 * 10**6, 4 * 10**6, 10**8, 10**9 + 1, 10**10]
        )
    )
    def advance_and_fire_due(self, dt: int) -> None:
        """Time passes; every timer due fires in order (those they arm included)."""
        self.now += dt
        for _ in range(64):
            due = [t for t in self.timers if t[0] <= self.now]
            if not due:
                return
            key = due[0][1]
            self.timers.remove(due[0])
            self._fire(key)

    @rule(j=st.integers(0, 255))
    def fire_next_timer(self, j: int) -> None:
        """Fire one armed timer early or on time (a driver's timers are never exact)."""
        if not self.timers:
            return
        at, key = self.timers.pop(j % len(self.timers))
        if j % 2:
            self.now = max(self.now, at)
        self._fire(key)

    @rule(
        kind=st.sampled_from(
            [TimerKind.FAST_PATH, TimerKind.FAST_TIMEOUT, TimerKind.SYNC, TimerKind.MEM_RETRY]
        ),
        a=PICK,
        b=PICK,
    )
    def fire_any_timer(self, kind: TimerKind, a: tuple[bool, int], b: tuple[bool, int]) -> None:
        """A timer of a known kind with any a and b."""
        aa = self._near(a, [*self.peers, self.me, self._view()])
        bb = self._near(b, self._anchors_i() + self._anchors_k(self.peers[0]))
        self._fire(TimerKey(kind, aa, bb))

    def _fire(self, key: TimerKey) -> None:
        rep = self.replica
        self._guard(f"now={self.now} timer_fired({key})", lambda: rep.timer_fired(key, self.now))

    @rule(a=U64, b=U64)
    def client_timer_is_usage_error(self, a: int, b: int) -> None:
        """A client's timer fired at a replica is the driver's bug: UsageError, nothing else."""
        with pytest.raises(UsageError):
            self.replica.timer_fired(TimerKey(TimerKind.CLIENT_RETRY, a, b), self.now)

    # ================================================================== invariants

    @invariant()
    def replica_invariants_hold(self) -> None:
        if self.rep is None:
            return
        try:
            self.rep.check_invariants()
            for key, value in self.rep.footprint().items():
                bound = BOUNDS.get(key)
                if bound and value * 4 > bound:
                    self.stats[f"over_quarter:{key}"] = 1
                if bound is None and value > 0:  # as the simulator's BoundedMemory checks
                    raise Finding(f"bound-undeclared:{key}", f"{key}={value}, no bound declared")
                if bound is not None and value > bound:
                    raise Finding(f"bound:{key}", f"{key}={value} above bound {bound}")
        except (AssertionError, Finding) as exc:
            self.calls.append("check_invariants() / footprint()")
            self._failed(exc)

    def teardown(self) -> None:
        if os.environ.get("UBFT_STATEFUL_STATS"):
            self.stats["entry_calls"] = len(self.calls)
            with open(os.environ["UBFT_STATEFUL_STATS"], "a", encoding="utf-8") as out:
                out.write(json.dumps(self.stats) + "\n")


# ----------------------------------------------------------------------------- settings

_LONG = os.environ.get("UBFT_STATEFUL_EXAMPLES")
_SETTINGS = settings(
    max_examples=int(_LONG) if _LONG else 200,
    stateful_step_count=int(os.environ.get("UBFT_STATEFUL_STEPS", "40")),
    deadline=None,
    derandomize=not _LONG or os.environ.get("UBFT_STATEFUL_DERANDOMIZE") == "1",
    database=None,
    print_blob=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)

TestReplicaStateful = ReplicaMachine.TestCase
TestReplicaStateful.settings = _SETTINGS


# ----------------------------------------------------------------------------- regressions
# Failures the state machine found in earlier versions of the core, replayed step by step
# (the same rule calls Hypothesis printed, minimised by hand).


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> ReplicaMachine:
    """A state machine whose failures raise (whatever UBFT_STATEFUL_FINDINGS says)."""
    monkeypatch.setattr(f"{__name__}._FINDINGS", None)
    monkeypatch.setattr(f"{__name__}._IGNORED", set())
    return ReplicaMachine()


def test_regression_seal_view_above_the_signed_range(machine: ReplicaMachine) -> None:
    """A peer's SealView{2^63} was recorded in its stream and crashed the encoding of its next
    CTBcast checkpoint summary, at the fourth delivered message (struct.error in
    stream.encode_summary). Hypothesis' minimal example, at 655cbc6."""
    m = machine
    m.setup(me=0, mode=SlowPathMode.ON_DEMAND, collude=False, start=0)
    m.replica_invariants_hold()
    m.peer_ctbcasts_next(
        peer=0, kind=3, a=(False, 1 << 63), b=(False, 0), cert="quorum", garbage=b""
    )
    m.replica_invariants_hold()
    for _ in range(CTB_INTERVAL - 1):
        m.peer_ctbcasts_next(peer=0, kind=0, a=(False, 0), b=(False, 0), cert="quorum", garbage=b"")
        m.replica_invariants_hold()
    assert m.stats.get("delivered", 0) >= CTB_INTERVAL


def test_regression_deregistered_client_with_a_ready_request(machine: ReplicaMachine) -> None:
    """The leader proposed from its ready queue a request of a client that an executed
    Deregister had removed (KeyError in Consensus.propose): Deregister(100) and 100's signed
    request 1 share instance 0, its unsigned request 2 turns ready (both followers echoed it)
    while instance 0 is undecided. Hypothesis' minimal example, at 655cbc6."""
    m = machine
    m.setup(me=0, mode=SlowPathMode.ON_DEMAND, collude=False, start=0)
    m.replica_invariants_hold()
    m.admin_valid(cid=100, key=0, register=False, rounds=2)
    m.replica_invariants_hold()
    assert m.stats.get("admin_ok", 0) == 1
