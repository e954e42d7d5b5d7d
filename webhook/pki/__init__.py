"""Certificates: a local CA in one class, the pure rotation plan, its Secret encoding, and the cluster loop."""
