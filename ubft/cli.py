"""The ``ubft`` command: ``simulate`` (the deterministic simulator) and ``bench-core``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _simulate(args: argparse.Namespace) -> int:
    from ubft.replica.sim.faults import EXTRA_SCENARIOS, SCENARIOS
    from ubft.replica.sim.run import run_schedules
    from ubft.replica.sim.world import ScheduleResult

    args.scenario = args.scenario.replace("-", "_")
    if args.replicas < 3 or args.replicas % 2 == 0 or args.memnodes < 1 or args.memnodes % 2 == 0:
        print("--replicas must be 2f+1 >= 3 and --memnodes odd", file=sys.stderr)
        return 2
    if args.scenario not in (*SCENARIOS, *EXTRA_SCENARIOS, "mixed"):
        print(
            f"unknown scenario {args.scenario!r}; choose from mixed, {', '.join((*SCENARIOS, *EXTRA_SCENARIOS))}",
            file=sys.stderr,
        )
        return 2
    live = (not args.json and sys.stderr.isatty()) or args.progress
    tty = sys.stderr.isatty()

    def progress(j: int, res: ScheduleResult, summary: dict[str, Any]) -> None:
        done = j + 1
        # on a terminal one line rewritten in place; elsewhere (logs, CI) a line every 10%
        if not live or (not tty and done % max(1, args.schedules // 10) and done != args.schedules):
            return
        bad = len(summary["violations"])
        line = (
            f"schedule {done}/{args.schedules}  requests {summary['requests_completed']}  "
            f"fast {summary['decisions_fast']}  slow {summary['decisions_slow']}  "
            f"signatures {summary['signatures_created']}  violations {bad}"
        )
        if tty:
            print("\r" + line, end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    summary = run_schedules(
        args.schedules,
        args.seed,
        args.scenario,
        history_dir=Path(args.history_dir) if args.history_dir else None,
        trace=sys.stderr if args.trace else None,
        n=args.replicas,
        memnodes=args.memnodes,
        progress=progress,
    )
    if live and tty:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(summary, indent=None, sort_keys=False))
    else:
        _print_summary(summary)
    return 1 if summary["violations"] else 0


_SHOWN_VIOLATIONS = 20


def _print_summary(summary: dict[str, Any]) -> None:
    """The human summary: one line per figure, then the violations by class, each with the
    command that replays its schedule."""
    for key, value in summary.items():
        if key.startswith("violation"):
            continue
        print(f"{key:32} {value}")
    counts = summary["violation_counts"]
    by_class = ", ".join(f"{cls} {count}" for cls, count in counts.items())
    print(f"{'violations':32} {len(summary['violations'])} ({by_class})")
    details = summary["violation_details"]
    for v in details[:_SHOWN_VIOLATIONS]:
        print(f"  [{v['class']}] seed={v['seed']} [{v['plan']}] {v['message']}")
        if v["where"] and v["where"] not in v["message"]:
            print(f"    raised at: {v['where']}")
        print(f"    replay: {v['replay']}")
    if len(details) > _SHOWN_VIOLATIONS:
        print(f"  ... and {len(details) - _SHOWN_VIOLATIONS} more (--json lists them all)")


def _bench_core(argv: list[str]) -> int:
    from ubft.bench.core import main as bench_main

    code: int = bench_main(argv)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench-core"]:
        return _bench_core(argv[1:])  # bench/core.py parses its own options
    parser = argparse.ArgumentParser(prog="ubft", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="run seeded schedules in the deterministic simulator")
    sim.add_argument("--schedules", type=int, default=100)
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--scenario", default="mixed", help="mixed (default) or one scenario name")
    sim.add_argument("--json", action="store_true", help="print one JSON object")
    sim.add_argument("--replicas", type=int, default=3, help="n = 2f+1 (default 3)")
    sim.add_argument("--memnodes", type=int, default=3, help="M = 2m+1 memory nodes (default 3)")
    sim.add_argument("--progress", action="store_true", help="live summary on stderr")
    sim.add_argument("--history-dir", help="write each schedule's client history (JSON lines)")
    sim.add_argument(
        "--trace", action="store_true", help="print every event to stderr (one line each)"
    )
    sim.set_defaults(func=_simulate)
    sub.add_parser("bench-core", help="CPU cost of the protocol core (see: ubft bench-core --help)")
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
