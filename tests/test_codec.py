"""The wire codec: round trips, strict rejection, and "decode never raises anything else"."""

from __future__ import annotations

import struct
import typing
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey
from ubft.memnode.wire import MemMarkKnown, MemRead, MemReadReply, MemWrite, MemWriteReply
from ubft.replica.core.codec import (
    FRAME_HEADER,
    MAX_BATCH_ENTRIES,
    MAX_CERT_SIGNERS,
    MAX_FRAME_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_VALUE_BYTES,
    MEM_REGISTER_BYTES,
    MEM_SUBSLOT_BYTES,
    REASONS,
    WIRE_VERSION,
    decode,
    decode_payload,
    encode,
    encode_batch,
    encode_payload,
)
from ubft.replica.core.crypto import Tag, digest, statement
from ubft.replica.core.errors import DecodeError
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

# --------------------------------------------------------------------------- realistic values

CLUSTER = b"test-cluster"
EPOCH = 3
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(3)]  # replicas 0, 1, 2


def _sign(who: int, tag: Tag, *fields: int | bytes) -> bytes:
    return KEYS[who].sign(statement(tag, CLUSTER, EPOCH, *fields)).signature


REQ_PAYLOAD = b'{"op":"put","key":"k1","value":"v1"}'
REQ_SIG = KEYS[0].sign(statement(Tag.REQ, CLUSTER, None, 7, 41, digest(REQ_PAYLOAD))).signature
BATCH = Batch(
    ts=1_700_000_000_123_456_789,
    entries=(
        Entry(7, 41, REQ_PAYLOAD, REQ_SIG),
        Entry(8, 1, b"get k1"),
        Entry(2**32 - 1, 2**64 - 1, b""),
    ),
)
BATCH_DIGEST = digest(encode_batch(BATCH))
PREP_CERT = Certificate((0, 2), (_sign(0, Tag.PREP, 1, 5), _sign(2, Tag.PREP, 1, 5)))
SUMMARY = b"ctb-summary:" + bytes(range(40))
CKPT_DIGEST = digest(b"state at 128")
CKPT_CERT = Certificate((1, 2), (_sign(1, Tag.CKPT, 128), _sign(2, Tag.CKPT, 128)))

PAYLOADS: list[Payload] = [
    Prepare(1, 5, BATCH),
    Prepare(0, 0, Batch(0, ())),
    Commit(1, 5, BATCH, PREP_CERT),
    Commit(2**64 - 1, 2**64 - 1, Batch(9, (Entry(1, 1, b"x"),)), Certificate((), ())),
    Checkpoint(128, CKPT_DIGEST, CKPT_CERT),
    Checkpoint(0, bytes(32), Certificate((), ())),
    SealView(4),
]

M_PREPARE = encode_payload(PAYLOADS[0])
M_COMMIT = encode_payload(PAYLOADS[2])
REQUEST = Request(7, 41, REQ_PAYLOAD, REQ_SIG)
REGISTER = bytes(range(MEM_REGISTER_BYTES))

MESSAGES: list[Message] = [
    Ctb(0, 17, M_PREPARE),
    Ctb(1, 0, b""),
    CtbEcho(0, 17, False, M_COMMIT),
    CtbEcho(0, 18, True, digest(M_COMMIT)),
    CtbSig(0, 17, _sign(1, Tag.CTB, 0, 17, digest(M_PREPARE))),
    CtbSigRequest(2, 12),
    CtbCkptShare(0, 64, digest(SUMMARY), _sign(1, Tag.CTB_CKPT, 0, 64, digest(SUMMARY))),
    CtbCkptCert(0, 64, SUMMARY, CKPT_CERT),
    CtbCkptCert(1, 0, b"", Certificate((), ())),
    Promise(1, 5),
    Promise(2**64 - 1, 2**64 - 1),
    FastCommit(1, 5),
    PrepShare(1, 5, BATCH_DIGEST, _sign(2, Tag.PREP, 1, 5, BATCH_DIGEST)),
    CkptShare(128, CKPT_DIGEST, _sign(1, Tag.CKPT, 128, CKPT_DIGEST)),
    RequestEcho(7, 41, digest(REQ_PAYLOAD)),
    RequestEchoes((RequestEcho(7, 41, digest(REQ_PAYLOAD)), RequestEcho(8, 1, bytes(32)))),
    RequestEchoes(()),
    RequestForward(REQUEST),
    RequestForward(Request(8, 1, b"get k1")),
    Equivocation(
        0,
        17,
        digest(b"m1"),
        _sign(0, Tag.CTB, 0, 17, digest(b"m1")),
        digest(b"m2"),
        _sign(0, Tag.CTB, 0, 17, digest(b"m2")),
    ),
    Sync(18, 64, 6, 0),
    REQUEST,
    Request(8, 1, b""),
    Reply(EPOCH, 7, 41, b'{"ok":true}'),
    Reply(0, 0, 0, b""),
    MemRead(99, EPOCH, 1, 0, 17),
    MemWrite(100, EPOCH, 1, 0, 17, 1, bytes(range(MEM_SUBSLOT_BYTES))),
    MemReadReply(99, 5, 0, REGISTER),
    MemReadReply(98, 5, 1, b""),
    MemWriteReply(100, 5, 2),
    MemMarkKnown(101, 0, 2, 7),
]

