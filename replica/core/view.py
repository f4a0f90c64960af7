"""The view state of one replica (PROTOCOL.md section 4): the view it is in, whether it sealed
it, its leader, and low and hi as set by the view's NewView (in view 0: the epoch's first
instance and low - 1). The leader is stored here once; every component reads it here."""

from __future__ import annotations

from .config import ClusterConfig


class ViewState:
    __slots__ = ("config", "hi", "leader", "low", "me", "sealed", "view")

    def __init__(self, config: ClusterConfig, me: int, low: int) -> None:
        self.config = config
        self.me = me
        self.view = 0
        self.sealed = False
        self.leader = config.leader(0)
        self.low = low
        self.hi = low - 1

    def leader_of(self, view: int) -> int:
        return self.config.leader(view)

    def is_leader(self) -> bool:
        return self.leader == self.me

    def active_in(self, view: int) -> bool:
        """In ``view`` and not sealed: Prepares, promises and FastCommits of it count."""
        return view == self.view and not self.sealed
