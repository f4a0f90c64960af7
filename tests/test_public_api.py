"""What a driver needs is importable from ``ubft.replica.core`` (issue 11, "a public core API")."""

from __future__ import annotations

import ubft.replica.core as core


def test_everything_exported_exists_and_is_what_a_driver_needs() -> None:
    for name in core.__all__:
        assert hasattr(core, name), name
    for name in ("Replica", "ClusterConfig", "ProtocolParams", "Signer", "TimerKey", "Persist"):
        assert name in core.__all__
    assert core.footprint_bounds(core.ProtocolParams(), 3, 1, 3)["instances"] > 0
