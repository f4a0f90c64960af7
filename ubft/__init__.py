"""ubft: Byzantine-fault-tolerant state machine replication on disaggregated memory."""

import os as _os

# operator/ has no __init__.py so that it never shadows the standard library's `operator`
# when the repository root is on sys.path. An editable install cannot map such a folder into
# this package, so in a source checkout the root is added to the search path of `ubft`;
# the installed wheel carries ubft/operator/ itself and needs nothing.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "pyproject.toml")) and _os.path.isdir(
    _os.path.join(_root, "operator")
):
    __path__.append(_root)

__version__ = "0.1.0"
