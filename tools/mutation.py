#!/usr/bin/env python3
"""Mutation testing of the safety-critical modules (``make mutation``).

The repository maps its folders into the ``ubft`` namespace through an editable install, which
keeps mutmut out, so this is a small driver of its own:

* **Mutants** come from the module's AST: comparison swaps (``<``/``<=``, ``>``/``>=``,
  ``==``/``!=``, ``in``/``not in``, ``is``/``is not``), integer constants off by one, ``True``/
  ``False`` swapped, ``and``/``or`` swapped and each operand of either dropped, ``not`` dropped,
  ``+``/``-`` (and ``*``/``//``, ``%``, shifts) swapped, ``min``/``max`` swapped, a call in a
  boolean position (a signature check, mostly) replaced by ``True`` and by ``False``, a guard
  (``if`` whose body leaves the block) that never fires, ``return X`` replaced by ``return None``
  (``return not X`` for ``-> bool``), a statement that records evidence deleted, the ``return``
  right after it deleted, and the reason it records replaced. Two mutants that compile to the
  same module are one. ``assert`` statements, annotations, docstrings and ``raise`` statements
  are never mutated; neither is a line carrying ``# pragma: no mutate``.
* **Running** one mutant forks a warm parent (pytest, pydantic, nacl and hypothesis already
  imported, nothing of ``ubft``); the child installs an import hook that serves the mutated
  module, runs the module's mapped test files with ``pytest -x -q -p no:cacheprovider`` and
  exits with pytest's status. A non-zero status kills the mutant; so does running past the
  per-mutant timeout (ten times the unmutated run, at least ``--timeout`` seconds). Hypothesis
  runs derandomized, without its example database. Test files that fail without any mutation
  are left out (others may be editing the tree); a kill by a test file that fails once the run
  is over, or by an ERROR rather than a failed assertion, is run again before it counts.
* **Caching** by mutant hash (the mutated module's unparsed source): a killed mutant stays
  killed while its mutated source is unchanged; a surviving one is run again whenever the
  mapped tests or any source of the core changed. ``--fresh`` ignores the cache.
* **Equivalent mutants** are listed, one justification each, in ``docs/mutation-equivalents.md``;
  the score is killed / (mutants - equivalent survivors). A listed mutant that is killed, or a
  listed entry that matches no mutant, is reported as stale.

Results go to ``build/mutation/results.json`` (every mutant's status and the survivors with
module, line, original and mutant); the exit status is 1 when the overall score is below
``--min-score``.
"""

from __future__ import annotations

import argparse
import ast
import glob
import hashlib
import json
import os
import re
import signal
import sys
import time
import tomllib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from importlib.util import spec_from_file_location
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "build" / "mutation"
CACHE_FILE = OUT_DIR / "cache.json"
EQUIVALENTS_FILE = ROOT / "docs" / "mutation-equivalents.md"

# Module -> the test files (globs, in order: the targeted ones first, so -x stops early).
TESTS: dict[str, tuple[str, ...]] = {
    "replica/core/quorum.py": (
        "tests/test_quorum_rules.py",
        "tests/test_checkpoint_rules.py",
        "tests/test_ctb_rules.py",
        "tests/test_core_cluster.py",
    ),
    "replica/core/crypto.py": (
        "tests/test_crypto_rules.py",
        "tests/test_crypto.py",
        "tests/test_quorum_rules.py",
    ),
    "replica/core/checkpoint.py": (
        "tests/test_checkpoint_rules.py",
        "tests/test_core_cluster.py",
    ),
    "replica/core/ctb_receiver.py": ("tests/test_ctb_rules.py", "tests/test_core_cluster.py"),
    "replica/core/ctb_broadcaster.py": ("tests/test_ctb_rules.py", "tests/test_core_cluster.py"),
    "replica/core/ctbcast.py": ("tests/test_ctb_rules.py", "tests/test_core_cluster.py"),
    "memnode/store.py": (
        "tests/test_memnode_rules.py",
        "tests/test_memnode_store.py",
        "tests/test_memnode_register.py",
    ),
    "memnode/register.py": (
        "tests/test_memnode_rules.py",
        "tests/test_memnode_register.py",
        "tests/test_core_cluster.py",
    ),
    "replica/core/certifier.py": (
        "tests/test_*certif*.py",
        "tests/test_*consensus*.py",
        "tests/test_byzantine_holes.py",
        "tests/test_core_cluster.py",
    ),
    "replica/core/consensus.py": (
        "tests/test_*consensus*.py",
        "tests/test_byzantine_holes.py",
        "tests/test_core_cluster.py",
    ),
    # consensus.py was split: its Prepare checks, the leader's proposals, execution and the view
    # state are consensus too.
    "replica/core/prepare_checks.py": (
        "tests/test_*prepare*.py",
        "tests/test_*consensus*.py",
        "tests/test_byzantine_holes.py",
        "tests/test_core_cluster.py",
    ),
    "replica/core/proposer.py": (
        "tests/test_*consensus*.py",
        "tests/test_byzantine_holes.py",
        "tests/test_core_cluster.py",
    ),
    "replica/core/execution.py": (
        "tests/test_*execution*.py",
        "tests/test_*consensus*.py",
        "tests/test_byzantine_holes.py",
        "tests/test_core_cluster.py",
    ),
    "replica/core/view.py": (
        "tests/test_*consensus*.py",
        "tests/test_byzantine_holes.py",
        "tests/test_core_cluster.py",
    ),
    "replica/core/intake.py": (
        "tests/test_*intake*.py",
        "tests/test_*request*.py",
        "tests/test_byzantine_holes.py",
        "tests/test_core_cluster.py",
    ),
    "replica/core/admission.py": (
        "tests/test_*admission*.py",
        "tests/test_byzantine_holes.py",
        "tests/test_core_cluster.py",
    ),
    "replica/core/request_log.py": (
        "tests/test_*request*.py",
        "tests/test_byzantine_holes.py",
        "tests/test_core_cluster.py",
    ),
}

