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


def _durable_schedule(seed: int) -> Any:
    import random

    from ubft.replica.sim.faults import plan_for
    from ubft.replica.sim.world import Simulation

    sim = Simulation(seed, plan_for("durable", random.Random(seed ^ 0x5EED)))
    return sim, sim.run()


def test_durable_schedules_keep_the_barrier_on_fast_and_slow_paths() -> None:
    for seed in range(2):
        sim, res = _durable_schedule(seed)
        assert res.violations == []
        assert res.decisions_fast > 0 and res.decisions_slow > 0
        assert sim.barrier is not None and sim.barrier.checked > 100


def test_a_core_that_forgets_to_persist_is_caught(monkeypatch: Any) -> None:
    from ubft.replica.core.context import Context

    monkeypatch.setattr(Context, "persist", lambda self, kind, a, b, data: None)
    _, res = _durable_schedule(0)
    assert any(v.startswith("persistence barrier") for v in res.violations)
