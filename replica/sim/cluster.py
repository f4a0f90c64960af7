"""Building a test cluster: keys, configuration and provisioned memory nodes (the simulator
and the benchmark share it)."""

from __future__ import annotations

import random

from ubft.memnode.store import MemoryNodeStore
from ubft.replica.core.config import ClusterConfig, Member, MemoryNode, ProtocolParams
from ubft.replica.core.crypto import SignatureCounter, Signer


def make_signer(rng: random.Random, counter: SignatureCounter) -> Signer:
    return Signer(rng.randbytes(32), counter)


def make_cluster(
    cluster_id: str,
    n: int,
    memnodes: int,
    params: ProtocolParams,
    rng: random.Random,
    counter: SignatureCounter,
) -> tuple[ClusterConfig, list[Signer], Signer]:
    """Epoch 0 with members 0..n-1 (f = (n-1)/2) and memory nodes 0..memnodes-1; the
    members' signers and the admin's, all counting into ``counter``."""
    signers = [make_signer(rng, counter) for _ in range(n)]
    mem_keys = [make_signer(rng, counter).public_key for _ in range(memnodes)]
    admin = make_signer(rng, counter)
    config = ClusterConfig(
        cluster_id=cluster_id,
        f=(n - 1) // 2,
        members=tuple(Member(id=i, public_key=signers[i].public_key.hex()) for i in range(n)),
        memory_nodes=tuple(MemoryNode(id=j, public_key=mem_keys[j].hex()) for j in range(memnodes)),
        admin_public_key=admin.public_key.hex(),
        params=params,
    )
    return config, signers, admin


def provision_stores(config: ClusterConfig) -> dict[int, MemoryNodeStore]:
    """One store per memory node, holding every member's area of the configuration's epoch
    (what the operator's admin-signed Provision does in production)."""
    stores = {j: MemoryNodeStore(j, incarnation=1) for j in config.memnode_ids}
    for store in stores.values():
        for w in config.member_ids:
            store.provision_area(config.epoch, w, config.member_ids, config.params.tail)
    return stores
