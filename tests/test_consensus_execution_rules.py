"""PROTOCOL.md section 4, "Execution and replies", "Exactly-once execution" and "Admission",
one rule per test, on the executor directly (decided batches in, ``Executed`` actions and
replies out) and, for the replies a client sees, on one real replica.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ubft.replica.core.actions import Executed, SendClient
from ubft.replica.core.admission import (
    AdminCommand,
    AdminOp,
    admin_command,
    encode_admin_command,
)
from ubft.replica.core.codec import decode, encode, encode_payload
from ubft.replica.core.context import Context
from ubft.replica.core.crypto import Signer, Tag, Verifier, digest
from ubft.replica.core.execution import Executor
from ubft.replica.core.messages import (
    Batch,
    Ctb,
    CtbEcho,
    Entry,
    FastCommit,
    Prepare,
    Promise,
    Reply,
    Request,
)
from ubft.replica.core.replica import Replica
from ubft.replica.core.request_log import OUT_OF_WINDOW, REPLY_TOO_LARGE, RequestLog
from ubft.replica.sim.scripted import Echo

CID = 100
CID2 = 101
NEW = 200
ADMIN = 0  # the admin submits its commands as client 0 (PROTOCOL.md section 4, Admission)


class Exec:
    """An executor of replica 1 with its own client table, a recording app and reply list."""

    def __init__(self, make_cluster: Callable[..., Any], **params: Any) -> None:
        params.setdefault("clients", 2)
        self.config, self.keys = make_cluster(**params)
        p = self.config.params
        self.ctx = Context(
            self.config,
            1,
            self.keys.members[1],
            Verifier(self.config.member_keys(), self.keys.counter),
        )
        self.log = RequestLog(
            self.keys.client_keys(),
            p.client_window,
            p.max_reply_bytes,
            admin_key=self.keys.admin.public_key,
            max_clients=p.max_clients,
        )
        self.app = Echo()
        self.replies: list[tuple[int, int, bytes]] = []
        self.ex = Executor(
            self.app, self.log, p.checkpoint_interval, self.keys.admin.public_key, first=0
        )
        self.ex.bind(self.ctx)
        self.ex.reply = lambda c, r, res: self.replies.append((c, r, res))
        self.cluster = self.config.cluster_id_bytes
        self.s = 0
        self.rid = 0
        self.instance = 0

    def run(self, *entries: Entry, ts: int = 1000) -> None:
        """Decide and execute the next instance."""
        self.ex.decide(self.instance, Batch(ts, tuple(entries)))
        self.instance += 1

    def admin(
        self,
        op: AdminOp,
        cid: int,
        key: bytes = bytes(32),
        s: int | None = None,
        signer: Signer | None = None,
    ) -> Entry:
        """An admin request (its own request id) carrying a command with sequence number s."""
        self.s = self.s + 1 if s is None else s
        self.rid += 1
        payload = admin_command(signer or self.keys.admin, self.cluster, 0, op, cid, key, self.s)
        return Entry(ADMIN, self.rid, payload)

    def executed(self) -> list[tuple[int, int, int, bytes]]:
        return [
            (a.instance, a.client_id, a.request_id, a.result)
            for a in self.ctx.outbox
            if isinstance(a, Executed)
        ]

    def results(self) -> list[bytes]:
        return [r for _, _, r in self.replies]


@pytest.fixture
def ex(make_cluster: Callable[..., Any]) -> Exec:
    return Exec(make_cluster)


def _key(seed: int) -> bytes:
    return Signer(bytes([seed]) * 32).public_key


# ============================================================ order and hooks


def test_batches_execute_in_instance_order_only(ex: Exec) -> None:
    ex.ex.decide(1, Batch(1, (Entry(CID, 2, b"b"),)))
    assert ex.executed() == [] and ex.ex.exec_next == 0
    ex.ex.decide(0, Batch(1, (Entry(CID, 1, b"a"),)))
    assert [(i, c, r) for i, c, r, _ in ex.executed()] == [(0, CID, 1), (1, CID, 2)]
    assert ex.ex.exec_next == 2
    ex.ex.decide(0, Batch(1, (Entry(CID, 3, b"c"),)))  # below exec_next: nothing
    assert len(ex.executed()) == 2 and ex.ex.decided == {}


def test_hooks_fire_per_instance_per_checkpoint_and_per_run(
    make_cluster: Callable[..., Any],
) -> None:
    ex = Exec(make_cluster, window=4, inflight_max=2)
    after: list[int] = []
    ckpts: list[int] = []
    runs: list[int] = []
    ex.ex.after_instance = lambda i, _b: after.append(i)
    ex.ex.at_checkpoint = ckpts.append
    ex.ex.after_run = lambda: runs.append(ex.ex.exec_next)
    ex.ex.decide(1, Batch(1, ()))
    assert runs == [], "nothing executed: no run ended"
    for i in (0, 2, 3, 4):
        ex.ex.decide(i, Batch(1, ()))
    assert after == [0, 1, 2, 3, 4]
    assert ckpts == [2, 4]
    assert runs == [2, 3, 4, 5]


# ============================================================ application clock


def test_the_application_clock_is_the_max_of_ts_and_the_previous_clock(ex: Exec) -> None:
    ex.run(Entry(CID, 1, b"a"), ts=0)
    ex.run(Entry(CID, 2, b"b"), ts=100)
    ex.run(Entry(CID, 3, b"c"), ts=50)
    ex.run(Entry(CID, 4, b"d"), ts=200)
    assert [clock for _, clock in ex.app.calls] == [0, 100, 100, 200]
    assert ex.ex.app_clock == 200


# ============================================================ exactly-once verdicts


def test_executed_recorded_and_replied(ex: Exec) -> None:
    ex.run(Entry(CID, 1, b"a"))
    assert ex.executed() == [(0, CID, 1, b"r:a")]
    assert ex.replies == [(CID, 1, b"r:a")]


def test_a_duplicate_is_skipped_and_its_cached_reply_resent(ex: Exec) -> None:
    ex.run(Entry(CID, 1, b"a"))
    ex.run(Entry(CID, 1, b"other bytes"))
    assert len(ex.executed()) == 1 and len(ex.app.calls) == 1
    assert ex.replies == [(CID, 1, b"r:a"), (CID, 1, b"r:a")]


def test_a_duplicate_above_h_is_skipped_too(ex: Exec) -> None:
    ex.run(Entry(CID, 3, b"c"))
    ex.run(Entry(CID, 3, b"c"))
    assert len(ex.app.calls) == 1
    assert ex.results() == [b"r:c", b"r:c"]


def test_a_duplicate_whose_reply_was_evicted_gets_no_reply(
    make_cluster: Callable[..., Any],
) -> None:
    ex = Exec(make_cluster, client_window=1)
    ex.run(Entry(CID, 1, b"a"))
    ex.run(Entry(CID, 2, b"b"))
    ex.run(Entry(CID, 1, b"a"))
    assert ex.replies == [(CID, 1, b"r:a"), (CID, 2, b"r:b")]


def test_beyond_h_plus_client_window_is_out_of_window(make_cluster: Callable[..., Any]) -> None:
    ex = Exec(make_cluster, client_window=4)
    ex.run(Entry(CID, 4, b"a"), Entry(CID, 5, b"b"))
    assert [(c, r) for _, c, r, _ in ex.executed()] == [(CID, 4)]
    assert ex.replies == [(CID, 4, b"r:a"), (CID, 5, OUT_OF_WINDOW)]
    ex.run(Entry(CID, 5, b"b"))  # still beyond h + 4 = 4: nothing recorded for it
    assert ex.replies[-1] == (CID, 5, OUT_OF_WINDOW)


def test_an_unregistered_client_is_skipped_without_reply(ex: Exec) -> None:
    ex.run(Entry(999, 1, b"a"))
    assert ex.executed() == [] and ex.replies == [] and ex.app.calls == []


def test_an_oversized_result_is_replaced_identically(make_cluster: Callable[..., Any]) -> None:
    ex = Exec(make_cluster, max_reply_bytes=16)
    ex.run(Entry(CID, 1, b"x" * 14))  # "r:" + 14 bytes = 16: fits
    ex.run(Entry(CID, 2, b"x" * 15))
    assert ex.results() == [b"r:" + b"x" * 14, REPLY_TOO_LARGE]


# ============================================================ admin commands


def test_register_admits_a_client_and_consumes_s(ex: Exec) -> None:
    ex.run(ex.admin(AdminOp.REGISTER, NEW, _key(7)))
    assert ex.results() == [b"OK"]
    assert ex.log.clients[NEW].key == _key(7) and ex.log.admin_s == 1
    assert ex.app.calls == [], "admin commands never reach the application"
    ex.run(Entry(NEW, 1, b"n"))
    assert ex.results()[-1] == b"r:n"


def test_deregister_removes_a_client(ex: Exec) -> None:
    ex.run(ex.admin(AdminOp.DEREGISTER, CID))
    assert ex.results() == [b"OK"]
    assert CID not in ex.log.clients
    ex.run(Entry(CID, 1, b"a"))
    assert ex.app.calls == []


def test_an_admin_command_with_a_bad_signature_fails(ex: Exec) -> None:
    ex.run(ex.admin(AdminOp.REGISTER, NEW, _key(7), signer=Signer(b"\x42" * 32)))
    assert ex.results() == [b"ERR bad admin signature"]
    assert NEW not in ex.log.clients and ex.log.admin_s == 0


def test_a_command_signed_for_another_epoch_fails(ex: Exec) -> None:
    payload = admin_command(ex.keys.admin, ex.cluster, 1, AdminOp.DEREGISTER, CID, bytes(32), 1)
    ex.run(Entry(ADMIN, 1, payload))
    assert ex.results() == [b"ERR bad admin signature"]
    assert CID in ex.log.clients


def test_a_stale_sequence_number_fails(ex: Exec) -> None:
    ex.run(ex.admin(AdminOp.REGISTER, NEW, _key(7), s=5))
    ex.run(ex.admin(AdminOp.DEREGISTER, NEW, s=5))
    ex.run(ex.admin(AdminOp.DEREGISTER, NEW, s=4))
    assert ex.results() == [b"OK", b"ERR stale sequence number", b"ERR stale sequence number"]
    assert NEW in ex.log.clients and ex.log.admin_s == 5
    ex.run(ex.admin(AdminOp.DEREGISTER, NEW, s=6))
    assert ex.results()[-1] == b"OK"


def test_a_failed_command_does_not_consume_its_s(ex: Exec) -> None:
    ex.run(ex.admin(AdminOp.REGISTER, CID, ex.keys.clients[CID].public_key, s=3))
    assert ex.results() == [b"ERR key already used for this client id"]
    assert ex.log.admin_s == 0
    ex.run(ex.admin(AdminOp.DEREGISTER, 999, s=3))
    assert ex.results()[-1] == b"ERR not registered"
    ex.run(ex.admin(AdminOp.REGISTER, NEW, _key(7), s=3))
    assert ex.results()[-1] == b"OK" and ex.log.admin_s == 3


def test_register_beyond_max_clients_fails(make_cluster: Callable[..., Any]) -> None:
    ex = Exec(make_cluster, max_clients=2)
    ex.run(ex.admin(AdminOp.REGISTER, NEW, _key(7)))
    assert ex.results() == [b"ERR max_clients reached"]
    ex.run(ex.admin(AdminOp.DEREGISTER, CID2))
    ex.run(ex.admin(AdminOp.REGISTER, NEW, _key(7)))
    assert ex.results()[1:] == [b"OK", b"OK"]


def test_a_new_key_gives_a_fresh_table(ex: Exec) -> None:
    ex.run(Entry(CID, 1, b"a"))
    ex.run(ex.admin(AdminOp.REGISTER, CID, _key(9)))
    assert ex.results()[-1] == b"OK"
    ex.run(Entry(CID, 1, b"again"))
    assert ex.app.calls[-1][0] == b"again"


def test_malformed_admin_payload_fails(ex: Exec) -> None:
    ex.run(Entry(ADMIN, 1, b"not a command"))
    assert ex.results() == [b"ERR malformed admin command"]
    assert ex.log.admin_s == 0


def test_register_of_the_admin_id_fails(ex: Exec) -> None:
    cmd_sig = ex.keys.admin.sign(Tag.CLIENT, ex.cluster, 0, 1, 0, _key(3), 1)
    payload = encode_admin_command(AdminCommand(AdminOp.REGISTER, 0, _key(3), 1, cmd_sig))
    ex.run(Entry(ADMIN, 1, payload))
    assert ex.results() == [b"ERR reserved client id"]


def test_an_entry_after_a_command_naming_its_client_in_one_batch_is_skipped(ex: Exec) -> None:
    ex.run(ex.admin(AdminOp.REGISTER, NEW, _key(7)), Entry(NEW, 1, b"n"), Entry(CID, 1, b"c"))
    assert [(c, r) for _, c, r, _ in ex.executed()] == [(ADMIN, 1), (CID, 1)]
    assert ex.log.clients[NEW].h == 0
    ex.run(Entry(NEW, 1, b"n"))
    assert [(c, r) for _, c, r, _ in ex.executed()][-1] == (NEW, 1)


def test_an_entry_before_a_command_naming_its_client_executes(ex: Exec) -> None:
    ex.run(Entry(CID, 1, b"c"), ex.admin(AdminOp.REGISTER, CID, _key(7)))
    assert [(c, r) for _, c, r, _ in ex.executed()] == [(CID, 1), (ADMIN, 1)]


def test_a_client_payload_shaped_like_a_command_is_an_application_command(ex: Exec) -> None:
    fake = admin_command(ex.keys.admin, ex.cluster, 0, AdminOp.DEREGISTER, CID2, bytes(32), 1)
    ex.run(Entry(CID, 1, fake), Entry(CID2, 1, b"d"))
    assert ex.app.calls[0][0] == fake
    assert [(c, r) for _, c, r, _ in ex.executed()] == [(CID, 1), (CID2, 1)]
    assert CID2 in ex.log.clients


# ============================================================ replies through a replica


def test_a_replica_replies_with_its_epoch_and_resends_cached_replies(
    make_cluster: Callable[..., Any],
) -> None:
    config, keys = make_cluster(clients=1)
    rep = Replica(config, 1, keys.members[1], Echo(), keys.client_keys())
    cluster = config.cluster_id_bytes
    sig = keys.clients[CID].sign(Tag.REQ, cluster, None, CID, 1, digest(b"a"))
    m = encode_payload(Prepare(0, 0, Batch(5, (Entry(CID, 1, b"a", sig),))))
    now = 1000
    rep.receive(0, encode(Ctb(0, 0, m), 0), now)
    rep.receive(2, encode(CtbEcho(0, 0, False, m), 0), now)
    rep.receive(2, encode(Promise(0, 0), 0), now)
    rep.receive(0, encode(FastCommit(0, 0), 0), now)
    rep.receive(2, encode(FastCommit(0, 0), 0), now)
    rep.receive_client(CID, encode(Request(CID, 1, b"a"), 0), now)  # a resend
    out = rep.take_actions()
    replies = [decode(a.frame)[1] for a in out if isinstance(a, SendClient)]
    assert replies == [Reply(0, CID, 1, b"r:a")] * 2
    assert all(a.client_id == CID for a in out if isinstance(a, SendClient))
