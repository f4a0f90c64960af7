"""Coalesced deadlines (replica/core/timers.py): few live timers whatever the load."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ubft.replica.core.actions import SetTimer, TimerKey, TimerKind
from ubft.replica.core.context import Context
from ubft.replica.core.timers import Deadlines

KEY = TimerKey(TimerKind.FAST_TIMEOUT)


def _ctx(make_cluster: Callable[..., Any]) -> Context:
    config, keys = make_cluster()
    return Context(config, 0, keys.members[0], None)  # type: ignore[arg-type]


def _timers(ctx: Context) -> list[SetTimer]:
    out = [a for a in ctx.outbox if isinstance(a, SetTimer)]
    ctx.outbox.clear()
    return out


def test_one_live_timer_for_many_items(make_cluster: Callable[..., Any]) -> None:
    ctx = _ctx(make_cluster)
    d = Deadlines(ctx, KEY)
    for item in range(100):
        ctx.now_ns = item  # deadlines in increasing order: the first timer covers them all
        d.set(item, 1000)
    assert _timers(ctx) == [SetTimer(KEY, 1000)]
    ctx.now_ns = 1000
    assert d.fired() == [0]
    assert _timers(ctx) == [SetTimer(KEY, 1001)], "re-armed for the next deadline only"


def test_an_earlier_deadline_sets_an_earlier_timer(make_cluster: Callable[..., Any]) -> None:
    ctx = _ctx(make_cluster)
    d = Deadlines(ctx, KEY)
    d.set(1, 5000)
    d.set(2, 100)
    assert _timers(ctx) == [SetTimer(KEY, 5000), SetTimer(KEY, 100)]
    ctx.now_ns = 100
    assert d.fired() == [2]
    assert _timers(ctx) == [], "the timer at 5000 is still outstanding"
    ctx.now_ns = 5000
    assert d.fired() == [1]
    assert len(d) == 0


def test_cancelled_items_never_come_back(make_cluster: Callable[..., Any]) -> None:
    ctx = _ctx(make_cluster)
    d = Deadlines(ctx, KEY)
    for item in range(10):
        d.set(item, 10)
    for item in range(10):
        d.cancel(item)
    ctx.now_ns = 10
    assert d.fired() == []
    assert _timers(ctx) == [SetTimer(KEY, 10)], "nothing left: no re-arm"
    assert len(d) == 0


def test_a_late_fire_handles_everything_due(make_cluster: Callable[..., Any]) -> None:
    ctx = _ctx(make_cluster)
    d = Deadlines(ctx, KEY)
    d.set(3, 10)
    d.set(1, 20)
    d.set(2, 30)
    ctx.now_ns = 25
    assert d.fired() == [1, 3]
    assert d.due == {2: 30}
