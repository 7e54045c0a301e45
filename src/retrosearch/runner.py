"""Drive many per-sample coroutines at once against one engine, streaming results to disk.

Scheduling only: what a sample's work is comes in as a coroutine function. Enough samples are in
flight for the engine to see full batches; a row reaches disk the moment it is finished, whatever is
still running before it (append-only, in finish order), so a kill loses only the work in flight and
nothing waits in memory. The caller puts the file in input order when the run ends
(`data.write_in_order`), so a killed and resumed run ends byte-identical to an uninterrupted one. A
sample that raises becomes an error row; the run goes on, and a rerun tries it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from tqdm import tqdm

from retrosearch.data.outputs import JsonlAppender
from retrosearch.engines.base import WORK_POSITION


class HasId(Protocol):
    id: str


@dataclass
class RunStats:
    skipped_existing: int = 0  # finished by an earlier run of the same command
    replicas_used: int = 0  # engines that wrote rows in this run (Ray: actors that returned a row)
    items_redone: int = 0  # items given out again because the actor holding them died (Ray)


@dataclass
class ErrorRow:
    """The row of an item whose work raised: every stage writes this kind; a rerun tries the item again."""

    id: str
    reason: str
    status: Literal["error"] = "error"


ERROR_IDS_SHOWN = 20  # a summary names the first failed rows; the output file has them all


def error_ids(rows: Iterable[Any]) -> list[str]:
    """The ids of the first failed rows, for a run's summary."""
    return [row.id for row in rows if isinstance(row, ErrorRow)][:ERROR_IDS_SHOWN]


async def row_or_error(work: Callable[[Any], Awaitable[Any]], item: HasId, position: int) -> Any:
    """The item's output row; an exception becomes an error row, so one bad sample never stops a run. Its
    requests carry `position`: engines serve earlier items first."""
    WORK_POSITION.set(position)  # this task's own context: other items keep theirs
    try:
        return await work(item)
    except asyncio.CancelledError as error:
        task = asyncio.current_task()
        if task is None or getattr(task, "cancelling", lambda: 1)():  # the run itself is being cancelled
            raise
        return ErrorRow(item.id, f"CancelledError: {error}")
    except Exception as error:
        return ErrorRow(item.id, f"{type(error).__name__}: {error}")


def pending(items: Iterable[HasId], output: JsonlAppender, stats: RunStats, progress: tqdm) -> Iterator[HasId]:
    """The items an earlier run of the same command did not finish; those it did are counted and shown as done."""
    for item in items:
        if item.id in output.done:
            stats.skipped_existing += 1
            progress.update(1)
        else:
            yield item


async def run_items(
    items: Iterable[HasId],
    total: int,
    work: Callable[[Any], Awaitable[Any]],
    output: JsonlAppender,
    concurrency: int,
    description: str,
    postfix: Callable[[], dict[str, Any]] | None = None,
) -> RunStats:
    stats = RunStats()
    semaphore = asyncio.Semaphore(concurrency)
    progress = tqdm(total=total, desc=description, unit="sample")

    async def one(item: HasId, position: int) -> None:
        try:
            row = await row_or_error(work, item, position)
        finally:
            semaphore.release()
        output.write(row)
        progress.update(1)
        if postfix is not None:
            progress.set_postfix(postfix(), refresh=False)

    running: set[asyncio.Task] = set()
    try:
        for position, item in enumerate(pending(items, output, stats, progress)):
            await semaphore.acquire()  # a new sample starts the moment one finishes: no barriers
            task = asyncio.create_task(one(item, position))
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.gather(*running)
    finally:
        progress.close()
    return stats