REPLICA_KINDS = [int(k) for k in MsgKind if k < MsgKind.REQUEST]
CLIENT_KINDS = [int(MsgKind.REQUEST), int(MsgKind.REPLY)]
MEMORY_KINDS = [int(k) for k in MsgKind if k >= MsgKind.MEM_READ]


def _kind(frame: bytes) -> int:
    return frame[5]


FRAMES = [encode(m, EPOCH) for m in MESSAGES]
VALUES = [encode_payload(p) for p in PAYLOADS]


def _ids(items: list[typing.Any]) -> list[str]:
    return [f"{i}-{type(x).__name__}" for i, x in enumerate(items)]


def _relength(frame: bytes | bytearray) -> bytes:
    """``frame`` with its length field made consistent with its size."""
    return struct.pack(">I", len(frame) - 4) + bytes(frame[4:])


def _reason(fn: Callable[[bytes], object], data: bytes) -> str:
    """The reason ``fn(data)`` gives for refusing ``data``."""
    with pytest.raises(DecodeError) as info:
        fn(data)
    reason: str = info.value.reason
    return reason


# --------------------------------------------------------------------------- the tables


def test_tables_cover_every_class_and_kind() -> None:
    assert {type(m) for m in MESSAGES} == set(typing.get_args(Message))
    assert {type(p) for p in PAYLOADS} == set(typing.get_args(Payload))
    assert {_kind(f) for f in FRAMES} == {int(k) for k in MsgKind}
    assert {*REPLICA_KINDS, *CLIENT_KINDS, *MEMORY_KINDS} == {int(k) for k in MsgKind}


@pytest.mark.parametrize("msg", MESSAGES, ids=_ids(MESSAGES))
def test_message_round_trip(msg: Message) -> None:
    frame = encode(msg, EPOCH)
    assert type(frame) is bytes
    length, version, kind, epoch = FRAME_HEADER.unpack_from(frame)
    assert (length, version, epoch) == (len(frame) - 4, WIRE_VERSION, EPOCH)
    assert kind == _KIND_OF[type(msg)]
    assert decode(frame) == (EPOCH, msg)
    assert decode(bytearray(frame)) == (EPOCH, msg)
    assert decode(memoryview(frame)) == (EPOCH, msg)
    for value in vars_of(decode(memoryview(frame))[1]):
        assert type(value) is not memoryview


_KIND_OF: dict[type, int] = {
    Ctb: MsgKind.CTB,
    CtbEcho: MsgKind.CTB_ECHO,
    CtbSig: MsgKind.CTB_SIG,
    CtbSigRequest: MsgKind.CTB_SIG_REQUEST,
    CtbCkptShare: MsgKind.CTB_CKPT_SHARE,
    CtbCkptCert: MsgKind.CTB_CKPT_CERT,
    Promise: MsgKind.PROMISE,
    FastCommit: MsgKind.FAST_COMMIT,
    PrepShare: MsgKind.PREP_SHARE,
    CkptShare: MsgKind.CKPT_SHARE,
    RequestEcho: MsgKind.REQUEST_ECHO,
    RequestEchoes: MsgKind.REQUEST_ECHOES,
    RequestForward: MsgKind.REQUEST_FORWARD,
    Equivocation: MsgKind.EQUIVOCATION,
    Sync: MsgKind.SYNC,
    Request: MsgKind.REQUEST,
    Reply: MsgKind.REPLY,
    MemRead: MsgKind.MEM_READ,
    MemWrite: MsgKind.MEM_WRITE,
    MemReadReply: MsgKind.MEM_READ_REPLY,
    MemWriteReply: MsgKind.MEM_WRITE_REPLY,
    MemMarkKnown: MsgKind.MEM_MARK_KNOWN,
}


