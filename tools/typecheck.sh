#!/usr/bin/env bash
# mypy cannot follow the editable install's folder mapping (replica/ -> ubft.replica, ...), so
# type-check a symlinked tree laid out as the installed package is.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tree="$root/build/typecheck"
rm -rf "$tree" && mkdir -p "$tree/ubft"
for f in "$root"/ubft/*.py; do ln -s "$f" "$tree/ubft/"; done
for pair in replica:replica memnode:memnode apps:apps client:client bench:bench operator:operator; do
  ln -s "$root/${pair%%:*}" "$tree/ubft/${pair##*:}"
done
cd "$tree"
exec "$root/.venv/bin/mypy" --config-file "$root/pyproject.toml" -p ubft "$@"
