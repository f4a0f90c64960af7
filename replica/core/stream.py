"""What each broadcaster's delivered CTBcast stream says, and its CTBcast checkpoint summary
(PROTOCOL.md section 4, "The CTBcast checkpoint summary of b at c")."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

_HEAD = struct.Struct(">QqQ32sqqqI")
_COMMIT = struct.Struct(">QQ32s")


@dataclass(slots=True)
class Stream:
    seal_view: int = -1  # view of b's last SealView
    ckpt_c: int = 0  # b's last Checkpoint (c, digest)
    ckpt_digest: bytes = bytes(32)
    prep_view: int = -1  # (v, i) of b's last Prepare
    prep_instance: int = -1
    fresh_ts: int = -1  # ts of b's last fresh Prepare
    commits: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # i -> (view, digest)


def encode_summary(c: int, s: Stream) -> bytes:
    """Canonical bytes: replicas that delivered the same prefix of b produce the same summary."""
    commits = sorted(s.commits.items())
    head = _HEAD.pack(
        c,
        s.seal_view,
        s.ckpt_c,
        s.ckpt_digest,
        s.prep_view,
        s.prep_instance,
        s.fresh_ts,
        len(commits),
    )
    return head + b"".join(_COMMIT.pack(i, v, d) for i, (v, d) in commits)


def decode_summary(c: int, summary: bytes) -> Stream | None:
    """The stream state a certified summary for c stands for, or None if it is malformed."""
    if len(summary) < _HEAD.size:
        return None
    cc, seal, ck_c, ck_d, pv, pi, ts, count = _HEAD.unpack_from(summary)
    if cc != c or len(summary) != _HEAD.size + count * _COMMIT.size:
        return None
    s = Stream(seal, ck_c, ck_d, pv, pi, ts)
    for j in range(count):
        i, v, d = _COMMIT.unpack_from(summary, _HEAD.size + j * _COMMIT.size)
        s.commits[i] = (v, d)
    return s