# What ``make mutation`` runs: the safety-critical modules of the issue.
DEFAULT_MODULES = tuple(TESTS)

# The sources whose change makes a surviving mutant worth running again.
SOURCE_DIRS = ("replica/core", "memnode", "apps", "client")

# A call whose name matches records evidence (or a rejection) against a peer.
RECORDER = re.compile(r"(^|_)(report|evidence|reject)$")
PRAGMA = "pragma: no mutate"

_CMP_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_BIN_SWAP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
}
_EXITS = (ast.Return, ast.Continue, ast.Break, ast.Raise)


# ====================================================================== mutants


@dataclass(frozen=True)
class Mutant:
    module: str  # path relative to the repository root
    node: int  # index of the mutated node in the walk order
    choice: int  # which mutation of that node
    line: int
    scope: str  # qualified name of the enclosing function or class
    kind: str
    original: str
    mutated: str
    key: str = ""  # hash of the mutated module

    def describe(self) -> str:
        return f"{self.scope}: `{self.original}` → `{self.mutated}`"


@dataclass
class _Site:
    node: ast.AST
    parent: ast.AST | None
    field: str
    index: int | None
    scope: str
    boolean: bool  # the node's value is used as a truth value
    returns: str  # the enclosing function's return annotation, unparsed


def _walk(tree: ast.Module, lines: list[str]) -> list[_Site]:
    """Every mutable node, in a deterministic order (re-parsing gives the same list)."""
    sites: list[_Site] = []

    def skip_line(node: ast.AST) -> bool:
        lineno = getattr(node, "lineno", None)
        return lineno is not None and PRAGMA in lines[lineno - 1]

    def visit(
        node: ast.AST,
        parent: ast.AST | None,
        fname: str,
        index: int | None,
        scope: str,
        boolean: bool,
        returns: str,
    ) -> None:
        if isinstance(node, ast.Assert | ast.Raise | ast.JoinedStr) or skip_line(node):
            return
        if isinstance(node, ast.ImportFrom | ast.Import | ast.Global | ast.Nonlocal):
            return
        sites.append(_Site(node, parent, fname, index, scope, boolean, returns))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            scope = f"{scope}.{node.name}" if scope else node.name
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            returns = ast.unparse(node.returns) if node.returns is not None else ""
        for name, value in ast.iter_fields(node):
            if name in ("annotation", "returns", "decorator_list", "type_comment"):
                continue
            if isinstance(node, ast.AnnAssign) and name == "target":
                continue
            child_bool = _boolean_field(node, name)
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if not isinstance(item, ast.AST):
                        continue
                    if i == 0 and name == "body" and _is_docstring(node, item):
                        continue
                    visit(item, node, name, i, scope, child_bool, returns)
            elif isinstance(value, ast.AST):
                visit(value, node, name, None, scope, child_bool, returns)

    visit(tree, None, "", None, "", False, "")
    return sites


def _boolean_field(node: ast.AST, name: str) -> bool:
    """Whether field ``name`` of ``node`` holds a value used only for its truth."""
    if isinstance(node, ast.If | ast.While | ast.IfExp) and name == "test":
        return True
    if isinstance(node, ast.comprehension) and name == "ifs":
        return True
    if isinstance(node, ast.BoolOp) and name == "values":
        return True
    return isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)


