"""`revise --ray`: the same revision over a pool of Ray actors, each owning one engine.

The pending samples are read lazily and go, in blocks of `--concurrency`, to `--replicas` actors (each with
`--gpus-per-replica` GPUs and its own engine); an actor revises a block with the same per-sample work as a
single process, and the driver appends a block's rows the moment it is back (the file is put in input order
when the run ends), so nothing waits for the whole dataset or for a slow block, and a rerun resumes. Every
sample's sampling depends only on its own seeds, so the rows are the ones a single process writes. An actor
that dies is replaced and its block given out again; rows only reach the file from finished blocks, so nothing
is lost or written twice.

The pool is plain Ray actors rather than Ray Data's `map_batches` actor pool: with Ray 2.60, killing one
of its actors left that actor's blocks pending until the 30-minute no-progress timeout (seen here), with
or without actor restarts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from retrosearch.data import JsonlAppender, Sample
from retrosearch.runner import RunStats, row_or_error

if TYPE_CHECKING:
    from retrosearch.engines import EngineConfig
    from retrosearch.revise import ReviseConfig
    from retrosearch.search.retro_search import RetroSearchConfig


class ReviseActor:
    """One engine and one Reviser, kept for the actor's life; revises a block of samples at a time."""

    def __init__(self, configs: tuple[EngineConfig, RetroSearchConfig, ReviseConfig], threads: int) -> None:
        import torch

        from retrosearch.engines import load_engine
        from retrosearch.revise import Reviser

        torch.set_num_threads(threads)
        engine_config, search, config = configs
        self.reviser = Reviser.on(load_engine(engine_config), search, config)

    def revise(self, block: list[Sample]) -> list[dict[str, Any]]:
        """Rows for a block of samples, all in flight at once on this actor's engine."""

        async def run() -> list[dict[str, Any]]:
            return list(await asyncio.gather(*(row_or_error(self.reviser, sample) for sample in block)))

        return asyncio.run(run())


def revise_on_ray(
    samples: Iterable[Sample],
    total: int,
    output: JsonlAppender,
    configs: tuple[EngineConfig, RetroSearchConfig, ReviseConfig],
    address: str | None,
    replicas: int,
    gpus_per_replica: float,
    block_size: int,
    max_replacements: int = 8,
) -> RunStats:
    """Revise on `replicas` actors; blocks are read from `samples` only as actors free up, and each block's
    rows are written as it finishes."""
    import ray

    stats = RunStats()
    progress = tqdm(total=total, desc="revise (ray)", unit="sample")

    def fresh_blocks() -> Iterator[list[Sample]]:
        block: list[Sample] = []
        for sample in samples:
            if sample.id in output.done:  # finished by an earlier run of the same command
                stats.skipped_existing += 1
                progress.update(1)
                continue
            block.append(sample)
            if len(block) == block_size:
                yield block
                block = []
        if block:
            yield block

    source = fresh_blocks()
    blocks: dict[int, list[Sample]] = {}  # given out and not yet written
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

    actors: list[Any] = []

    def new_actor() -> Any:
        if not actors:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, configure_logging=False)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) // replicas)
        threads = 1 if gpus_per_replica else cpus
        options = {"num_gpus": gpus_per_replica, "num_cpus": 0 if gpus_per_replica else cpus / 2}
        actors.append(ray.remote(**options)(ReviseActor).remote(configs, threads))
        return actors[-1]

    idle: list[Any] = []
    running: dict[Any, tuple[int, Any]] = {}  # future -> (block index, actor)
    replaced = 0
    try:
        while True:
            while len(running) < replicas and (index := next_block_index()) is not None:
                actor = idle.pop() if idle else new_actor()
                running[actor.revise.remote(blocks[index])] = (index, actor)
            if not running:
                break
            (done,), _ = ray.wait(list(running), num_returns=1)
            index, actor = running.pop(done)
            try:
                rows = ray.get(done)
            except ray.exceptions.RayActorError as error:
                replaced += 1
                if replaced > max_replacements:
                    raise RuntimeError(f"{replaced} Ray actors died; the last said: {error}") from None
                progress.write(f"a Ray actor died; its block of {len(blocks[index])} samples runs again")
                again.insert(0, index)
                continue
            idle.append(actor)
            for row in rows:  # on disk as soon as the block is back; put in input order when the run ends
                output.write(row)
                progress.update(1)
            del blocks[index]
    finally:
        progress.close()
        for actor in actors:
            ray.kill(actor)
    return stats