def vars_of(obj: object) -> list[object]:
    """Every field value of a (nested) message, recursively."""
    out: list[object] = []
    for name in getattr(type(obj), "__slots__", ()):
        value = getattr(obj, name)
        out.append(value)
        if isinstance(value, tuple):
            for item in value:
                out.extend([item, *vars_of(item)])
        else:
            out.extend(vars_of(value))
    return out


@pytest.mark.parametrize("payload", PAYLOADS, ids=_ids(PAYLOADS))
def test_payload_round_trip(payload: Payload) -> None:
    value = encode_payload(payload)
    assert type(value) is bytes
    assert value[0] == 1
    assert decode_payload(value) == payload
    assert decode_payload(bytearray(value)) == payload


def test_batch_is_the_tail_of_prepare_and_commit() -> None:
    batch_bytes = encode_batch(BATCH)
    assert M_PREPARE[18:] == batch_bytes
    assert M_COMMIT[18 + 1 + 66 * len(PREP_CERT.signers) :] == batch_bytes
    assert decode_payload(M_PREPARE[:18] + batch_bytes) == PAYLOADS[0]


def test_request_and_entry_share_one_encoding() -> None:
    frame = encode(REQUEST, EPOCH)
    assert encode_batch(Batch(5, (Entry(7, 41, REQ_PAYLOAD, REQ_SIG),)))[10:] == frame[10:]
    assert encode(RequestForward(REQUEST), EPOCH)[10:] == frame[10:]


# --------------------------------------------------------------------------- strict rejection


@pytest.mark.parametrize("frame", FRAMES, ids=_ids(MESSAGES))
def test_every_truncation_and_extension_of_a_frame_is_rejected(frame: bytes) -> None:
    for cut in range(len(frame)):
        with pytest.raises(DecodeError):
            decode(frame[:cut])
        if cut >= FRAME_HEADER.size:  # length field fixed up: the body parser must notice
            assert _reason(decode, _relength(frame[:cut])) == "body.truncated"
    assert _reason(decode, frame + b"\x00") == "frame.length_mismatch"
    assert _reason(decode, _relength(frame + b"\x00")) == "body.trailing_bytes"


@pytest.mark.parametrize("value", VALUES, ids=_ids(PAYLOADS))
def test_every_truncation_and_extension_of_a_value_is_rejected(value: bytes) -> None:
    for cut in range(len(value)):
        with pytest.raises(DecodeError):
            decode_payload(value[:cut])
    assert _reason(decode_payload, value + b"\x00") == "body.trailing_bytes"


def _frame(kind: int, body: bytes, *, version: int = WIRE_VERSION) -> bytes:
    head: bytes = FRAME_HEADER.pack(6 + len(body), version, kind, EPOCH)
    return head + body


def _mutate_frame(msg: Message, offset: int, new: bytes) -> bytes:
    """``msg``'s frame with the bytes at ``offset`` (from the body's start) replaced."""
    frame = bytearray(encode(msg, EPOCH))
    at = FRAME_HEADER.size + offset
    frame[at : at + len(new)] = new
    return bytes(frame)


