"""Per-client request windows, the log of requests received directly, and the exactly-once
client table (PROTOCOL.md section 4, "Clients and requests" and "Exactly-once execution").

Every container here is bounded by max_clients x client_window: a request id outside
(h, h + client_window] of its client's table is never stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .admission import ADMIN_CLIENT_ID
from .crypto import digest

OUT_OF_WINDOW = b"\x00ubft:out-of-window"
# Keys remembered per client id, so that an id is registered again only with a new key. The
# history is bounded: an id whose history is full is refused a further key (the operator gives
# the client a new id), and only the last max_clients deregistered ids keep theirs; an id at or
# below the highest id ever registered whose history was forgotten is retired for good.
KEY_HISTORY = 8
REPLY_TOO_LARGE = b"\x00ubft:reply-too-large"


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
        h = entry.h
        executed = entry.executed
        executed.add(request_id)
        while h + 1 in executed:
            h += 1
            executed.discard(h)
        replies = entry.replies
        replies[request_id] = result
        if len(replies) > self.window:
            del replies[next(iter(replies))]  # insertion order is execution order
        entry.pending.pop(request_id, None)
        if h != entry.h:
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
        """Canonical encoding of the client table (checkpointed state)."""
        out = bytearray(self.admin_s.to_bytes(8, "big"))
        out += self.id_watermark.to_bytes(4, "big")
        for cid in sorted(self.used_keys):
            for key in self.used_keys[cid]:  # registration order, identical on correct replicas
                out += b"k" + cid.to_bytes(4, "big") + key
        for cid in self.retired:
            out += b"d" + cid.to_bytes(4, "big")
        for cid, e in sorted(self.clients.items()):
            out += cid.to_bytes(4, "big") + e.key + e.h.to_bytes(8, "big")
            for x in sorted(e.executed):
                out += b"x" + x.to_bytes(8, "big")
            for x, r in e.replies.items():  # execution order, identical on correct replicas
                out += b"r" + x.to_bytes(8, "big") + len(r).to_bytes(4, "big") + r
            out += b"."
        return bytes(out)

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
