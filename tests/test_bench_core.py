"""``ubft bench-core --quick``: the JSON shape and the properties the figures must show.

Timings are never asserted (they depend on the machine); counts are deterministic.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import subprocess
import sys
from typing import Any

import pytest
from ubft.bench import core

RUNS = ("fast_b1", "fast_b16", "slow_b1", "slow_b16")
NUM = (int, float)
CATEGORIES = (
    "replica_to_replica",
    "client_to_replica",
    "replica_to_client",
    "replica_to_memnode",
    "memnode_to_replica",
)


def _check(obj: dict[str, Any], spec: dict[str, Any], where: str) -> None:
    for key, typ in spec.items():
        assert key in obj, f"{where}: missing {key!r}"
        if isinstance(typ, dict):
            assert isinstance(obj[key], dict), f"{where}.{key}: not an object"
            _check(obj[key], typ, f"{where}.{key}")
        elif typ is bool:
            assert isinstance(obj[key], bool), f"{where}.{key}: {obj[key]!r} is not a bool"
        else:
            value = obj[key]
            ok = isinstance(value, typ) and not isinstance(value, bool)
            assert ok, f"{where}.{key}: {value!r} is not {typ}"


RUN_SHAPE: dict[str, Any] = {
    "mode": str,
    "batch_max": int,
    "slow_path_mechanism": str,
    "clients": int,
    "requests_issued": int,
    "requests_completed": int,
    "requests_decided": int,
    "requests_timed": int,
    "decisions": int,
    "decisions_fast": int,
    "decisions_slow": int,
    "decisions_per_replica": dict,
    "mean_batch": NUM,
    "cpu_us_per_request": {
        "mean": NUM,
        "max": NUM,
        "per_replica": {"0": NUM, "1": NUM, "2": NUM},
        "p50": NUM,
        "p90": NUM,
        "p99": NUM,
        "windows": int,
        "window_requests": int,
    },
    "cpu_us_per_batch": {"mean": NUM, "per_replica": dict},
    "messages_per_batch": {cat: {"total": NUM, "by_kind": dict} for cat in CATEGORIES},
    "replica_protocol_messages_per_decision": NUM,
    "replica_messages_per_decision": NUM,
    "minimum_replica_messages_per_fast_decision": int,
    "messages_per_request": {
        "client_to_replica": NUM,
        "request_echoes": NUM,
        "request_echo_entries": NUM,
        "replies": NUM,
    },
    "dropped_frames_by_kind": dict,
    "bytes_per_request": {cat: NUM for cat in (*CATEGORIES, "all")},
    "signatures_per_batch": {"created_on_path": NUM, "created_off_path": NUM, "verified": NUM},
    "signatures": {
        "created_on_path": int,
        "created_off_path": int,
        "verified": int,
        "created_by_tag": dict,
    },
    "timers_set": dict,
    "timers_fired": dict,
    "timers_per_request": {
        "set": NUM,
        "fired": NUM,
        "per_replica": {r: {"set": NUM, "fired": NUM} for r in "012"},
        "set_by_kind": dict,
        "fired_by_kind": dict,
        "fired_at_deadlines": bool,
    },
    "floor": {
        "us_per_request": NUM,
        "per_replica": {"0": NUM, "1": NUM, "2": NUM},
        "parts_us_per_request": {"encode": NUM, "mac": NUM, "mac_check": NUM, "decode": NUM},
        "frames_per_request": {"encoded": NUM, "sent_on_links": NUM, "received": NUM},
        "bytes_per_request": {"encoded": NUM, "received": NUM},
        "by_kind": dict,
        "sampled_frames": int,
        "reencoded_differently": int,
        "passes": int,
    },
    "cpu_over_floor": {
        "mean": NUM,
        "max": NUM,
        "per_replica": {"0": NUM, "1": NUM, "2": NUM},
        "excluding_app_mean": NUM,
        "p50": NUM,
        "p90": NUM,
        "p99": NUM,
    },
    "evidence_reports": int,
    "peak_state_entries": {"max": int, "per_replica": {"0": int, "1": int, "2": int}},
    "repeats_cpu_us_per_request_mean": list,
    "wall_s": NUM,
}

TOP_SHAPE: dict[str, Any] = {
    "n": int,
    "runs": {name: dict for name in RUNS},
    "targets": {
        name: {
            "target_us": NUM,
            "measured_us": NUM,
            "met": bool,
            "over_by_us": NUM,
            "ratio": NUM,
            "floor_us": NUM,
            "measured_over_floor": NUM,
            "target_over_floor": NUM,
        }
        for name in ("fast_b1", "fast_b16", "slow_b16")
    },
    "memory": {
        "requests": int,
        "requests_completed": int,
        "peak_state_entries": {"max": int, "per_replica": dict},
        "tracemalloc_current_kib": NUM,
        "tracemalloc_peak_kib": NUM,
        "live_core_allocations_kib": NUM,
    },
    "minimum_messages_per_fast_decision": int,
    "minimum_messages_per_request": dict,
    "minimum_messages_derivation": dict,
    "slow_path_mechanism": str,
    "clock": str,
    "floor_method": str,
}


def _close(a: float, b: float, rel: float = 0.02, abs_: float = 0.02) -> bool:
    return abs(a - b) <= max(abs_, rel * abs(b))


def _check_floor_and_timers(name: str, run: dict[str, Any]) -> None:
    """The frame floor, the multiples and the timer counts of one run hang together."""
    floor = run["floor"]
    assert floor["us_per_request"] > 0, name
    assert all(v > 0 for v in floor["per_replica"].values()), name
    assert all(v >= 0 for v in floor["parts_us_per_request"].values()), name
    assert (
        floor["parts_us_per_request"]["decode"] > 0 and floor["parts_us_per_request"]["encode"] > 0
    )
    assert _close(sum(floor["parts_us_per_request"].values()), floor["us_per_request"]), name
    assert _close(
        sum(float(v) for v in floor["per_replica"].values()) / 3, floor["us_per_request"]
    ), name
    by_kind_us = sum(k["floor_us_per_request"] for k in floor["by_kind"].values())
    assert _close(by_kind_us, floor["us_per_request"], abs_=0.05), name
    frames = floor["frames_per_request"]
    # every replica receives each request from its client and sends a reply
    assert frames["received"] >= 0.4 and frames["encoded"] >= 1, (name, frames)
    assert frames["sent_on_links"] >= frames["encoded"], name
    assert floor["bytes_per_request"]["encoded"] > 0 and floor["bytes_per_request"]["received"] > 0
    assert floor["by_kind"]["REPLY"]["encoded_per_request"] == pytest.approx(1.0, abs=0.05)
    assert floor["sampled_frames"] > 0
    assert floor["reencoded_differently"] == 0, "codec.encode gives back the frame it decoded"
    # each CPU figure is that figure over the floor
    over = run["cpu_over_floor"]
    cpu = run["cpu_us_per_request"]
    assert over["mean"] > 0, name
    assert _close(over["mean"], cpu["mean"] / floor["us_per_request"]), name
    assert _close(over["excluding_app_mean"], cpu["excluding_app_mean"] / floor["us_per_request"])
    for r, x in over["per_replica"].items():
        assert _close(x, cpu["per_replica"][r] / floor["per_replica"][r]), (name, r)
    assert over["max"] == max(over["per_replica"].values())
    assert _close(over["p50"], cpu["p50"] / floor["us_per_request"]), name
    # timers: replicas only, per decided request per replica; a timer fires at most once
    timers = run["timers_per_request"]
    assert timers["fired_at_deadlines"] is True, name
    assert timers["set"] > 0, name
    assert 0 <= timers["fired"] <= timers["set"], name
    for r, t in timers["per_replica"].items():
        assert 0 <= t["fired"] <= t["set"], (name, r)
    assert set(timers["fired_by_kind"]) <= set(timers["set_by_kind"]), name
    assert "CLIENT_RETRY" not in timers["set_by_kind"], "client timers are not the replicas'"
    assert _close(sum(timers["set_by_kind"].values()), timers["set"], abs_=0.001), name


def _validate(result: dict[str, Any]) -> None:
    _check(result, TOP_SHAPE, "result")
    assert result["n"] == 3
    assert result["minimum_messages_per_fast_decision"] == 14
    for name in RUNS:
        run = result["runs"][name]
        _check(run, RUN_SHAPE, name)
        assert run["requests_completed"] == run["requests_issued"] > 0, name
        assert run["requests_decided"] == run["requests_issued"], name
        assert run["decisions"] > 0, name
        assert run["decisions_fast"] + run["decisions_slow"] == run["decisions"], name
        assert run["evidence_reports"] == 0, name
        assert run["cpu_us_per_request"]["mean"] > 0, name
        assert all(v > 0 for v in run["bytes_per_request"].values() if v), name
        assert run["messages_per_request"]["client_to_replica"] >= 3, name
        assert run["messages_per_request"]["replies"] >= 2, name
        _check_floor_and_timers(name, run)
    for name, t in result["targets"].items():
        run = result["runs"][name]
        assert t["floor_us"] == run["floor"]["us_per_request"], name
        assert t["measured_over_floor"] == run["cpu_over_floor"]["mean"], name
        assert _close(t["target_over_floor"], t["target_us"] / t["floor_us"]), name
    for name in ("fast_b1", "fast_b16"):
        run = result["runs"][name]
        assert run["mode"] == "fast"
        assert run["signatures"]["created_on_path"] == 0, f"{name}: the fast path signs nothing"
        assert run["signatures_per_batch"]["created_on_path"] == 0
        assert run["decisions_slow"] == 0 and run["decisions_fast"] == run["decisions"]
        # deadlines are coalesced (replica/core/timers.py): a few live timers per replica, not
        # one per CTBcast slot and per instance (~1.6 fires per request per replica before)
        assert run["timers_per_request"]["set"] < 0.25, name
        assert run["messages_per_batch"]["replica_to_memnode"]["total"] == 0
        # every fast decision costs at least the 14 replica-to-replica messages derived from
        # PROTOCOL.md sections 3 and 4 at n = 3, plus the followers' request echoes (2 per
        # request, carried in one frame per follower and burst when batched)
        assert run["replica_protocol_messages_per_decision"] >= 14, name
        assert run["replica_messages_per_decision"] > 14, name
        assert run["messages_per_request"]["request_echo_entries"] >= 2, name
        kinds = run["messages_per_batch"]["replica_to_replica"]["by_kind"]
        assert kinds["CTB"] >= 2 and kinds["CTB_ECHO"] >= 2
        assert kinds["PROMISE"] >= 4 and kinds["FAST_COMMIT"] >= 6
    assert result["runs"]["fast_b16"]["mean_batch"] > 1
    assert result["runs"]["fast_b1"]["mean_batch"] == 1
    for name in ("slow_b1", "slow_b16"):
        run = result["runs"][name]
        assert run["mode"] == "slow"
        assert run["signatures"]["created_on_path"] > 0, f"{name}: the slow path signs"
        assert run["signatures"]["verified"] > 0
        assert run["decisions_fast"] == 0 and run["decisions_slow"] == run["decisions"]
        assert run["messages_per_batch"]["replica_to_memnode"]["total"] > 0
        assert run["dropped_frames_by_kind"], "follower 2 is silent"
    mem = result["memory"]
    assert mem["requests_completed"] == mem["requests"] > 0
    assert mem["tracemalloc_peak_kib"] >= mem["tracemalloc_current_kib"] > 0
    assert mem["peak_state_entries"]["max"] > 0


@pytest.fixture(scope="module")
def in_process() -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = core.main(["--json", "--quick"])
    assert rc == 0
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def test_quick_json_in_process(in_process: dict[str, Any]) -> None:
    _validate(in_process)


def test_quick_counts_are_deterministic(in_process: dict[str, Any]) -> None:
    """Same seed, same schedule: message and signature counts repeat exactly."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert (
            core.main(["--json", "--quick", "--modes", "fast", "--batches", "1", "--no-memory"])
            == 0
        )
    again = json.loads(out.getvalue())["runs"]["fast_b1"]
    first = in_process["runs"]["fast_b1"]
    for key in (
        "messages_per_batch",
        "signatures",
        "decisions",
        "bytes_per_request",
        "timers_per_request",
    ):
        assert again[key] == first[key], key
    for key in ("frames_per_request", "bytes_per_request", "sampled_frames"):
        assert again["floor"][key] == first["floor"][key], key