def _is_docstring(owner: ast.AST, item: ast.AST) -> bool:
    return (
        isinstance(owner, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and isinstance(item, ast.Expr)
        and isinstance(item.value, ast.Constant)
        and isinstance(item.value.value, str)
    )


def _call_name(call: ast.AST) -> str:
    if not isinstance(call, ast.Call):
        return ""
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _is_recorder(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and bool(RECORDER.search(_call_name(node)))


Edit = Callable[[_Site], tuple[str, str, str]]  # applies in place; (kind, original, mutated)


def _replace(site: _Site, new: ast.AST) -> None:
    assert site.parent is not None
    ast.copy_location(new, site.node)
    if site.index is None:
        setattr(site.parent, site.field, new)
    else:
        getattr(site.parent, site.field)[site.index] = new


ConstValue = bool | int | str | None


def _const(value: ConstValue) -> ast.Constant:
    return ast.Constant(value=value)


def _edits(site: _Site) -> list[Edit]:
    """The mutations of one node; each applies to a fresh parse of the module."""
    node = site.node
    out: list[Edit] = []

    if isinstance(node, ast.Compare):
        for j, op in enumerate(node.ops):
            swap = _CMP_SWAP.get(type(op))
            if swap is not None:
                out.append(_cmp_edit(j, swap))

    elif isinstance(node, ast.Constant) and site.parent is not None:
        value = node.value
        if isinstance(value, bool):
            out.append(_value_edit("bool", not value))
        elif isinstance(value, int):
            out.append(_value_edit("number", value + 1))
            if value != 0:
                out.append(_value_edit("number", value - 1))

    elif isinstance(node, ast.BoolOp):
        out.append(_boolop_swap)
        for j in range(len(node.values)):
            out.append(_boolop_drop(j))

    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        out.append(_not_drop)

    elif isinstance(node, ast.BinOp):
        swap_op = _BIN_SWAP.get(type(node.op))
        if swap_op is not None:
            out.append(_binop_edit(swap_op))

    if isinstance(node, ast.Call):
        name = _call_name(node)
        if name in ("min", "max") and isinstance(node.func, ast.Name):
            out.append(_minmax_swap)
        if site.boolean and not _is_recorder(node):
            out.append(_call_edit(True))
            out.append(_call_edit(False))
        if _is_recorder(node) and node.args:
            out.append(_reason_edit)

    if (
        isinstance(node, ast.If)
        and not node.orelse
        and isinstance(node.body[-1], _EXITS)
        and not isinstance(node.test, ast.BoolOp | ast.Constant)
    ):
        out.append(_guard_edit)

    if isinstance(node, ast.Return) and node.value is not None:
        returned = node.value
        if site.returns == "bool":
            if not isinstance(returned, ast.Constant):
                out.append(_return_not)
        elif site.returns != "None" and not (
            isinstance(returned, ast.Constant) and returned.value is None
        ):
            out.append(_return_none)

    if isinstance(node, ast.Expr) and _is_recorder(node.value) and site.index is not None:
        out.append(_delete_stmt("evidence"))
        body = getattr(site.parent, site.field)
        if site.index + 1 < len(body) and isinstance(body[site.index + 1], ast.Return):
            out.append(_delete_next_return)
    return out


def _cmp_edit(j: int, swap: type[ast.cmpop]) -> Edit:
    def edit(site: _Site) -> tuple[str, str, str]:
        node = site.node
        assert isinstance(node, ast.Compare)
        before = ast.unparse(node)
        node.ops[j] = swap()
        return "compare", before, ast.unparse(node)

    return edit


def _value_edit(kind: str, value: ConstValue) -> Edit:
    def edit(site: _Site) -> tuple[str, str, str]:
        # show the constant with what holds it: `x + 1`, `strict=True`, `self.n = 0`, `return 1`
        holders = (ast.expr, ast.keyword, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return)
        shown = site.parent if isinstance(site.parent, holders) else site.node
        assert shown is not None
        before = ast.unparse(shown)
        assert isinstance(site.node, ast.Constant)
        site.node.value = value
        return kind, before, ast.unparse(shown)

    return edit


def _boolop_swap(site: _Site) -> tuple[str, str, str]:
    node = site.node
    assert isinstance(node, ast.BoolOp)
    before = ast.unparse(node)
    node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    return "and/or", before, ast.unparse(node)


def _boolop_drop(j: int) -> Edit:
    def edit(site: _Site) -> tuple[str, str, str]:
        node = site.node
        assert isinstance(node, ast.BoolOp)
        before = ast.unparse(node)
        del node.values[j]
        if len(node.values) == 1:
            _replace(site, node.values[0])
            return "drop operand", before, ast.unparse(node.values[0])
        return "drop operand", before, ast.unparse(node)

    return edit


def _not_drop(site: _Site) -> tuple[str, str, str]:
    node = site.node
    assert isinstance(node, ast.UnaryOp)
    before = ast.unparse(node)
    _replace(site, node.operand)
    return "drop not", before, ast.unparse(node.operand)


def _binop_edit(swap: type[ast.operator]) -> Edit:
    def edit(site: _Site) -> tuple[str, str, str]:
        node = site.node
        assert isinstance(node, ast.BinOp)
        before = ast.unparse(node)
        node.op = swap()
        return "arithmetic", before, ast.unparse(node)

    return edit


def _minmax_swap(site: _Site) -> tuple[str, str, str]:
    node = site.node
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    before = ast.unparse(node)
    node.func.id = "max" if node.func.id == "min" else "min"
    return "min/max", before, ast.unparse(node)


def _call_edit(value: bool) -> Edit:
    def edit(site: _Site) -> tuple[str, str, str]:
        before = ast.unparse(site.node)
        _replace(site, _const(value))
        return "call", before, str(value)

    return edit


def _reason_edit(site: _Site) -> tuple[str, str, str]:
    node = site.node
    assert isinstance(node, ast.Call)
    before = ast.unparse(node)
    # the reason is the string (or the constant naming it) among the arguments, else the last
    j = next(
        (
            i
            for i, arg in enumerate(node.args)
            if (isinstance(arg, ast.Constant) and isinstance(arg.value, str))
            or isinstance(arg, ast.BinOp)
            or (isinstance(arg, ast.Name) and arg.id.isupper())
        ),
        len(node.args) - 1,
    )
    node.args[j] = ast.copy_location(_const("mutant.reason"), node.args[j])
    return "reason", before, ast.unparse(node)


def _guard_edit(site: _Site) -> tuple[str, str, str]:
    node = site.node
    assert isinstance(node, ast.If)
    before = f"if {ast.unparse(node.test)}:"
    node.test = ast.copy_location(_const(False), node.test)
    return "guard", before, "if False:"


def _return_none(site: _Site) -> tuple[str, str, str]:
    node = site.node
    assert isinstance(node, ast.Return)
    before = ast.unparse(node)
    node.value = _const(None)
    return "return", before, "return None"


def _return_not(site: _Site) -> tuple[str, str, str]:
    node = site.node
    assert isinstance(node, ast.Return) and node.value is not None
    before = ast.unparse(node)
    node.value = ast.UnaryOp(op=ast.Not(), operand=node.value)
    return "return", before, ast.unparse(node)


def _delete_stmt(kind: str) -> Edit:
    def edit(site: _Site) -> tuple[str, str, str]:
        before = ast.unparse(site.node)
        _replace(site, ast.Pass())
        return kind, before, "pass"

    return edit


def _delete_next_return(site: _Site) -> tuple[str, str, str]:
    assert site.index is not None
    body = getattr(site.parent, site.field)
    ret = body[site.index + 1]
    before = f"{ast.unparse(site.node)}; {ast.unparse(ret)}"
    body[site.index + 1] = ast.copy_location(ast.Pass(), ret)
    return "evidence return", before, f"{ast.unparse(site.node)}; pass"


def module_name(path: str) -> str:
    """The import name of a repository file, from pyproject's package-dir table."""
    with (ROOT / "pyproject.toml").open("rb") as fh:
        table: dict[str, str] = tomllib.load(fh)["tool"]["setuptools"]["package-dir"]
    stem = path.removesuffix(".py")
    for package, folder in sorted(table.items(), key=lambda kv: -len(kv[1])):
        if stem.startswith(folder + "/"):
            return package + "." + stem[len(folder) + 1 :].replace("/", ".")
    raise SystemExit(f"{path}: not inside a folder mapped into the ubft namespace")


def mutate(source: str, node: int, choice: int) -> tuple[ast.Module, tuple[str, str, str], int]:
    """A fresh parse of ``source`` with one mutation applied: (tree, description, line)."""
    tree = ast.parse(source)
    sites = _walk(tree, source.splitlines())
    site = sites[node]
    line = getattr(site.node, "lineno", 0)
    described = _edits(site)[choice](site)
    ast.fix_missing_locations(tree)
    return tree, described, line


def enumerate_mutants(path: str, source: str | None = None) -> list[Mutant]:
    """Every distinct mutant of ``path`` (of ``source``, its text read once by the caller:
    others may edit the file while a run is under way)."""
    if source is None:
        source = (ROOT / path).read_text()
    tree = ast.parse(source)
    sites = _walk(tree, source.splitlines())
    original = ast.unparse(tree)
    seen: set[str] = {original}
    out: list[Mutant] = []
    for n, site in enumerate(sites):
        for c in range(len(_edits(site))):
            mutated, (kind, before, after), line = mutate(source, n, c)
            text = ast.unparse(mutated)
            if text in seen:
                continue
            seen.add(text)
            key = hashlib.sha256(f"{path}\0{text}".encode()).hexdigest()[:20]
            out.append(Mutant(path, n, c, line, site.scope, kind, before, after, key))
    return out


# ====================================================================== equivalents


@dataclass
class Equivalent:
    module: str
    scope: str
    original: str
    mutated: str
    why: str
    used: bool = False

    def matches(self, m: Mutant) -> bool:
        return (m.module, m.scope, _norm(m.original), _norm(m.mutated)) == (
            self.module,
            self.scope,
            _norm(self.original),
            _norm(self.mutated),
        )


def _norm(text: str) -> str:
    return " ".join(text.split())


_ENTRY = re.compile(r"^- (?P<scope>[\w.<>]+): `(?P<orig>.+?)` → `(?P<mut>.*)`\s*$")


def load_equivalents(path: Path = EQUIVALENTS_FILE) -> list[Equivalent]:
    """Entries ``- Scope.name: `original` → `mutant` `` under a ``### module/path.py`` heading,
    each followed by its justification (indented lines; at least one is required)."""
    if not path.exists():
        return []
    entries: list[Equivalent] = []
    module = ""
    for raw in path.read_text().splitlines():
        heading = re.match(r"^### `?(?P<mod>[\w/]+\.py)`?\s*$", raw)
        if heading:
            module = heading["mod"]
            continue
        m = _ENTRY.match(raw)
        if m and module:
            entries.append(Equivalent(module, m["scope"], m["orig"], m["mut"], ""))
            continue
        if entries and raw.startswith("  ") and raw.strip():
            entries[-1].why = (entries[-1].why + " " + raw.strip()).strip()
        elif not raw.strip() or raw.startswith("#"):
            continue
    for e in entries:
        if not e.why:
            raise SystemExit(f"{path}: {e.module} {e.scope}: an equivalent needs a justification")
    return entries


# ====================================================================== running


class _MutantLoader(Loader):
    def __init__(self, code: CodeType) -> None:
        self.code = code

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        exec(self.code, module.__dict__)


class _MutantFinder(MetaPathFinder):
    """Serves the mutated module; every other import goes the usual way."""

    def __init__(self, name: str, origin: str, code: CodeType) -> None:
        self.name = name
        self.origin = origin
        self.code = code

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if fullname != self.name:
            return None
        return spec_from_file_location(fullname, self.origin, loader=_MutantLoader(self.code))


def _warm_up() -> None:
    """Import what every child needs except ubft itself, once, before forking. Children cache
    bytecode (and pytest's rewritten test modules) under build/mutation/pycache even where
    PYTHONDONTWRITEBYTECODE is set: compiling them again for every mutant would double the run
    time. The mutated module itself is compiled here and never cached."""
    sys.dont_write_bytecode = False
    sys.pycache_prefix = str(OUT_DIR / "pycache")
    import _pytest.assertion.rewrite  # noqa: F401
    import hypothesis
    import nacl.signing  # noqa: F401
    import pydantic  # noqa: F401
    import pytest  # noqa: F401

    hypothesis.settings.register_profile(
        "mutation", database=None, derandomize=True, deadline=None, print_blob=False
    )
    hypothesis.settings.load_profile("mutation")
    if any(name == "ubft" or name.startswith("ubft.") for name in sys.modules):
        raise SystemExit("the driver must not import ubft before forking")


def _child(name: str, origin: str, code: CodeType | None, tests: list[str], log: str) -> None:
    import resource

    import pytest

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    limit = 3 << 30  # a mutant that allocates without bound must not take the machine down
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if code is not None:
        sys.meta_path.insert(0, _MutantFinder(name, origin, code))
    os.chdir(ROOT)
    try:
        rc = int(pytest.main([*tests, "-x", "-q", "-p", "no:cacheprovider", "--no-header"]))
    except BaseException:
        rc = 70
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


@dataclass
class Job:
    mutant: Mutant | None
    code: CodeType | None
    log: str
    started: float = 0.0
    timeout: float = 0.0


@dataclass
class Outcome:
    status: str  # killed | timeout | survived | error
    killer: str
    seconds: float


def _killer(log: str) -> str:
    try:
        text = Path(log).read_text(errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" - ")[0]
    return text.strip().splitlines()[-1][:200] if text.strip() else ""


def run_jobs(
    name: str, origin: str, tests: list[str], jobs: list[Job], parallel: int
) -> Iterator[tuple[Job, Outcome]]:
    """Fork one child per job, at most ``parallel`` at a time; yields outcomes as they end."""
    todo = deque(jobs)
    running: dict[int, Job] = {}
    try:
        while todo or running:
            while todo and len(running) < parallel:
                job = todo.popleft()
                job.started = time.monotonic()
                pid = os.fork()
                if pid == 0:  # pragma: no cover - the child never returns
                    _child(name, origin, job.code, tests, job.log)
                running[pid] = job
            pid, status = os.waitpid(-1, os.WNOHANG)
            now = time.monotonic()
            if pid == 0:
                for child, job in running.items():
                    if now - job.started > job.timeout:
                        os.kill(child, signal.SIGKILL)
                time.sleep(0.01)
                continue
            job = running.pop(pid)
            took = now - job.started
            if os.WIFSIGNALED(status):
                timed_out = took > job.timeout
                outcome = Outcome("timeout" if timed_out else "killed", "signal", took)
            else:
                rc = os.WEXITSTATUS(status)
                if rc == 0:
                    outcome = Outcome("survived", "", took)
                elif rc in (1, 2, 3):  # failed, interrupted (collection error), internal error
                    outcome = Outcome("killed", _killer(job.log), took)
                else:
                    outcome = Outcome("error", f"pytest exit {rc}: {_killer(job.log)}", took)
            yield job, outcome
    finally:
        for child in running:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)


def _killer_file(killer: str) -> str:
    """The test file named in a killer line ("FAILED tests/x.py::test - ..."), if any."""
    word = killer.split(" ")[1] if " " in killer else ""
    return word.split("::")[0]


def _baseline(
    name: str, origin: str, tests: list[str], args: argparse.Namespace, quiet: bool = False
) -> tuple[list[str], float]:
    """The mapped test files that pass without any mutation (others are dropped with a
    warning: in a tree edited by several people one may be broken for a while), and how long
    they take together."""
    logs = OUT_DIR / "logs"
    kept: list[str] = []
    for test in tests:
        job = Job(None, None, str(logs / "baseline.log"), timeout=args.baseline_timeout)
        ((_, outcome),) = list(run_jobs(name, origin, [test], [job], 1))
        if outcome.status == "survived":
            kept.append(test)
        elif not quiet:
            print(f"  warning: {test} fails without any mutation ({outcome.killer}); left out")
    if not kept:
        return kept, 0.0
    job = Job(None, None, str(logs / "baseline.log"), timeout=args.baseline_timeout)
    ((_, outcome),) = list(run_jobs(name, origin, kept, [job], 1))
    if outcome.status != "survived" and not quiet:
        raise SystemExit(f"{name}: the mapped tests fail together without any mutation")
    return kept, outcome.seconds


def _fingerprint(tests: list[str]) -> str:
    h = hashlib.sha256()
    files = [ROOT / t for t in tests] + [ROOT / "tests" / "conftest.py"]
    for folder in SOURCE_DIRS:
        files += sorted((ROOT / folder).rglob("*.py"))
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode())
        h.update(f.read_bytes() if f.exists() else b"-")
    return h.hexdigest()[:20]


