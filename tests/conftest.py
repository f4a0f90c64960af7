"""Shared fixtures for the protocol-core unit tests.

pytest runs with ``--import-mode=importlib`` and tests/ is no package, so test modules cannot
import helpers from here: everything shared is handed out through fixtures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from ubft.replica.core.config import ClusterConfig, Member, MemoryNode, ProtocolParams
from ubft.replica.core.crypto import SignatureCounter, Signer

CLIENT_BASE = 100


def _seed(role: int, index: int) -> bytes:
    """A deterministic 32-byte Ed25519 seed, distinct per (role, index)."""
    return bytes([role, index & 0xFF, index >> 8]) + bytes([0x5A]) * 29


@dataclass
class ClusterKeys:
    """Every key of a test cluster; all signers share ``counter``."""

    counter: SignatureCounter
    members: list[Signer]
    memnodes: list[Signer]
    admin: Signer
    clients: dict[int, Signer] = field(default_factory=dict)

    def client_keys(self) -> dict[int, bytes]:
        return {cid: s.public_key for cid, s in self.clients.items()}


def build_cluster(
    f: int = 1,
    memnodes: int = 3,
    clients: int = 1,
    cluster_id: str = "test",
    epoch: int = 0,
    **params: Any,
) -> tuple[ClusterConfig, ClusterKeys]:
    """A valid n = 2f+1 configuration (member ids 0..n-1, clients 100, 101, ...)."""
    counter = SignatureCounter()
    n = 2 * f + 1
    keys = ClusterKeys(
        counter=counter,
        members=[Signer(_seed(1, i), counter) for i in range(n)],
        memnodes=[Signer(_seed(2, j), counter) for j in range(memnodes)],
        admin=Signer(_seed(3, 0), counter),
        clients={CLIENT_BASE + j: Signer(_seed(4, j), counter) for j in range(clients)},
    )
    config = ClusterConfig(
        cluster_id=cluster_id,
        epoch=epoch,
        f=f,
        members=tuple(
            Member(id=i, public_key=s.public_key.hex()) for i, s in enumerate(keys.members)
        ),
        memory_nodes=tuple(
            MemoryNode(id=j, public_key=s.public_key.hex()) for j, s in enumerate(keys.memnodes)
        ),
        admin_public_key=keys.admin.public_key.hex(),
        params=ProtocolParams(**params),
    )
    return config, keys


@pytest.fixture
def make_cluster() -> Callable[..., tuple[ClusterConfig, ClusterKeys]]:
    """``make_cluster(f=1, memnodes=3, clients=1, cluster_id="test", epoch=0, **params)``."""
    return build_cluster


@pytest.fixture
def key_hex() -> Callable[[int], str]:
    """``key_hex(i)``: the hex of a valid, distinct Ed25519 public key per ``i``."""
    return lambda i: Signer(_seed(9, i)).public_key.hex()