SIG = bytes(range(64))


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "frame.too_short"),
        (b"\x00\x00\x00\x06\x01\x07\x00\x00\x00", "frame.too_short"),
        (_relength(bytes(MAX_FRAME_BYTES + 1)), "frame.too_long"),
        (_frame(7, bytes(16), version=0), "frame.bad_version"),
        (_frame(7, bytes(16), version=2), "frame.bad_version"),
        (_frame(0, b""), "frame.unknown_kind"),
        (_frame(16, b""), "frame.unknown_kind"),
        (_frame(255, bytes(16)), "frame.unknown_kind"),
        (_frame(7, bytes(15)), "body.truncated"),
        (_frame(7, bytes(17)), "body.trailing_bytes"),
        # Ctb.m length over the limit / past the end
        (_frame(1, struct.pack(">HQI", 0, 1, MAX_VALUE_BYTES + 1)), "field.too_long"),
        (_frame(1, struct.pack(">HQI", 0, 1, 5) + b"abcd"), "body.truncated"),
        # CtbEcho: flag 2, digest of 31 bytes
        (_frame(2, struct.pack(">HQBI", 0, 1, 2, 0)), "field.bad_bool"),
        (_frame(2, struct.pack(">HQBI", 0, 1, 1, 31) + bytes(31)), "field.bad_size"),
        (_frame(2, struct.pack(">HQBI", 0, 1, 0, MAX_VALUE_BYTES + 1)), "field.too_long"),
        # Request: payload over the limit, a 63-byte signature
        (_frame(32, struct.pack(">IQI", 1, 2, MAX_PAYLOAD_BYTES + 1)), "field.too_long"),
        (_frame(32, struct.pack(">IQIB", 1, 2, 0, 63) + bytes(63)), "field.bad_size"),
        (_frame(12, struct.pack(">IQIB", 1, 2, 0, 65) + bytes(65)), "field.bad_size"),
        (_frame(33, struct.pack(">IIQI", 1, 2, 3, MAX_PAYLOAD_BYTES + 1)), "field.too_long"),
        # Certificates inside CtbCkptCert
        (
            _frame(6, struct.pack(">HQIB", 0, 1, 0, MAX_CERT_SIGNERS + 1)),
            "cert.too_many_signers",
        ),
        (
            _frame(6, struct.pack(">HQIB", 0, 1, 0, 2) + struct.pack(">H64sH64s", 2, SIG, 1, SIG)),
            "cert.signers_not_ascending",
        ),
        (
            _frame(6, struct.pack(">HQIB", 0, 1, 0, 2) + struct.pack(">H64sH64s", 1, SIG, 1, SIG)),
            "cert.signers_not_ascending",
        ),
        (_frame(6, struct.pack(">HQI", 0, 1, MAX_PAYLOAD_BYTES + 1)), "field.too_long"),
        (_frame(6, struct.pack(">HQI", 0, 1, 3) + b"abc"), "body.truncated"),
        # memory nodes
        (_mutate_frame(MemReadReply(1, 2, 0, REGISTER), 16, b"\x03"), "field.bad_value"),
        (_mutate_frame(MemWriteReply(1, 2, 0), 16, b"\xff"), "field.bad_value"),
        (_frame(50, struct.pack(">QQBB", 1, 2, 0, 120) + bytes(120)), "field.bad_size"),
        (_frame(49, bytes(20 + 1 + MEM_SUBSLOT_BYTES - 1)), "body.truncated"),
    ],
)
def test_specific_rejections(frame: bytes, reason: str) -> None:
    assert reason in REASONS
    assert _reason(decode, frame) == reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "payload.too_short"),
        (b"\x01", "payload.too_short"),
        (bytes([1, 4]) + bytes(MAX_VALUE_BYTES - 1), "payload.too_long"),
        (bytes([0, 4]) + bytes(8), "payload.bad_version"),
        (bytes([1, 0]) + bytes(8), "payload.unknown_kind"),
        (bytes([1, int(PayloadKind.NEW_VIEW)]) + bytes(8), "payload.unknown_kind"),
        (bytes([1, 9]) + bytes(8), "payload.unknown_kind"),
        (bytes([1, 4]) + bytes(7), "body.truncated"),
        (
            bytes([1, 1]) + bytes(16) + struct.pack(">QH", 0, MAX_BATCH_ENTRIES + 1),
            "batch.too_many_entries",
        ),
        (bytes([1, 1]) + bytes(16) + struct.pack(">QH", 0, 1), "body.truncated"),
        (
            bytes([1, 1]) + bytes(16) + struct.pack(">QHIQIB", 0, 1, 1, 1, 0, 2) + bytes(2),
            "field.bad_size",
        ),
        (
            bytes([1, 1]) + bytes(16) + struct.pack(">QHIQI", 0, 1, 1, 1, MAX_PAYLOAD_BYTES + 1),
            "field.too_long",
        ),
        (bytes([1, 2]) + bytes(16) + bytes([MAX_CERT_SIGNERS + 1]), "cert.too_many_signers"),
        (bytes([1, 3]) + bytes(40) + b"\x01" + bytes(65), "body.truncated"),
    ],
)
def test_specific_payload_rejections(value: bytes, reason: str) -> None:
    assert reason in REASONS
    assert _reason(decode_payload, value) == reason


