"""The linearizability checker on known-good and known-bad key-value histories."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import cast

import pytest
from ubft.replica.sim.history import (
    HistoryRecorder,
    Op,
    OpF,
    OpType,
    OpValue,
    read_jsonl,
    write_jsonl,
)
from ubft.replica.sim.linearizability import Verdict, check

# A history script: ("invoke", process, f, value) | (type, process, value) | (type, process),
# on key "x" unless an invoke gives a key as a fifth element.
Step = tuple[object, ...]


def history(*steps: Step) -> list[Op]:
    rec = HistoryRecorder()
    for t, step in enumerate(steps):
        kind, process = str(step[0]), int(str(step[1]))
        if kind == "invoke":
            f = str(step[2])
            assert f in ("read", "write", "incr")
            key = str(step[4]) if len(step) > 4 else "x"
            rec.invoke(process, cast(OpF, f), key, _value(step[3]), time_ns=t)
        else:
            assert kind in ("ok", "fail", "info")
            value = _value(step[2]) if len(step) > 2 else None
            rec.complete(process, cast(OpType, kind), value, t)
    rec.close(time_ns=len(steps))
    return rec.events()


def _value(v: object) -> OpValue:
    assert v is None or isinstance(v, str | int)
    return v


def w(p: int, v: str, key: str = "x") -> Step:
    return ("invoke", p, "write", v, key)


def r(p: int, key: str = "x") -> Step:
    return ("invoke", p, "read", None, key)


def inc(p: int, by: int = 1, key: str = "x") -> Step:
    return ("invoke", p, "incr", by, key)


def ok(p: int, v: OpValue = None) -> Step:
    return ("ok", p, v)


def linearizable(*steps: Step) -> bool:
    verdict = check(history(*steps))
    assert verdict.ok == (verdict.key is None)
    return verdict.ok


# -- known-good ---------------------------------------------------------------------------------


def test_empty_and_sequential_histories_pass() -> None:
    assert check([]) == Verdict(True, None, "linearizable")
    assert linearizable(
        r(1), ok(1, None),
        w(1, "a"), ok(1, "a"),
        r(2), ok(2, "a"),
        inc(2, 5, "n"), ok(2, 5),
        inc(1, -2, "n"), ok(1, 3),
        r(1, "n"), ok(1, "3"),  # counters are read as decimal strings
        w(2, "10", "m"), ok(2, "10"),
        inc(1, 1, "m"), ok(1, 11),
    )  # fmt: skip


def test_concurrent_write_and_reads_either_side() -> None:
    # A read overlapping a write may see the old or the new value, but once one read saw
    # the new value, a later read may not go back.
    assert linearizable(
        w(1, "a"), r(2), ok(2, None), r(3), ok(3, "a"), ok(1, "a"),
    )  # fmt: skip
    assert not linearizable(
        w(1, "a"), r(2), ok(2, "a"), r(3), ok(3, None), ok(1, "a"),
    )  # fmt: skip


def test_linearizable_only_in_a_non_obvious_order() -> None:
    # write(a) is invoked first but must take effect after write(b) and the read of b.
    assert linearizable(
        w(1, "a"),
        w(2, "b"), ok(2, "b"),
        r(3), ok(3, "b"),
        r(3), ok(3, "a"),
        ok(1, "a"),
    )  # fmt: skip
    # Three overlapping writes observed in the reverse of their invoke order.
    assert linearizable(
        w(1, "a"), w(2, "b"), w(3, "c"),
        r(4), ok(4, "c"), r(4), ok(4, "b"), r(4), ok(4, "a"),
        ok(3, "c"), ok(2, "b"), ok(1, "a"),
    )  # fmt: skip


def test_concurrent_incrs_may_complete_out_of_order() -> None:
    assert linearizable(
        inc(1), inc(2), ok(2, 1), ok(1, 2), r(3), ok(3, "2"),
    )  # fmt: skip


def test_info_write_may_take_effect_later() -> None:
    assert linearizable(
        w(1, "a"), ("info", 1, "a"),
        r(2), ok(2, None),
        r(2), ok(2, "a"),
    )  # fmt: skip
    # ... or never.
    assert linearizable(
        w(1, "a"), ("info", 1, "a"),
        r(2), ok(2, None), w(2, "b"), ok(2, "b"), r(2), ok(2, "b"),
    )  # fmt: skip
    # ... even after later writes, and an op never completed counts as info.
    assert linearizable(
        w(1, "a"),
        w(2, "b"), ok(2, "b"), r(2), ok(2, "b"), r(2), ok(2, "a"),
    )  # fmt: skip


def test_info_incr_may_or_may_not_count() -> None:
    assert linearizable(inc(1), ("info", 1, 1), inc(2), ok(2, 2))
    assert linearizable(inc(1), ("info", 1, 1), inc(2), ok(2, 1))
    assert linearizable(inc(1), ("info", 1, 1), r(2), ok(2, "1"), r(2), ok(2, "1"))
    assert not linearizable(inc(1), ("info", 1, 1), inc(2), ok(2, 3))


def test_fail_and_info_reads_are_ignored() -> None:
    assert linearizable(
        w(1, "a"), ok(1, "a"), r(2), ("fail", 2), r(2), ("info", 2), r(2), ok(2, "a"),
    )  # fmt: skip


# -- known-bad ----------------------------------------------------------------------------------


def test_stale_read_after_completed_write() -> None:
    verdict = check(history(w(1, "a"), ok(1, "a"), w(1, "b"), ok(1, "b"), r(2), ok(2, "a")))
    assert not verdict.ok
    assert verdict.key == "x"
    assert "read() -> 'a' by process 2" in verdict.reason


def test_read_of_a_value_never_written() -> None:
    assert not linearizable(w(1, "a"), ok(1, "a"), r(2), ok(2, "zz"))
    assert not linearizable(r(2), ok(2, "a"))


def test_concurrent_writes_observed_in_contradictory_orders() -> None:
    # Once both writes are done the register holds one value: reads cannot alternate.
    assert not linearizable(
        w(1, "a"), w(2, "b"), ok(1, "a"), ok(2, "b"),
        r(3), ok(3, "a"), r(4), ok(4, "b"),
    )  # fmt: skip
    # Reads overlapping both writes see a then b, later ones b then a.
    assert not linearizable(
        w(1, "a"), w(2, "b"),
        r(3), ok(3, "a"), r(3), ok(3, "b"),
        r(4), ok(4, "b"), r(4), ok(4, "a"),
        ok(1, "a"), ok(2, "b"),
    )  # fmt: skip


def test_incr_results_that_skip_or_repeat() -> None:
    assert not linearizable(inc(1), ok(1, 1), inc(1), ok(1, 3))  # skip
    assert not linearizable(inc(1), inc(2), ok(1, 1), ok(2, 1))  # repeat
    assert not linearizable(w(1, "a"), ok(1, "a"), inc(2), ok(2, 1))  # incr of a non-integer


def test_lost_write() -> None:
    # Process 2's write was acknowledged, yet every later read sees the older value.
    assert not linearizable(
        w(1, "old"), ok(1, "old"),
        w(2, "new"), ok(2, "new"),
        r(3), ok(3, "old"), r(1), ok(1, "old"),
    )  # fmt: skip


def test_failed_write_must_not_be_read() -> None:
    assert not linearizable(w(1, "a"), ("fail", 1, "a"), r(2), ok(2, "a"))
    assert not linearizable(inc(1), ("fail", 1, 1), r(2), ok(2, "1"))


def test_keys_are_checked_independently() -> None:
    steps = (
        w(1, "a", "k1"), ok(1, "a"), w(2, "a", "k2"), ok(2, "a"),
        r(3, "k1"), ok(3, "a"), r(3, "k2"), ok(3, None),
    )  # fmt: skip
    verdict = check(history(*steps))
    assert (verdict.ok, verdict.key) == (False, "k2")
    # The same value written to k1 does not explain a read of k2 (no cross-key leaking).
    assert not linearizable(w(1, "a", "k1"), ok(1, "a"), r(2, "k2"), ok(2, "a"))


def test_malformed_histories_raise() -> None:
    invoke = Op(1, "invoke", "read", "x", None, 0)
    done = Op(1, "ok", "read", "x", None, 1)
    with pytest.raises(ValueError, match="without an invoke"):
        check([done])
    with pytest.raises(ValueError, match="invoked twice"):
        check([invoke, invoke])
    with pytest.raises(ValueError, match="does not match"):
        check([invoke, Op(1, "ok", "read", "y", None, 1)])
    with pytest.raises(ValueError):
        Op(1, "ok", "incr", "x", "5", 1)  # incr results are ints
    with pytest.raises(ValueError):
        Op(1, "invoke", "write", "x", True, 1)  # bool is not an int here


# -- search budget and scale --------------------------------------------------------------------


def simulated_history(seed: int, ops_per_key: int, keys: int, processes: int) -> list[Op]:
    """A linearizable history: each op takes effect at a random instant inside its interval.

    Processes run a closed loop; at each tick one process either invokes, lets its pending
    operation take effect on the model, or completes it. Some outcomes are reported as
    info (after or before taking effect) and some un-applied ones as fail.
    """
    rng = random.Random(seed)
    names = [f"k{i}" for i in range(keys)]
    store: dict[str, str] = {}
    rec = HistoryRecorder()
    pending: dict[int, tuple[OpF, str, OpValue, OpValue | None, bool]] = {}
    budget = ops_per_key * keys
    t = 0
    while budget or pending:
        t += 1
        p = rng.randrange(processes)
        if p not in pending:
            if not budget:
                continue
            budget -= 1
            key = rng.choice(names)
            f: OpF = rng.choice(["read", "write", "write", "incr"])
            arg: OpValue = (
                None if f == "read" else (f"v{t}" if f == "write" else rng.randrange(1, 4))
            )
            if f == "write" and rng.random() < 0.5:
                arg = str(rng.randrange(10))  # numeric strings let incr work after writes
            rec.invoke(p, f, key, arg, t)
            pending[p] = (f, key, arg, None, False)
            continue
        f, key, arg, out, applied = pending[p]
        if not applied:
            if rng.random() < 0.03:
                rec.complete(p, rng.choice(["fail", "info"]), arg, t)
                del pending[p]
                continue
            current = store.get(key)
            if f == "read":
                out = current
            elif f == "write":
                assert isinstance(arg, str)
                store[key] = out = arg
            else:
                assert isinstance(arg, int)
                try:
                    out = int(current or "0") + arg
                except ValueError:
                    rec.complete(p, "fail", arg, t)  # the store's "not an integer" error
                    del pending[p]
                    continue
                store[key] = str(out)
            pending[p] = (f, key, arg, out, True)
            continue
        rec.complete(p, "info" if rng.random() < 0.03 else "ok", out, t)
        del pending[p]
    rec.close(t + 1)
    return rec.events()


@pytest.mark.parametrize("seed", range(6))
def test_simulated_histories_pass_quickly(seed: int) -> None:
    ops = simulated_history(seed, ops_per_key=300, keys=3, processes=5)
    start = time.perf_counter()
    verdict = check(ops)
    elapsed = time.perf_counter() - start
    assert verdict.ok, verdict.reason
    assert elapsed < 1.0  # generous; a few ms in practice


@pytest.mark.parametrize("seed", range(6))
def test_corrupting_a_read_is_detected(seed: int) -> None:
    ops = simulated_history(seed, ops_per_key=200, keys=2, processes=4)
    rng = random.Random(seed)
    reads = [i for i, op in enumerate(ops) if op.type == "ok" and op.f == "read"]
    i = rng.choice(reads)
    ops[i] = Op(ops[i].process, "ok", "read", ops[i].key, "never-written", ops[i].time_ns)
    verdict = check(ops)
    assert not verdict.ok
    assert verdict.key == ops[i].key


def test_many_unknown_incrs_stay_cheap() -> None:
    # Twenty crashed incr(1)s, some of which took effect at various points: the checker must
    # count how many applied, not try every subset.
    rng = random.Random(5)
    steps: list[Step] = []
    for p in range(20):
        steps += [inc(p), ("info", p, 1)]
    applied_at = [rng.randrange(100) for _ in range(10)]
    value = 0
    for i in range(100):
        value += 1 + applied_at.count(i)
        steps += [inc(99), ok(99, value)]
    assert linearizable(*steps)
    verdict = check(history(*steps, inc(99), ok(99, value + 50)))
    assert not verdict.ok
    assert verdict.reason != "search budget exceeded"


def naive_linearizable(ops: list[Op]) -> bool:
    """Brute force over every order allowed by real time; for a few operations only."""
    calls: list[tuple[Op, Op | None, int, int | None]] = []  # invoke, ok op, inv idx, ret idx
    open_: dict[int, int] = {}
    for i, op in enumerate(ops):
        if op.type == "invoke":
            open_[op.process] = i
            continue
        j = open_.pop(op.process)
        if op.type != "fail":
            calls.append(
                (ops[j], op if op.type == "ok" else None, j, i if op.type == "ok" else None)
            )

    def step(state: str | None, inv: Op, done: Op | None) -> tuple[bool, str | None]:
        if inv.f == "read":
            return done is None or done.value == state, state
        if inv.f == "write":
            return True, str(inv.value)
        try:
            result = int(state or "0") + int(str(inv.value))
        except ValueError:
            return done is None, state
        return done is None or done.value == result, str(result)

    def search(rest: list[int], state: str | None) -> bool:
        if all(calls[c][1] is None for c in rest):
            return True
        returns = [calls[c][3] for c in rest if calls[c][3] is not None]
        deadline = min(r for r in returns if r is not None)
        for c in rest:
            inv, done, invoked, _ = calls[c]
            if invoked > deadline:
                continue  # some other operation must come first
            fits, new_state = step(state, inv, done)
            if fits and search([o for o in rest if o != c], new_state):
                return True
        return False

    return search(list(range(len(calls))), None)


def random_small_history(rng: random.Random) -> list[Op]:
    rec = HistoryRecorder()
    open_: dict[int, OpF] = {}
    invokes = rng.randrange(1, 7)
    for t in range(100):
        p = rng.randrange(3)
        if p not in open_:
            if not invokes:
                continue
            invokes -= 1
            f: OpF = rng.choice(["read", "write", "incr"])
            arg: OpValue = {"read": None, "write": rng.choice(["1", "2", "a"]), "incr": 1}[f]
            rec.invoke(p, f, "x", arg, t)
            open_[p] = f
            continue
        f = open_.pop(p)
        kind = rng.choices(["ok", "info", "fail"], [6, 1, 1])[0]
        if kind != "ok":
            rec.complete(p, kind, None, t)  # type: ignore[arg-type]
        elif f == "read":
            rec.complete(p, "ok", rng.choice([None, "1", "2", "a", "3"]), t)
        elif f == "incr":
            rec.complete(p, "ok", rng.randrange(1, 5), t)
        else:
            last = next(op for op in reversed(rec.events()) if op.process == p)
            rec.complete(p, "ok", last.value, t)
    rec.close(100)
    return rec.events()


def test_agrees_with_brute_force_on_small_random_histories() -> None:
    rng = random.Random(99)
    outcomes = set()
    for _ in range(1500):
        ops = random_small_history(rng)
        expected = naive_linearizable(ops)
        assert check(ops).ok == expected, ops
        outcomes.add(expected)
    assert outcomes == {True, False}


def test_search_budget_is_reported() -> None:
    # Many overlapping writes and a contradiction at the end: the search must give up.
    steps: list[Step] = [w(p, f"v{p}") for p in range(12)]
    steps += [ok(p, f"v{p}") for p in range(12)]
    steps += [r(20), ok(20, "v0"), r(20), ok(20, "v1")]
    verdict = check(history(*steps), budget=1000)
    assert verdict == Verdict(False, "x", "search budget exceeded")
    assert not check(history(*steps)).ok  # within the default budget, a real verdict


# -- JSON lines -----------------------------------------------------------------------------------


def test_jsonl_round_trip(tmp_path: Path) -> None:
    ops = simulated_history(3, ops_per_key=50, keys=2, processes=3)
    path = tmp_path / "history.jsonl"
    write_jsonl(path, ops)
    assert read_jsonl(path) == ops
    first = json.loads(path.read_text().splitlines()[0])
    assert list(first) == ["process", "type", "f", "key", "value", "time_ns"]


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        "",
        "[1, 2]",
        '{"process": 1, "type": "invoke", "f": "read", "key": "x", "value": null}',
        '{"process": 1, "type": "invoke", "f": "read", "key": "x", "value": null, "time_ns": 0, "extra": 1}',
        '{"process": 1, "type": "begin", "f": "read", "key": "x", "value": null, "time_ns": 0}',
        '{"process": 1, "type": "invoke", "f": "cas", "key": "x", "value": null, "time_ns": 0}',
        '{"process": 1, "type": "invoke", "f": "incr", "key": "x", "value": 1.5, "time_ns": 0}',
        '{"process": 1, "type": "ok", "f": "write", "key": "x", "value": 3, "time_ns": 0}',
        '{"process": -1, "type": "invoke", "f": "read", "key": "x", "value": null, "time_ns": 0}',
        '{"process": 1, "type": "invoke", "f": "read", "key": 7, "value": null, "time_ns": 0}',
        '{"process": 1, "type": "invoke", "f": "incr", "key": "x", "value": NaN, "time_ns": 0}',
    ],
)
def test_read_jsonl_names_the_bad_line(tmp_path: Path, bad: str) -> None:
    good = '{"process":1,"type":"invoke","f":"read","key":"x","value":null,"time_ns":0}'
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n{bad}\n{good}\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2:"):
        read_jsonl(path)


def test_recorder_rejects_misuse() -> None:
    rec = HistoryRecorder()
    with pytest.raises(ValueError):
        rec.complete(1, "ok", None, 0)
    rec.invoke(1, "write", "x", "a", 0)
    with pytest.raises(ValueError):
        rec.invoke(1, "read", "x", None, 1)
    with pytest.raises(ValueError):
        rec.complete(1, "ok", "b", 1)  # acknowledged with another value
    with pytest.raises(ValueError):
        rec.complete(1, "invoke", "a", 1)
    rec.close(2)
    assert [op.type for op in rec.events()] == ["invoke", "info"]
    assert rec.events()[1].value == "a"
