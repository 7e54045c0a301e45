"""A bounded number of requests in flight, handed out earliest work item first (`WORK_POSITION`)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from retrosearch.engines.base import WORK_POSITION


class PrioritySlots:
    """Like a semaphore of `size` slots, but a freed slot goes to the waiter of the earliest work item (then the
    one waiting longest), so the items that started first finish first. Bound to one event loop."""

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        if self.free > 0 and not self._waiting:
            self.free -= 1
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (WORK_POSITION.get(), next(self._arrivals), turn))
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():  # handed a slot just as it was cancelled: pass it on
                    self._release()
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():  # a waiter that was cancelled meanwhile is skipped
                turn.set_result(None)
                return
        self.free += 1
