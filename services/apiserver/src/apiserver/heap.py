"""The garbage collector's settings for a serving process.

Measured with py-spy on the upsert path (bench/apiserver.py's load, PostgreSQL backend,
concurrency 64): CPython's cyclic collector took about a sixth of the service's CPU. Every
700 container allocations it walks the young objects (a request allocates hundreds, and 64
requests in flight keep theirs alive), and each older collection walks everything that ever
survived, including the ~60,000 objects of the imported modules, FastAPI's routes and the
OpenAPI models, which live as long as the process.

So, once the app has started: the start-up heap is moved out of the collector's sight
(``gc.freeze``), and young collections run every 20,000 allocations instead of 700. Cycles are
still collected; most of a request's garbage is freed by reference counting long before.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
MIDDLE_THRESHOLD = 20
OLD_THRESHOLD = 100


def settle() -> None:
    """Collect what start-up left, freeze the rest, and make young collections rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