def test_fast_timers_never_fires_nothing() -> None:
    """``--fast-timers never``: timers are counted as set, none is fired."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        args = ["--json", "--quick", "--modes", "fast", "--batches", "1", "--no-memory"]
        assert core.main([*args, "--fast-timers", "never"]) == 0
    run = json.loads(out.getvalue())["runs"]["fast_b1"]
    assert run["timers_fired"] == {}
    assert run["timers_per_request"]["fired"] == 0
    assert run["timers_per_request"]["fired_at_deadlines"] is False
    assert run["timers_per_request"]["set"] > 0


def test_timers_fire_over_virtual_time() -> None:
    """Coalesced timers fire per unit of virtual time: slower waves, more fires per request."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        args = ["--json", "--quick", "--modes", "fast", "--batches", "1", "--no-memory"]
        assert core.main([*args, "--wave-ns", "20000"]) == 0
    result = json.loads(out.getvalue())
    run = result["runs"]["fast_b1"]
    assert "20000 virtual ns per wave" in result["driver"]
    assert 0 < run["timers_per_request"]["fired"] <= run["timers_per_request"]["set"]
    assert run["decisions_fast"] == run["decisions"], "a runtime's fires change no decision"


def test_sample_is_evenly_spaced() -> None:
    s = core._Sample()
    for j in range(1000):
        s.add(j.to_bytes(4, "big"))
    got = [int.from_bytes(b, "big") for b in s.items]
    assert core.FLOOR_SAMPLE <= len(got) < 2 * core.FLOOR_SAMPLE
    steps = {b - a for a, b in itertools.pairwise(got)}
    assert len(steps) == 1 and got[0] == 0


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ubft", "bench-core", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_quick_json_via_cli() -> None:
    proc = _cli("--json", "--quick")
    assert proc.returncode == 0, proc.stderr
    _validate(json.loads(proc.stdout))


