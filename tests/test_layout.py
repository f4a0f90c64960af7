"""The folder layout maps into the ubft namespace without shadowing the standard library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_operator_folder_never_shadows_stdlib_operator() -> None:
    # run from the repository root, where the folder operator/ sits on sys.path
    code = (
        "import operator, ubft.operator.model; print(operator.__file__); print(operator.itemgetter)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    first = out.stdout.splitlines()[0]
    assert not first.startswith(str(ROOT)), first
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_top_level_folders_map_into_ubft() -> None:
    import ubft.apps.kv
    import ubft.client.session
    import ubft.memnode.store
    import ubft.replica.core.replica

    for module, folder in (
        (ubft.apps.kv, "apps"),
        (ubft.client.session, "client"),
        (ubft.memnode.store, "memnode"),
        (ubft.replica.core.replica, "replica"),
    ):
        assert Path(module.__file__ or "").resolve().is_relative_to(ROOT / folder)


def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ubft", "--help"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and "simulate" in out.stdout
