"""PROTOCOL.md section 4, "Admission": the admin's Register / Deregister commands, their wire
layout and signed statement (fixed: every replica must read and check them alike), and what
executing them does to the client table. The admin submits as client 0.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from ubft.replica.core.actions import Executed
from ubft.replica.core.admission import (
    COMMAND_BYTES,
    AdminCommand,
    AdminOp,
    admin_command,
    command_statement,
    decode_admin_command,
    encode_admin_command,
)
from ubft.replica.core.context import Context
from ubft.replica.core.crypto import Signer, Tag, Verifier, statement, verify_with_key
from ubft.replica.core.execution import Executor
from ubft.replica.core.messages import Batch, Entry
from ubft.replica.core.request_log import RequestLog

MAGIC = b"ubft-admin\x01"
CLUSTER = b"test"


def _key(seed: int) -> bytes:
    return Signer(bytes([seed]) * 32).public_key


def _raw(op: int, cid: int, key: bytes, s: int, sig: bytes) -> bytes:
    return MAGIC + struct.pack(">BI32sQ64s", op, cid, key, s, sig)


# ============================================================ wire layout and statement


def test_the_command_layout_is_fixed() -> None:
    assert len(MAGIC) + 1 + 4 + 32 + 8 + 64 == COMMAND_BYTES
    sig = bytes(range(64))
    cmd = AdminCommand(AdminOp.REGISTER, 7, _key(1), 9, sig)
    assert encode_admin_command(cmd) == _raw(1, 7, _key(1), 9, sig)
    dereg = AdminCommand(AdminOp.DEREGISTER, 7, bytes(32), 9, sig)
    assert encode_admin_command(dereg) == _raw(2, 7, bytes(32), 9, sig)


@pytest.mark.parametrize("op", [1, 2])
def test_hand_built_commands_decode(op: int) -> None:
    sig = bytes(range(64))
    cmd = decode_admin_command(_raw(op, 7, _key(1), 9, sig))
    assert cmd == AdminCommand(AdminOp(op), 7, _key(1), 9, sig)
    assert cmd is not None and int(cmd.op) == op


@pytest.mark.parametrize(
    "payload",
    [
        _raw(0, 7, bytes(32), 1, bytes(64)),
        _raw(3, 7, bytes(32), 1, bytes(64)),
        _raw(1, 7, bytes(32), 1, bytes(64))[:-1],
        _raw(1, 7, bytes(32), 1, bytes(64)) + b"\x00",
        b"ubft-admin\x02" + _raw(1, 7, bytes(32), 1, bytes(64))[len(MAGIC) :],
        b"",
    ],
)
def test_anything_else_is_no_command(payload: bytes) -> None:
    assert decode_admin_command(payload) is None


def test_the_signed_statement_is_op_client_key_s() -> None:
    admin = Signer(b"\x01" * 32)
    for op, number in ((AdminOp.REGISTER, 1), (AdminOp.DEREGISTER, 2)):
        key = _key(4) if op is AdminOp.REGISTER else bytes(32)
        payload = admin_command(admin, CLUSTER, 3, op, 42, _key(4), 11)
        cmd = decode_admin_command(payload)
        assert cmd is not None
        assert (cmd.op, cmd.client_id, cmd.key, cmd.s) == (op, 42, key, 11)
        stmt = statement(Tag.CLIENT, CLUSTER, 3, number, 42, key, 11)
        assert command_statement(cmd, CLUSTER, 3) == stmt
        assert verify_with_key(admin.public_key, stmt, cmd.sig, admin.counter)
        assert cmd.statement_fields() == (number, 42, key, 11)


# ============================================================ executing commands


class Admin:
    """An executor with a client table, run by hand with admin entries of client 0."""

    def __init__(self, make_cluster: Callable[..., Any], **params: Any) -> None:
        self.config, self.keys = make_cluster(**params)
        p = self.config.params
        ctx = Context(
            self.config,
            1,
            self.keys.members[1],
            Verifier(self.config.member_keys(), self.keys.counter),
        )
        self.ctx = ctx
        self.log = RequestLog(
            self.keys.client_keys(),
            p.client_window,
            p.max_reply_bytes,
            admin_key=self.keys.admin.public_key,
            max_clients=p.max_clients,
        )
        self.results: list[bytes] = []
        self.ex = Executor(_App(), self.log, p.checkpoint_interval, self.keys.admin.public_key, 0)
        self.ex.bind(ctx)
        self.ex.reply = lambda _c, _r, res: self.results.append(res)
        self.i = 0

    def run(self, op: AdminOp, cid: int, key: bytes, s: int, rid: int | None = None) -> bytes:
        payload = admin_command(self.keys.admin, self.config.cluster_id_bytes, 0, op, cid, key, s)
        self.ex.decide(self.i, Batch(1, (Entry(0, rid or self.i + 1, payload),)))
        self.i += 1
        return self.results[-1]


class _App:
    def apply(self, command: bytes, clock_ns: int) -> bytes:
        return b"app"

    def snapshot(self) -> bytes:
        return b""

    def restore(self, snapshot: bytes) -> None:
        raise NotImplementedError

    def digest(self) -> bytes:
        return bytes(32)


def test_the_admin_is_client_0_of_every_table() -> None:
    log = RequestLog({5: _key(5)}, 4, 64, admin_key=_key(9))
    assert sorted(log.clients) == [0, 5]
    assert log.clients[0].key == _key(9)
    assert log.registered() == 1


def test_commands_of_client_0_change_the_table(make_cluster: Callable[..., Any]) -> None:
    a = Admin(make_cluster)
    assert a.run(AdminOp.REGISTER, 300, _key(3), 1) == b"OK"
    assert a.log.clients[300].key == _key(3)
    executed = [x for x in a.ctx.outbox if isinstance(x, Executed)]
    assert [(x.client_id, x.result) for x in executed] == [(0, b"OK")]
    assert a.run(AdminOp.DEREGISTER, 300, bytes(32), 2) == b"OK"
    assert 300 not in a.log.clients and a.log.admin_s == 2


def test_register_with_a_key_the_id_had_fails(make_cluster: Callable[..., Any]) -> None:
    a = Admin(make_cluster)
    assert a.run(AdminOp.REGISTER, 300, _key(3), 1) == b"OK"
    assert a.run(AdminOp.DEREGISTER, 300, bytes(32), 2) == b"OK"
    assert a.run(AdminOp.REGISTER, 300, _key(3), 3) == b"ERR key already used for this client id"
    assert a.run(AdminOp.REGISTER, 300, _key(4), 3) == b"OK"


def test_register_beyond_max_clients_fails_deterministically(
    make_cluster: Callable[..., Any],
) -> None:
    a = Admin(make_cluster, clients=1, max_clients=1)
    assert a.run(AdminOp.REGISTER, 300, _key(3), 1) == b"ERR max_clients reached"
    assert a.log.admin_s == 0


def test_a_command_is_executed_once_per_admin_request_id(make_cluster: Callable[..., Any]) -> None:
    a = Admin(make_cluster)
    assert a.run(AdminOp.REGISTER, 300, _key(3), 1, rid=1) == b"OK"
    assert a.run(AdminOp.DEREGISTER, 300, bytes(32), 2, rid=1) == b"OK"  # the cached reply
    assert 300 in a.log.clients and a.log.admin_s == 1
