"""The Ray executor (`--ray`): a pool of actors, each owning one engine, for any generating stage.

`--replicas` actors (each with `--gpus-per-replica` GPUs and its own engine, loaded once for the actor's life and
kept across the stage runs of one command) take pending items in input order, in chunks small enough that every
replica has work on a small run, and keep up to `--concurrency` items in flight each. An actor streams each row
back the moment its item finishes (a Ray streaming generator), and the driver appends it at once, so the run
folder holds every finished row as an in-process run's does, and a rerun resumes. Sampling depends only on each
item's own seeds, so the rows are the ones a single process writes (the stage puts the file in input order when
the run ends). An actor that dies (or its node) is replaced and only its items still in flight go out again,
earliest first; they are counted in the summary (`items_redone`). A pool Ray cannot place fails in one line.
This module knows no stage.

The pool is plain Ray actors rather than Ray Data's `map_batches` actor pool: with Ray 2.60, killing one
of its actors left that actor's blocks pending until the 30-minute no-progress timeout (seen here), with
or without actor restarts.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from tqdm import tqdm

from retrosearch.data.outputs import JsonlAppender
from retrosearch.engines import EngineConfig
from retrosearch.executors.base import Executor, ExecutorConfig, Worker, WorkerSpec
from retrosearch.runner import HasId, RunStats, pending, row_or_error

MAX_REPLACEMENTS = 8  # actors that may die in one run before it gives up
ACTOR_START_SECONDS = 600.0  # a pool Ray has not placed by then is reported rather than waited on forever


class Queue:
    """The items still to hand out, with their positions in the run: those of actors that died first (earliest
    first), then the pending ones in input order, read only as they are taken."""

    def __init__(self, fresh: Iterator[tuple[int, HasId]]) -> None:
        self.fresh = fresh
        self.again: deque[tuple[int, HasId]] = deque()

    def take(self, count: int) -> list[tuple[int, HasId]]:
        chunk = [self.again.popleft() for _ in range(min(count, len(self.again)))]
        return chunk + [entry for _, entry in zip(range(count - len(chunk)), self.fresh, strict=False)]

    def put_back(self, entries: Iterable[tuple[int, HasId]]) -> None:
        self.again = deque(sorted([*self.again, *entries], key=lambda entry: entry[0]))

    def empty(self) -> bool:
        if not self.again:
            self.again.extend(self.take(1))
        return not self.again


def chunk_size(total: int, replicas: int, concurrency: int) -> int:
    """Items per call to an actor: half its in-flight share (so a new chunk starts before the last one drains),
    and few enough that every replica gets work on a small run."""
    return max(1, min(math.ceil(concurrency / 2), math.ceil(total / replicas)))


def with_cpu_threads(engine_config: EngineConfig, share: int) -> EngineConfig:
    """The config an actor loads: a transformers model on the CPU gets the actor's share of the node's CPUs at
    most, fewer where other work keeps the node's cores busy; any other engine or device is left as it is (its
    threads are not torch's to set, and measuring the node would delay its start for nothing)."""
    from retrosearch.engines.threads import cpu_threads, resolved_device

    if engine_config.engine != "transformers" or resolved_device(engine_config.device) != "cpu":
        return engine_config
    return replace(engine_config, threads=cpu_threads(engine_config.threads, at_most=share))


class EngineActor:
    """One engine for the actor's life; the worker of the stage run it serves, rebuilt when the run changes."""

    def __init__(self, engine_config: EngineConfig, threads: int) -> None:
        from retrosearch.engines import load_engine

        self.engine = load_engine(with_cpu_threads(engine_config, threads))
        self.spec: WorkerSpec | None = None
        self.worker: Worker | None = None

    async def ready(self) -> str:
        """The node this actor runs on, once its engine is loaded."""
        import ray

        return ray.get_runtime_context().get_node_id()

    async def work(self, spec: WorkerSpec, chunk: list[tuple[int, HasId]]) -> AsyncIterator[Any]:
        """Each item's row as soon as it is finished; every item of the chunk in flight at once on this actor's
        engine, beside the other chunks it serves, the earliest positions served first."""
        if spec != self.spec or self.worker is None:
            self.spec, self.worker = spec, spec.on(self.engine)
        worker = self.worker
        tasks = [asyncio.ensure_future(row_or_error(worker, item, position)) for position, item in chunk]
        for finished in asyncio.as_completed(tasks):
            yield await finished


@dataclass
class Call:
    """One chunk on one actor: the items whose rows have not come back yet, by id."""

    actor: Any
    waiting: dict[str, tuple[int, HasId]] = field(default_factory=dict)


