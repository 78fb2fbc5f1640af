"""Traffic through a Gateway: the target it runs against (the local Traefik data plane or a
kind cluster with Istio), requests and load, the backends' access logs, and the statistics of
a weighted split. The checks themselves are tests/traffic/test_traffic.py."""