def test_limits_at_the_edge_are_accepted() -> None:
    big = Ctb(0, 1, bytes(MAX_VALUE_BYTES))
    assert decode(encode(big, 0)) == (0, big)
    entries = tuple(Entry(i, i, b"") for i in range(MAX_BATCH_ENTRIES))
    prepare = Prepare(0, 1, Batch(0, entries))
    assert decode_payload(encode_payload(prepare)) == prepare
    cert = Certificate(tuple(range(MAX_CERT_SIGNERS)), (SIG,) * MAX_CERT_SIGNERS)
    checkpoint = Checkpoint(0, bytes(32), cert)
    assert decode_payload(encode_payload(checkpoint)) == checkpoint
    reply = Reply(0, 0, 0, bytes(MAX_PAYLOAD_BYTES))
    assert decode(encode(reply, 0)) == (0, reply)


# --------------------------------------------------------------------------- encoding errors


@pytest.mark.parametrize(
    "msg",
    [
        Promise(-1, 0),
        Promise(2**64, 0),
        CtbSigRequest(2**16, 0),
        RequestEcho(2**32, 0, bytes(32)),
        RequestEcho(1, 0, bytes(31)),
        CtbSig(0, 0, bytes(63)),
        CtbSig(0, 0, b""),
        PrepShare(0, 0, bytes(32), bytes(65)),
        CkptShare(0, bytes(33), SIG),
        CtbCkptShare(0, 0, bytes(32), b""),
        Equivocation(0, 0, bytes(32), SIG, bytes(32), SIG[:-1]),
        CtbEcho(0, 0, True, bytes(31)),
        Ctb(0, 0, bytes(MAX_VALUE_BYTES + 1)),
        Request(1, 2, b"x", bytes(10)),
        Request(1, 2, bytes(MAX_PAYLOAD_BYTES + 1)),
        Reply(2**32, 0, 0, b""),
        CtbCkptCert(0, 0, b"", Certificate((1, 0), (SIG, SIG))),
        CtbCkptCert(0, 0, b"", Certificate((0, 1), (SIG,))),
        CtbCkptCert(0, 0, b"", Certificate((0,), (SIG[:10],))),
        MemWrite(0, 0, 0, 0, 0, 0, bytes(MEM_SUBSLOT_BYTES + 1)),
        MemWrite(0, 0, 0, 0, 0, 256, bytes(MEM_SUBSLOT_BYTES)),
        MemReadReply(0, 0, 0, bytes(10)),
        MemReadReply(0, 0, 3, b""),
        MemWriteReply(0, 0, -1),
    ],
    ids=lambda m: type(m).__name__,
)
def test_encoding_an_impossible_message_raises_value_error(msg: Message) -> None:
    with pytest.raises(ValueError):
        encode(msg, 0)


def test_encoding_errors() -> None:
    with pytest.raises(ValueError):
        encode(Promise(0, 0), 2**32)
    with pytest.raises(TypeError):
        encode(typing.cast(typing.Any, SealView(1)), 0)
    with pytest.raises(TypeError):
        encode_payload(typing.cast(typing.Any, Promise(1, 2)))
    with pytest.raises(ValueError):
        encode_payload(Prepare(0, 0, Batch(0, (Entry(0, 0, b""),) * (MAX_BATCH_ENTRIES + 1))))
    with pytest.raises(ValueError):
        encode_payload(Prepare(0, 0, Batch(0, (Entry(0, 0, b"", b"x"),))))
    with pytest.raises(ValueError):
        encode_payload(Checkpoint(0, bytes(32), Certificate((0,) * 65, (SIG,) * 65)))
    with pytest.raises(ValueError):
        encode_payload(SealView(-1))
    many = Batch(0, (Entry(0, 0, bytes(MAX_PAYLOAD_BYTES)),) * 3)
    with pytest.raises(ValueError):
        encode_payload(Prepare(0, 0, many))  # over MAX_VALUE_BYTES
    with pytest.raises(ValueError):
        encode_batch(Batch(2**64, ()))


