"""Placeholder for the UBFTCluster spec model (Kubernetes issue)."""
