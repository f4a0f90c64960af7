"""Identifier types. Plain ints on the wire; NewType keeps them apart in signatures."""

from typing import NewType

ReplicaId = NewType("ReplicaId", int)
ClientId = NewType("ClientId", int)
MemnodeId = NewType("MemnodeId", int)
View = NewType("View", int)
Instance = NewType("Instance", int)
CtbIndex = NewType("CtbIndex", int)
Epoch = NewType("Epoch", int)
