"""Run import-linter over a copy of the ``ubft`` package laid out as installed, since grimp
follows neither the editable install's folder mapping nor symlinked folders. Every contract of
pyproject.toml's ``[tool.importlinter]`` is checked (``make lint``, hence CI); the copy lives in
a fresh temporary folder, so runs side by side never see each other's tree."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {
    "replica": "replica",
    "memnode": "memnode",
    "apps": "apps",
    "client": "client",
    "bench": "bench",
    "operator": "operator",
}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ubft-importlint-") as tmp:
        return _lint(Path(tmp))


def _lint(tree: Path) -> int:
    ignore = shutil.ignore_patterns("__pycache__", "*.md")
    shutil.copytree(ROOT / "ubft", tree / "ubft", ignore=ignore)
    for folder, name in FOLDERS.items():
        shutil.copytree(ROOT / folder, tree / "ubft" / name, ignore=ignore)
    # operator/ is a namespace folder (see pyproject.toml); grimp only sees regular packages
    (tree / "ubft" / "operator" / "__init__.py").touch()
    # drop the editable finder so that `ubft` resolves to the copied tree
    sys.meta_path[:] = [f for f in sys.meta_path if "Editable" not in type(f).__name__]
    sys.path.insert(0, str(tree))
    for name in [m for m in sys.modules if m == "ubft" or m.startswith("ubft.")]:
        del sys.modules[name]
    from importlinter.cli import lint_imports

    cwd = os.getcwd()
    os.chdir(tree)  # import-linter puts the working directory first on sys.path
    try:
        return int(lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True))
    finally:
        os.chdir(cwd)


if __name__ == "__main__":
    sys.exit(main())