class RayExecutor(Executor):
    def __init__(self, engine_config: EngineConfig, config: ExecutorConfig) -> None:
        super().__init__(engine_config, config)
        self.actors: list[Any] = []

    def _options(self) -> tuple[dict[str, Any], int]:
        """Each actor's resources and torch threads; a pool the cluster cannot hold is refused in one line."""
        import ray

        replicas, gpus = self.config.replicas, self.config.gpus_per_replica
        resources = ray.cluster_resources()
        if gpus and replicas * gpus > resources.get("GPU", 0):
            raise ValueError(
                f"--replicas {replicas} x --gpus-per-replica {gpus:g} asks for {replicas * gpus:g} GPUs; the Ray "
                f"cluster has {resources.get('GPU', 0):g}: ask for fewer replicas or add nodes"
            )
        cpus = max(1, int(resources.get("CPU", 1)) // replicas)
        if not gpus and replicas > 2 * resources.get("CPU", 1):
            raise ValueError(
                f"--replicas {replicas} CPU actors need half a CPU each; the Ray cluster has "
                f"{resources.get('CPU', 1):g} CPUs: ask for at most {2 * int(resources.get('CPU', 1))} replicas"
            )
        # SPREAD: replicas on as many nodes as can hold them, so one node's loss takes as few as it can
        options = {"num_gpus": gpus, "num_cpus": 0 if gpus else cpus / 2, "scheduling_strategy": "SPREAD"}
        return options, 1 if gpus else cpus

    def _connect(self) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(
                address=self.config.address, ignore_reinit_error=True, log_to_driver=False, configure_logging=False
            )

    def run(
        self, spec: WorkerSpec, items: Iterable[HasId], total: int, output: JsonlAppender, description: str
    ) -> RunStats:
        """Chunks are read from `items` only as actors have room; each row is written the moment it is back."""
        import ray

        self._connect()
        options, threads = self._options()
        stats = RunStats()
        progress = tqdm(total=total, desc=f"{description} (ray)", unit="sample")
        size = chunk_size(total, self.config.replicas, self.concurrency)
        queue = Queue(enumerate(pending(items, output, stats, progress)))

        calls: dict[Any, Call] = {}  # streaming generator -> its chunk
        starting: dict[Any, Any] = {}  # an actor's ready() -> the actor, until its engine is loaded
        served: set[Any] = set()
        replaced = 0

        def in_flight(actor: Any) -> int:
            return sum(len(call.waiting) for call in calls.values() if call.actor is actor)

        def lose(actor: Any, error: Exception) -> None:
            nonlocal replaced
            replaced += 1
            if replaced > MAX_REPLACEMENTS:
                raise RuntimeError(f"{replaced} Ray actors died; the last said: {error}") from None
            gone = [generator for generator, call in calls.items() if call.actor is actor]
            lost = [entry for generator in gone for entry in calls.pop(generator).waiting.values()]
            queue.put_back(lost)
            stats.items_redone += len(lost)
            self.actors.remove(actor)
            for ready_ref in [ref for ref, starter in starting.items() if starter is actor]:
                del starting[ready_ref]
            progress.write(f"a Ray actor died ({type(error).__name__}); its {len(lost)} samples in flight run again")

        try:
            while True:
                for _ in range(self.config.replicas - len(self.actors)):
                    actor = ray.remote(**options)(EngineActor).remote(self.engine_config, threads)
                    self.actors.append(actor)
                    starting[actor.ready.remote()] = actor
                loading = set(starting.values())
                for actor in self.actors:
                    # an actor still loading its engine gets one chunk (Ray holds it until the actor is up), so a
                    # small run is spread over the pool; one that is up keeps --concurrency samples in flight
                    room = 0 if actor in loading else self.concurrency - size
                    while in_flight(actor) <= room and (chunk := queue.take(size)):
                        generator = actor.work.remote(spec, chunk)
                        calls[generator] = Call(actor, {item.id: (position, item) for position, item in chunk})
                if not calls and queue.empty():
                    break
                working = any(call.actor not in loading for call in calls.values())
                timeout = None if working else ACTOR_START_SECONDS
                ready, _ = ray.wait([*calls, *starting], num_returns=1, timeout=timeout)
                if not ready:
                    raise ValueError(
                        f"Ray placed none of {len(starting)} actors within {ACTOR_START_SECONDS:.0f} s (each asks for "
                        f"{options}; the cluster has {ray.available_resources()} free): free or add resources"
                    )
                if ready[0] in starting:
                    ray.get(ready[0])  # an engine that failed to load raises here, with its own message
                    del starting[ready[0]]
                    continue
                generator = ready[0]
                call = calls[generator]
                try:
                    row = ray.get(next(generator))
                except StopIteration:
                    del calls[generator]
                    continue
                except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as error:
                    lose(call.actor, error)
                    continue
                del call.waiting[row.id]
                served.add(call.actor)
                output.write(row)
                progress.update(1)
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
