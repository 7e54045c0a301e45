"""The executor contract: where a stage's per-item work runs. Two kinds: in this process (`local`) and on
Ray actors (`--ray`, `distributed`).

An executor knows no stage. A stage hands it a `WorkerSpec` (how to build its per-item worker around an
engine: picklable, so an actor builds its own), the items still to do and an appender; the executor writes
each item's row the moment it is finished and returns how many items an earlier run had finished.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from retrosearch.config import at_least, option
from retrosearch.data.outputs import JsonlAppender
from retrosearch.engines import Engine, EngineConfig
from retrosearch.runner import HasId, RunStats


@dataclass(frozen=True)
class ExecutorConfig:
    """Where and how widely the work runs: never part of a run's results (a run resumes under other values)."""

    concurrency: int = option(0, "samples in flight at once (0: twice the batch size)")
    ray: bool = option(
        False, "spread the work over a pool of Ray actors, each owning one engine (pip install 'retrosearch[ray]')"
    )
    address: str | None = option(None, "Ray cluster to join (default: RAY_ADDRESS, else a local one for this run)")
    replicas: int = option(1, "Ray actors, each with its own engine")
    gpus_per_replica: float = option(0.0, "GPUs per Ray actor (0: CPU actors)")

    def __post_init__(self) -> None:
        at_least(self, 0, "concurrency", "gpus_per_replica")
        at_least(self, 1, "replicas")


class Worker(Protocol):
    """A stage's per-item work around one engine: an item in, its output row out."""

    def __call__(self, item: Any) -> Awaitable[Any]: ...


@dataclass(frozen=True)
class WorkerSpec:
    """How to build a stage's worker: `build(engine, *configs)`, a module-level callable."""

    build: Callable[..., Worker]
    configs: tuple[Any, ...]

    def on(self, engine: Engine) -> Worker:
        return self.build(engine, *self.configs)


class Executor(ABC):
    """Runs the items of one stage run after another over the same engine(s); a context manager."""

    def __init__(self, engine_config: EngineConfig, config: ExecutorConfig) -> None:
        self.engine_config = engine_config
        self.config = config
        self.concurrency = config.concurrency or 2 * engine_config.batch_size

    @abstractmethod
    def run(
        self, spec: WorkerSpec, items: Iterable[HasId], total: int, output: JsonlAppender, description: str
    ) -> RunStats:
        """Every item not yet done in `output` through a worker built from `spec`, rows written as they finish."""

    def model_facts(self) -> dict[str, Any]:
        return {"model": self.engine_config.model, "model_revision": self.engine_config.revision}

    def telemetry(self) -> dict[str, int]:
        """The engines' counters so far (a run reports their growth)."""
        return {}

    def close(self) -> None:  # noqa: B027 - most executors start nothing that needs freeing
        """Free what the executor started."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
