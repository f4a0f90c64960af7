"""One targeted test per rule of CTBcast (PROTOCOL.md section 3): the router (``ctbcast.py``),
the receiver (``ctb_receiver.py``) and the broadcaster (``ctb_broadcaster.py``), driven through
``CtbCast`` with a real register client over real memory-node stores.

Unanimity of the n-2 echoes (f = 1 and 2), the tail bound on both sides, every signature check
(b's "ctb" signature, "ctbckpt" shares and certificates, the registers behind an equivocation
proof, a forwarded proof), every classification of a register read, and every evidence reason.
Each test fails when its rule is weakened (``make mutation`` checks that)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ubft.memnode.layout import (
    SUBSLOT_BYTES,
    encode_subslot,
    pack_ctb_value,
    parse_register,
)
from ubft.memnode.register import RegisterClient
from ubft.memnode.store import MemoryNodeStore
from ubft.memnode.wire import STATUS_OK, MemRead, MemReadReply, MemWrite
from ubft.replica.core.actions import (
    Delivered,
    Persist,
    PersistKind,
    ReportEvidence,
    Send,
    SetTimer,
    TimerKind,
)
from ubft.replica.core.codec import decode
from ubft.replica.core.config import SlowPathMode
from ubft.replica.core.context import Context
from ubft.replica.core.crypto import Tag, Verifier, digest, statement
from ubft.replica.core.ctbcast import CtbCast
from ubft.replica.core.messages import (
    Certificate,
    Ctb,
    CtbCkptCert,
    CtbCkptShare,
    CtbEcho,
    CtbSig,
    CtbSigRequest,
    Equivocation,
    Message,
)
from ubft.replica.core.quorum import verify_certificate

MakeCluster = Callable[..., tuple[Any, Any]]
TAIL = 4  # a CTBcast checkpoint every 2 messages
THRESHOLD = 16  # echo a digest above 16 bytes
T = 1_000_000  # fast_path_timeout_ns
B = 1  # the broadcaster whose stream replica 0 receives
ME = 0


class Up:
    """The layer above CTBcast, recording what it is handed."""

    def __init__(self) -> None:
        self.delivered: list[tuple[int, int, bytes]] = []
        self.adopted: list[tuple[int, int, bytes]] = []

    def on_deliver(self, b: int, k: int, m: bytes) -> None:
        self.delivered.append((b, k, m))

    def ctb_summary(self, b: int, c: int) -> bytes:
        return b"summary %d %d" % (b, c)

    def adopt_ctb_summary(self, b: int, c: int, summary: bytes) -> None:
        self.adopted.append((b, c, summary))


class Node:
    """Replica ``ME``'s CTBcast: its register client talks to real memory-node stores."""

    def __init__(self, make_cluster: MakeCluster, f: int = 1, **params: Any) -> None:
        params = {"tail": TAIL, "echo_digest_threshold_bytes": THRESHOLD, **params}
        self.config, self.keys = make_cluster(f=f, **params)
        config = self.config
        self.ctx = Context(
            config, ME, self.keys.members[ME], Verifier(config.member_keys(), self.keys.counter)
        )
        self.regs = RegisterClient(ME, config.memnode_ids)
        self.cast = CtbCast(self.ctx, self.regs)
        self.up = Up()
        self.cast.bind(self.up)
        self.stores = {j: MemoryNodeStore(j, incarnation=1) for j in config.memnode_ids}
        for store in self.stores.values():
            for w in config.member_ids:
                store.provision_area(config.epoch, w, config.member_ids, TAIL)
        self.held: list[tuple[int, MemRead | MemWrite]] = []

    # ------------------------------------------------------------------ signing

    def ctb_sig(self, k: int, m: bytes, b: int = B, signer: int | None = None) -> bytes:
        s = self.keys.members[b if signer is None else signer]
        return bytes(s.sign(Tag.CTB, self.ctx.cluster, self.ctx.epoch, b, k, digest(m)))

    def cert(
        self, c: int, summary: bytes, signers: tuple[int, ...] = (1, 2), b: int = B
    ) -> CtbCkptCert:
        d = digest(summary)
        sigs = tuple(
            self.keys.members[r].sign(Tag.CTB_CKPT, self.ctx.cluster, self.ctx.epoch, b, c, d)
            for r in signers
        )
        return CtbCkptCert(b, c, summary, Certificate(signers, sigs))

    # ------------------------------------------------------------------ input

    def ctb(self, k: int, m: bytes) -> None:
        self.cast.on_ctb(B, Ctb(B, k, m))

    def echo(self, sender: int, k: int, m: bytes) -> None:
        self.cast.on_echo(sender, CtbEcho(B, k, False, m))

    def echo_all(self, k: int, m: bytes) -> None:
        for q in self.ctx.others:
            if q != B:
                self.echo(q, k, m)

    def sig(self, k: int, m: bytes) -> None:
        self.cast.on_sig(B, CtbSig(B, k, self.ctb_sig(k, m)))

    def fire(self, now: int) -> None:
        self.ctx.now_ns = now
        self.cast.on_timer(B)

    # ------------------------------------------------------------------ memory nodes

    def pump(self, only: type | None = None) -> None:
        """Carry register traffic until none is left; with ``only``, hold other messages."""
        while batch := self.regs.take_outgoing():
            for node, msg in batch:
                assert isinstance(msg, MemRead | MemWrite)
                if only is not None and not isinstance(msg, only):
                    self.held.append((node, msg))
                    continue
                self._answer(node, msg)

    def release(self) -> None:
        held, self.held = self.held, []
        for node, msg in held:
            self._answer(node, msg)
        self.pump()

    def _answer(self, node: int, msg: MemRead | MemWrite) -> None:
        reply = self.stores[node].handle(ME, msg)
        done = self.regs.on_reply(node, reply)
        if done:
            self.cast.on_mem_done(done)

    def plant(self, q: int, k: int, incarnation: int, value: bytes) -> None:
        """Put ``value`` into q's register (B, k mod t) on every memory node."""
        for store in self.stores.values():
            data = encode_subslot(incarnation, value)
            msg = MemWrite(0, self.ctx.epoch, q, B, k % TAIL, 0, data)
            assert store.handle(q, msg).status == STATUS_OK

    def plant_garbage(self, q: int, k: int) -> None:
        for store in self.stores.values():
            for subslot in (0, 1):
                msg = MemWrite(0, self.ctx.epoch, q, B, k % TAIL, subslot, b"\xa5" * SUBSLOT_BYTES)
                assert store.handle(q, msg).status == STATUS_OK

    def register(self, writer: int, k: int, b: int = B) -> tuple[int, bytes] | None:
        store = next(iter(self.stores.values()))
        reply = store.handle(writer, MemRead(0, self.ctx.epoch, writer, b, k % TAIL))
        assert isinstance(reply, MemReadReply)
        return parse_register(reply.data)

    # ------------------------------------------------------------------ output

    def sent(self) -> list[tuple[tuple[int, ...], Message]]:
        return [(a.targets, decode(a.frame)[1]) for a in self.ctx.outbox if isinstance(a, Send)]

    def sent_of(self, kind: type) -> list[tuple[tuple[int, ...], Any]]:
        return [(t, m) for t, m in self.sent() if isinstance(m, kind)]

    def evidence(self) -> list[tuple[int, str]]:
        return [(a.against, a.reason) for a in self.ctx.outbox if isinstance(a, ReportEvidence)]

    def delivered(self) -> list[tuple[int, int, bytes]]:
        got = [(a.b, a.k, a.m) for a in self.ctx.outbox if isinstance(a, Delivered)]
        assert got == self.up.delivered
        return got

    def timers(self) -> list[int]:
        return [
            a.at_ns
            for a in self.ctx.outbox
            if isinstance(a, SetTimer) and a.key.kind == TimerKind.FAST_PATH
        ]

    def clear(self) -> None:
        self.ctx.outbox.clear()
        self.up.delivered.clear()

    @property
    def rx_footprint(self) -> int:
        return self.cast.receivers[B].footprint()


