"""Cluster configuration as pydantic models; invalid configurations fail naming the field.

The core reads these frozen models directly. Times are virtual nanoseconds: the core never
reads a clock, the driver passes ``now_ns`` with every event.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .crypto import public_key_is_valid

_MS = 1_000_000


class SlowPathMode(StrEnum):
    ON_DEMAND = "on_demand"  # sign only when a receiver asks (fast-path timeout)
    ALWAYS = "always"  # sign every message: tests and hostile environments


def _check_key(value: str) -> str:
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise ValueError("public_key must be 64 hex characters") from exc
    if not public_key_is_valid(raw):
        raise ValueError("public_key is not a valid Ed25519 public key")
    return value


class ProtocolParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tail: Annotated[int, Field(ge=2, le=1 << 16)] = 128
    window: Annotated[int, Field(ge=2, le=1 << 20)] = 256
    batch_max: Annotated[int, Field(ge=1, le=4096)] = 16
    client_window: Annotated[int, Field(ge=1, le=1024)] = 16
    echo_digest_threshold_bytes: Annotated[int, Field(ge=0)] = 8192
    inflight_max: Annotated[int, Field(ge=1)] = 8  # undecided proposals the leader keeps open
    fast_path_timeout_ns: Annotated[int, Field(gt=0)] = 1 * _MS
    fast_timeout_ns: Annotated[int, Field(gt=0)] = 1 * _MS
    sign_hold_ns: Annotated[int, Field(gt=0)] = 50 * _MS
    progress_timeout_ns: Annotated[int, Field(gt=0)] = 20 * _MS  # T0
    client_timeout_ns: Annotated[int, Field(gt=0)] = 10 * _MS
    sync_interval_ns: Annotated[int, Field(gt=0)] = 4 * _MS
    memnode_retry_ns: Annotated[int, Field(gt=0)] = 2 * _MS
    skew_ns: Annotated[int, Field(gt=0)] = 1000 * _MS
    cooldown_ns: Annotated[int, Field(ge=0)] = 0  # TCP backend: writes are atomic
    max_clients: Annotated[int, Field(ge=1)] = 1024
    max_request_bytes: Annotated[int, Field(ge=1, le=1 << 20)] = 4096
    max_reply_bytes: Annotated[int, Field(ge=16, le=1 << 20)] = 4096
    evidence_per_peer_max: Annotated[int, Field(ge=1)] = 16
    # Snapshot chunks (state transfer): a cluster constant, part of the canonical snapshot
    # encoding, so equal on every replica. A Chunk must fit one frame's bytes field (1 MiB).
    chunk_size: Annotated[int, Field(ge=1024, le=1 << 20)] = 64 * 1024
    slow_path_mode: SlowPathMode = SlowPathMode.ON_DEMAND
    durable: bool = False

    @model_validator(mode="after")
    def _relations(self) -> ProtocolParams:
        if self.tail % 2:
            raise ValueError("tail must be even (a CTBcast checkpoint every tail/2 messages)")
        if self.window % 2:
            raise ValueError("window must be even (a checkpoint every window/2 instances)")
        if self.inflight_max > self.window // 2:
            raise ValueError("inflight_max must be at most window/2")
        return self

    @property
    def checkpoint_interval(self) -> int:
        return self.window // 2

    @property
    def ctb_checkpoint_interval(self) -> int:
        return self.tail // 2


class Member(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[int, Field(ge=0, lt=1 << 16)]
    public_key: str
    addresses: tuple[str, ...] = ()

    _key = field_validator("public_key")(classmethod(lambda cls, v: _check_key(v)))

    @property
    def key_bytes(self) -> bytes:
        return bytes.fromhex(self.public_key)


class MemoryNode(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[int, Field(ge=0, lt=1 << 16)]
    public_key: str
    address: str = ""

    _key = field_validator("public_key")(classmethod(lambda cls, v: _check_key(v)))


class ClusterConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cluster_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]
    epoch: Annotated[int, Field(ge=0)] = 0
    f: Annotated[int, Field(ge=1, le=16)] = 1
    members: tuple[Member, ...]
    memory_nodes: tuple[MemoryNode, ...]
    admin_public_key: str
    params: ProtocolParams = ProtocolParams()

    _key = field_validator("admin_public_key")(classmethod(lambda cls, v: _check_key(v)))

    @field_validator("members")
    @classmethod
    def _distinct_members(cls, members: tuple[Member, ...]) -> tuple[Member, ...]:
        ids = [m.id for m in members]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate member id")
        keys = [m.public_key for m in members]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate member public_key")
        return members

    @field_validator("memory_nodes")
    @classmethod
    def _odd_memory_nodes(cls, nodes: tuple[MemoryNode, ...]) -> tuple[MemoryNode, ...]:
        if len(nodes) % 2 == 0:
            raise ValueError("the number of memory nodes must be odd (M = 2m+1)")
        ids = [m.id for m in nodes]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate memory node id")
        return nodes

    @model_validator(mode="after")
    def _n_is_2f_plus_1(self) -> ClusterConfig:
        if len(self.members) != 2 * self.f + 1:
            raise ValueError(
                f"members: n must equal 2f+1 = {2 * self.f + 1} for f={self.f}, got {len(self.members)}"
            )
        return self

    # ----------------------------------------------------------------- derived, cheap

    @property
    def n(self) -> int:
        return len(self.members)

    @property
    def cluster_id_bytes(self) -> bytes:
        return self.cluster_id.encode()

    @property
    def member_ids(self) -> tuple[int, ...]:
        return tuple(m.id for m in self.members)

    @property
    def memnode_ids(self) -> tuple[int, ...]:
        return tuple(m.id for m in self.memory_nodes)

    def leader(self, view: int) -> int:
        return self.members[view % len(self.members)].id

    def member_keys(self) -> dict[int, bytes]:
        return {m.id: m.key_bytes for m in self.members}
