"""Per-client request windows, the log of requests received directly, and the exactly-once
client table (PROTOCOL.md section 4, "Clients and requests" and "Exactly-once execution").

Every container here is bounded by max_clients x client_window: a request id outside
(h, h + client_window] of its client's table is never stored.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise

from .admission import ADMIN_CLIENT_ID
from .crypto import digest

OUT_OF_WINDOW = b"\x00ubft:out-of-window"
# Keys remembered per client id, so that an id is registered again only with a new key. The
# history is bounded: an id whose history is full is refused a further key (the operator gives
# the client a new id), and only the last max_clients deregistered ids keep theirs; an id at or
# below the highest id ever registered whose history was forgotten is retired for good.
KEY_HISTORY = 8
REPLY_TOO_LARGE = b"\x00ubft:reply-too-large"

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_TABLE_HEAD = struct.Struct(">QI")  # admin_s, id_watermark
_CLIENT_HEAD = struct.Struct(">QI")  # h, executed count (after cid and key)
_REPLY_HEAD = struct.Struct(">QI")  # request id, result length


class TableDecodeError(ValueError):
    """Bytes that are not one canonical client table (``RequestLog.from_table_bytes``)."""


@dataclass(slots=True)
class PendingRequest:
    payload: bytes
    digest: bytes
    sig: bytes  # empty when unsigned; verified when set
    since_ns: int = 0  # when it was stored
    echoes: dict[int, bytes] = field(default_factory=dict)  # follower -> digest it echoed
    proposed: bool = False


@dataclass(slots=True)
class ClientEntry:
    key: bytes
    h: int = 0  # highest contiguous executed request id (ids start at 1)
    executed: set[int] = field(default_factory=set)  # executed ids in (h, h + window]
    replies: dict[int, bytes] = field(default_factory=dict)  # last client_window replies
    pending: dict[int, PendingRequest] = field(default_factory=dict)
    early_echoes: dict[int, dict[int, bytes]] = field(default_factory=dict)


class RequestLog:
    """``clients`` holds every registered client and the admin (id ``ADMIN_CLIENT_ID``), whose
    requests carry Register / Deregister commands."""

    __slots__ = (
        "admin_s",
        "clients",
        "id_watermark",
        "max_clients",
        "max_reply",
        "retired",
        "used_keys",
        "window",
    )

    def __init__(
        self,
        clients: dict[int, bytes],
        client_window: int,
        max_reply: int,
        admin_key: bytes = b"",
        max_clients: int = 1 << 30,
    ) -> None:
        if ADMIN_CLIENT_ID in clients:
            raise ValueError(f"client id {ADMIN_CLIENT_ID} is reserved for the admin")
        if len(clients) > max_clients:
            raise ValueError("more genesis clients than max_clients")
        self.window = client_window
        self.max_reply = max_reply
        self.max_clients = max_clients
        self.clients = {cid: ClientEntry(key) for cid, key in sorted(clients.items())}
        if admin_key:
            self.clients[ADMIN_CLIENT_ID] = ClientEntry(admin_key)
        self.admin_s = 0  # last executed admin sequence number (checkpointed)
        # keys each remembered client id was registered with (oldest first; see KEY_HISTORY)
        self.used_keys: dict[int, list[bytes]] = {cid: [key] for cid, key in clients.items()}
        self.retired: list[int] = []  # deregistered ids still remembered, oldest first
        self.id_watermark = max(clients, default=ADMIN_CLIENT_ID)

    def registered(self) -> int:
        return len(self.clients) - (ADMIN_CLIENT_ID in self.clients)

    def register(self, client_id: int, key: bytes) -> str | None:
        """Admit a client (executing an ordered Register); the reason it fails, or None."""
        if client_id == ADMIN_CLIENT_ID:
            return "reserved client id"
        history = self.used_keys.get(client_id)
        if history is not None:
            if key in history:
                return "key already used for this client id"
            if len(history) >= KEY_HISTORY:
                return "key history full for this client id"
        elif client_id <= self.id_watermark:
            return "client id retired"
        old = self.clients.get(client_id)
        if old is None and self.registered() >= self.max_clients:
            return "max_clients reached"
        # a new key is a new identity: a fresh table (its request ids start again at 1)
        self.clients[client_id] = ClientEntry(key)
        if history is None:
            self.used_keys[client_id] = [key]
        else:
            history.append(key)
        if client_id in self.retired:
            self.retired.remove(client_id)
        self.id_watermark = max(self.id_watermark, client_id)
        return None

    def deregister(self, client_id: int) -> str | None:
        if client_id == ADMIN_CLIENT_ID or client_id not in self.clients:
            return "not registered"
        del self.clients[client_id]
        self.retired.append(client_id)
        if len(self.retired) > self.max_clients:
            del self.used_keys[self.retired.pop(0)]  # forgotten: retired below the watermark
        return None

    def in_window(self, entry: ClientEntry, request_id: int) -> bool:
        return entry.h < request_id <= entry.h + self.window and request_id not in entry.executed

    def cached_reply(self, entry: ClientEntry, request_id: int) -> bytes | None:
        return entry.replies.get(request_id)

    def add(
        self, client_id: int, request_id: int, payload: bytes, sig: bytes, now_ns: int
    ) -> PendingRequest | None:
        """Store a request received from its client (or forwarded signed). Returns the stored
        request when it is new or became signed; None when it changes nothing."""
        entry = self.clients[client_id]
        if not self.in_window(entry, request_id):
            return None
        old = entry.pending.get(request_id)
        if old is not None:
            if sig and not old.sig and old.payload == payload:
                old.sig = sig
                return old
            if sig and not old.sig and old.payload != payload and not old.proposed:
                # a signed request replaces an unsigned one with other bytes
                req = entry.pending[request_id] = PendingRequest(
                    payload, digest(payload), sig, now_ns
                )
                return req
            return None
        req = PendingRequest(payload, digest(payload), sig, now_ns)
        early = entry.early_echoes.pop(request_id, None)
        if early:
            req.echoes.update(early)
        entry.pending[request_id] = req
        return req

    def add_echo(
        self, client_id: int, request_id: int, follower: int, d: bytes
    ) -> PendingRequest | None:
        entry = self.clients.get(client_id)
        if entry is None or not self.in_window(entry, request_id):
            return None
        req = entry.pending.get(request_id)
        if req is None:
            entry.early_echoes.setdefault(request_id, {}).setdefault(follower, d)
            return None
        req.echoes.setdefault(follower, d)
        return req

    def execute(self, client_id: int, request_id: int) -> tuple[str, bytes | None]:
        """Decide what executing (client_id, request_id) means: ("skip", cached reply or None),
        ("out_of_window", None) or ("execute", None). The caller applies and calls record."""
        entry = self.clients.get(client_id)
        if entry is None:
            return ("unregistered", None)
        if request_id <= entry.h or request_id in entry.executed:
            return ("skip", entry.replies.get(request_id))
        if request_id > entry.h + self.window:
            return ("out_of_window", None)
        return ("execute", None)

    def record(self, client_id: int, request_id: int, result: bytes) -> bytes:
        entry = self.clients[client_id]
        if len(result) > self.max_reply:
            result = REPLY_TOO_LARGE
        h = old_h = entry.h
        executed = entry.executed
        if request_id == h + 1 and not executed:
            h = request_id  # the common case: the next id, nothing executed out of order
        else:
            executed.add(request_id)
            while h + 1 in executed:
                h += 1
                executed.discard(h)
        replies = entry.replies
        replies[request_id] = result
        if len(replies) > self.window:
            del replies[next(iter(replies))]  # insertion order is execution order
        entry.pending.pop(request_id, None)
        if h == request_id == old_h + 1:
            entry.h = h  # only request_id fell below the window, and it is gone already
            if entry.early_echoes:
                entry.early_echoes.pop(request_id, None)
        elif h != old_h:
            entry.h = h
            # requests that fell below the window can never execute: forget them
            if entry.pending:
                for stale in [x for x in entry.pending if x <= h]:
                    del entry.pending[stale]
            if entry.early_echoes:
                for stale in [x for x in entry.early_echoes if x <= h]:
                    del entry.early_echoes[stale]
        else:
            entry.early_echoes.pop(request_id, None)
        return result

    def table_bytes(self) -> bytes:
        """Canonical encoding of the client table (checkpointed state); see ``table_pieces``."""
        return b"".join(self.table_pieces())

    def table_pieces(self) -> Iterator[bytes]:
        """The canonical client table, one piece per section and per client (big-endian)::

            table   := admin_s:u64 id_watermark:u32
                       nused:u32 (cid:u32 nkeys:u8 key{nkeys}){nused}    ascending cid
                       nretired:u32 cid:u32{nretired}                    oldest first
                       nclients:u32 client{nclients}                     ascending cid
            key     := len:u16 bytes{len}                                registration order
            client  := cid:u32 key h:u64 nexec:u32 x:u64{nexec}          executed ids ascending
                       nreplies:u32 (x:u64 len:u32 result{len}){nreplies}  execution order

        Registration, retirement and execution orders are identical on correct replicas (they
        follow ordered execution). Pending requests and echoes are not part of it.
        """
        head = bytearray(_TABLE_HEAD.pack(self.admin_s, self.id_watermark))
        head += _U32.pack(len(self.used_keys))
        for cid in sorted(self.used_keys):
            keys = self.used_keys[cid]
            head += _U32.pack(cid) + bytes((len(keys),))
            for key in keys:
                head += _U16.pack(len(key)) + key
        head += _U32.pack(len(self.retired))
        for cid in self.retired:
            head += _U32.pack(cid)
        head += _U32.pack(len(self.clients))
        yield bytes(head)
        for cid, e in sorted(self.clients.items()):
            out = bytearray(_U32.pack(cid) + _U16.pack(len(e.key)) + e.key)
            out += _CLIENT_HEAD.pack(e.h, len(e.executed))
            for x in sorted(e.executed):
                out += _U64.pack(x)
            out += _U32.pack(len(e.replies))
            for x, r in e.replies.items():
                out += _REPLY_HEAD.pack(x, len(r)) + r
            yield bytes(out)

    @classmethod
    def from_table_bytes(
        cls, data: bytes, client_window: int, max_reply: int, max_clients: int
    ) -> RequestLog:
        """The log whose ``table_bytes()`` is ``data`` (no pending requests), for the given
        parameters (those of the configuration the table was checkpointed with).

        Raises TableDecodeError, and nothing else, unless ``data`` is exactly one canonical
        table consistent with the parameters and with the invariants execution keeps.
        """
        r = _TableReader(bytes(data))
        log = cls({}, client_window, max_reply, max_clients=max_clients)
        log.admin_s, log.id_watermark = r.unpack(_TABLE_HEAD)
        used: dict[int, list[bytes]] = {}
        previous = -1
        for _ in range(r.count(max_clients * 2 + 1, "used key ids")):
            cid = r.u32()
            if cid <= previous:
                raise TableDecodeError("used key ids not strictly ascending")
            if cid == ADMIN_CLIENT_ID or cid > log.id_watermark:
                raise TableDecodeError("used key id out of range")
            nkeys = r.take(1)[0]
            if not 1 <= nkeys <= KEY_HISTORY:
                raise TableDecodeError("bad key history length")
            keys = [r.take(r.u16()) for _ in range(nkeys)]
            if len(set(keys)) != nkeys:
                raise TableDecodeError("duplicate key in a key history")
            used[cid] = keys
            previous = cid
        retired = [r.u32() for _ in range(r.count(max_clients, "retired ids"))]
        if len(set(retired)) != len(retired) or not set(retired) <= used.keys():
            raise TableDecodeError("retired ids not distinct remembered ids")
        clients: dict[int, ClientEntry] = {}
        previous = -1
        for _ in range(r.count(max_clients + 1, "clients")):
            cid = r.u32()
            if cid <= previous:
                raise TableDecodeError("client ids not strictly ascending")
            key = r.take(r.u16())
            if cid != ADMIN_CLIENT_ID and (cid not in used or used[cid][-1] != key):
                raise TableDecodeError("client key is not its id's latest used key")
            entry = ClientEntry(key, r.u64())
            executed = [r.u64() for _ in range(r.count(client_window, "executed ids"))]
            if any(b <= a for a, b in pairwise(executed)):
                raise TableDecodeError("executed ids not strictly ascending")
            if executed and not (
                entry.h + 1 < executed[0] and executed[-1] <= entry.h + client_window
            ):
                raise TableDecodeError("executed id outside (h + 1, h + window]")
            entry.executed = set(executed)
            for _ in range(r.count(client_window, "replies")):
                x = r.u64()
                result = r.take(r.u32())
                if x in entry.replies or not (x <= entry.h or x in entry.executed):
                    raise TableDecodeError("reply for a request not executed or repeated")
                if len(result) > max_reply and result != REPLY_TOO_LARGE:
                    raise TableDecodeError("reply larger than max_reply")
                entry.replies[x] = result
            clients[cid] = entry
            previous = cid
        r.finish()
        registered = clients.keys() - {ADMIN_CLIENT_ID}
        if registered & set(retired) or registered | set(retired) != used.keys():
            raise TableDecodeError("remembered ids are not the registered and retired ones")
        if len(registered) > max_clients:
            raise TableDecodeError("more clients than max_clients")
        log.used_keys = used
        log.retired = retired
        log.clients = clients
        return log

    def footprint(self) -> int:
        return sum(
            1
            + len(e.executed)
            + len(e.replies)
            + len(e.pending)
            + sum(len(p.echoes) for p in e.pending.values())
            + sum(len(v) for v in e.early_echoes.values())
            for e in self.clients.values()
        )

    def key_footprint(self) -> int:
        """Keys and ids remembered for admission: at most 2 x max_clients x KEY_HISTORY."""
        return sum(len(keys) for keys in self.used_keys.values()) + len(self.retired)


class _TableReader:
    """Bounds-checked cursor over a client table; every failure is a TableDecodeError."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise TableDecodeError("truncated client table")
        out = self._data[self._pos : end]
        self._pos = end
        return out

    def unpack(self, fmt: struct.Struct) -> tuple[int, ...]:
        values: tuple[int, ...] = fmt.unpack(self.take(fmt.size))
        return values

    def u16(self) -> int:
        return self.unpack(_U16)[0]

    def u32(self) -> int:
        return self.unpack(_U32)[0]

    def u64(self) -> int:
        return self.unpack(_U64)[0]

    def count(self, limit: int, what: str) -> int:
        n = self.u32()
        if n > limit:
            raise TableDecodeError(f"too many {what}")
        return n

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise TableDecodeError("trailing bytes after the client table")
