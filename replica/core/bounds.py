"""Ranges of the integers a peer chooses, checked where a value is accepted (PROTOCOL.md
section 5: a faulty peer never crashes a correct process).

The wire carries views, instances, checkpoints and timestamps as u64. Everything the core
stores from a peer must still fit every encoder it may later reach (CTBcast summaries, sealed
states, snapshots, the codec itself), so values are range-checked on acceptance and a value out
of range is evidence against the sender, never an exception. The limits are far above anything
a correct replica reaches: a view changes at most once per timeout, an instance at most once
per request, and timestamps are nanoseconds of a clock (2**62 ns is about 146 years).
"""

from __future__ import annotations

from typing import Final

from .config import ProtocolParams
from .messages import Checkpoint, Commit, Payload, Prepare
from .request_log import KEY_HISTORY

MAX_VIEW: Final = (1 << 62) - 1
MAX_INSTANCE: Final = (1 << 62) - 1
MAX_TS: Final = (1 << 62) - 1


def payload_in_range(p: Payload) -> bool:
    """Every integer of a delivered CTBcast payload lies in the range the core can carry."""
    if isinstance(p, Prepare | Commit):
        return p.view <= MAX_VIEW and p.instance <= MAX_INSTANCE and p.batch.ts <= MAX_TS
    if isinstance(p, Checkpoint):
        return p.c <= MAX_INSTANCE
    return p.view <= MAX_VIEW


def footprint_bounds(params: ProtocolParams, n: int, clients: int, memnodes: int) -> dict[str, int]:
    """Upper bounds on each entry of ``Replica.footprint()`` (PROTOCOL.md section 5, bounded
    memory: O(window + n*t + max_clients*client_window)), whatever faulty peers, clients or
    the admin do. ``clients`` is the number of registered clients the bounds allow for."""
    w, t, cw = params.window, params.tail, params.client_window
    per_instance_votes = 4 * n
    return {
        "instances": 2 * w,
        "instance_votes": 2 * w * per_instance_votes,
        "decided_unexecuted": 2 * w,
        "checkpoint_shares": (2 * w // params.checkpoint_interval + 2) * (n + 1),
        "stream_commits": n * 2 * w,
        # one (client, request) per waiting instance: the first entry it misses
        "waiting_requests": 2 * w,
        # client ids named by admin commands of held, unexecuted instances
        "admission_pending": 2 * w * params.batch_max,
        "ready": clients * cw,
        # our own snapshots: two awaiting stability and the latest stable one
        "snapshots": 3,
        "ctbcast": (t + 2 * w + 4 + 3 * n) + (n - 1) * (t + t * (n - 2)),
        # ops in flight, latest sub-slot and data per own register, node incarnations, and
        # rewrites of the whole area on each memory node that restarted
        "register_client": (n - 1) * t * (n - 1) * (memnodes + 2)
        + 2 * (n - 1) * t
        + memnodes * ((n - 1) * t + 3),
        "request_log": clients * (1 + 2 * cw + cw * (n + 1) + cw * n),
        # keys of registered ids and of the last max_clients deregistered ones, and those ids
        "client_keys": 2 * params.max_clients * (KEY_HISTORY + 1),
        "evidence": (n + clients) * (params.evidence_per_peer_max + 64),
        # coalesced deadlines: one per CTBcast slot and per held instance, a few live timers
        "timers": (n - 1) * (t + 8) + 2 * w + 8,
    }
