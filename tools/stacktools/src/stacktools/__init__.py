"""Helpers that the test suites and benchmarks share.

They build and run real servers on loopback (FerretDB as the MongoDB wire-protocol server,
later the Kubernetes control plane), so tests exercise real protocols instead of fakes.
"""
