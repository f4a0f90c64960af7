"""``python -m ubft.bench ARGS...``: the same as ``ubft bench-core ARGS...``."""

import sys

from ubft.bench.core import main

sys.exit(main(sys.argv[1:]))
