"""Client processes of the simulator: correct key-value clients that record a history, and
scripted Byzantine clients (malformed frames, replayed ids, bad signatures, one request id
with two payloads)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ubft.apps.kv import Error, Integer, Nil, Value, cmd_get, cmd_incr, cmd_set, decode_result
from ubft.client.session import ClientSession, Completed
from ubft.replica.core.codec import encode
from ubft.replica.core.messages import Request

from .history import HistoryRecorder, OpF, OpValue


def key_names(registers: int, counters: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Register keys ("x", "y", then "k2", ...) and counter keys ("n", then "n1", ...)."""
    regs = tuple(("x", "y")[i] if i < 2 else f"k{i}" for i in range(registers))
    ctrs = tuple("n" if i == 0 else f"n{i}" for i in range(counters))
    return regs, ctrs


@dataclass(slots=True)
class _Op:
    f: OpF
    key: str
    value: OpValue
    payload: bytes


class KVClient:
    """A correct client running ``ops`` sequential operations, one outstanding at a time."""

    def __init__(
        self,
        session: ClientSession,
        rng: random.Random,
        ops: int,
        history: HistoryRecorder,
        keys: tuple[tuple[str, ...], tuple[str, ...]] = (("x", "y"), ("n",)),
    ) -> None:
        self.session = session
        self.register_keys, self.counter_keys = keys
        self.rng = rng
        self.ops_left = ops
        self.history = history
        self.current: _Op | None = None
        self.current_id = 0
        self.completed = 0
        self.issued: dict[int, bytes] = {}  # request id -> payload (validity checker)
        self.results: dict[int, bytes] = {}  # request id -> accepted result

    @property
    def cid(self) -> int:
        return self.session.client_id

    def done(self) -> bool:
        return self.ops_left == 0 and self.current is None

    def _draw(self) -> _Op:
        rng = self.rng
        roll = rng.random()
        n = self.session.next_id
        if roll < 0.4:
            key = rng.choice(self.register_keys + self.counter_keys)
            return _Op("read", key, None, cmd_get(key.encode()))
        if roll < 0.75:
            key = rng.choice(self.register_keys)
            value = f"c{self.cid}-{n}"
            return _Op("write", key, value, cmd_set(key.encode(), value.encode()))
        key = rng.choice(self.counter_keys)
        by = rng.randint(1, 3)
        return _Op("incr", key, by, cmd_incr(key.encode(), by))

    def start_next(self, now_ns: int) -> None:
        if self.current is not None or self.ops_left == 0:
            return
        op = self._draw()
        self.ops_left -= 1
        self.current = op
        self.history.invoke(self.cid, op.f, op.key, op.value, now_ns)
        self.current_id = self.session.submit(op.payload, now_ns)
        self.issued[self.current_id] = op.payload

    def on_completed(self, c: Completed, now_ns: int) -> bool:
        """Record the result; True when the client should start its next operation."""
        op = self.current
        if op is None or c.request_id != self.current_id:
            return False
        self.results[c.request_id] = c.result
        self.current = None
        self.completed += 1
        try:
            result = decode_result(c.result)
        except ValueError:
            self.history.complete(self.cid, "info", None, now_ns)
            return True
        if isinstance(result, Error):
            self.history.complete(self.cid, "fail", op.value, now_ns)
        elif op.f == "read":
            if isinstance(result, Nil):
                self.history.complete(self.cid, "ok", None, now_ns)
            elif isinstance(result, Value):
                self.history.complete(self.cid, "ok", result.data.decode("latin-1"), now_ns)
            else:
                self.history.complete(self.cid, "info", None, now_ns)
        elif op.f == "incr" and isinstance(result, Integer):
            self.history.complete(self.cid, "ok", result.value, now_ns)
        elif op.f == "write":
            self.history.complete(self.cid, "ok", op.value, now_ns)
        else:
            self.history.complete(self.cid, "info", None, now_ns)
        return True


class ByzantineClient:
    """A registered client that misbehaves; its keys live apart from the correct clients'.

    behaviours: "garbage" (malformed frames), "replay" (old ids again, ids far out of the
    window), "bad_sig" (requests signed with garbage), "two_payloads" (one id, two payloads
    to different replicas), "mixed" (all of them)."""

    def __init__(
        self,
        cid: int,
        replicas: tuple[int, ...],
        epoch: int,
        rng: random.Random,
        behaviour: str,
        rounds: int,
    ) -> None:
        self.cid = cid
        self.replicas = replicas
        self.epoch = epoch
        self.rng = rng
        self.behaviour = behaviour
        self.rounds = rounds
        self.next_id = 1
        self.issued: dict[int, set[bytes]] = {}

    def _payload(self) -> bytes:
        key = f"byz{self.cid}".encode()
        return (
            cmd_set(key, str(self.rng.randint(0, 99)).encode())
            if self.rng.random() < 0.5
            else cmd_incr(key + b"n", 1)
        )

    def act(self) -> list[tuple[int, bytes]]:
        """One round of misbehaviour: (replica, frame) pairs to send."""
        if self.rounds <= 0:
            return []
        self.rounds -= 1
        rng = self.rng
        behaviour = self.behaviour
        if behaviour == "mixed":
            behaviour = rng.choice(("garbage", "replay", "bad_sig", "two_payloads"))
        out: list[tuple[int, bytes]] = []
        if behaviour == "garbage":
            for r in self.replicas:
                frame = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
                if rng.random() < 0.5:
                    good = encode(Request(self.cid, self.next_id, self._payload()), self.epoch)
                    pos = rng.randrange(len(good))
                    frame = good[:pos] + bytes([good[pos] ^ 0xFF]) + good[pos + 1 :]
                out.append((r, frame))
        elif behaviour == "replay":
            x = rng.choice([max(1, self.next_id - 1), self.next_id + 10_000, 0])
            p = self._payload()
            self.issued.setdefault(x, set()).add(p)
            out.extend((r, encode(Request(self.cid, x, p), self.epoch)) for r in self.replicas)
        elif behaviour == "bad_sig":
            x = self.next_id
            self.next_id += 1
            p = self._payload()
            self.issued.setdefault(x, set()).add(p)
            sig = bytes(rng.getrandbits(8) for _ in range(64))
            out.extend((r, encode(Request(self.cid, x, p, sig), self.epoch)) for r in self.replicas)
        else:
            x = self.next_id
            self.next_id += 1
            a, b = self._payload(), self._payload() + b" "
            self.issued.setdefault(x, set()).update((a, b))
            for j, r in enumerate(self.replicas):
                out.append((r, encode(Request(self.cid, x, a if j % 2 == 0 else b), self.epoch)))
        return out


__all__ = ["ByzantineClient", "KVClient"]
