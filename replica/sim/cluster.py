"""Building a test cluster: keys, configuration and provisioned memory nodes (the simulator
and the benchmark share it; the simulator's "operator" provisions a restarted node again)."""

from __future__ import annotations

import random

from ubft.memnode.server import MemnodeServer
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


def provision(server: MemnodeServer, config: ClusterConfig, known: bool = True) -> None:
    """Every member's area of the configuration's epoch on ``server`` (what the operator's
    admin-signed Provision does in production); ``known=False`` marks them "recovering", for
    a node that lost its memory: they read "unknown" until each writer rewrote its own."""
    for w in config.member_ids:
        server.provision_area(config.epoch, w, config.member_ids, config.params.tail, known)


def provision_memnodes(config: ClusterConfig) -> dict[int, MemnodeServer]:
    """One memory-node server per memory node, incarnation 1, provisioned for the
    configuration's epoch."""
    servers = {j: MemnodeServer(j, incarnation=1) for j in config.memnode_ids}
    for server in servers.values():
        provision(server, config)
    return servers
