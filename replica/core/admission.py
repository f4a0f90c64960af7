"""Client admission (PROTOCOL.md section 4, "Admission"): admin-signed Register and
Deregister commands, ordered and executed like requests. The admin submits them as client
``ADMIN_CLIENT_ID``; what it signs is the "client" statement (op, client_id, key, s), so a
command is valid on every replica alike, whoever relayed it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from .crypto import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Signer, Tag, statement

ADMIN_CLIENT_ID = 0  # reserved: registered clients have ids >= 1

_MAGIC = b"ubft-admin\x01"
_BODY = struct.Struct(">BI32sQ64s")
COMMAND_BYTES = len(_MAGIC) + _BODY.size

RESULT_OK = b"OK"


class AdminOp(IntEnum):
    REGISTER = 1
    DEREGISTER = 2


@dataclass(frozen=True, slots=True)
class AdminCommand:
    op: AdminOp
    client_id: int
    key: bytes  # the client's Ed25519 key (Register); 32 zero bytes for Deregister
    s: int  # admin sequence number: executed only above the last executed one
    sig: bytes

    def statement_fields(self) -> tuple[int, int, bytes, int]:
        return (int(self.op), self.client_id, self.key, self.s)


def encode_admin_command(cmd: AdminCommand) -> bytes:
    return _MAGIC + _BODY.pack(int(cmd.op), cmd.client_id, cmd.key, cmd.s, cmd.sig)


def decode_admin_command(payload: bytes) -> AdminCommand | None:
    """The command in a request payload of the admin, or None if it is not one."""
    if len(payload) != COMMAND_BYTES or not payload.startswith(_MAGIC):
        return None
    op, client_id, key, s, sig = _BODY.unpack_from(payload, len(_MAGIC))
    if op not in (AdminOp.REGISTER, AdminOp.DEREGISTER):
        return None
    return AdminCommand(AdminOp(op), client_id, key, s, sig)


def admin_command(
    admin: Signer, cluster: bytes, epoch: int, op: AdminOp, client_id: int, key: bytes, s: int
) -> bytes:
    """A signed command, ready to submit as the payload of an admin request."""
    key = key if op is AdminOp.REGISTER else bytes(PUBLIC_KEY_BYTES)
    assert len(key) == PUBLIC_KEY_BYTES and client_id != ADMIN_CLIENT_ID
    sig = admin.sign(Tag.CLIENT, cluster, epoch, int(op), client_id, key, s)
    assert len(sig) == SIGNATURE_BYTES
    return encode_admin_command(AdminCommand(op, client_id, key, s, sig))


def command_statement(cmd: AdminCommand, cluster: bytes, epoch: int) -> bytes:
    return statement(Tag.CLIENT, cluster, epoch, *cmd.statement_fields())
