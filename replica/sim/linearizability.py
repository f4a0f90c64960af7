"""Linearizability checker for key-value histories (``replica.sim.history``).

Linearizability is local (Herlihy & Wing), so each key is checked on its own, as a register
with read, write and incr, initially missing (None). The model mirrors ``ubft.apps.kv``:
values are strings, incr parses the value as a canonical 64-bit integer (missing = 0) and
stores the result as a decimal string; an incr on a non-integer or overflowing value is an
error there, so the client records it as "fail" and the model never lets it succeed here.

The search is Lowe's just-in-time linearization (after Wing & Gong): entries (calls and
returns) sit in a doubly linked list in history order; the search linearizes a pending call
whose model step matches its recorded result, removes it from the list and starts over, and
backtracks when it reaches the return of an operation it has not linearized. Configurations
(set of linearized operations, model state) already explored are cached, so each is tried once.

"fail" operations are dropped. "info" operations have no return entry: they may be linearized
anywhere after their invoke, or never (which is the same as last, since nothing observes the
state after the final operation). The search succeeds once every "ok" operation is linearized.
Two reductions keep crashed clients' info operations from blowing the search up: info reads
and unobservable info writes are dropped (``_prune``), and identical info operations are
linearized in invoke order only (``_twins``). ``check`` was diffed against a brute-force
search on thousands of small random histories (tests/test_linearizability.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ubft.apps.kv import INT64_MAX, INT64_MIN, parse_int64

from .history import Op, OpF, OpValue

DEFAULT_BUDGET: Final = 1_000_000
"""Search steps allowed per key before giving up with "search budget exceeded"."""

_NONE: Final = -1  # end of the linked list / no return entry


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of ``check``; ``reason`` names the operation no order could place."""

    ok: bool
    key: str | None  # the first (sorted) key that failed, None when ok
    reason: str


@dataclass(frozen=True, slots=True)
class _Call:
    """One operation of a key: invoke paired with its completion."""

    process: int
    f: OpF
    arg: OpValue  # invoke value: written string, increment, None for a read
    out: OpValue  # "ok" value; meaningless when not done
    done: bool  # True for "ok" (must be linearized), False for "info" or never completed
    invoked_at: int  # event index in the history
    returned_at: int | None  # None for "info": it may take effect at any later time

    def describe(self) -> str:
        span = f"events {self.invoked_at}..{self.returned_at}"
        if not self.done:
            return f"{self.f}({self.arg!r}) by process {self.process} (unknown outcome, {span})"
        shown = "" if self.f == "read" else repr(self.arg)
        return f"{self.f}({shown}) -> {self.out!r} by process {self.process} ({span})"


def check(ops: Sequence[Op], *, budget: int = DEFAULT_BUDGET) -> Verdict:
    """Whether ``ops`` is linearizable; ValueError if it is not a well-formed history.

    ``budget`` bounds the search steps per key, so a pathological history yields a verdict
    ("search budget exceeded", ok=False) instead of hanging.
    """
    calls = _pair(ops)
    for key in sorted(calls):  # sorted: the reported key must not depend on hash order
        verdict = _check_key(key, _prune(calls[key]), budget)
        if not verdict.ok:
            return verdict
    return Verdict(True, None, "linearizable")


def _pair(ops: Sequence[Op]) -> dict[str, list[_Call]]:
    """Match each invoke with its process's next completion; drop "fail" operations."""
    by_key: dict[str, list[_Call]] = {}
    open_: dict[int, tuple[int, Op]] = {}

    def add(index: int, inv: Op, out: OpValue, done: bool, returned_at: int | None) -> None:
        call = _Call(inv.process, inv.f, inv.value, out, done, index, returned_at)
        by_key.setdefault(inv.key, []).append(call)

    for index, op in enumerate(ops):
        if op.type == "invoke":
            if op.process in open_:
                raise ValueError(f"event {index}: process {op.process} invoked twice")
            open_[op.process] = (index, op)
            continue
        pending = open_.pop(op.process, None)
        if pending is None:
            raise ValueError(f"event {index}: {op.type} without an invoke")
        inv_index, inv = pending
        if (inv.f, inv.key) != (op.f, op.key):
            raise ValueError(f"event {index}: completion does not match invoke {inv_index}")
        if op.type == "ok":
            if inv.f == "write" and op.value != inv.value:
                raise ValueError(f"event {index}: write acknowledged with another value")
            add(inv_index, inv, op.value, True, index)
        elif op.type == "info":
            add(inv_index, inv, None, False, None)
    for inv_index, inv in open_.values():  # never completed: as good as "info"
        add(inv_index, inv, None, False, None)
    return by_key


def _prune(calls: list[_Call]) -> list[_Call]:
    """Drop "info" operations that can never help a linearization, to keep the search small.

    An info read changes nothing. An info write whose value no "ok" read returned, on a key
    without incr, can be left out of any linearization that includes it: until the next write
    overwrites it, no operation could have observed its value.
    """
    has_incr = any(c.f == "incr" for c in calls)
    read_values = {c.out for c in calls if c.f == "read" and c.done}

    def useless(c: _Call) -> bool:
        if c.done:
            return False
        if c.f == "read":
            return True
        return c.f == "write" and not has_incr and c.arg not in read_values

    return [c for c in calls if not useless(c)]


