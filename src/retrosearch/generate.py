"""`retrosearch generate`: problems -> sampled traces, in the schema `revise` reads."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrosearch.answers import default_checker, extract_answer
from retrosearch.data import (
    FieldMap,
    JsonlAppender,
    ProblemRow,
    read_jsonl,
    read_problems,
    write_in_order,
    write_jsonl,
)
from retrosearch.engines import Engine, EngineConfig, Request, load_engine
from retrosearch.rundir import config_payload, now, open_run, print_summary, save_summary, write_manifest
from retrosearch.runner import error_ids, run_items
from retrosearch.search.retro_search import derive_seed
from retrosearch.trace import KeywordMatcher, parse

SAMPLES_FILE = "samples.jsonl"
TRACES_FILE = "traces.jsonl"
SPEED_ONLY = ("batch_size", "device", "concurrency", "overwrite")


@dataclass(frozen=True)
class GenerateConfig:
    problems: str = "organism"  # "organism" (held-out), "organism:train", or a file / dataset id
    output: str = "runs/generate"
    samples: int = 1  # traces per problem
    keep_correct: bool = False  # traces.jsonl holds only correct traces
    limit: int | None = None  # first N problems (organism: N problems; default 500)
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 32768
    seed: int = 0
    overwrite: bool = False
    concurrency: int = 0
    problem_field: str | None = None
    answer_field: str | None = None
    id_field: str | None = None


@dataclass
class Job:
    id: str
    problem: ProblemRow
    sample_index: int


def load_problems(config: GenerateConfig) -> list[ProblemRow]:
    if config.problems in ("organism", "organism:test", "organism:train"):
        from retrosearch.organism.task import sample_problems

        split = "train" if config.problems.endswith(":train") else "test"
        chosen = sample_problems(split, config.limit or 500, seed=config.seed)
        return [ProblemRow(p.id, p.text, str(p.answer)) for p in chosen]
    fields = FieldMap(problem=config.problem_field, answer=config.answer_field, id=config.id_field)
    return read_problems(config.problems, fields, config.limit)


def generate(
    config: GenerateConfig,
    engine_config: EngineConfig = EngineConfig(),
    engine: Engine | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    output = Path(config.output)
    problems = load_problems(config)
    payload = config_payload(config, engine_config)
    with open_run(output, payload, config.overwrite, SPEED_ONLY) as digest:
        started_at, started = now(), time.monotonic()
        engine = engine or load_engine(engine_config)
        checker = default_checker()
        matcher = KeywordMatcher()
        jobs = [Job(f"{p.id}#{k}", p, k) for p in problems for k in range(config.samples)]
        correct_so_far = 0

        async def work(job: Job) -> dict[str, Any]:
            nonlocal correct_so_far
            prompt_ids = tuple(engine.encode(engine.chat_prompt(job.problem.problem)))
            request = Request(
                prompt_ids=prompt_ids,
                max_new_tokens=config.max_new_tokens,
                temperature=config.temperature,
                top_p=config.top_p,
                seed=derive_seed(config.seed, job.problem.id, job.sample_index),
            )
            (completion,) = await engine.generate([request])
            answer = extract_answer(parse(completion.text).solution)
            correct = await asyncio.to_thread(checker.is_correct, job.problem.gold, answer)
            correct_so_far += correct
            stats = parse(completion.text).stats(matcher)
            return {
                "id": job.id,
                "problem_id": job.problem.id,
                "sample": job.sample_index,
                "problem": job.problem.problem,
                "answer": job.problem.gold,
                "response": completion.text,
                "predicted": answer,
                "correct": correct,
                "truncated": completion.finish_reason == "length",
                "tokens": len(completion.token_ids),
                "switches": stats.switches,
            }

        appender = JsonlAppender(output / SAMPLES_FILE)
        extra = {"model": engine.model_id, "model_revision": engine.revision, "problems": config.problems}
        write_manifest(output, payload, digest, {**extra, "started": started_at, "finished": None})
        concurrency = config.concurrency or 2 * engine_config.batch_size
        try:
            stats = asyncio.run(
                run_items(jobs, len(jobs), work, appender, concurrency, "generate", lambda: {"correct": correct_so_far})
            )
        finally:
            appender.close()
        write_in_order(output / SAMPLES_FILE, [job.id for job in jobs])
        ids = {job.id for job in jobs}
        rows = [row for row in read_jsonl(output / SAMPLES_FILE) if row["id"] in ids]
        kept = [row for row in rows if row.get("correct")] if config.keep_correct else rows
        write_jsonl(output / TRACES_FILE, [row for row in kept if row.get("status") != "error"])
        finished = [row for row in rows if row.get("status") != "error"]
        summary = {
            "problems": len(problems),
            "samples": len(rows),
            "correct": sum(bool(r.get("correct")) for r in finished),
            "accuracy": statistics.fmean(bool(r.get("correct")) for r in finished) if finished else 0.0,
            "truncated": sum(bool(r.get("truncated")) for r in finished),
            "errors": len(rows) - len(finished),
            "error_ids": error_ids(rows),
            "traces_written": len(kept),
            "tokens_mean": statistics.fmean(r["tokens"] for r in finished) if finished else 0.0,
            "switches_mean": statistics.fmean(r["switches"] for r in finished) if finished else 0.0,
            "generated_tokens": sum(r["tokens"] for r in finished),
            "wall_seconds": time.monotonic() - started,
            "resumed_samples": stats.skipped_existing,
        }
        save_summary(output, summary)
        write_manifest(
            output,
            payload,
            digest,
            {**extra, "started": started_at, "finished": now(), "wall_seconds": summary["wall_seconds"]},
        )
        if not quiet:
            print_summary(f"retrosearch generate — {output}", summary)
        return summary
