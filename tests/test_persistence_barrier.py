"""The persistence barrier (PROTOCOL.md section 1, durable mode): what later sends depend on is
emitted as ``Persist`` before them, and only in durable mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ubft.apps.kv import KVStore, cmd_incr
from ubft.replica.core.actions import Action, Persist, PersistKind, Send
from ubft.replica.core.codec import encode, encode_payload
from ubft.replica.core.crypto import Tag, digest
from ubft.replica.core.messages import Batch, Ctb, CtbEcho, Entry, FastCommit, Prepare, Promise
from ubft.replica.core.replica import Replica
from ubft.replica.sim.durability import PersistenceBarrier

CID = 100


def _follower_run(make_cluster: Callable[..., Any], durable: bool) -> list[Action]:
    """Replica 1 accepts the leader's Prepare 0, promises, FastCommits and decides."""
    config, keys = make_cluster(durable=durable)
    rep = Replica(config, 1, keys.members[1], KVStore(), keys.client_keys())
    payload = cmd_incr(b"n")
    sig = keys.clients[CID].sign(Tag.REQ, config.cluster_id_bytes, None, CID, 1, digest(payload))
    m = encode_payload(Prepare(0, 0, Batch(5, (Entry(CID, 1, payload, sig),))))
    out: list[Action] = []
    for sender, msg in (
        (0, Ctb(0, 0, m)),
        (2, CtbEcho(0, 0, False, m)),
        (2, Promise(0, 0)),
        (0, FastCommit(0, 0)),
        (2, FastCommit(0, 0)),
    ):
        rep.receive(sender, encode(msg, 0), 5)
        out.extend(rep.take_actions())
    return out


def test_durable_mode_persists_before_every_dependent_send(
    make_cluster: Callable[..., Any],
) -> None:
    actions = _follower_run(make_cluster, durable=True)
    kinds = [a.kind for a in actions if isinstance(a, Persist)]
    assert kinds == [PersistKind.CTB_ACCEPTED, PersistKind.ACCEPTED, PersistKind.FAST_COMMITTED]
    barrier = PersistenceBarrier()
    barrier.observe(1, actions)
    assert barrier.violations == []
    assert barrier.checked >= 3  # the echo, the promise and the FastCommit


def test_the_checker_catches_a_send_before_its_barrier(make_cluster: Callable[..., Any]) -> None:
    actions = _follower_run(make_cluster, durable=True)
    first_send = next(j for j, a in enumerate(actions) if isinstance(a, Send))
    persist = next(j for j, a in enumerate(actions) if isinstance(a, Persist))
    assert persist < first_send
    reordered = [a for a in actions if not isinstance(a, Persist)] + [
        a for a in actions if isinstance(a, Persist)
    ]
    barrier = PersistenceBarrier()
    barrier.observe(1, reordered)
    assert barrier.violations, "sends before their Persist must be reported"


def test_no_barrier_outside_durable_mode(make_cluster: Callable[..., Any]) -> None:
    actions = _follower_run(make_cluster, durable=False)
    assert not any(isinstance(a, Persist) for a in actions)
    assert any(isinstance(a, Send) for a in actions)