def _step(state: str | None, call: _Call) -> tuple[bool, str | None]:
    """Apply ``call`` to the register; False if its recorded result contradicts the model."""
    if call.f == "read":
        return state == call.out, state
    if call.f == "write":
        assert isinstance(call.arg, str)
        return True, call.arg
    assert isinstance(call.arg, int)
    base = 0 if state is None else parse_int64(state.encode())
    if base is None or not INT64_MIN <= base + call.arg <= INT64_MAX:
        # The store returns an error and changes nothing: fine for an unknown outcome,
        # impossible for an "ok" one.
        return not call.done, state
    result = base + call.arg
    if call.done and result != call.out:
        return False, state
    return True, str(result)


class _Entries:
    """Call and return entries in history order, as a doubly linked list one can lift from.

    Entry ids are positions in history order; the head sentinel is id ``len``.
    """

    def __init__(self, calls: list[_Call]) -> None:
        points = [(c.invoked_at, i, False) for i, c in enumerate(calls)]
        points += [
            (c.returned_at, i, True) for i, c in enumerate(calls) if c.returned_at is not None
        ]
        points.sort()
        m = len(points)
        self.head = m
        self.call_of = [i for _, i, _ in points]
        self.is_return = [r for _, _, r in points]
        self.call_entry = [_NONE] * len(calls)
        self.ret_entry = [_NONE] * len(calls)
        for e, (_, i, r) in enumerate(points):
            if r:
                self.ret_entry[i] = e
            else:
                self.call_entry[i] = e
        self.nxt = [*range(1, m), _NONE, 0 if m else _NONE]
        self.prv = [self.head, *range(m - 1), _NONE]

    def lift(self, i: int) -> None:
        """Remove call ``i``'s entries (it has been linearized)."""
        self._unlink(self.call_entry[i])
        if self.ret_entry[i] != _NONE:
            self._unlink(self.ret_entry[i])

    def unlift(self, i: int) -> None:
        """Undo ``lift(i)``; lifts must be undone in reverse order."""
        if self.ret_entry[i] != _NONE:
            self._relink(self.ret_entry[i])
        self._relink(self.call_entry[i])

    def _unlink(self, e: int) -> None:
        nxt, prv = self.nxt, self.prv
        nxt[prv[e]] = nxt[e]
        if nxt[e] != _NONE:
            prv[nxt[e]] = prv[e]

    def _relink(self, e: int) -> None:
        # A removed entry still points at its old neighbours (dancing links), so undoing
        # removals in reverse order restores the list exactly.
        nxt, prv = self.nxt, self.prv
        nxt[prv[e]] = e
        if nxt[e] != _NONE:
            prv[nxt[e]] = e


def _twins(calls: list[_Call]) -> list[int]:
    """For each "info" call, the previous-invoked identical "info" call (or _NONE).

    Identical info operations are interchangeable: a linearization using a later-invoked one
    before its earlier-invoked twin stays valid with the two swapped. Linearizing twins in
    invoke order only turns the 2^k subsets of k twins into k + 1 counts.
    """
    before = [_NONE] * len(calls)
    last: dict[tuple[OpF, OpValue], int] = {}
    for i in sorted(range(len(calls)), key=lambda i: calls[i].invoked_at):
        if not calls[i].done:
            signature = (calls[i].f, calls[i].arg)
            before[i] = last.get(signature, _NONE)
            last[signature] = i
    return before


def _check_key(key: str, calls: list[_Call], budget: int) -> Verdict:
    entries = _Entries(calls)
    twin_before = _twins(calls)
    state: str | None = None
    linearized = 0  # bitmask over calls
    remaining = sum(1 for c in calls if c.done)  # "ok" calls not yet linearized
    stack: list[tuple[int, str | None]] = []  # (call linearized, state before it)
    seen: set[tuple[int, str | None]] = set()
    stuck_depth, stuck_call = -1, -1  # deepest point the search failed at, for the report
    steps = 0
    e = entries.nxt[entries.head]
    while remaining:
        steps += 1
        if steps > budget:
            return Verdict(False, key, "search budget exceeded")
        assert e != _NONE, "an unlinearized ok call always leaves a return entry ahead"
        i = entries.call_of[e]
        if not entries.is_return[e]:
            twin = twin_before[i]
            fits, new_state = _step(state, calls[i])
            if twin != _NONE and not linearized >> twin & 1:
                fits = False
            config = (linearized | (1 << i), new_state)
            if fits and config not in seen:
                seen.add(config)
                stack.append((i, state))
                linearized, state = config
                entries.lift(i)
                remaining -= int(calls[i].done)
                e = entries.nxt[entries.head]
            else:
                e = entries.nxt[e]
            continue
        # calls[i] returned here without being linearized: this prefix is a dead end.
        if len(stack) > stuck_depth:
            stuck_depth, stuck_call = len(stack), i
        if not stack:
            break
        i, state = stack.pop()
        linearized &= ~(1 << i)
        entries.unlift(i)
        remaining += int(calls[i].done)
        e = entries.nxt[entries.call_entry[i]]
    if remaining == 0:
        return Verdict(True, None, "linearizable")
    return Verdict(
        False,
        key,
        f"not linearizable: no order lets {calls[stuck_call].describe()} take effect"
        f" (longest linearizable prefix: {stuck_depth} operations)",
    )
