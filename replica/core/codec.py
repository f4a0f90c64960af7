"""Binary wire format of every ``Message`` and of every CTBcast value (``Payload``).

All integers are big-endian and unsigned. Widths used below: ``u8``, ``u16``, ``u32``,
``u64``; ``d32`` is a 32-byte digest, ``s64`` a 64-byte Ed25519 signature, both raw (no
length prefix); ``bytes32(L)`` is a ``u32`` length followed by that many bytes, at most ``L``.

Frame
=====

::

    u32 length        number of bytes after this field (= len(frame) - 4)
    u8  version       WIRE_VERSION (1)
    u8  kind          MsgKind
    u32 epoch
    body              per kind, below; must be consumed exactly

``FRAME_HEADER`` (``>IBBI``, 10 bytes) packs the first four fields. A whole frame, length
field included, is at most ``MAX_FRAME_BYTES``; a stream reader rejects a length field above
``MAX_FRAME_BYTES - 4`` before reading the rest. The header, its limits and ``DecodeError`` are
``ubft.framing``'s, shared with the memory node's codec.

Bodies (replica <-> replica)::

    CTB              b u16 | k u64 | m bytes32(MAX_VALUE_BYTES)
    CTB_ECHO         b u16 | k u64 | is_digest u8 (0/1) | data bytes32(MAX_VALUE_BYTES)
                     (is_digest = 1: data is exactly 32 bytes)
    CTB_SIG          b u16 | k u64 | sig s64
    CTB_SIG_REQUEST  b u16 | from_k u64
    CTB_CKPT_SHARE   b u16 | c u64 | digest d32 | sig s64
    CTB_CKPT_CERT    b u16 | c u64 | summary bytes32(MAX_PAYLOAD_BYTES) | cert CERT
    PROMISE          view u64 | instance u64
    FAST_COMMIT      view u64 | instance u64
    PREP_SHARE       view u64 | instance u64 | digest d32 | sig s64
    CKPT_SHARE       c u64 | digest d32 | sig s64
    REQUEST_ECHO     client_id u32 | request_id u64 | digest d32
    REQUEST_ECHOES   count u16 | count x (client_id u32 | request_id u64 | digest d32)
    REQUEST_FORWARD  REQ
    EQUIVOCATION     b u16 | k u64 | digest1 d32 | sig1 s64 | digest2 d32 | sig2 s64
    SYNC             next_k u64 | cert_c u64 | exec_next u64 | stable_c u64

Bodies (client <-> replica)::

    REQUEST          REQ
    REPLY            epoch u32 | client_id u32 | request_id u64 | result bytes32(MAX_PAYLOAD_BYTES)

Bodies (memory nodes): ``MEM_READ``, ``MEM_WRITE``, ``MEM_READ_REPLY``, ``MEM_WRITE_REPLY``
and ``MEM_MARK_KNOWN`` are defined, encoded and decoded by ``ubft.memnode.wire``, below the
core; ``encode`` and ``decode`` here register its encoders and decoders, so they read and write
every frame.

Shared parts::

    REQ / ENTRY      client_id u32 | request_id u64 | payload bytes32(MAX_PAYLOAD_BYTES)
                     | u8 n | sig (n = 0 or 64)
    BATCH            ts u64 | u16 count (<= MAX_BATCH_ENTRIES) | count x ENTRY
    CERT             u8 count (<= MAX_CERT_SIGNERS) | count x (signer u16 | sig s64)
                     signers strictly ascending

A batch entry and a request have the same encoding, so a request's bytes can be copied into a
batch unchanged. A certificate may be empty (count 0) on the wire; whether it holds enough
signatures is for the verifier to decide.

CTBcast values
==============

``encode_payload`` gives the bytes ``m`` a broadcaster sends in ``Ctb``, at most
``MAX_VALUE_BYTES``::

    u8 version (PAYLOAD_VERSION = 1) | u8 kind (PayloadKind) | body

    PREPARE     view u64 | instance u64 | BATCH
    COMMIT      view u64 | instance u64 | CERT | BATCH
    CHECKPOINT  c u64 | digest d32 | CERT
    SEAL_VIEW   view u64

``encode_batch`` gives ``BATCH``, the canonical bytes that ``digest(batch)`` covers. In
PREPARE and COMMIT the batch is the *tail* of the value, so a receiver can digest the batch
without re-encoding it: ``digest(encode_batch(p.batch)) == digest(m[start:])`` where ``start``
is 18 for PREPARE and ``18 + 1 + 66 * cert_count`` for COMMIT. ``NEW_VIEW`` is reserved and
does not decode.

Errors
======

Every encoding is canonical: anything ``decode`` accepts re-encodes to the same bytes.
``decode`` and ``decode_payload`` raise only ``DecodeError`` whose ``reason`` is one of
``REASONS``. ``encode*`` raise ``ValueError`` for a message that the format cannot carry (an
integer out of range, a field of the wrong size or over its limit) and ``TypeError`` for an
object that is no message: both are bugs of the sender, never of a peer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from hashlib import blake2b as _blake2b
from typing import Any, Final

from ubft.memnode.wire import DECODERS as _MEM_DECODERS
from ubft.memnode.wire import ENCODERS as _MEM_ENCODERS
from ubft.memnode.wire import MEM_REGISTER_BYTES, MEM_SUBSLOT_BYTES

from ubft.framing import (
    FRAME_HEADER,
    MAX_FRAME_BYTES,
    WIRE_VERSION,
    builder,
    end_error,
    fixed_decoder,
    frame_struct,
)

from .errors import DecodeError
from .messages import (
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
    Payload,
    PayloadKind,
    Prepare,
    PrepShare,
    Promise,
    Reply,
    Request,
    RequestEcho,
    RequestEchoes,
    RequestForward,
    SealView,
    Sync,
)

__all__ = [
    "DIGEST_BYTES",
    "FRAME_HEADER",
    "MAX_BATCH_ENTRIES",
    "MAX_CERT_SIGNERS",
    "MAX_FRAME_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_VALUE_BYTES",
    "MEM_REGISTER_BYTES",
    "MEM_SUBSLOT_BYTES",
    "PAYLOAD_VERSION",
    "REASONS",
    "SIGNATURE_BYTES",
    "WIRE_VERSION",
    "decode",
    "decode_payload",
    "encode",
    "encode_batch",
    "encode_payload",
]

PAYLOAD_VERSION: Final = 1

MAX_PAYLOAD_BYTES: Final = 1 << 20  # any single bytes field other than a CTBcast value
MAX_VALUE_BYTES: Final = 2 << 20  # a CTBcast value: Ctb.m, CtbEcho.data, encode_payload()
MAX_BATCH_ENTRIES: Final = 4096
MAX_CERT_SIGNERS: Final = 64

DIGEST_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64

REASONS: Final = frozenset(
    {
        "frame.too_short",  # fewer bytes than the 10-byte header
        "frame.too_long",  # over MAX_FRAME_BYTES
        "frame.length_mismatch",  # length field != len(frame) - 4
        "frame.bad_version",
        "frame.unknown_kind",
        "payload.too_short",  # fewer than the 2-byte value header
        "payload.too_long",  # over MAX_VALUE_BYTES
        "payload.bad_version",
        "payload.unknown_kind",
        "body.truncated",  # a field runs past the end
        "body.trailing_bytes",  # bytes left after the last field
        "field.too_long",  # a length prefix over the field's limit
        "field.bad_size",  # a sized field (digest, signature, memory data) of the wrong size
        "field.bad_bool",  # a flag other than 0 or 1
        "field.bad_value",  # an enumerated field out of range (memory status)
        "batch.too_many_entries",
        "cert.too_many_signers",
        "cert.signers_not_ascending",
    }
)

_HDR = FRAME_HEADER.size  # 10
_HDR_UNPACK = FRAME_HEADER.unpack_from

# Message kinds as plain ints (packing an IntEnum is slower).
_K_CTB = int(MsgKind.CTB)
_K_CTB_ECHO = int(MsgKind.CTB_ECHO)
_K_CTB_SIG = int(MsgKind.CTB_SIG)
_K_CTB_SIG_REQUEST = int(MsgKind.CTB_SIG_REQUEST)
_K_CTB_CKPT_SHARE = int(MsgKind.CTB_CKPT_SHARE)
_K_CTB_CKPT_CERT = int(MsgKind.CTB_CKPT_CERT)
_K_PROMISE = int(MsgKind.PROMISE)
_K_FAST_COMMIT = int(MsgKind.FAST_COMMIT)
_K_PREP_SHARE = int(MsgKind.PREP_SHARE)
_K_CKPT_SHARE = int(MsgKind.CKPT_SHARE)
_K_REQUEST_ECHO = int(MsgKind.REQUEST_ECHO)
_K_REQUEST_FORWARD = int(MsgKind.REQUEST_FORWARD)
_K_EQUIVOCATION = int(MsgKind.EQUIVOCATION)
_K_SYNC = int(MsgKind.SYNC)
_K_REQUEST_ECHOES = int(MsgKind.REQUEST_ECHOES)
_K_REQUEST = int(MsgKind.REQUEST)
_K_REPLY = int(MsgKind.REPLY)

_P_PREPARE = int(PayloadKind.PREPARE)
_P_COMMIT = int(PayloadKind.COMMIT)
_P_CHECKPOINT = int(PayloadKind.CHECKPOINT)
_P_SEAL_VIEW = int(PayloadKind.SEAL_VIEW)

_V = WIRE_VERSION


# Header + fixed body part, for encoding; body part alone, for decoding.
_F_CTB = frame_struct("HQI")
_B_CTB = struct.Struct(">HQI")
_F_CTB_ECHO = frame_struct("HQBI")
_B_CTB_ECHO = struct.Struct(">HQBI")
_F_CTB_SIG = frame_struct("HQ64s")
_B_CTB_SIG = struct.Struct(">HQ64s")
_F_CTB_SIG_REQUEST = frame_struct("HQ")
_B_CTB_SIG_REQUEST = struct.Struct(">HQ")
_F_CTB_CKPT_SHARE = frame_struct("HQ32s64s")
_B_CTB_CKPT_SHARE = struct.Struct(">HQ32s64s")
_F_CTB_CKPT_CERT = frame_struct("HQI")
_B_CTB_CKPT_CERT = struct.Struct(">HQI")
_F_QQ = frame_struct("QQ")
_B_QQ = struct.Struct(">QQ")
_F_PREP_SHARE = frame_struct("QQ32s64s")
_B_PREP_SHARE = struct.Struct(">QQ32s64s")
_F_CKPT_SHARE = frame_struct("Q32s64s")
_B_CKPT_SHARE = struct.Struct(">Q32s64s")
_F_REQUEST_ECHO = frame_struct("IQ32s")
_B_REQUEST_ECHO = struct.Struct(">IQ32s")
_F_EQUIVOCATION = frame_struct("HQ32s64s32s64s")
_B_EQUIVOCATION = struct.Struct(">HQ32s64s32s64s")
_F_SYNC = frame_struct("QQQQ")
_B_SYNC = struct.Struct(">QQQQ")
_F_REPLY = frame_struct("IIQI")
_B_REPLY = struct.Struct(">IIQI")

# Requests and batch entries: client_id u32 | request_id u64 | payload length u32.
_ENTRY_HEAD = struct.Struct(">IQI")
_ENTRY_HEAD_BYTES = _ENTRY_HEAD.size  # 16
_BATCH_HEAD = struct.Struct(">QH")
_BATCH_HEAD_BYTES = _BATCH_HEAD.size  # 10
_SIGNER = struct.Struct(">H64s")
_SIGNER_BYTES = _SIGNER.size  # 66
_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")

# Values: u8 version | u8 kind, then the fixed part of the body.
_VAL_QQ = struct.Struct(">BBQQ")
_VAL_QQ_BYTES = _VAL_QQ.size  # 18
_VAL_CHECKPOINT = struct.Struct(">BBQ32s")
_VAL_CHECKPOINT_BYTES = _VAL_CHECKPOINT.size  # 42
_VAL_SEAL_VIEW = struct.Struct(">BBQ")
_VAL_SEAL_VIEW_BYTES = _VAL_SEAL_VIEW.size  # 10

_SIG_LEN_BYTE = {0: b"\x00", SIGNATURE_BYTES: bytes([SIGNATURE_BYTES])}


# =========================================================================== encoding


def _sized(value: bytes, size: int, name: str) -> bytes:
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, not {len(value)}")
    return value


def _limited(value: bytes, limit: int, name: str) -> int:
    n = len(value)
    if n > limit:
        raise ValueError(f"{name} is {n} bytes, over the limit of {limit}")
    return n


def _batch_parts(parts: list[bytes], batch: Batch) -> None:
    """Append BATCH to ``parts``."""
    entries = batch.entries
    count = len(entries)
    if count > MAX_BATCH_ENTRIES:
        raise ValueError(f"batch has {count} entries, over the limit of {MAX_BATCH_ENTRIES}")
    parts.append(_BATCH_HEAD.pack(batch.ts, count))
    pack = _ENTRY_HEAD.pack
    sig_len_byte = _SIG_LEN_BYTE.get
    for e in entries:
        payload, sig = e.payload, e.sig
        n = len(payload)
        if n > MAX_PAYLOAD_BYTES:
            raise ValueError(f"entry payload is {n} bytes, over the limit of {MAX_PAYLOAD_BYTES}")
        sig_len = sig_len_byte(len(sig))
        if sig_len is None:
            raise ValueError(f"entry signature must be empty or 64 bytes, not {len(sig)}")
        parts += (pack(e.client_id, e.request_id, n), payload, sig_len, sig)


def _cert_bytes(cert: Certificate) -> bytes:
    signers, sigs = cert.signers, cert.sigs
    count = len(signers)
    if count != len(sigs):
        raise ValueError("certificate has different numbers of signers and signatures")
    if count > MAX_CERT_SIGNERS:
        raise ValueError(f"certificate has {count} signers, over the limit of {MAX_CERT_SIGNERS}")
    parts = [_U8.pack(count)]
    prev = -1
    for signer, sig in zip(signers, sigs, strict=True):
        if signer <= prev:
            raise ValueError("certificate signers must be strictly ascending")
        prev = signer
        parts.append(_SIGNER.pack(signer, _sized(sig, SIGNATURE_BYTES, "certificate signature")))
    return b"".join(parts)


def encode_batch(batch: Batch) -> bytes:
    """The canonical bytes of ``batch`` (BATCH), the input of ``digest(batch)``."""
    parts: list[bytes] = []
    try:
        _batch_parts(parts, batch)
    except struct.error as exc:
        raise ValueError(f"batch cannot be encoded: {exc}") from exc
    return b"".join(parts)


# ---- payloads


def _ep_prepare(p: Prepare) -> bytes:
    parts = [_VAL_QQ.pack(PAYLOAD_VERSION, _P_PREPARE, p.view, p.instance)]
    _batch_parts(parts, p.batch)
    return b"".join(parts)


def _ep_commit(p: Commit) -> bytes:
    parts = [_VAL_QQ.pack(PAYLOAD_VERSION, _P_COMMIT, p.view, p.instance), _cert_bytes(p.cert)]
    _batch_parts(parts, p.batch)
    return b"".join(parts)


def _ep_checkpoint(p: Checkpoint) -> bytes:
    digest = _sized(p.digest, DIGEST_BYTES, "checkpoint digest")
    return _VAL_CHECKPOINT.pack(PAYLOAD_VERSION, _P_CHECKPOINT, p.c, digest) + _cert_bytes(p.cert)


def _ep_seal_view(p: SealView) -> bytes:
    return _VAL_SEAL_VIEW.pack(PAYLOAD_VERSION, _P_SEAL_VIEW, p.view)


_PAYLOAD_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    Prepare: _ep_prepare,
    Commit: _ep_commit,
    Checkpoint: _ep_checkpoint,
    SealView: _ep_seal_view,
}


def encode_payload(p: Payload) -> bytes:
    """The CTBcast value ``m`` for ``p``."""
    enc = _PAYLOAD_ENCODERS.get(type(p))
    if enc is None:
        raise TypeError(f"not a CTBcast payload: {type(p).__name__}")
    try:
        data = enc(p)
    except struct.error as exc:
        raise ValueError(f"{type(p).__name__} cannot be encoded: {exc}") from exc
    if len(data) > MAX_VALUE_BYTES:
        raise ValueError(f"{type(p).__name__} is {len(data)} bytes, over {MAX_VALUE_BYTES}")
    return data


# ---- frames


def _e_ctb(m: Ctb, epoch: int) -> bytes:
    n = _limited(m.m, MAX_VALUE_BYTES, "Ctb.m")
    return _F_CTB.pack(_F_CTB.size - 4 + n, _V, _K_CTB, epoch, m.b, m.k, n) + m.m


def _e_ctb_echo(m: CtbEcho, epoch: int) -> bytes:
    data = m.data
    n = len(data)
    if m.is_digest:
        if n != DIGEST_BYTES:
            raise ValueError(f"CtbEcho digest must be {DIGEST_BYTES} bytes, not {n}")
        flag = 1
    else:
        _limited(data, MAX_VALUE_BYTES, "CtbEcho.data")
        flag = 0
    head = _F_CTB_ECHO.pack(_F_CTB_ECHO.size - 4 + n, _V, _K_CTB_ECHO, epoch, m.b, m.k, flag, n)
    return head + data


def _e_ctb_sig(m: CtbSig, epoch: int) -> bytes:
    sig = _sized(m.sig, SIGNATURE_BYTES, "CtbSig.sig")
    return _F_CTB_SIG.pack(_F_CTB_SIG.size - 4, _V, _K_CTB_SIG, epoch, m.b, m.k, sig)


def _e_ctb_sig_request(m: CtbSigRequest, epoch: int) -> bytes:
    s = _F_CTB_SIG_REQUEST
    return s.pack(s.size - 4, _V, _K_CTB_SIG_REQUEST, epoch, m.b, m.from_k)


def _e_ctb_ckpt_share(m: CtbCkptShare, epoch: int) -> bytes:
    digest = _sized(m.digest, DIGEST_BYTES, "CtbCkptShare.digest")
    sig = _sized(m.sig, SIGNATURE_BYTES, "CtbCkptShare.sig")
    s = _F_CTB_CKPT_SHARE
    return s.pack(s.size - 4, _V, _K_CTB_CKPT_SHARE, epoch, m.b, m.c, digest, sig)


def _e_ctb_ckpt_cert(m: CtbCkptCert, epoch: int) -> bytes:
    n = _limited(m.summary, MAX_PAYLOAD_BYTES, "CtbCkptCert.summary")
    cert = _cert_bytes(m.cert)
    s = _F_CTB_CKPT_CERT
    head = s.pack(s.size - 4 + n + len(cert), _V, _K_CTB_CKPT_CERT, epoch, m.b, m.c, n)
    return b"".join((head, m.summary, cert))


def _e_promise(m: Promise, epoch: int) -> bytes:
    return _F_QQ.pack(_F_QQ.size - 4, _V, _K_PROMISE, epoch, m.view, m.instance)


def _e_fast_commit(m: FastCommit, epoch: int) -> bytes:
    return _F_QQ.pack(_F_QQ.size - 4, _V, _K_FAST_COMMIT, epoch, m.view, m.instance)


def _e_prep_share(m: PrepShare, epoch: int) -> bytes:
    digest = _sized(m.digest, DIGEST_BYTES, "PrepShare.digest")
    sig = _sized(m.sig, SIGNATURE_BYTES, "PrepShare.sig")
    s = _F_PREP_SHARE
    return s.pack(s.size - 4, _V, _K_PREP_SHARE, epoch, m.view, m.instance, digest, sig)


def _e_ckpt_share(m: CkptShare, epoch: int) -> bytes:
    digest = _sized(m.digest, DIGEST_BYTES, "CkptShare.digest")
    sig = _sized(m.sig, SIGNATURE_BYTES, "CkptShare.sig")
    s = _F_CKPT_SHARE
    return s.pack(s.size - 4, _V, _K_CKPT_SHARE, epoch, m.c, digest, sig)


def _e_request_echo(m: RequestEcho, epoch: int) -> bytes:
    digest = _sized(m.digest, DIGEST_BYTES, "RequestEcho.digest")
    s = _F_REQUEST_ECHO
    return s.pack(s.size - 4, _V, _K_REQUEST_ECHO, epoch, m.client_id, m.request_id, digest)


def _request_frame(kind: int, r: Request, epoch: int) -> bytes:
    payload, sig = r.payload, r.sig
    n = _limited(payload, MAX_PAYLOAD_BYTES, "Request.payload")
    sig_len = _SIG_LEN_BYTE.get(len(sig))
    if sig_len is None:
        raise ValueError(f"Request.sig must be empty or 64 bytes, not {len(sig)}")
    length = _HDR - 4 + _ENTRY_HEAD_BYTES + n + 1 + len(sig)
    head = FRAME_HEADER.pack(length, _V, kind, epoch) + _ENTRY_HEAD.pack(
        r.client_id, r.request_id, n
    )
    return b"".join((head, payload, sig_len, sig))


def _e_request(m: Request, epoch: int) -> bytes:
    return _request_frame(_K_REQUEST, m, epoch)


def _e_request_forward(m: RequestForward, epoch: int) -> bytes:
    r = m.request
    if type(r) is not Request:
        raise TypeError(f"RequestForward.request is not a Request: {type(r).__name__}")
    return _request_frame(_K_REQUEST_FORWARD, r, epoch)


def _e_equivocation(m: Equivocation, epoch: int) -> bytes:
    s = _F_EQUIVOCATION
    return s.pack(
        s.size - 4,
        _V,
        _K_EQUIVOCATION,
        epoch,
        m.b,
        m.k,
        _sized(m.digest1, DIGEST_BYTES, "Equivocation.digest1"),
        _sized(m.sig1, SIGNATURE_BYTES, "Equivocation.sig1"),
        _sized(m.digest2, DIGEST_BYTES, "Equivocation.digest2"),
        _sized(m.sig2, SIGNATURE_BYTES, "Equivocation.sig2"),
    )


MAX_ECHOES: Final = 4096
_ECHOES_HEAD = struct.Struct(">IBBIH")


def _e_request_echoes(m: RequestEchoes, epoch: int) -> bytes:
    count = len(m.echoes)
    if count > MAX_ECHOES:
        raise ValueError(f"RequestEchoes carries at most {MAX_ECHOES} echoes, not {count}")
    pack = _B_REQUEST_ECHO.pack
    body = b"".join(
        pack(e.client_id, e.request_id, _sized(e.digest, DIGEST_BYTES, "RequestEcho.digest"))
        for e in m.echoes
    )
    return (
        _ECHOES_HEAD.pack(_ECHOES_HEAD.size - 4 + len(body), _V, _K_REQUEST_ECHOES, epoch, count)
        + body
    )


def _d_request_echoes(frame: bytes, n: int) -> RequestEchoes:
    head = _ECHOES_HEAD.size
    if n < head:
        raise DecodeError(_ERR_TRUNCATED)
    count = _ECHOES_HEAD.unpack_from(frame)[4]
    if count > MAX_ECHOES:
        raise DecodeError("field.too_long")
    end = head + count * _B_REQUEST_ECHO.size
    if end != n:
        raise end_error(end, n)
    return RequestEchoes(
        tuple(RequestEcho(c, r, d) for c, r, d in _B_REQUEST_ECHO.iter_unpack(frame[head:end]))
    )


def _e_sync(m: Sync, epoch: int) -> bytes:
    s = _F_SYNC
    return s.pack(s.size - 4, _V, _K_SYNC, epoch, m.next_k, m.cert_c, m.exec_next, m.stable_c)


def _e_reply(m: Reply, epoch: int) -> bytes:
    n = _limited(m.result, MAX_PAYLOAD_BYTES, "Reply.result")
    s = _F_REPLY
    head = s.pack(s.size - 4 + n, _V, _K_REPLY, epoch, m.epoch, m.client_id, m.request_id, n)
    return head + m.result


_ENCODERS: dict[type, Callable[[Any, int], bytes]] = {
    Ctb: _e_ctb,
    CtbEcho: _e_ctb_echo,
    CtbSig: _e_ctb_sig,
    CtbSigRequest: _e_ctb_sig_request,
    CtbCkptShare: _e_ctb_ckpt_share,
    CtbCkptCert: _e_ctb_ckpt_cert,
    Promise: _e_promise,
    FastCommit: _e_fast_commit,
    PrepShare: _e_prep_share,
    CkptShare: _e_ckpt_share,
    RequestEcho: _e_request_echo,
    RequestEchoes: _e_request_echoes,
    RequestForward: _e_request_forward,
    Equivocation: _e_equivocation,
    Sync: _e_sync,
    Request: _e_request,
    Reply: _e_reply,
    **_MEM_ENCODERS,
}


def encode(msg: Message, epoch: int) -> bytes:
    """The frame carrying ``msg`` in ``epoch``."""
    enc = _ENCODERS.get(type(msg))
    if enc is None:
        raise TypeError(f"not a message: {type(msg).__name__}")
    try:
        frame = enc(msg, epoch)
    except struct.error as exc:
        raise ValueError(f"{type(msg).__name__} cannot be encoded: {exc}") from exc
    if len(frame) > MAX_FRAME_BYTES:
        raise ValueError(f"{type(msg).__name__} frame is {len(frame)} bytes, over the limit")
    return frame


# =========================================================================== decoding


_new_entry = builder(Entry)
_new_batch = builder(Batch)
_new_certificate = builder(Certificate)
_new_prepare = builder(Prepare)
_new_commit = builder(Commit)
_new_checkpoint = builder(Checkpoint)
_new_seal_view = builder(SealView)
_new_ctb = builder(Ctb)
_new_ctb_echo = builder(CtbEcho)
_new_ctb_ckpt_cert = builder(CtbCkptCert)
_new_promise = builder(Promise)
_new_fast_commit = builder(FastCommit)
_new_request = builder(Request)
_new_request_forward = builder(RequestForward)
_new_reply = builder(Reply)

_ERR_TRUNCATED = "body.truncated"
_ERR_TRAILING = "body.trailing_bytes"


def _read_entry(buf: bytes, off: int, n: int) -> tuple[int, int, bytes, bytes, int]:
    """REQ/ENTRY at ``off``: (client_id, request_id, payload, sig, next offset)."""
    start = off + _ENTRY_HEAD_BYTES
    if start > n:
        raise DecodeError(_ERR_TRUNCATED)
    cid, rid, plen = _ENTRY_HEAD.unpack_from(buf, off)
    if plen > MAX_PAYLOAD_BYTES:
        raise DecodeError("field.too_long")
    stop = start + plen
    if stop >= n:  # the signature length byte must follow
        raise DecodeError(_ERR_TRUNCATED)
    slen = buf[stop]
    if slen == 0:
        return cid, rid, buf[start:stop], b"", stop + 1
    if slen != SIGNATURE_BYTES:
        raise DecodeError("field.bad_size")
    end = stop + 1 + SIGNATURE_BYTES
    if end > n:
        raise DecodeError(_ERR_TRUNCATED)
    return cid, rid, buf[start:stop], buf[stop + 1 : end], end


def _read_batch(buf: bytes, off: int, n: int) -> tuple[Batch, int]:
    if off + _BATCH_HEAD_BYTES > n:
        raise DecodeError(_ERR_TRUNCATED)
    ts, count = _BATCH_HEAD.unpack_from(buf, off)
    if count > MAX_BATCH_ENTRIES:
        raise DecodeError("batch.too_many_entries")
    off += _BATCH_HEAD_BYTES
    entries: list[Entry] = []
    append = entries.append
    unpack = _ENTRY_HEAD.unpack_from
    make = _new_entry
    for _ in range(count):  # _read_entry, inlined: batches are the bulk of all bytes
        start = off + _ENTRY_HEAD_BYTES
        if start > n:
            raise DecodeError(_ERR_TRUNCATED)
        cid, rid, plen = unpack(buf, off)
        if plen > MAX_PAYLOAD_BYTES:
            raise DecodeError("field.too_long")
        stop = start + plen
        if stop >= n:
            raise DecodeError(_ERR_TRUNCATED)
        slen = buf[stop]
        if slen == 0:
            append(make(cid, rid, buf[start:stop], b""))
            off = stop + 1
            continue
        if slen != SIGNATURE_BYTES:
            raise DecodeError("field.bad_size")
        off = stop + 1 + SIGNATURE_BYTES
        if off > n:
            raise DecodeError(_ERR_TRUNCATED)
        append(make(cid, rid, buf[start:stop], buf[stop + 1 : off]))
    return _new_batch(ts, tuple(entries)), off


def _read_cert(buf: bytes, off: int, n: int) -> tuple[Certificate, int]:
    if off >= n:
        raise DecodeError(_ERR_TRUNCATED)
    count = buf[off]
    if count > MAX_CERT_SIGNERS:
        raise DecodeError("cert.too_many_signers")
    off += 1
    end = off + count * _SIGNER_BYTES
    if end > n:
        raise DecodeError(_ERR_TRUNCATED)
    signers: list[int] = []
    sigs: list[bytes] = []
    prev = -1
    for signer, sig in _SIGNER.iter_unpack(buf[off:end]):
        if signer <= prev:
            raise DecodeError("cert.signers_not_ascending")
        prev = signer
        signers.append(signer)
        sigs.append(sig)
    return _new_certificate(tuple(signers), tuple(sigs)), end


# ---- payloads


def _dp_prepare(data: bytes, n: int) -> Prepare:
    if n < _VAL_QQ_BYTES:
        raise DecodeError(_ERR_TRUNCATED)
    _, _, view, instance = _VAL_QQ.unpack_from(data)
    batch, end = _read_batch(data, _VAL_QQ_BYTES, n)
    if end != n:
        raise DecodeError(_ERR_TRAILING)
    return _new_prepare(view, instance, batch)


def _dp_commit(data: bytes, n: int) -> Commit:
    if n < _VAL_QQ_BYTES:
        raise DecodeError(_ERR_TRUNCATED)
    _, _, view, instance = _VAL_QQ.unpack_from(data)
    cert, off = _read_cert(data, _VAL_QQ_BYTES, n)
    batch, end = _read_batch(data, off, n)
    if end != n:
        raise DecodeError(_ERR_TRAILING)
    return _new_commit(view, instance, batch, cert)


def _dp_checkpoint(data: bytes, n: int) -> Checkpoint:
    if n < _VAL_CHECKPOINT_BYTES:
        raise DecodeError(_ERR_TRUNCATED)
    _, _, c, digest = _VAL_CHECKPOINT.unpack_from(data)
    cert, end = _read_cert(data, _VAL_CHECKPOINT_BYTES, n)
    if end != n:
        raise DecodeError(_ERR_TRAILING)
    return _new_checkpoint(c, digest, cert)


def _dp_seal_view(data: bytes, n: int) -> SealView:
    if n != _VAL_SEAL_VIEW_BYTES:
        raise end_error(_VAL_SEAL_VIEW_BYTES, n)
    return _new_seal_view(_VAL_SEAL_VIEW.unpack_from(data)[2])


_PayloadDecoder = Callable[[bytes, int], Payload]
_PAYLOAD_DECODERS: list[_PayloadDecoder | None] = [None] * 256
_PAYLOAD_DECODERS[_P_PREPARE] = _dp_prepare
_PAYLOAD_DECODERS[_P_COMMIT] = _dp_commit
_PAYLOAD_DECODERS[_P_CHECKPOINT] = _dp_checkpoint
_PAYLOAD_DECODERS[_P_SEAL_VIEW] = _dp_seal_view


def batch_digest_in(data: bytes, payload: Prepare | Commit) -> bytes:
    """digest(encode_batch(payload.batch)), read off the value ``data`` that decoded to
    ``payload``: the batch is the tail of both layouts, so nothing is re-encoded."""
    off = _VAL_QQ_BYTES
    if type(payload) is Commit:
        off += 1 + _SIGNER_BYTES * len(payload.cert.signers)
    return _blake2b(memoryview(data)[off:], digest_size=DIGEST_BYTES).digest()


def decode_payload(data: bytes) -> Payload:
    """The ``Payload`` encoded in the CTBcast value ``data``; raises only ``DecodeError``."""
    if type(data) is not bytes:
        data = bytes(data)
    n = len(data)
    if n < 2:
        raise DecodeError("payload.too_short")
    if n > MAX_VALUE_BYTES:
        raise DecodeError("payload.too_long")
    if data[0] != PAYLOAD_VERSION:
        raise DecodeError("payload.bad_version")
    dec = _PAYLOAD_DECODERS[data[1]]
    if dec is None:
        raise DecodeError("payload.unknown_kind")
    return dec(data, n)


# ---- frames

_Decoder = Callable[[bytes, int], Message]


def _d_promise(frame: bytes, n: int) -> Promise:
    if n != 26:
        raise end_error(26, n)
    view, instance = _B_QQ.unpack_from(frame, _HDR)
    return _new_promise(view, instance)


def _d_fast_commit(frame: bytes, n: int) -> FastCommit:
    if n != 26:
        raise end_error(26, n)
    view, instance = _B_QQ.unpack_from(frame, _HDR)
    return _new_fast_commit(view, instance)


_CTB_FIXED = _HDR + _B_CTB.size  # 24


def _d_ctb(frame: bytes, n: int) -> Ctb:
    if n < _CTB_FIXED:
        raise DecodeError(_ERR_TRUNCATED)
    b, k, ln = _B_CTB.unpack_from(frame, _HDR)
    if ln > MAX_VALUE_BYTES:
        raise DecodeError("field.too_long")
    if _CTB_FIXED + ln != n:
        raise end_error(_CTB_FIXED + ln, n)
    return _new_ctb(b, k, frame[_CTB_FIXED:])


_CTB_ECHO_FIXED = _HDR + _B_CTB_ECHO.size  # 25


def _d_ctb_echo(frame: bytes, n: int) -> CtbEcho:
    if n < _CTB_ECHO_FIXED:
        raise DecodeError(_ERR_TRUNCATED)
    b, k, flag, ln = _B_CTB_ECHO.unpack_from(frame, _HDR)
    if flag > 1:
        raise DecodeError("field.bad_bool")
    if flag:
        if ln != DIGEST_BYTES:
            raise DecodeError("field.bad_size")
    elif ln > MAX_VALUE_BYTES:
        raise DecodeError("field.too_long")
    if _CTB_ECHO_FIXED + ln != n:
        raise end_error(_CTB_ECHO_FIXED + ln, n)
    return _new_ctb_echo(b, k, flag == 1, frame[_CTB_ECHO_FIXED:])


_CTB_CKPT_CERT_FIXED = _HDR + _B_CTB_CKPT_CERT.size  # 24


def _d_ctb_ckpt_cert(frame: bytes, n: int) -> CtbCkptCert:
    if n < _CTB_CKPT_CERT_FIXED:
        raise DecodeError(_ERR_TRUNCATED)
    b, c, ln = _B_CTB_CKPT_CERT.unpack_from(frame, _HDR)
    if ln > MAX_PAYLOAD_BYTES:
        raise DecodeError("field.too_long")
    stop = _CTB_CKPT_CERT_FIXED + ln
    if stop > n:
        raise DecodeError(_ERR_TRUNCATED)
    cert, end = _read_cert(frame, stop, n)
    if end != n:
        raise DecodeError(_ERR_TRAILING)
    return _new_ctb_ckpt_cert(b, c, frame[_CTB_CKPT_CERT_FIXED:stop], cert)


def _d_request(frame: bytes, n: int) -> Request:
    cid, rid, payload, sig, end = _read_entry(frame, _HDR, n)
    if end != n:
        raise DecodeError(_ERR_TRAILING)
    return _new_request(cid, rid, payload, sig)


def _d_request_forward(frame: bytes, n: int) -> RequestForward:
    return _new_request_forward(_d_request(frame, n))


_REPLY_FIXED = _HDR + _B_REPLY.size  # 30


def _d_reply(frame: bytes, n: int) -> Reply:
    if n < _REPLY_FIXED:
        raise DecodeError(_ERR_TRUNCATED)
    epoch, cid, rid, ln = _B_REPLY.unpack_from(frame, _HDR)
    if ln > MAX_PAYLOAD_BYTES:
        raise DecodeError("field.too_long")
    if _REPLY_FIXED + ln != n:
        raise end_error(_REPLY_FIXED + ln, n)
    return _new_reply(epoch, cid, rid, frame[_REPLY_FIXED:])


_DECODERS: list[_Decoder | None] = [None] * 256
_DECODERS[_K_CTB] = _d_ctb
_DECODERS[_K_CTB_ECHO] = _d_ctb_echo
_DECODERS[_K_CTB_SIG] = fixed_decoder(_B_CTB_SIG, CtbSig)
_DECODERS[_K_CTB_SIG_REQUEST] = fixed_decoder(_B_CTB_SIG_REQUEST, CtbSigRequest)
_DECODERS[_K_CTB_CKPT_SHARE] = fixed_decoder(_B_CTB_CKPT_SHARE, CtbCkptShare)
_DECODERS[_K_CTB_CKPT_CERT] = _d_ctb_ckpt_cert
_DECODERS[_K_PROMISE] = _d_promise
_DECODERS[_K_FAST_COMMIT] = _d_fast_commit
_DECODERS[_K_PREP_SHARE] = fixed_decoder(_B_PREP_SHARE, PrepShare)
_DECODERS[_K_CKPT_SHARE] = fixed_decoder(_B_CKPT_SHARE, CkptShare)
_DECODERS[_K_REQUEST_ECHO] = fixed_decoder(_B_REQUEST_ECHO, RequestEcho)
_DECODERS[_K_REQUEST_FORWARD] = _d_request_forward
_DECODERS[_K_EQUIVOCATION] = fixed_decoder(_B_EQUIVOCATION, Equivocation)
_DECODERS[_K_SYNC] = fixed_decoder(_B_SYNC, Sync)
_DECODERS[_K_REQUEST_ECHOES] = _d_request_echoes
_DECODERS[_K_REQUEST] = _d_request
_DECODERS[_K_REPLY] = _d_reply
for _kind, _dec in _MEM_DECODERS.items():
    assert _DECODERS[_kind] is None, "a memory-node kind number is taken by the core"
    _DECODERS[_kind] = _dec

assert sorted(k for k, d in enumerate(_DECODERS) if d is not None) == sorted(map(int, MsgKind))
assert len(_ENCODERS) == len(MsgKind)


def decode(frame: bytes) -> tuple[int, Message]:
    """``(epoch, message)`` from one whole frame; raises only ``DecodeError``."""
    if type(frame) is not bytes:
        frame = bytes(frame)
    # ubft.framing.read_header's checks, inlined: every frame a replica receives passes here
    n = len(frame)
    if n < _HDR:
        raise DecodeError("frame.too_short")
    if n > MAX_FRAME_BYTES:
        raise DecodeError("frame.too_long")
    length, version, kind, epoch = _HDR_UNPACK(frame)
    if length != n - 4:
        raise DecodeError("frame.length_mismatch")
    if version != _V:
        raise DecodeError("frame.bad_version")
    dec = _DECODERS[kind]
    if dec is None:
        raise DecodeError("frame.unknown_kind")
    return epoch, dec(frame, n)
