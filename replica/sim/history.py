"""Client-visible histories of the key-value application, one JSON object per line.

An event is ``{"process", "type", "f", "key", "value", "time_ns"}``:

- ``type``: "invoke"; then exactly one completion of the same process: "ok" (took effect,
  result known), "fail" (definitely did not take effect) or "info" (unknown: it may take
  effect at any time after its invoke, or never). A process has at most one open operation.
- ``f`` and ``value``:
  "write": the written string, on the invoke and on "ok";
  "incr": the increment (int) on the invoke, the counter's new value (int) on "ok";
  "read": null on the invoke; on "ok" the stored string, or null for a missing key.
  Counters are stored as decimal strings (as in ``ubft.apps.kv``), so a read of a counter
  returns e.g. "5", never the int 5. "fail" and "info" carry any value (conventionally the
  invoke's); the checker ignores it.

The order of events in a history is the real-time order the checker uses; ``time_ns`` is
informational, since in a simulator a reply and the next invoke often share one instant.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, get_args

OpType = Literal["invoke", "ok", "fail", "info"]
OpF = Literal["read", "write", "incr"]
OpValue = str | int | None

_TYPES: Final = frozenset(get_args(OpType))
_FS: Final = frozenset(get_args(OpF))
_FIELDS: Final = ("process", "type", "f", "key", "value", "time_ns")


def _is_int(x: object) -> bool:
    # bool is an int subclass, but true/false in a history is always a bug.
    return isinstance(x, int) and not isinstance(x, bool)


def _value_fits(f: str, type_: str, value: object) -> bool:
    """Whether ``value`` has the type the format prescribes for (f, type)."""
    if type_ in ("fail", "info"):
        return value is None or isinstance(value, str) or _is_int(value)
    if f == "write":
        return isinstance(value, str)
    if f == "incr":
        return _is_int(value)
    # read: nothing on the invoke; a string or null on "ok"
    return value is None or (type_ == "ok" and isinstance(value, str))


@dataclass(frozen=True, slots=True)
class Op:
    """One history event; constructing one validates it (ValueError)."""

    process: int
    type: OpType
    f: OpF
    key: str
    value: OpValue
    time_ns: int

    def __post_init__(self) -> None:
        if not _is_int(self.process) or self.process < 0:
            raise ValueError(f"process must be an int >= 0, not {self.process!r}")
        if self.type not in _TYPES:
            raise ValueError(f"type must be one of {sorted(_TYPES)}, not {self.type!r}")
        if self.f not in _FS:
            raise ValueError(f"f must be one of {sorted(_FS)}, not {self.f!r}")
        if not isinstance(self.key, str):
            raise ValueError(f"key must be a string, not {self.key!r}")
        if not _value_fits(self.f, self.type, self.value):
            raise ValueError(f"value {self.value!r} does not fit a {self.f} {self.type}")
        if not _is_int(self.time_ns) or self.time_ns < 0:
            raise ValueError(f"time_ns must be an int >= 0, not {self.time_ns!r}")

    def to_dict(self) -> dict[str, object]:
        """The JSON object of this event, fields in the documented order."""
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_dict(cls, obj: object) -> Op:
        """Parse one JSON object strictly: exactly the six fields; ValueError otherwise."""
        if not isinstance(obj, dict):
            raise ValueError("event is not a JSON object")
        if set(obj) != set(_FIELDS):
            raise ValueError(f"event fields {sorted(obj)} are not {sorted(_FIELDS)}")
        return cls(
            process=obj["process"],
            type=obj["type"],
            f=obj["f"],
            key=obj["key"],
            value=obj["value"],
            time_ns=obj["time_ns"],
        )


class HistoryRecorder:
    """Builds a well-formed history as a client (or the simulator on its behalf) runs.

    Calls must come in real-time order; misuse (a second invoke while one is open, a
    completion without an invoke, an "ok" write that reports another value) raises ValueError.
    """

    def __init__(self) -> None:
        self._events: list[Op] = []
        self._open: dict[int, Op] = {}

    def invoke(self, process: int, f: OpF, key: str, value: OpValue, time_ns: int) -> None:
        if process in self._open:
            raise ValueError(f"process {process} already has an open operation")
        op = Op(process, "invoke", f, key, value, time_ns)
        self._open[process] = op
        self._events.append(op)

    def complete(self, process: int, type: OpType, value: OpValue, time_ns: int) -> None:
        """Record the completion of ``process``'s open operation."""
        if type == "invoke":
            raise ValueError("complete() takes ok, fail or info")
        invoked = self._open.get(process)
        if invoked is None:
            raise ValueError(f"process {process} has no open operation")
        if type == "ok" and invoked.f == "write" and value != invoked.value:
            raise ValueError(f"write of {invoked.value!r} acknowledged as {value!r}")
        op = Op(process, type, invoked.f, invoked.key, value, time_ns)
        del self._open[process]
        self._events.append(op)

    def close(self, time_ns: int) -> None:
        """End the history: every open operation's outcome becomes unknown ("info")."""
        for process in sorted(self._open):  # sorted: the output must not depend on dict order
            self.complete(process, "info", self._open[process].value, time_ns)

    def events(self) -> list[Op]:
        return list(self._events)


def write_jsonl(path: str | os.PathLike[str], ops: Iterable[Op]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for op in ops:
            out.write(json.dumps(op.to_dict(), separators=(",", ":")))
            out.write("\n")


def read_jsonl(path: str | os.PathLike[str]) -> list[Op]:
    """Read a history strictly; ValueError names the first bad line (1-based)."""
    ops: list[Op] = []
    with open(path, encoding="utf-8") as src:
        for lineno, line in enumerate(src, start=1):
            try:
                ops.append(Op.from_dict(json.loads(line, parse_constant=_reject_constant)))
            except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
                raise ValueError(f"{os.fspath(path)}:{lineno}: {exc}") from exc
    return ops


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")