# --------------------------------------------------------------------------- fuzzing

FUZZ = settings(
    max_examples=10_000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

U8 = st.integers(0, 255)
U32 = st.integers(0, 2**32 - 1)
# (operation, position, byte): flip a bit, replace, insert, delete
MUTATIONS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4096), U8), min_size=1, max_size=4)


def _mutate(data: bytes, ops: list[tuple[int, int, int]], fix_length: bool) -> bytes:
    buf = bytearray(data)
    for op, pos, byte in ops:
        if op == 2:
            buf.insert(pos % (len(buf) + 1), byte)
        elif not buf:
            continue
        elif op == 0:
            buf[pos % len(buf)] ^= 1 << (byte & 7)
        elif op == 1:
            buf[pos % len(buf)] = byte
        else:
            del buf[pos % len(buf)]
    if fix_length and len(buf) >= 4:
        return _relength(buf)
    return bytes(buf)


def _frames(kinds: list[int]) -> st.SearchStrategy[bytes]:
    valid = [f for f in FRAMES if _kind(f) in kinds]
    headed = st.builds(
        lambda kind, epoch, body: (
            FRAME_HEADER.pack(6 + len(body), WIRE_VERSION, kind, epoch) + body
        ),
        st.sampled_from(kinds),
        U32,
        st.binary(max_size=300),
    )
    mutated = st.builds(_mutate, st.sampled_from(valid), MUTATIONS, st.booleans())
    return st.one_of(st.binary(max_size=300), headed, mutated)


def _values() -> st.SearchStrategy[bytes]:
    headed = st.builds(
        lambda kind, body: bytes([1, kind]) + body,
        st.sampled_from([int(k) for k in PayloadKind]),
        st.binary(max_size=300),
    )
    mutated = st.builds(_mutate, st.sampled_from(VALUES), MUTATIONS, st.just(False))
    return st.one_of(st.binary(max_size=300), headed, mutated)


def _check_frame(frame: bytes) -> None:
    try:
        epoch, msg = decode(frame)
    except DecodeError as exc:
        assert exc.reason in REASONS
        event(exc.reason)
    else:  # the encoding is canonical: whatever is accepted re-encodes to the same bytes
        assert encode(msg, epoch) == frame
        event("accepted")


@FUZZ
@given(_frames(REPLICA_KINDS))
def test_fuzz_replica_frames(frame: bytes) -> None:
    _check_frame(frame)


@FUZZ
@given(_frames(CLIENT_KINDS))
def test_fuzz_client_frames(frame: bytes) -> None:
    _check_frame(frame)


@FUZZ
@given(_frames(MEMORY_KINDS))
def test_fuzz_memory_frames(frame: bytes) -> None:
    _check_frame(frame)


@FUZZ
@given(_values())
def test_fuzz_payloads(value: bytes) -> None:
    try:
        payload = decode_payload(value)
    except DecodeError as exc:
        assert exc.reason in REASONS
        event(exc.reason)
    else:
        assert encode_payload(payload) == value
        event("accepted")


# --------------------------------------------------------------------------- generated round trips

U16 = st.integers(0, 2**16 - 1)
U64 = st.integers(0, 2**64 - 1)
D32 = st.binary(min_size=32, max_size=32)
S64 = st.binary(min_size=64, max_size=64)
SMALL = st.binary(max_size=64)

ENTRIES = st.builds(Entry, U32, U64, SMALL, st.one_of(st.just(b""), S64))
BATCHES = st.builds(Batch, U64, st.lists(ENTRIES, max_size=4).map(tuple))
CERTS = st.lists(U16, unique=True, max_size=4).flatmap(
    lambda signers: st.builds(
        Certificate,
        st.just(tuple(sorted(signers))),
        st.tuples(*[S64] * len(signers)),
    )
)
REQUESTS = st.builds(Request, U32, U64, SMALL, st.one_of(st.just(b""), S64))
STATUS = st.integers(0, 2)