def test_quick_json_via_cli_with_separator() -> None:
    proc = _cli("--", "--json", "--quick", "--no-memory", "--modes", "fast", "--batches", "1")
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)["runs"]["fast_b1"]
    assert run["signatures"]["created_on_path"] == 0
    assert run["requests_completed"] > 0


def test_table_output_and_profile() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert core.main(["--quick", "--no-memory", "--modes", "fast", "--batches", "1"]) == 0
    text = out.getvalue()
    assert "CPU us/request/replica" in text and "target fast_b1" in text
    assert "frame floor us/request/replica" in text and "× floor" in text
    assert "timers fired / request / replica" in text
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert core.main(["--quick", "--profile"]) == 0
    assert "cumulative" in out.getvalue() and "replica.py" in out.getvalue()


def test_on_demand_mechanism_switches_and_ends() -> None:
    """``--slow-mechanism on-demand``: one-wave fast timeouts send every instance down the
    signature path, and the run ends (early fires of coalesced timers once spun forever)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        args = ["--json", "--quick", "--modes", "slow", "--batches", "16", "--no-memory"]
        assert core.main([*args, "--slow-mechanism", "on-demand"]) == 0
    run = json.loads(out.getvalue())["runs"]["slow_b16"]
    assert run["requests_completed"] == run["requests_issued"] > 0
    assert run["decisions_slow"] == run["decisions"] > 0
    assert run["signatures"]["created_on_path"] > 0
    assert 0 < run["timers_per_request"]["fired"] <= run["timers_per_request"]["set"]
