"""A counting semaphore whose holders take several units at once, served first come first
served (a batch waiting for 50 units is not overtaken forever by single upserts)."""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    """At most ``capacity`` units held at a time; ``acquire(n)`` waits until ``n`` are free
    and every earlier waiter has been served."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free = capacity
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def free(self) -> int:
        return self._free

    async def acquire(self, units: int) -> None:
        if not 1 <= units <= self.capacity:
            msg = f"cannot take {units} of {self.capacity} slots"
            raise ValueError(msg)
        if not self._waiters and self._free >= units:  # the common case: no allocation
            self._free -= units
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (units, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(units)  # granted just as it was cancelled: give them back
            else:
                if entry in self._waiters:
                    self._waiters.remove(entry)
                self._wake()  # it may have been first in line, blocking the others
            raise

    def release(self, units: int) -> None:
        self._free += units
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._free >= self._waiters[0][0]:
            units, waiter = self._waiters.popleft()
            if waiter.done():  # cancelled: its task no longer waits
                continue
            self._free -= units
            waiter.set_result(None)