def _resolve_tests(path: str) -> list[str]:
    out: list[str] = []
    for pattern in TESTS[path]:
        for hit in sorted(glob.glob(pattern, root_dir=ROOT)):
            if hit not in out:
                out.append(hit)
    return out


def _resolve_module(arg: str) -> str:
    if arg in TESTS:
        return arg
    hits = [m for m in TESTS if m.removesuffix(".py").endswith(arg.removesuffix(".py"))]
    if len(hits) != 1:
        raise SystemExit(f"--module {arg}: choose one of {', '.join(TESTS)}")
    return hits[0]


@dataclass
class ModuleReport:
    module: str
    tests: list[str]
    mutants: int = 0
    killed: int = 0
    timeout: int = 0
    survived: int = 0
    equivalent: int = 0
    errors: int = 0
    cached: int = 0
    seconds: float = 0.0
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def score(self) -> float:
        denominator = self.mutants - self.equivalent
        return 100.0 * (self.killed + self.timeout) / denominator if denominator else 100.0


def run_module(
    path: str,
    args: argparse.Namespace,
    cache: dict[str, dict[str, Any]],
    equivalents: list[Equivalent],
) -> ModuleReport:
    tests = _resolve_tests(path)
    report = ModuleReport(path, tests)
    if not tests:
        print(f"{path}: no mapped test file exists; skipped", flush=True)
        return report
    name = module_name(path)
    origin = str(ROOT / path)
    source = (ROOT / path).read_text()
    mutants = enumerate_mutants(path, source)
    if args.mutant:
        mutants = [m for m in mutants if m.key.startswith(args.mutant)]
    if args.limit:
        mutants = mutants[: args.limit]
    report.mutants = len(mutants)
    fingerprint = _fingerprint(tests)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    logs = OUT_DIR / "logs"
    logs.mkdir(exist_ok=True)
    started = time.monotonic()

    todo: list[Job] = []
    done: dict[str, Outcome] = {}
    for m in mutants:
        hit = None if args.fresh or args.mutant else cache.get(m.key)
        if hit is not None and (
            hit["status"] in ("killed", "timeout") or hit["fingerprint"] == fingerprint
        ):
            done[m.key] = Outcome(hit["status"], hit["killer"], hit["seconds"])
            report.cached += 1
            continue
        tree, _, _ = mutate(source, m.node, m.choice)
        code = compile(tree, origin, "exec", dont_inherit=True)
        todo.append(Job(m, code, str(logs / f"{m.key}.log")))

    if todo:
        tests, took = _baseline(name, origin, tests, args)
        report.tests = tests
        if not tests:
            raise SystemExit(f"{path}: every mapped test file fails without any mutation")
        fingerprint = _fingerprint(tests)
        timeout = max(args.timeout, 10 * took)
        for job in todo:
            job.timeout = timeout
        print(
            f"{path}: {len(mutants)} mutants, {len(todo)} to run "
            f"(tests {took:.1f} s, timeout {timeout:.0f} s)",
            flush=True,
        )
        outcomes: dict[str, tuple[Job, Outcome]] = {}
        for n, (job, outcome) in enumerate(run_jobs(name, origin, tests, todo, args.jobs), 1):
            assert job.mutant is not None
            outcomes[job.mutant.key] = (job, outcome)
            if n % 50 == 0 and not args.verbose:
                print(f"  {n}/{len(todo)}", flush=True)
        # Others may edit the tree while mutants run: a test file broken meanwhile, or an ERROR
        # (setup or collection) rather than a failing assertion, makes a kill suspect. Suspects
        # run again against the test files that still pass without any mutation.
        still, _ = _baseline(name, origin, tests, args, quiet=True)
        suspects = [
            job
            for job, outcome in outcomes.values()
            if outcome.status == "killed"
            and (outcome.killer.startswith("ERROR") or _killer_file(outcome.killer) not in still)
        ]
        if suspects and still:
            print(f"  {len(suspects)} suspect kills run again", flush=True)
            for job in suspects:
                job.log = job.log.removesuffix(".log") + ".again.log"
            for job, outcome in run_jobs(name, origin, still, suspects, args.jobs):
                assert job.mutant is not None
                outcomes[job.mutant.key] = (job, outcome)
        for key, (job, outcome) in outcomes.items():
            assert job.mutant is not None
            done[key] = outcome
            cache[key] = {
                "status": outcome.status,
                "killer": outcome.killer,
                "seconds": round(outcome.seconds, 2),
                "fingerprint": fingerprint,
            }
            if outcome.status != "error" and not args.mutant:
                Path(job.log).unlink(missing_ok=True)
            if args.verbose or outcome.status in ("survived", "error"):
                m = job.mutant
                print(f"  {outcome.status:8} {m.module}:{m.line} {m.describe()}", flush=True)
                if outcome.killer:
                    print(f"           {outcome.killer}", flush=True)
    else:
        print(f"{path}: {len(mutants)} mutants, all cached", flush=True)

    for m in mutants:
        outcome = done[m.key]
        status = outcome.status
        why = ""
        if status == "survived":
            eq = next((e for e in equivalents if e.module == m.module and e.matches(m)), None)
            if eq is not None:
                eq.used = True
                status, why = "equivalent", eq.why
        elif any(e.module == m.module and e.matches(m) for e in equivalents):
            print(f"  stale equivalent (it is {status}): {m.module}:{m.line} {m.describe()}")
        if status == "killed":
            report.killed += 1
        elif status == "timeout":
            report.timeout += 1
        elif status == "equivalent":
            report.equivalent += 1
        elif status == "survived":
            report.survived += 1
        else:
            report.errors += 1
        report.results.append({**asdict(m), "status": status, "killer": outcome.killer, "why": why})
    report.seconds = time.monotonic() - started
    return report


