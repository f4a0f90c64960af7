"""Checkpoints are snapshots in chunks (PROTOCOL.md section 4, "Checkpoints"): the digest each
replica signs is the chunked snapshot's, correct replicas build identical snapshots, and the
latest stable one restores into a fresh application."""

from __future__ import annotations

import random

from ubft.apps.kv import KVStore
from ubft.replica.core.config import ProtocolParams
from ubft.replica.core.crypto import digest
from ubft.replica.core.replica import Replica
from ubft.replica.core.snapshot import SnapshotRestorer, decode_config, encode_config
from ubft.replica.sim.faults import plan_for
from ubft.replica.sim.world import Simulation


def _run(seed: int) -> Simulation:
    params = ProtocolParams(window=8, inflight_max=4, chunk_size=1024)
    sim = Simulation(seed, plan_for("timely", random.Random(seed)), params=params)
    res = sim.run()
    assert res.violations == []
    return sim


def test_correct_replicas_sign_and_keep_the_same_chunked_snapshot() -> None:
    sim = _run(3)
    stable = {}
    for r in sorted(sim.correct):
        rep = sim.replicas[r]
        assert isinstance(rep, Replica)
        cons = rep.consensus
        snap = cons.stable_snapshot
        assert snap is not None, "a window of 8 reaches stable checkpoints"
        # the digest it signed and CTBcast is the snapshot's
        own = cons.streams[r]
        assert own.ckpt_c == cons.ckpt.last_ctb_ckpt
        assert len(snap.chunks) == len(snap.chunk_digests)
        assert all(digest(c) == d for c, d in zip(snap.chunks, snap.chunk_digests, strict=True))
        stable[r] = (cons.ckpt.stable_c, snap.digest)
        assert decode_config(snap.config_chunk) == rep.ctx.config
        assert snap.config_chunk == encode_config(rep.ctx.config)
    by_c: dict[int, set[bytes]] = {}
    for c, d in stable.values():
        by_c.setdefault(c, set()).add(d)
    assert all(len(ds) == 1 for ds in by_c.values()), "two correct replicas, two snapshots"


def test_the_stable_snapshot_restores_checked_chunk_by_chunk() -> None:
    sim = _run(4)
    rep = sim.replicas[min(sim.correct)]
    assert isinstance(rep, Replica)
    snap = rep.consensus.stable_snapshot
    assert snap is not None
    restorer = SnapshotRestorer(rep.ctx.params.chunk_size)
    assert restorer.offer_list(rep.consensus.ckpt.stable_c, snap.digest, snap.chunk_digests) is None
    bad = bytearray(snap.chunks[-1])
    bad[0] ^= 1
    assert restorer.add_chunk(len(snap.chunks) - 1, bytes(bad)) is not None, "tampered chunk"
    for j in reversed(range(len(snap.chunks))):  # any order
        assert restorer.add_chunk(j, snap.chunks[j]) is None
    assert restorer.complete
    fresh = KVStore()
    restored = restorer.restore(fresh)
    assert restored.config == rep.ctx.config
    assert restored.digest == snap.digest