def _m(k: int, size: int = 8) -> bytes:
    return bytes([k + 1]) * size


# =========================================================================== fast path


@pytest.mark.parametrize("f", [1, 2])
def test_fast_path_delivers_on_m_and_the_echoes_of_all_n_minus_2_others(
    make_cluster: MakeCluster, f: int
) -> None:
    node = Node(make_cluster, f=f)
    peers = tuple(q for q in node.ctx.others if q != B)
    assert len(peers) == 2 * f - 1  # n - 2
    node.ctb(0, _m(0))
    assert node.sent_of(CtbEcho) == [(peers, CtbEcho(B, 0, False, _m(0)))]
    for q in peers[:-1]:
        node.echo(q, 0, _m(0))
        assert node.delivered() == []
    node.echo(peers[-1], 0, _m(0))
    assert node.delivered() == [(B, 0, _m(0))]
    assert node.evidence() == []
    assert node.ctx.verifier.counter.verified == 0  # no signature on the fast path


def test_echoes_before_m_are_kept(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    node.echo(2, 0, _m(0))
    assert node.delivered() == [] and node.rx_footprint == 2  # the slot and its echo
    node.ctb(0, _m(0))
    assert node.delivered() == [(B, 0, _m(0))]


def test_a_digest_echo_before_m_waits_for_m(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    m = b"L" * (THRESHOLD + 1)
    node.cast.on_echo(2, CtbEcho(B, 0, True, digest(m)))
    assert node.delivered() == []
    node.ctb(0, m)
    assert node.delivered() == [(B, 0, m)]


def test_only_the_other_receivers_echoes_count(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    node.ctb(0, _m(0))
    for sender in (B, ME, 7):  # the broadcaster, ourselves, a stranger
        node.echo(sender, 0, _m(0))
    assert node.delivered() == []
    node.echo(2, 0, _m(0))
    assert node.delivered() == [(B, 0, _m(0))]


def test_a_mismatching_echo_blocks_the_fast_path_and_is_evidence_against_no_one(
    make_cluster: MakeCluster,
) -> None:
    node = Node(make_cluster)
    node.ctb(0, _m(0))
    node.echo(2, 0, _m(9))
    assert node.delivered() == [] and node.evidence() == []


def test_a_second_echo_from_one_receiver_is_ignored(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster, f=2)
    node.ctb(0, _m(0))
    node.echo(2, 0, _m(0))
    node.echo(2, 0, _m(9))  # ignored: the first one stands
    node.echo(3, 0, _m(0))
    assert node.delivered() == []
    node.echo(4, 0, _m(0))
    assert node.delivered() == [(B, 0, _m(0))]


def test_messages_above_the_threshold_are_echoed_as_their_digest(
    make_cluster: MakeCluster,
) -> None:
    node = Node(make_cluster)
    small, large = b"s" * THRESHOLD, b"L" * (THRESHOLD + 1)
    node.ctb(0, small)
    node.ctb(1, large)
    assert [m for _, m in node.sent_of(CtbEcho)] == [
        CtbEcho(B, 0, False, small),
        CtbEcho(B, 1, True, digest(large)),
    ]
    node.cast.on_echo(2, CtbEcho(B, 1, True, digest(large)))
    node.cast.on_echo(2, CtbEcho(B, 0, True, digest(small)))
    assert node.delivered() == [(B, 0, small), (B, 1, large)]


def test_an_echo_must_say_truly_whether_it_is_a_digest(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    m = b"L" * (THRESHOLD + 1)
    node.ctb(0, m)
    node.cast.on_echo(2, CtbEcho(B, 0, False, digest(m)))  # a digest posing as the message
    node.ctb(1, _m(1))
    node.cast.on_echo(2, CtbEcho(B, 1, True, _m(1)))  # the message posing as a digest
    assert node.delivered() == []


def test_delivery_is_in_index_order(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    node.ctb(1, _m(1))
    node.echo(2, 1, _m(1))
    assert node.delivered() == []
    node.ctb(0, _m(0))
    node.echo(2, 0, _m(0))
    assert node.delivered() == [(B, 0, _m(0)), (B, 1, _m(1))]
    assert node.rx_footprint == 0


def test_a_second_message_for_an_index_is_evidence_against_the_broadcaster(
    make_cluster: MakeCluster,
) -> None:
    node = Node(make_cluster)
    node.ctb(0, _m(0))
    node.ctb(0, _m(0))  # the same again: a retransmission
    assert node.evidence() == []
    node.ctb(0, _m(5))
    assert node.evidence() == [(B, "ctb.second_message")]
    assert len(node.sent_of(CtbEcho)) == 1  # only the first was echoed
    node.echo(2, 0, _m(0))
    assert node.delivered() == [(B, 0, _m(0))]
    node.ctb(0, _m(6))  # below the next index to deliver: ignored
    assert node.evidence() == [(B, "ctb.second_message")]


def test_only_the_broadcaster_sends_its_messages_and_signatures(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    node.cast.on_ctb(2, Ctb(B, 0, _m(0)))
    node.cast.on_sig(2, CtbSig(B, 0, node.ctb_sig(0, _m(0))))
    assert node.evidence() == [(2, "ctb.not_the_broadcaster")] * 2
    assert node.sent() == [] and node.cast.footprint() == 0
    assert node.ctx.evidence.counts == {(2, "ctb.not_the_broadcaster"): 2}


# =========================================================================== tail bound


def test_indices_beyond_the_tail_are_not_accepted_echoed_or_signed(
    make_cluster: MakeCluster,
) -> None:
    node = Node(make_cluster)
    node.ctb(TAIL, _m(TAIL))
    node.echo(2, TAIL, _m(TAIL))
    node.cast.on_sig(B, CtbSig(B, TAIL, node.ctb_sig(TAIL, _m(TAIL))))
    node.pump()
    assert node.sent() == [] and node.rx_footprint == 0 and node.timers() == []
    assert node.register(ME, TAIL) == (0, bytes(104))
    node.ctb(TAIL - 1, _m(TAIL - 1))
    assert len(node.sent_of(CtbEcho)) == 1
    assert node.timers() == [T]  # a new slot arms the fast-path timer


def test_a_certificate_moves_the_tail_on(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    for k in range(2):
        node.ctb(k, _m(k))
        node.echo(2, k, _m(k))
    node.cast.on_cert(2, node.cert(2, b"s2"))
    assert node.up.adopted == []  # not behind: nothing to adopt
    node.ctb(2 + TAIL, _m(6))
    assert node.rx_footprint == 0
    node.ctb(2 + TAIL - 1, _m(5))
    assert node.rx_footprint == 1


# =========================================================================== slow path


def test_a_valid_signature_is_written_to_our_register_then_the_others_are_read(
    make_cluster: MakeCluster,
) -> None:
    node = Node(make_cluster)
    node.cast.on_cert(2, node.cert(4, b"s4"))  # so that k = 5 lies in the tail
    m = _m(5)
    node.ctb(5, m)
    node.sig(5, m)
    node.pump(only=MemWrite)
    # k = 5, t = 4: register (B, 1) at incarnation 2, holding {5, digest, signature}
    assert node.register(ME, 5) == (2, pack_ctb_value(5, digest(m), node.ctb_sig(5, m)))
    assert {(n, msg.writer, msg.b, msg.slot) for n, msg in node.held} == {
        (j, 2, B, 1) for j in node.config.memnode_ids
    }
    node.release()
    assert node.delivered() == []  # 4 is not delivered yet
    node.ctb(4, _m(4))
    node.echo(2, 4, _m(4))
    assert node.delivered() == [(B, 4, _m(4)), (B, 5, m)]


def test_the_slow_path_delivers_when_every_other_register_is_checked(
    make_cluster: MakeCluster,
) -> None:
    node = Node(make_cluster, f=2)
    node.ctb(0, _m(0))
    node.sig(0, _m(0))
    node.pump(only=MemWrite)
    reads = sorted({msg.writer for _, msg in node.held if isinstance(msg, MemRead)})
    assert reads == [2, 3, 4]
    assert node.delivered() == []
    node.release()
    assert node.delivered() == [(B, 0, _m(0))]


@pytest.mark.parametrize("case", ["wrong_signer", "wrong_k", "wrong_m", "wrong_b", "garbage"])
def test_a_bad_signature_is_evidence_and_nothing_is_written(
    make_cluster: MakeCluster, case: str
) -> None:
    node = Node(make_cluster)
    m = _m(0)
    node.ctb(0, m)
    bad = {
        "wrong_signer": node.ctb_sig(0, m, signer=2),
        "wrong_k": node.ctb_sig(1, m),
        "wrong_m": node.ctb_sig(0, _m(7)),
        "wrong_b": node.ctb_sig(0, m, b=2),
        "garbage": bytes(64),
    }[case]
    node.cast.on_sig(B, CtbSig(B, 0, bad))
    assert node.evidence() == [(B, "ctb.bad_signature")]
    assert not node.regs.has_outgoing()
    node.sig(0, m)  # a valid one is still accepted
    assert node.regs.has_outgoing()
    node.pump()
    assert node.delivered() == [(B, 0, m)]


def test_a_signature_before_the_message_waits_for_it(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    node.sig(0, _m(0))
    assert not node.regs.has_outgoing()
    node.ctb(0, _m(0))
    node.pump()
    assert node.delivered() == [(B, 0, _m(0))]
    # a bad one is found out when the message arrives
    node.cast.on_sig(B, CtbSig(B, 1, bytes(64)))
    assert node.evidence() == []
    node.ctb(1, _m(1))
    assert node.evidence() == [(B, "ctb.bad_signature")]
    assert not node.regs.has_outgoing()


def test_one_signature_per_index_is_written(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    node.ctb(0, _m(0))
    node.sig(0, _m(0))
    node.sig(0, _m(0))
    node.cast.on_sig(B, CtbSig(B, 0, bytes(64)))  # once one is held, others are not looked at
    writes = [msg for _, msg in node.regs.take_outgoing() if isinstance(msg, MemWrite)]
    assert len(writes) == len(node.config.memnode_ids)  # one write, to every memory node
    assert node.ctx.verifier.counter.verified == 1
    assert node.evidence() == []


def test_a_signature_after_delivery_is_ignored(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    node.ctb(1, _m(1))
    node.echo(2, 1, _m(1))  # ready, waiting for 0
    node.sig(1, _m(1))
    node.cast.on_sig(B, CtbSig(B, 1, bytes(64)))
    assert not node.regs.has_outgoing()
    node.ctb(0, _m(0))
    node.echo(2, 0, _m(0))
    node.sig(0, _m(0))
    assert not node.regs.has_outgoing() and node.evidence() == []
    assert node.ctx.verifier.counter.verified == 0  # nothing was even checked


def test_late_memory_completions_after_a_fast_delivery_do_nothing(
    make_cluster: MakeCluster,
) -> None:
    node = Node(make_cluster)
    node.ctb(0, _m(0))
    node.sig(0, _m(0))
    node.echo(2, 0, _m(0))  # delivered by the fast path with the write still in flight
    assert node.delivered() == [(B, 0, _m(0))]
    node.pump(only=MemWrite)
    assert node.held == []  # no reads for a delivered index
    node.ctb(2, _m(2))
    node.sig(2, _m(2))
    node.echo(2, 2, _m(2))  # ready, but 1 is missing
    node.pump(only=MemWrite)
    assert node.held == []  # a ready index reads nothing


def test_reads_that_return_after_the_fast_path_made_the_index_ready_are_ignored(
    make_cluster: MakeCluster,
) -> None:
    node = Node(make_cluster)
    node.ctb(1, _m(1))
    node.sig(1, _m(1))
    node.pump(only=MemWrite)  # our write is done, the reads of 2's register are out
    assert node.held
    other = _m(9)
    node.plant(2, 1, 1, pack_ctb_value(1, digest(other), node.ctb_sig(1, other)))
    node.echo(2, 1, _m(1))  # ready by the fast path (0 still missing)
    node.release()
    assert node.evidence() == [] and node.ctx.evidence.proofs == {}
    node.ctb(0, _m(0))
    node.echo(2, 0, _m(0))
    assert node.delivered() == [(B, 0, _m(0)), (B, 1, _m(1))]


# =========================================================================== classifying reads


def _slow(node: Node, k: int, m: bytes) -> None:
    node.ctb(k, m)
    node.sig(k, m)
    node.pump()


def test_an_equivocation_in_another_register_is_a_proof_and_stops_the_stream(
    make_cluster: MakeCluster,
) -> None:
    node = Node(make_cluster)
    m, other = _m(1), _m(9)
    s_other = node.ctb_sig(1, other)
    node.plant(2, 1, 1, pack_ctb_value(1, digest(other), s_other))
    _slow(node, 1, m)
    proof = Equivocation(B, 1, digest(m), node.ctb_sig(1, m), digest(other), s_other)
    assert node.evidence() == [(B, "ctb.equivocation")]
    assert node.ctx.evidence.proofs == {B: proof}
    assert node.sent_of(Equivocation) == [((1, 2), proof)]
    assert node.delivered() == [] and node.rx_footprint == 0
    assert not node.cast.receivers[B].pending()
    # every further message of B is dropped
    node.clear()
    node.ctb(0, _m(0))
    node.echo(2, 0, _m(0))
    node.sig(0, _m(0))
    node.cast.on_cert(2, node.cert(2, b"s2"))
    node.fire(10 * T)
    node.cast.receivers[B].resend_share()
    assert node.sent() == [] and node.delivered() == [] and node.evidence() == []
    assert node.up.adopted == [] and node.cast.receivers[B].cert_c == 0
    assert node.rx_footprint == 0 and not node.regs.has_outgoing()


def test_an_equivocation_at_index_0_is_found_too(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    other = _m(9)
    node.plant(2, 0, 1, pack_ctb_value(0, digest(other), node.ctb_sig(0, other)))
    _slow(node, 0, _m(0))
    assert node.evidence() == [(B, "ctb.equivocation")] and node.delivered() == []


@pytest.mark.parametrize(
    "case", ["same_digest_other_signature", "unsigned_conflict", "wrong_incarnation"]
)
def test_reads_that_prove_nothing_are_checked(make_cluster: MakeCluster, case: str) -> None:
    node = Node(make_cluster)
    m, other = _m(1), _m(9)
    value, inc = {
        "same_digest_other_signature": (pack_ctb_value(1, digest(m), bytes(64)), 1),
        "unsigned_conflict": (pack_ctb_value(1, digest(other), bytes(64)), 1),
        "wrong_incarnation": (pack_ctb_value(1, digest(other), node.ctb_sig(1, other)), 2),
    }[case]
    node.plant(2, 1, inc, value)
    node.ctb(0, _m(0))
    node.echo(2, 0, _m(0))
    _slow(node, 1, m)
    assert node.evidence() == [] and node.sent_of(CtbSigRequest) == []
    assert node.delivered() == [(B, 0, _m(0)), (B, 1, m)]


def test_a_register_value_for_another_residue_is_checked(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    other = _m(9)
    # register (B, 1) claims k = 2 (2 mod 4 = 2, not 1) with a valid signature
    node.plant(2, 1, 1, pack_ctb_value(2, digest(other), node.ctb_sig(2, other)))
    node.ctb(0, _m(0))
    node.echo(2, 0, _m(0))
    _slow(node, 1, _m(1))
    assert node.evidence() == [] and node.delivered()[-1] == (B, 1, _m(1))


def test_an_older_index_in_the_register_is_checked(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    node.cast.on_cert(2, node.cert(4, b"s4"))
    other = _m(9)
    node.plant(2, 1, 1, pack_ctb_value(1, digest(other), node.ctb_sig(1, other)))
    node.ctb(4, _m(4))
    node.echo(2, 4, _m(4))
    _slow(node, 5, _m(5))  # register (B, 1) holds k = 1 < 5: superseded, checked
    assert node.evidence() == []
    assert node.delivered() == [(B, 4, _m(4)), (B, 5, _m(5))]


@pytest.mark.parametrize("same_digest", [False, True])
def test_a_newer_index_in_the_register_means_k_left_the_tail(
    make_cluster: MakeCluster, same_digest: bool
) -> None:
    node = Node(make_cluster)
    m = _m(1)
    other = m if same_digest else _m(9)
    node.plant(2, 1, 2, pack_ctb_value(5, digest(other), node.ctb_sig(5, other)))
    _slow(node, 1, m)
    assert node.sent_of(CtbSigRequest) == [((1, 2), CtbSigRequest(B, 1))]
    assert node.delivered() == [] and node.evidence() == []


def test_garbage_and_empty_registers_are_checked(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    node.plant_garbage(2, 0)
    _slow(node, 0, _m(0))
    _slow(node, 1, _m(1))  # register (B, 1) of 2 is empty
    assert node.delivered() == [(B, 0, _m(0)), (B, 1, _m(1))]
    assert node.evidence() == []


# =========================================================================== fast-path timer


def test_a_stuck_index_asks_the_broadcaster_for_signatures_once_per_timeout(
    make_cluster: MakeCluster,
) -> None:
    node = Node(make_cluster)
    node.ctb(0, _m(0))
    node.ctx.now_ns = T // 2
    node.ctb(1, _m(1))
    node.fire(T)  # slot 0 is due
    assert node.sent_of(CtbSigRequest) == [((B,), CtbSigRequest(B, 0))]
    node.fire(T + T // 2)  # slot 1 is due, but one request covers every index
    assert len(node.sent_of(CtbSigRequest)) == 1
    node.fire(3 * T)  # slot 0 again (backed off to 2T), a full timeout after the request
    assert node.sent_of(CtbSigRequest)[1:] == [((B,), CtbSigRequest(B, 0))]


def test_the_request_goes_out_exactly_one_timeout_after_the_last(
    make_cluster: MakeCluster,
) -> None:
    node = Node(make_cluster)
    node.ctb(0, _m(0))
    node.ctx.now_ns = T
    node.ctb(1, _m(1))
    node.fire(T)  # 0 is due: a request
    node.fire(2 * T)  # 1 is due, exactly T later: a request
    assert [m for _, m in node.sent_of(CtbSigRequest)] == [CtbSigRequest(B, 0)] * 2


def test_an_index_with_a_verified_signature_asks_for_nothing(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    node.ctb(0, _m(0))
    node.sig(0, _m(0))  # the write is in flight
    node.fire(T)
    assert node.sent_of(CtbSigRequest) == []


def test_a_delivered_index_has_no_timeout(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    node.ctb(0, _m(0))
    node.echo(2, 0, _m(0))
    node.fire(5 * T)
    assert node.sent_of(CtbSigRequest) == []


def test_an_index_ready_behind_a_missing_one_asks_for_nothing(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    node.ctb(1, _m(1))
    node.echo(2, 1, _m(1))  # ready at once, waiting for 0
    node.ctx.now_ns = T // 2
    node.ctb(0, _m(0))
    node.fire(T)  # only 1 is due: it needs nothing
    assert node.sent_of(CtbSigRequest) == []
    node.fire(T + T // 2)  # 0 is due: it is stuck
    assert node.sent_of(CtbSigRequest) == [((B,), CtbSigRequest(B, 0))]


def test_a_stuck_index_backs_off_up_to_16_timeouts(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    node.ctb(0, _m(0))
    at = T
    for factor in (2, 4, 8, 16, 16):
        node.clear()
        node.fire(at)
        assert node.timers() == [at + factor * T]
        at += factor * T


# =========================================================================== CTBcast checkpoints


def test_a_share_goes_to_the_broadcaster_every_t_over_2_deliveries(
    make_cluster: MakeCluster,
) -> None:
    node = Node(make_cluster)
    for k in range(4):
        node.ctb(k, _m(k))
        node.echo(2, k, _m(k))
    shares = node.sent_of(CtbCkptShare)
    assert [(t, s.c) for t, s in shares] == [((B,), 2), ((B,), 4)]
    for _, s in shares:
        summary = node.up.ctb_summary(B, s.c)
        assert (s.b, s.digest) == (B, digest(summary))
        stmt = statement(Tag.CTB_CKPT, node.ctx.cluster, node.ctx.epoch, B, s.c, s.digest)
        assert node.ctx.verifier.verify(ME, stmt, s.sig)


def test_our_share_is_resent_until_a_certificate_covers_it(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    rx = node.cast.receivers[B]
    rx.resend_share()  # nothing yet
    assert node.sent() == [] and not rx.pending()
    for k in range(2):
        node.ctb(k, _m(k))
        node.echo(2, k, _m(k))
    assert rx.pending()
    node.clear()
    rx.resend_share()
    assert [s.c for _, s in node.sent_of(CtbCkptShare)] == [2]
    node.cast.on_cert(2, node.cert(2, node.up.ctb_summary(B, 2)))
    node.clear()
    rx.resend_share()
    assert node.sent() == [] and not rx.pending()


def test_a_certificate_lets_a_receiver_that_is_behind_adopt_the_summary(
    make_cluster: MakeCluster,
) -> None:
    node = Node(make_cluster)
    node.ctb(0, _m(0))  # held, never completed
    node.ctb(2, _m(2))
    node.echo(2, 2, _m(2))  # 2 is ready but waits for 0 and 1
    assert node.rx_footprint == 3
    node.cast.on_cert(2, node.cert(2, b"s2"))
    assert node.up.adopted == [(B, 2, b"s2")]
    assert node.delivered() == [(B, 2, _m(2))]
    assert node.rx_footprint == 0 and node.evidence() == []
    node.ctb(1, _m(1))  # below the certificate: ignored
    assert node.rx_footprint == 0


@pytest.mark.parametrize("case", ["too_few", "other_summary", "other_broadcaster", "forged"])
def test_a_bad_certificate_is_evidence_against_its_sender(
    make_cluster: MakeCluster, case: str
) -> None:
    node = Node(make_cluster)
    good = node.cert(2, b"s2")
    bad = {
        "too_few": CtbCkptCert(B, 2, b"s2", Certificate((1,), good.cert.sigs[:1])),
        "other_summary": CtbCkptCert(B, 2, b"s2", node.cert(2, b"x").cert),
        "other_broadcaster": CtbCkptCert(B, 2, b"s2", node.cert(2, b"s2", b=2).cert),
        "forged": CtbCkptCert(B, 2, b"s2", Certificate((1, 2), (bytes(64), bytes(64)))),
    }[case]
    node.cast.on_cert(2, bad)
    assert node.evidence() == [(2, "ctbckpt.bad_certificate")]
    assert node.up.adopted == []
    node.ctb(TAIL, _m(TAIL))  # the tail did not move
    assert node.rx_footprint == 0
    node.cast.on_cert(2, good)
    assert node.up.adopted == [(B, 2, b"s2")]


def test_a_certificate_off_the_checkpoint_interval_is_evidence(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    node.cast.on_cert(2, node.cert(3, b"s3"))
    assert node.evidence() == [(2, "ctbckpt.bad_index")]
    assert node.up.adopted == [] and node.ctx.verifier.counter.verified == 0


def test_a_certificate_not_above_the_one_held_is_ignored_unchecked(
    make_cluster: MakeCluster,
) -> None:
    node = Node(make_cluster)
    node.cast.on_cert(2, node.cert(4, b"s4"))
    verified = node.ctx.verifier.counter.verified
    for c in (4, 2):
        node.cast.on_cert(2, CtbCkptCert(B, c, b"?", Certificate((1, 2), (bytes(64),) * 2)))
    assert node.evidence() == [] and node.ctx.verifier.counter.verified == verified
    assert node.up.adopted == [(B, 4, b"s4")]


def test_our_own_signature_in_a_certificate_is_not_verified_again(
    make_cluster: MakeCluster,
) -> None:
    node = Node(make_cluster)
    for k in range(2):
        node.ctb(k, _m(k))
        node.echo(2, k, _m(k))
    ((_, share),) = node.sent_of(CtbCkptShare)
    summary = node.up.ctb_summary(B, 2)
    own = node.cert(2, summary, signers=(1,))
    cert = CtbCkptCert(B, 2, summary, Certificate((0, 1), (share.sig, own.cert.sigs[0])))
    before = node.ctx.verifier.counter.verified
    node.cast.on_cert(2, cert)
    assert node.ctx.verifier.counter.verified == before + 1
    assert node.cast.receivers[B].cert_c == 2 and node.evidence() == []


@pytest.mark.parametrize("case", ["other_c", "other_summary", "same_summary_other_c"])
def test_our_signature_vouches_only_for_the_share_we_signed(
    make_cluster: MakeCluster, case: str
) -> None:
    node = Node(make_cluster)
    for k in range(2):
        node.ctb(k, _m(k))
        node.echo(2, k, _m(k))
    ((_, share),) = node.sent_of(CtbCkptShare)  # ours, for c = 2
    c, summary = {
        "other_c": (4, node.up.ctb_summary(B, 4)),
        "other_summary": (2, b"lie"),
        "same_summary_other_c": (4, node.up.ctb_summary(B, 2)),
    }[case]
    other = node.cert(c, summary, signers=(1,))
    forged = CtbCkptCert(B, c, summary, Certificate((0, 1), (share.sig, other.cert.sigs[0])))
    node.cast.on_cert(2, forged)
    assert node.evidence() == [(2, "ctbckpt.bad_certificate")]
    assert node.cast.receivers[B].cert_c == 0


def test_anyone_returns_the_latest_certificate_it_holds(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    node.cast.on_sig_request(2, CtbSigRequest(B, 0))
    assert node.sent() == []  # none held yet
    cert = node.cert(2, b"s2")
    node.cast.on_cert(2, cert)
    node.cast.on_sig_request(2, CtbSigRequest(B, 1))
    node.cast.on_sig_request(2, CtbSigRequest(B, 2))  # already there
    node.cast.on_sig_request(2, CtbSigRequest(7, 0))  # no such broadcaster
    assert node.sent() == [((2,), cert)]


# =========================================================================== forwarded proofs


def _proof(node: Node, k: int = 3) -> Equivocation:
    m1, m2 = _m(1), _m(2)
    return Equivocation(B, k, digest(m1), node.ctb_sig(k, m1), digest(m2), node.ctb_sig(k, m2))


def test_a_valid_forwarded_proof_stops_the_stream_without_forwarding_it(
    make_cluster: MakeCluster,
) -> None:
    node = Node(make_cluster)
    for k in range(2):
        node.ctb(k, _m(k))
        node.echo(2, k, _m(k))  # delivered; our share for 2 is out
    node.ctb(2, _m(2))
    proof = _proof(node)
    node.clear()
    node.cast.on_equivocation(2, proof)
    assert node.evidence() == [(B, "ctb.equivocation")]
    assert node.ctx.evidence.proofs == {B: proof}
    assert node.sent_of(Equivocation) == [] and node.rx_footprint == 0
    verified = node.ctx.verifier.counter.verified
    node.cast.on_equivocation(2, _proof(node, k=4))  # one proof per broadcaster
    assert node.evidence() == [(B, "ctb.equivocation")]
    assert node.ctx.verifier.counter.verified == verified  # not even checked
    node.echo(2, 2, _m(2))
    node.cast.receivers[B].resend_share()  # no longer: B's stream is over
    assert node.delivered() == [] and node.sent() == []


@pytest.mark.parametrize("case", ["same_digest", "bad_sig1", "bad_sig2", "other_signer", "other_k"])
def test_an_invalid_forwarded_proof_is_evidence_against_its_sender(
    make_cluster: MakeCluster, case: str
) -> None:
    node = Node(make_cluster)
    p = _proof(node)
    bad = {
        "same_digest": Equivocation(B, 3, p.digest1, p.sig1, p.digest1, p.sig1),
        "bad_sig1": Equivocation(B, 3, p.digest1, bytes(64), p.digest2, p.sig2),
        "bad_sig2": Equivocation(B, 3, p.digest1, p.sig1, p.digest2, bytes(64)),
        "other_signer": Equivocation(
            B, 3, p.digest1, node.ctb_sig(3, _m(1), signer=2), p.digest2, p.sig2
        ),
        "other_k": Equivocation(B, 4, p.digest1, p.sig1, p.digest2, node.ctb_sig(4, _m(2))),
    }[case]
    node.cast.on_equivocation(2, bad)
    assert node.evidence() == [(2, "ctb.bad_equivocation_proof")]
    assert node.ctx.evidence.proofs == {}
    node.ctb(0, _m(0))
    node.echo(2, 0, _m(0))
    assert node.delivered() == [(B, 0, _m(0))]


def test_a_proof_against_ourselves_is_ignored(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster)
    m1, m2 = _m(1), _m(2)
    proof = Equivocation(
        ME, 0, digest(m1), node.ctb_sig(0, m1, b=ME), digest(m2), node.ctb_sig(0, m2, b=ME)
    )
    node.cast.on_equivocation(2, proof)
    assert node.evidence() == [] and node.ctx.evidence.proofs == {}


# =========================================================================== broadcaster


def _bc(make_cluster: MakeCluster, f: int = 1, **params: Any) -> Node:
    return Node(make_cluster, f=f, **params)


def _shares_for(node: Node, c: int, signers: tuple[int, ...], summary: bytes | None = None) -> None:
    d = digest(node.up.ctb_summary(ME, c) if summary is None else summary)
    for r in signers:
        sig = node.keys.members[r].sign(Tag.CTB_CKPT, node.ctx.cluster, node.ctx.epoch, ME, c, d)
        node.cast.on_share(r, CtbCkptShare(ME, c, d, sig))


def test_a_broadcast_goes_to_every_other_replica_and_is_delivered_after_the_handler(
    make_cluster: MakeCluster,
) -> None:
    node = _bc(make_cluster)
    bc = node.cast.broadcaster
    bc.broadcast(_m(0))
    bc.broadcast(_m(1))
    assert node.sent() == [((1, 2), Ctb(ME, 0, _m(0))), ((1, 2), Ctb(ME, 1, _m(1)))]
    assert node.up.delivered == []
    bc.drain_self()
    assert node.delivered() == [(ME, 0, _m(0)), (ME, 1, _m(1))]
    bc.drain_self()
    assert len(node.delivered()) == 2


def test_the_broadcaster_signs_only_when_asked_or_in_always_mode(
    make_cluster: MakeCluster,
) -> None:
    node = _bc(make_cluster)
    node.cast.broadcaster.broadcast(_m(0))
    assert node.sent_of(CtbSig) == []
    always = _bc(make_cluster, slow_path_mode=SlowPathMode.ALWAYS)
    always.cast.broadcaster.broadcast(_m(0))
    ((targets, sig),) = always.sent_of(CtbSig)
    stmt = statement(Tag.CTB, always.ctx.cluster, always.ctx.epoch, ME, 0, digest(_m(0)))
    assert targets == (1, 2) and sig.k == 0 and always.ctx.verifier.verify(ME, stmt, sig.sig)


def test_the_broadcaster_stays_within_its_tail(make_cluster: MakeCluster) -> None:
    node = _bc(make_cluster)
    bc = node.cast.broadcaster
    for k in range(TAIL):
        assert bc.has_room()
        bc.broadcast(_m(k))
    assert not bc.has_room()
    for k in range(TAIL, TAIL + 3):
        bc.broadcast(_m(k))
    assert [m.k for _, m in node.sent_of(Ctb)] == list(range(TAIL))
    assert node.cast.pending() and bc.footprint() == TAIL + 3
    bc.drain_self()
    _shares_for(node, 2, (1,))  # certificate for 2: room for 4 and 5, not 6
    assert [m.k for _, m in node.sent_of(Ctb)] == list(range(TAIL + 2))
    assert not bc.has_room() and node.cast.pending()
    bc.drain_self()
    _shares_for(node, 4, (1,))
    assert [m.k for _, m in node.sent_of(Ctb)] == list(range(TAIL + 3))
    assert bc.has_room() and not node.cast.pending()


def test_a_queued_message_waits_behind_the_queue(make_cluster: MakeCluster) -> None:
    node = _bc(make_cluster)
    bc = node.cast.broadcaster
    for k in range(TAIL + 1):
        bc.broadcast(_m(k))
    bc.drain_self()
    _shares_for(node, 2, (1,))
    bc.broadcast(_m(9))  # room for one more now, but FIFO: it is sent after 4
    assert [m.m for _, m in node.sent_of(Ctb)][TAIL:] == [_m(TAIL), _m(9)]


@pytest.mark.parametrize("f", [1, 2])
def test_f_plus_1_matching_shares_certify_and_move_the_tail(
    make_cluster: MakeCluster, f: int
) -> None:
    node = _bc(make_cluster, f=f)
    bc = node.cast.broadcaster
    for k in range(3):
        bc.broadcast(_m(k))
    _shares_for(node, 2, tuple(range(1, f + 1)))  # before our own digest: kept
    assert node.sent_of(CtbCkptCert) == []
    bc.drain_self()
    ((targets, cert),) = node.sent_of(CtbCkptCert)
    summary = node.up.ctb_summary(ME, 2)
    assert targets == node.ctx.others and (cert.b, cert.c, cert.summary) == (ME, 2, summary)
    stmt = statement(Tag.CTB_CKPT, node.ctx.cluster, node.ctx.epoch, ME, 2, digest(summary))
    assert verify_certificate(node.ctx, cert.cert, stmt)
    assert bc.cert_c == 2 and bc.footprint() == 1  # message 2 left in the tail


def test_f_shares_do_not_certify(make_cluster: MakeCluster) -> None:
    node = _bc(make_cluster, f=2)
    bc = node.cast.broadcaster
    for k in range(2):
        bc.broadcast(_m(k))
    bc.drain_self()
    _shares_for(node, 2, (1,))
    _shares_for(node, 2, (2,), summary=b"something else")
    assert node.sent_of(CtbCkptCert) == [] and bc.cert_c == 0
    _shares_for(node, 2, (3,))
    assert bc.cert_c == 2


@pytest.mark.parametrize("c", [1, 3, 4])
def test_a_share_off_the_interval_or_beyond_what_was_sent_is_evidence(
    make_cluster: MakeCluster, c: int
) -> None:
    node = _bc(make_cluster)
    for k in range(3):
        node.cast.broadcaster.broadcast(_m(k))
    node.cast.broadcaster.drain_self()
    _shares_for(node, c, (2,))
    assert node.evidence() == [(2, "ctbckpt.bad_share")]
    assert node.ctx.verifier.counter.verified == 0


@pytest.mark.parametrize("case", ["wrong_signer", "wrong_b", "wrong_c", "garbage"])
def test_a_share_with_a_bad_signature_is_evidence(make_cluster: MakeCluster, case: str) -> None:
    node = _bc(make_cluster)
    bc = node.cast.broadcaster
    for k in range(2):
        bc.broadcast(_m(k))
    bc.drain_self()
    d = digest(node.up.ctb_summary(ME, 2))
    members, cl, ep = node.keys.members, node.ctx.cluster, node.ctx.epoch
    sig = {
        "wrong_signer": members[2].sign(Tag.CTB_CKPT, cl, ep, ME, 2, d),
        "wrong_b": members[1].sign(Tag.CTB_CKPT, cl, ep, 2, 2, d),
        "wrong_c": members[1].sign(Tag.CTB_CKPT, cl, ep, ME, 4, d),
        "garbage": bytes(64),
    }[case]
    node.cast.on_share(1, CtbCkptShare(ME, 2, d, sig))
    assert node.evidence() == [(1, "ctbckpt.bad_signature")]
    assert bc.cert_c == 0 and node.sent_of(CtbCkptCert) == []


def test_shares_for_a_certified_checkpoint_are_ignored(make_cluster: MakeCluster) -> None:
    node = _bc(make_cluster)
    bc = node.cast.broadcaster
    for k in range(2):
        bc.broadcast(_m(k))
    bc.drain_self()
    _shares_for(node, 2, (1,))
    verified = node.ctx.verifier.counter.verified
    node.cast.on_share(2, CtbCkptShare(ME, 2, bytes(32), bytes(64)))
    node.cast.on_share(2, CtbCkptShare(ME, 0, bytes(32), bytes(64)))
    assert node.evidence() == [] and node.ctx.verifier.counter.verified == verified
    assert len(node.sent_of(CtbCkptCert)) == 1


def test_shares_for_another_broadcaster_are_not_ours_to_count(make_cluster: MakeCluster) -> None:
    node = _bc(make_cluster)
    node.cast.on_share(2, CtbCkptShare(B, 2, bytes(32), bytes(64)))
    assert node.evidence() == [] and node.sent() == []


def test_resend_sends_the_certificate_then_the_tail_from_the_asked_index(
    make_cluster: MakeCluster,
) -> None:
    node = _bc(make_cluster)
    bc = node.cast.broadcaster
    for k in range(5):
        bc.broadcast(_m(k))
    bc.drain_self()
    _shares_for(node, 2, (1,))
    ((_, cert),) = node.sent_of(CtbCkptCert)
    node.clear()
    bc.resend(2, 0, with_sigs=False)  # from below the certificate: from 2 on
    assert node.sent() == [((2,), cert)] + [((2,), Ctb(ME, k, _m(k))) for k in (2, 3, 4)]
    node.clear()
    bc.resend(2, 3, with_sigs=True)
    sigs = [(m.k, m.sig) for _, m in node.sent_of(CtbSig)]
    assert [k for k, _ in sigs] == [3, 4]
    assert sigs[0][1] == node.ctb_sig(3, _m(3), b=ME)
    node.clear()
    bc.resend(2, 2, with_sigs=False)  # 3 and 4 are signed now: their signatures go along
    assert [(type(m).__name__, m.k) for _, m in node.sent() if isinstance(m, Ctb | CtbSig)] == [
        ("Ctb", 2),
        ("Ctb", 3),
        ("CtbSig", 3),
        ("Ctb", 4),
        ("CtbSig", 4),
    ]


def test_resend_skips_messages_younger_than_asked(make_cluster: MakeCluster) -> None:
    node = _bc(make_cluster)
    bc = node.cast.broadcaster
    for k in range(3):
        node.ctx.now_ns = 10 * k
        bc.broadcast(_m(k))
    node.clear()
    bc.resend(1, 0, with_sigs=False, sent_before_ns=10)
    assert [m.k for _, m in node.sent_of(Ctb)] == [0, 1]


def test_a_full_tail_is_pushed_again_at_each_sync_tick(make_cluster: MakeCluster) -> None:
    node = _bc(make_cluster)
    bc = node.cast.broadcaster
    sync = node.config.params.sync_interval_ns
    for k in range(TAIL - 1):
        bc.broadcast(_m(k))
    node.ctx.now_ns = sync
    bc.broadcast(_m(TAIL - 1))
    node.clear()
    bc.on_sync_tick()  # not full: nothing
    assert node.sent() == []
    bc.broadcast(_m(TAIL))  # queued
    node.ctx.now_ns = sync + sync // 2
    bc.on_sync_tick()
    # to every peer, what was sent at least half a sync interval ago (0..3, the last at sync)
    for peer in (1, 2):
        assert [m.k for t, m in node.sent_of(Ctb) if t == (peer,)] == [0, 1, 2, 3]
    assert node.sent_of(CtbSig) == []  # a push signs nothing
    node.clear()
    node.ctx.now_ns = sync + sync // 2 - 1
    bc.on_sync_tick()
    assert [m.k for t, m in node.sent_of(Ctb) if t == (1,)] == [0, 1, 2]


def test_a_signature_request_starts_signing_for_a_while_and_resends_signed(
    make_cluster: MakeCluster,
) -> None:
    node = _bc(make_cluster)
    bc = node.cast.broadcaster
    hold = node.config.params.sign_hold_ns
    bc.broadcast(_m(0))
    node.clear()
    node.cast.on_sig_request(2, CtbSigRequest(ME, 0))
    assert [type(m).__name__ for t, m in node.sent() if t == (2,)] == ["Ctb", "CtbSig"]
    node.clear()
    node.ctx.now_ns = hold - 1
    bc.broadcast(_m(1))
    assert [m.k for _, m in node.sent_of(CtbSig)] == [1]
    node.clear()
    node.ctx.now_ns = hold
    bc.broadcast(_m(2))
    assert node.sent_of(CtbSig) == []


def test_signature_requests_are_answered_once_per_half_timeout_per_requester(
    make_cluster: MakeCluster,
) -> None:
    node = _bc(make_cluster)
    bc = node.cast.broadcaster
    bc.broadcast(_m(0))
    node.clear()
    node.ctx.now_ns = 100
    node.cast.on_sig_request(2, CtbSigRequest(ME, 0))
    node.ctx.now_ns = 100 + T // 2 - 1
    node.cast.on_sig_request(2, CtbSigRequest(ME, 0))  # too soon: ignored
    node.cast.on_sig_request(1, CtbSigRequest(ME, 0))  # another requester: answered
    node.ctx.now_ns = 100 + T // 2
    node.cast.on_sig_request(2, CtbSigRequest(ME, 0))  # half a timeout later: answered
    assert [t for t, _ in node.sent_of(Ctb)] == [(2,), (1,), (2,)]


def test_broadcaster_footprint_counts_tail_queue_shares_and_digests(
    make_cluster: MakeCluster,
) -> None:
    node = _bc(make_cluster, f=2)
    bc = node.cast.broadcaster
    for k in range(TAIL + 1):
        bc.broadcast(_m(k))
    assert bc.footprint() == TAIL + 1
    bc.drain_self()  # own digests and shares for 2 and 4
    assert bc.footprint() == TAIL + 1 + 2 + 2
    _shares_for(node, 2, (1,))
    assert bc.footprint() == TAIL + 1 + 2 + 2 + 1
    assert node.cast.footprint() == bc.footprint()


# =========================================================================== router odds and ends


def test_pending_while_a_receiver_holds_a_slot_or_the_tail_is_full(
    make_cluster: MakeCluster,
) -> None:
    node = Node(make_cluster)
    assert not node.cast.pending()
    node.ctb(0, _m(0))
    assert node.cast.pending() and node.cast.footprint() == 1
    node.echo(2, 0, _m(0))
    assert not node.cast.pending() and node.cast.footprint() == 0


def test_receiver_footprint_counts_slots_and_echoes(make_cluster: MakeCluster) -> None:
    node = Node(make_cluster, f=2)
    node.ctb(0, _m(0))
    node.echo(2, 0, _m(0))
    node.echo(3, 1, _m(1))
    node.echo(4, 1, _m(1))
    assert node.rx_footprint == 2 + 3
    assert node.cast.footprint() == 5


def test_durable_mode_persists_what_was_sent_and_accepted_before_it_goes_out(
    make_cluster: MakeCluster,
) -> None:
    node = Node(make_cluster, durable=True)
    node.cast.broadcaster.broadcast(_m(0))
    node.ctb(0, _m(7))
    kinds = [type(a).__name__ for a in node.ctx.outbox if isinstance(a, Persist | Send)]
    assert kinds == ["Persist", "Send", "Persist", "Send"]
    persisted = [a for a in node.ctx.outbox if isinstance(a, Persist)]
    assert persisted == [
        Persist(PersistKind.CTB_SENT, 0, 0, _m(0)),
        Persist(PersistKind.CTB_ACCEPTED, B, 0, digest(_m(7))),
    ]
    plain = Node(make_cluster)
    plain.cast.broadcaster.broadcast(_m(0))
    plain.ctb(0, _m(7))
    assert not any(isinstance(a, Persist) for a in plain.ctx.outbox)
