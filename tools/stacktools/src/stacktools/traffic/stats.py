"""The exact binomial acceptance interval of a weighted split.

With ``n`` requests each sent to the canary with probability ``p``, the canary's count ``X`` is
Binomial(n, p). :func:`binomial_interval` returns the central interval ``[lo, hi]`` that holds
``X`` with probability at least ``confidence``: the largest ``lo`` with P(X < lo) <= alpha/2 and
the smallest ``hi`` with P(X > hi) <= alpha/2, computed exactly (no normal approximation).
A deterministic weighted round robin (Traefik) lands in the middle; a random choice per
request (Envoy, Istio) falls outside only with probability 1 - confidence.
"""

from __future__ import annotations

import math


def binomial_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 1.0 if k == 0 else 0.0
    if p >= 1.0:
        return 1.0 if k == n else 0.0
    log = (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    return math.exp(log)


def binomial_interval(n: int, p: float, confidence: float = 0.999) -> tuple[int, int]:
    """Central interval of Binomial(n, p) with coverage >= ``confidence``."""
    if n < 1 or not 0.0 <= p <= 1.0 or not 0.0 < confidence < 1.0:
        msg = f"need n >= 1, 0 <= p <= 1, 0 < confidence < 1 (got {n}, {p}, {confidence})"
        raise ValueError(msg)
    tail = (1.0 - confidence) / 2.0
    pmf = [binomial_pmf(k, n, p) for k in range(n + 1)]
    lo, below = 0, 0.0
    while lo < n and below + pmf[lo] <= tail:
        below += pmf[lo]
        lo += 1
    hi, above = n, 0.0
    while hi > 0 and above + pmf[hi] <= tail:
        above += pmf[hi]
        hi -= 1
    return lo, hi