MESSAGE_STRATEGIES: dict[type, st.SearchStrategy[typing.Any]] = {
    Ctb: st.builds(Ctb, U16, U64, SMALL),
    CtbEcho: st.one_of(
        st.builds(CtbEcho, U16, U64, st.just(True), D32),
        st.builds(CtbEcho, U16, U64, st.just(False), SMALL),
    ),
    CtbSig: st.builds(CtbSig, U16, U64, S64),
    CtbSigRequest: st.builds(CtbSigRequest, U16, U64),
    CtbCkptShare: st.builds(CtbCkptShare, U16, U64, D32, S64),
    CtbCkptCert: st.builds(CtbCkptCert, U16, U64, SMALL, CERTS),
    Promise: st.builds(Promise, U64, U64),
    FastCommit: st.builds(FastCommit, U64, U64),
    PrepShare: st.builds(PrepShare, U64, U64, D32, S64),
    CkptShare: st.builds(CkptShare, U64, D32, S64),
    RequestEcho: st.builds(RequestEcho, U32, U64, D32),
    RequestEchoes: st.builds(
        RequestEchoes, st.lists(st.builds(RequestEcho, U32, U64, D32), max_size=5).map(tuple)
    ),
    RequestForward: st.builds(RequestForward, REQUESTS),
    Equivocation: st.builds(Equivocation, U16, U64, D32, S64, D32, S64),
    Sync: st.builds(Sync, U64, U64, U64, U64),
    Request: REQUESTS,
    Reply: st.builds(Reply, U32, U32, U64, SMALL),
    MemRead: st.builds(MemRead, U64, U32, U16, U16, U32),
    MemWrite: st.builds(
        MemWrite,
        U64,
        U32,
        U16,
        U16,
        U32,
        U8,
        st.binary(min_size=MEM_SUBSLOT_BYTES, max_size=MEM_SUBSLOT_BYTES),
    ),
    MemReadReply: st.builds(
        MemReadReply, U64, U64, STATUS, st.sampled_from([b"", REGISTER, bytes(MEM_REGISTER_BYTES)])
    ),
    MemWriteReply: st.builds(MemWriteReply, U64, U64, STATUS),
    MemMarkKnown: st.builds(MemMarkKnown, U64, U32, U16, U64),
}
PAYLOAD_STRATEGIES: dict[type, st.SearchStrategy[typing.Any]] = {
    Prepare: st.builds(Prepare, U64, U64, BATCHES),
    Commit: st.builds(Commit, U64, U64, BATCHES, CERTS),
    Checkpoint: st.builds(Checkpoint, U64, D32, CERTS),
    SealView: st.builds(SealView, U64),
}
ROUND_TRIP = settings(max_examples=300, deadline=None, database=None)


def test_strategies_cover_every_class() -> None:
    assert set(MESSAGE_STRATEGIES) == set(typing.get_args(Message))
    assert set(PAYLOAD_STRATEGIES) == set(typing.get_args(Payload))


@pytest.mark.parametrize("cls", list(MESSAGE_STRATEGIES), ids=lambda c: c.__name__)
@ROUND_TRIP
@given(data=st.data(), epoch=U32)
def test_generated_message_round_trip(cls: type, data: st.DataObject, epoch: int) -> None:
    msg = data.draw(MESSAGE_STRATEGIES[cls])
    frame = encode(msg, epoch)
    assert decode(frame) == (epoch, msg)


@pytest.mark.parametrize("cls", list(PAYLOAD_STRATEGIES), ids=lambda c: c.__name__)
@ROUND_TRIP
@given(data=st.data())
def test_generated_payload_round_trip(cls: type, data: st.DataObject) -> None:
    payload = data.draw(PAYLOAD_STRATEGIES[cls])
    value = encode_payload(payload)
    assert decode_payload(value) == payload
    if isinstance(payload, Prepare | Commit):  # the batch is the value's tail
        assert value.endswith(encode_batch(payload.batch))


def test_batch_digest_read_off_the_value_equals_digest_of_encoded_batch() -> None:
    from ubft.replica.core.codec import batch_digest_in

    for p in PAYLOADS:
        if isinstance(p, Prepare | Commit):
            assert batch_digest_in(encode_payload(p), p) == digest(encode_batch(p.batch))
