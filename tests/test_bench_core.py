"""``ubft bench-core --quick``: the JSON shape and the properties the figures must show.

Timings are never asserted (they depend on the machine); counts are deterministic.
"""

from __future__ import annotations

import contextlib
import io
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
    "evidence_reports": int,
    "peak_state_entries": {"max": int, "per_replica": {"0": int, "1": int, "2": int}},
    "repeats_cpu_us_per_request_mean": list,
    "wall_s": NUM,
}

TOP_SHAPE: dict[str, Any] = {
    "n": int,
    "runs": {name: dict for name in RUNS},
    "targets": {
        name: {"target_us": NUM, "measured_us": NUM, "met": bool, "over_by_us": NUM, "ratio": NUM}
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
}


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
    for name in ("fast_b1", "fast_b16"):
        run = result["runs"][name]
        assert run["mode"] == "fast"
        assert run["signatures"]["created_on_path"] == 0, f"{name}: the fast path signs nothing"
        assert run["signatures_per_batch"]["created_on_path"] == 0
        assert run["decisions_slow"] == 0 and run["decisions_fast"] == run["decisions"]
        assert run["timers_fired"] == {}, "fast runs never fire timers"
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
    for key in ("messages_per_batch", "signatures", "decisions", "bytes_per_request"):
        assert again[key] == first[key], key


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
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert core.main(["--quick", "--profile"]) == 0
    assert "cumulative" in out.getvalue() and "replica.py" in out.getvalue()
