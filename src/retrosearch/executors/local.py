"""The in-process executor: every item through one engine in this process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from retrosearch.data.outputs import JsonlAppender
from retrosearch.engines import Engine, EngineConfig, load_engine
from retrosearch.executors.base import Executor, ExecutorConfig, WorkerSpec
from retrosearch.runner import HasId, RunStats, run_items


class LocalExecutor(Executor):
    """All items through one engine in this process: enough in flight for the engine to see full batches."""

    def __init__(self, engine_config: EngineConfig, config: ExecutorConfig, engine: Engine | None = None) -> None:
        super().__init__(engine_config, config)
        self._engine = engine

    @property
    def engine(self) -> Engine:
        if self._engine is None:  # loaded on first use: a refused run folder never waits for a model
            self._engine = load_engine(self.engine_config)
        return self._engine

    def model_facts(self) -> dict[str, Any]:
        return {"model": self.engine.model_id, "model_revision": self.engine.revision}

    def telemetry(self) -> dict[str, int]:
        return dict(self.engine.counts)

    def run(
        self, spec: WorkerSpec, items: Iterable[HasId], total: int, output: JsonlAppender, description: str
    ) -> RunStats:
        engine = self.engine
        worker = spec.on(engine)
        started, generated_at_start = time.monotonic(), engine.generated_tokens
        progress = getattr(worker, "progress", None)

        def postfix() -> dict[str, Any]:
            rate = (engine.generated_tokens - generated_at_start) / max(time.monotonic() - started, 1e-9)
            return {**(progress() if progress else {}), "tok/s": f"{rate:,.0f}"}

        stats = asyncio.run(run_items(items, total, worker, output, self.concurrency, description, postfix))
        stats.replicas_used = int(total > stats.skipped_existing)  # the one engine, if anything was left to do
        return stats
