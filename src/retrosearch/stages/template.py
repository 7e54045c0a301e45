"""The run-folder template every stage runs in; a stage supplies only its own parts.

A row stage (generate, revise) supplies its items, a worker that turns one item into one row, the typed row
it writes and its summary; the template holds the folder, records the manifest, appends each row the moment
it is done (so a kill loses only the work in flight), resumes what an earlier run finished, tries error rows
again, puts the rows in input order, reads them back typed, and writes and prints the summary. A whole stage
(select, sft, eval, teacher) supplies one piece of work; the template runs it once and, on a rerun with the
same settings and the same input contents, returns the summary without doing it again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Generic, TypeVar

from retrosearch.config import speed_only
from retrosearch.data.inputs import DataError
from retrosearch.data.outputs import LEDGER, JsonlAppender, claim, write_in_order
from retrosearch.engines import Engine, EngineConfig
from retrosearch.executors import Executor, ExecutorConfig, WorkerSpec, make_executor
from retrosearch.runner import ErrorRow, HasId
from retrosearch.stages.folder import LOCK, MANIFEST, RunFolder, config_payload, now, open_run
from retrosearch.stages.registry import command_line
from retrosearch.tables import print_figures

Row = TypeVar("Row")


@dataclass
class RowStage(Generic[Row]):
    """What a stage that writes one row per item gives the template."""

    name: str  # the command, as the registry names it
    folder: Path
    configs: tuple[Any, ...]  # the config instances that make the results
    overwrite: bool
    rows_file: str
    row_type: type[Row]
    ids: list[str]  # every item's id, in input order
    items: Callable[[], Iterable[HasId]]  # read lazily: a dataset need not fit in memory
    worker: WorkerSpec
    summarize: Callable[[list[Row | ErrorRow]], dict[str, Any]]
    facts: dict[str, Any] = field(default_factory=dict)  # recorded in the manifest
    counts: tuple[str, ...] = ("samples", "errors")  # summary figures the finished manifest records
    finish: Callable[[list[Row | ErrorRow]], None] | None = None  # derived files, written from the rows
    fingerprinted: tuple[str, ...] = ()  # config entries naming local inputs whose contents the rows depend on


def run_stage(
    stage: RowStage[Row],
    engine_config: EngineConfig,
    executor_config: ExecutorConfig,
    engine: Engine | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run a row stage on the executor `executor_config` asks for (`engine`, already loaded, serves in process)."""
    with make_executor(executor_config, engine_config, engine) as executor:
        return run_rows(stage, executor, quiet)


def run_rows(stage: RowStage[Row], executor: Executor, quiet: bool = False) -> dict[str, Any]:
    """Run (or resume) a row stage in its folder; returns the summary, also in summary.json."""
    payload, resume_keys = config_payload(*stage.configs), speed_only(*stage.configs)
    with open_run(stage.folder, payload, stage.overwrite, resume_keys, stage.fingerprinted) as run:
        started_at, started = now(), time.monotonic()
        facts = {**_command(stage.name, stage.configs), **executor.model_facts(), **stage.facts, "started": started_at}
        run.write_manifest({**facts, "finished": None})
        telemetry_before = executor.telemetry()  # an engine may have served other runs before
        path = stage.folder / stage.rows_file
        appender = JsonlAppender(path)
        try:
            stats = executor.run(stage.worker, stage.items(), len(stage.ids), appender, stage.name)
        finally:
            appender.close()
        write_in_order(path, stage.ids)
        rows = list(read_rows(path, stage.row_type, set(stage.ids)))
        if stage.finish is not None:
            stage.finish(rows)
        seconds = time.monotonic() - started
        summary = {
            **stage.summarize(rows),
            "wall_seconds": seconds,
            "wall_seconds_all_runs": run.earlier_seconds + seconds,
            "resumed_samples": stats.skipped_existing,
            "replicas_used": stats.replicas_used,
            "items_redone": stats.items_redone,
            **{f"engine_{name}": count - telemetry_before.get(name, 0) for name, count in executor.telemetry().items()},
        }
        counts = {key: summary[key] for key in stage.counts}
        _finish(run, summary, {**facts, "counts": counts})
        if not quiet:
            print_figures(f"retrosearch {stage.name} — {stage.folder}", summary)
        return summary


def read_rows(path: Path, row_type: type[Row], ids: set[str] | None = None) -> Iterator[Row | ErrorRow]:
    """The rows of an output file as typed rows (error rows as `ErrorRow`), only those of `ids` if given."""
    names = {f.name for f in fields(row_type)}  # type: ignore[arg-type]
    required = {f.name for f in fields(row_type) if f.default is MISSING and f.default_factory is MISSING}  # type: ignore[arg-type]
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if ids is not None and row.get("id") not in ids:
                continue
            if row.get("status") == "error":
                yield ErrorRow(row["id"], row.get("reason", ""))
                continue
            unknown, missing = set(row) - names, required - set(row)
            if unknown or missing:
                which = f"unknown fields {sorted(unknown)}" if unknown else f"missing fields {sorted(missing)}"
                raise DataError(f"{path}:{number}: not a {row_type.__name__} ({which}); is this the right file?")
            yield row_type(**row)


def run_once(
    name: str,
    folder: Path,
    configs: tuple[Any, ...],
    overwrite: bool,
    work: Callable[[RunFolder], dict[str, Any]],
    fingerprinted: tuple[str, ...] = (),
    quiet: bool = False,
    show: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run a whole stage in its folder once; a rerun with the same settings and inputs returns its summary. A run
    whose summary counts `errors`, or says it `stopped_early`, is not finished: a rerun works again (the stage retries
    what failed, or goes on)."""
    payload, resume_keys = config_payload(*configs), speed_only(*configs)
    with open_run(folder, payload, overwrite, resume_keys, fingerprinted) as run:
        done = run.finished_summary()
        if done is None:
            started_at, started = now(), time.monotonic()
            facts = {**_command(name, configs), "started": started_at}
            before = {child.name for child in folder.iterdir()}
            run.write_manifest({**facts, "finished": None})
            try:
                done = work(run)
                seconds = time.monotonic() - started
                done = {**done, "wall_seconds": seconds, "wall_seconds_all_runs": run.earlier_seconds + seconds}
            except BaseException:
                if {child.name for child in folder.iterdir()} <= {LOCK, MANIFEST, LEDGER}:
                    (folder / MANIFEST).unlink()  # a run that made nothing binds the folder to nothing
                    (folder / LEDGER).unlink(missing_ok=True)
                raise
            finally:
                for made in {child.name for child in folder.iterdir()} - before:
                    claim(folder / made)  # what a library wrote during the work is the run's too
            if done.get("errors") or done.get("stopped_early"):  # not finished: a rerun works on (and retries)
                run.save_summary(done)
            else:
                _finish(run, done, facts)
        if not quiet:
            if show:
                show(done)
                print(f"\nrun folder {folder}, config {run.digest} (retrosearch show-config {folder})")
            else:
                print_figures(f"retrosearch {name} — {folder} (config {run.digest})", done)
        return done


def _command(name: str, configs: tuple[Any, ...]) -> dict[str, str]:
    """What the manifest says made the run: the command, and a command line that reproduces it."""
    return {"command": name, "command_line": command_line(name, configs)}


def _finish(run: RunFolder, summary: dict[str, Any], facts: dict[str, Any]) -> None:
    """The summary, then the manifest marked finished: a folder whose manifest says finished has its summary."""
    run.save_summary(summary)
    run.write_manifest({**facts, "finished": now(), "wall_seconds": summary["wall_seconds"]})
