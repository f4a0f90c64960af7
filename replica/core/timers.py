"""Coalesced deadlines: many per-item timeouts behind one timer key.

A runtime keeps a heap of live timers; one per CTBcast slot and one per instance would put
about one ignored fire per request per replica on it. Instead each component keeps its items'
deadlines here and holds at most a few live timers under one key: a timer is set only when no
earlier one is outstanding, and each fire handles every item due and re-arms for the next.
"""

from __future__ import annotations

from .actions import TimerKey
from .context import Context


class Deadlines:
    __slots__ = ("ctx", "due", "key", "outstanding")

    def __init__(self, ctx: Context, key: TimerKey) -> None:
        self.ctx = ctx
        self.key = key
        self.due: dict[int, int] = {}  # item -> deadline (ns)
        self.outstanding: list[int] = []  # fire times of timers set and not yet fired

    def set(self, item: int, after_ns: int) -> None:
        at = self.ctx.now_ns + after_ns
        self.due[item] = at
        self._arm(at)

    def cancel(self, item: int) -> None:
        self.due.pop(item, None)

    def _arm(self, at: int) -> None:
        for o in self.outstanding:
            if o <= at:
                return  # an earlier timer fires first and re-arms
        self.outstanding.append(at)
        self.ctx.set_timer(self.key, at - self.ctx.now_ns)

    def fired(self) -> list[int]:
        """The items due now (removed, in order); re-arms for the earliest one left."""
        now = self.ctx.now_ns
        self.outstanding = [o for o in self.outstanding if o > now]
        due = self.due
        expired = sorted(item for item, at in due.items() if at <= now)
        for item in expired:
            del due[item]
        if due:
            self._arm(min(due.values()))
        return expired

    def __len__(self) -> int:
        return len(self.due) + len(self.outstanding)