def _print_table(reports: list[ModuleReport]) -> tuple[int, int, int, float]:
    head = f"{'module':34} {'mutants':>7} {'killed':>6} {'timeout':>7} {'equiv':>5} "
    print("\n" + head + f"{'survived':>8} {'error':>5} {'score':>7} {'time':>7}")
    total = killed = equivalent = 0
    for r in reports:
        print(
            f"{r.module:34} {r.mutants:7} {r.killed:6} {r.timeout:7} {r.equivalent:5} "
            f"{r.survived:8} {r.errors:5} {r.score:6.1f}% {r.seconds:6.0f}s"
        )
        total += r.mutants
        killed += r.killed + r.timeout
        equivalent += r.equivalent
    denominator = total - equivalent
    score = 100.0 * killed / denominator if denominator else 100.0
    print(f"{'all':34} {total:7} {killed:6} {'':7} {equivalent:5} {'':8} {'':5} {score:6.1f}%")
    return total, killed, equivalent, score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--module",
        action="append",
        default=[],
        help="a module path or suffix (repeatable; default: every mapped module)",
    )
    parser.add_argument("--limit", type=int, default=0, help="at most N mutants per module")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=20.0, help="minimum per-mutant seconds")
    parser.add_argument("--baseline-timeout", type=float, default=300.0)
    parser.add_argument("--fresh", action="store_true", help="ignore cached results")
    parser.add_argument(
        "--mutant", default="", help="run only the mutants whose key starts with this (logs kept)"
    )
    parser.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    parser.add_argument("--min-score", type=float, default=0.0, help="fail below this score (%%)")
    parser.add_argument("--verbose", action="store_true", help="print every mutant's outcome")
    parser.add_argument("--json", type=Path, default=OUT_DIR / "results.json")
    args = parser.parse_args(argv)
    args.json = args.json.resolve()

    modules = [_resolve_module(m) for m in args.module] or list(DEFAULT_MODULES)
    if args.list:
        for path in modules:
            mutants = enumerate_mutants(path)
            for m in mutants[: args.limit or None]:
                print(f"{m.key[:10]} {m.module}:{m.line} [{m.kind}] {m.describe()}")
            print(f"{path}: {len(mutants)} mutants")
        return 0

    equivalents = load_equivalents()
    cache: dict[str, dict[str, Any]] = {}
    if CACHE_FILE.exists():
        cache = json.loads(CACHE_FILE.read_text())
    _warm_up()
    started = time.monotonic()
    reports: list[ModuleReport] = []
    try:
        for path in modules:
            reports.append(run_module(path, args, cache, equivalents))
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            CACHE_FILE.write_text(json.dumps(cache, indent=0, sort_keys=True))
    finally:
        if cache:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            CACHE_FILE.write_text(json.dumps(cache, indent=0, sort_keys=True))

    total, killed, equivalent, score = _print_table(reports)
    survivors = [r for rep in reports for r in rep.results if r["status"] in ("survived", "error")]
    if survivors:
        print("\nSurvivors (kill them with a test, or list them in docs/mutation-equivalents.md):")
        for s in survivors:
            print(
                f"  {s['module']}:{s['line']} [{s['kind']}] {s['scope']}: "
                f"`{s['original']}` → `{s['mutated']}`  ({s['status']})"
            )
    if not args.limit and len(modules) == len(DEFAULT_MODULES):
        for e in equivalents:
            if not e.used:
                print(
                    f"  stale equivalent (matches no survivor): {e.module} {e.scope}: "
                    f"`{e.original}` → `{e.mutated}`"
                )
    elapsed = time.monotonic() - started
    print(f"\n{elapsed:.0f} s; results in {os.path.relpath(args.json, ROOT)}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "score": round(score, 2),
                "mutants": total,
                "killed": killed,
                "equivalent": equivalent,
                "seconds": round(elapsed, 1),
                "modules": [
                    {
                        "module": r.module,
                        "tests": r.tests,
                        "mutants": r.mutants,
                        "killed": r.killed,
                        "timeout": r.timeout,
                        "equivalent": r.equivalent,
                        "survived": r.survived,
                        "errors": r.errors,
                        "cached": r.cached,
                        "score": round(r.score, 2),
                        "seconds": round(r.seconds, 1),
                        "survivors": [x for x in r.results if x["status"] in ("survived", "error")],
                        "equivalents": [x for x in r.results if x["status"] == "equivalent"],
                        "all": r.results,
                    }
                    for r in reports
                ],
            },
            indent=1,
        )
    )
    return 1 if score < args.min_score else 0


if __name__ == "__main__":
    sys.exit(main())
