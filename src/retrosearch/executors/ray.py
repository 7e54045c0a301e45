"""The Ray executor (`--ray`): a pool of actors, each owning one engine, for any generating stage.

Pending items are read lazily and go, in blocks of at most `--concurrency` (smaller on a small run, so every
replica gets one), to `--replicas` actors (each with `--gpus-per-replica` GPUs and its own engine, loaded once for
the actor's life and kept across the stage runs of one command); an actor runs a block with the stage's own
worker, built from its picklable spec, and the driver appends a block's rows the moment it is back (the stage puts
the file in input order when the run ends), so nothing waits for the whole dataset or for a slow block, and a rerun
resumes. Sampling depends only
on each item's own seeds, so the rows are the ones a single process writes. An actor that dies is replaced
and its block given out again; rows only reach the file from finished blocks, so nothing is lost or written
twice. This module knows no stage.

The pool is plain Ray actors rather than Ray Data's `map_batches` actor pool: with Ray 2.60, killing one
of its actors left that actor's blocks pending until the 30-minute no-progress timeout (seen here), with
or without actor restarts.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm import tqdm

from retrosearch.data.outputs import JsonlAppender
from retrosearch.engines import EngineConfig
from retrosearch.executors.base import Executor, ExecutorConfig, Worker, WorkerSpec
from retrosearch.runner import HasId, RunStats, pending, row_or_error

MAX_REPLACEMENTS = 8  # actors that may die in one run before it gives up


def block_size(total: int, replicas: int, concurrency: int) -> int:
    """Items per block: at most `concurrency`, and few enough that every replica gets a block of a small run."""
    return max(1, min(concurrency, math.ceil(total / replicas)))


class EngineActor:
    """One engine for the actor's life; the worker of the stage run it serves, rebuilt when the run changes."""

    def __init__(self, engine_config: EngineConfig, threads: int) -> None:
        import torch

        from retrosearch.engines import load_engine

        torch.set_num_threads(threads)
        self.engine = load_engine(engine_config)
        self.spec: WorkerSpec | None = None
        self.worker: Worker | None = None

    def work(self, spec: WorkerSpec, block: list[HasId]) -> list[dict[str, Any]]:
        """Rows for a block of items, all in flight at once on this actor's engine."""
        if spec != self.spec or self.worker is None:
            self.spec, self.worker = spec, spec.on(self.engine)
        worker = self.worker

        async def run() -> list[dict[str, Any]]:
            return list(await asyncio.gather(*(row_or_error(worker, item, n) for n, item in enumerate(block))))

        return asyncio.run(run())


class RayExecutor(Executor):
    def __init__(self, engine_config: EngineConfig, config: ExecutorConfig) -> None:
        super().__init__(engine_config, config)
        self.actors: list[Any] = []
        self.idle: list[Any] = []

    def _new_actor(self) -> Any:
        import ray

        if not self.actors:
            ray.init(
                address=self.config.address, ignore_reinit_error=True, log_to_driver=False, configure_logging=False
            )
        replicas, gpus = self.config.replicas, self.config.gpus_per_replica
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) // replicas)
        options = {"num_gpus": gpus, "num_cpus": 0 if gpus else cpus / 2}
        self.actors.append(ray.remote(**options)(EngineActor).remote(self.engine_config, 1 if gpus else cpus))
        return self.actors[-1]

    def run(
        self, spec: WorkerSpec, items: Iterable[HasId], total: int, output: JsonlAppender, description: str
    ) -> RunStats:
        """Blocks are read from `items` only as actors free up; each block's rows are written as it finishes."""
        import ray

        stats = RunStats()
        progress = tqdm(total=total, desc=f"{description} (ray)", unit="sample")

        size = block_size(total, self.config.replicas, self.concurrency)

        def fresh_blocks() -> Iterator[list[HasId]]:
            block: list[HasId] = []
            for item in pending(items, output, stats, progress):
                block.append(item)
                if len(block) == size:
                    yield block
                    block = []
            if block:
                yield block

        source = fresh_blocks()
        blocks: dict[int, list[HasId]] = {}  # given out and not yet written
        again: list[int] = []  # blocks of actors that died
        made = 0

        def next_block_index() -> int | None:
            nonlocal made
            if again:
                return again.pop(0)
            block = next(source, None)
            if block is None:
                return None
            blocks[made] = block
            made += 1
            return made - 1

        running: dict[Any, tuple[int, Any]] = {}  # future -> (block index, actor)
        served: set[Any] = set()
        replaced = 0
        try:
            while True:
                while len(running) < self.config.replicas and (index := next_block_index()) is not None:
                    actor = self.idle.pop() if self.idle else self._new_actor()
                    running[actor.work.remote(spec, blocks[index])] = (index, actor)
                if not running:
                    break
                (done,), _ = ray.wait(list(running), num_returns=1)
                index, actor = running.pop(done)
                try:
                    rows = ray.get(done)
                except ray.exceptions.RayActorError as error:
                    replaced += 1
                    self.actors.remove(actor)
                    if replaced > MAX_REPLACEMENTS:
                        raise RuntimeError(f"{replaced} Ray actors died; the last said: {error}") from None
                    progress.write(f"a Ray actor died; its block of {len(blocks[index])} samples runs again")
                    again.insert(0, index)
                    continue
                self.idle.append(actor)
                served.add(actor)
                for row in rows:  # on disk as soon as the block is back; put in input order when the run ends
                    output.write(row)
                    progress.update(1)
                del blocks[index]
        finally:
            progress.close()
        stats.replicas_used = len(served)
        return stats

    def close(self) -> None:
        if self.actors:
            import ray

            for actor in self.actors:
                ray.kill(actor)
            self.actors.clear()
            self.idle.clear()
