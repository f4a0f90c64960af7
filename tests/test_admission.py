"""Client admission (PROTOCOL.md section 4): ordered, admin-signed Register / Deregister."""

from __future__ import annotations

import pytest
from ubft.replica.core.admission import (
    ADMIN_CLIENT_ID,
    AdminOp,
    admin_command,
    command_statement,
    decode_admin_command,
)
from ubft.replica.core.crypto import SignatureCounter, Signer, verify_with_key
from ubft.replica.core.request_log import RequestLog
from ubft.replica.sim.run import run_schedule

ADMIN = Signer(b"\x01" * 32)
KEY_A, KEY_B = Signer(b"\x02" * 32).public_key, Signer(b"\x03" * 32).public_key


def test_command_round_trip_and_signature() -> None:
    payload = admin_command(ADMIN, b"c", 4, AdminOp.REGISTER, 7, KEY_A, 3)
    cmd = decode_admin_command(payload)
    assert cmd is not None and (cmd.op, cmd.client_id, cmd.key, cmd.s) == (
        AdminOp.REGISTER,
        7,
        KEY_A,
        3,
    )
    counter = SignatureCounter()
    assert verify_with_key(ADMIN.public_key, command_statement(cmd, b"c", 4), cmd.sig, counter)
    # bound to cluster and epoch
    assert not verify_with_key(ADMIN.public_key, command_statement(cmd, b"c", 5), cmd.sig, counter)
    assert not verify_with_key(ADMIN.public_key, command_statement(cmd, b"d", 4), cmd.sig, counter)


@pytest.mark.parametrize("payload", [b"", b"SET x 1", b"ubft-admin\x01" + bytes(10), bytes(120)])
def test_anything_else_is_not_a_command(payload: bytes) -> None:
    assert decode_admin_command(payload) is None


def test_register_deregister_rules() -> None:
    log = RequestLog(
        {1: KEY_A}, client_window=4, max_reply=64, admin_key=ADMIN.public_key, max_clients=2
    )
    assert ADMIN_CLIENT_ID in log.clients and log.registered() == 1
    assert log.register(1, KEY_A) == "key already used for this client id"
    assert log.register(ADMIN_CLIENT_ID, KEY_B) == "reserved client id"
    assert log.register(2, KEY_B) is None
    assert log.register(3, Signer(b"\x04" * 32).public_key) == "max_clients reached"
    assert log.deregister(2) is None and 2 not in log.clients
    assert log.deregister(2) == "not registered"
    assert log.register(2, KEY_B) == "key already used for this client id", "only with a new key"
    assert log.register(2, Signer(b"\x05" * 32).public_key) is None
    assert log.deregister(ADMIN_CLIENT_ID) == "not registered"


def test_client_table_bytes_cover_admission_state() -> None:
    log = RequestLog({1: KEY_A}, client_window=4, max_reply=64, admin_key=ADMIN.public_key)
    before = log.table_bytes()
    log.register(2, KEY_B)
    after_register = log.table_bytes()
    log.deregister(2)
    assert len({before, after_register, log.table_bytes()}) == 3
    log.admin_s = 9
    assert log.table_bytes() != before


def test_genesis_may_not_use_the_admin_id() -> None:
    with pytest.raises(ValueError, match="reserved"):
        RequestLog({ADMIN_CLIENT_ID: KEY_A}, client_window=4, max_reply=64)


@pytest.mark.parametrize("seed", range(3))
def test_admitted_clients_run_after_their_register_is_executed(seed: int) -> None:
    res = run_schedule(seed, "admission")
    # the scenario also checks that a reused key and a stale sequence number are refused
    assert res.violations == []
    assert res.requests_completed == res.requests_issued == 24
