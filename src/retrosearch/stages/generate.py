"""`retrosearch generate`: problems -> sampled traces, in the schema `revise` reads."""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from retrosearch.answers import default_checker, extract_answer
from retrosearch.config import at_least, option, overwrite_option
from retrosearch.data.inputs import FieldMap, ProblemRow, read_problems
from retrosearch.data.outputs import write_jsonl
from retrosearch.engines import Engine, EngineConfig, Request, SamplingConfig
from retrosearch.executors import ExecutorConfig, WorkerSpec
from retrosearch.prompting import stored
from retrosearch.runner import ErrorRow, error_ids
from retrosearch.seeds import derive_seed
from retrosearch.stages.template import RowStage, run_stage
from retrosearch.trace import KeywordMatcher, parse

SAMPLES_FILE = "samples.jsonl"
TRACES_FILE = "traces.jsonl"


@dataclass(frozen=True)
class GenerateConfig:
    problems: str = option(
        "organism", "'organism' (held-out set), 'organism:train', or a file / dataset id (name@config:split)"
    )
    output: str = option("runs/generate", "run folder (rerunning the same command resumes it)")
    samples: int = option(1, "traces per problem")
    keep_correct: bool = option(False, "traces.jsonl keeps only the correct traces")
    limit: int | None = option(None, "only the first N problems (organism: N problems; default 500)")
    sampling: SamplingConfig = option(SamplingConfig(), "sampling settings")
    overwrite: bool = overwrite_option()
    problem_field: str | None = option(None, "field holding the problem text")
    answer_field: str | None = option(None, "field holding the gold answer")
    id_field: str | None = option(None, "field holding a unique problem id")

    def __post_init__(self) -> None:
        at_least(self, 1, "samples", "limit")


@dataclass
class Job:
    id: str
    problem: ProblemRow
    sample_index: int


@dataclass
class SampleRow:
    """One sampled trace: a row of samples.jsonl (and of traces.jsonl)."""

    id: str
    problem_id: str
    sample: int
    problem: str
    answer: str | None
    response: str
    predicted: str | None
    correct: bool
    truncated: bool
    tokens: int
    switches: int
    skipped: str | None = None  # why nothing was generated: a category ("longer than the context")
    details: dict[str, int] = field(default_factory=dict)  # the skip's numbers: prompt_tokens, context


LONGER_THAN_CONTEXT = "longer than the context"


class Sampler:
    """One job in, one sampled and checked trace out."""

    def __init__(self, engine: Engine, sampling: SamplingConfig) -> None:
        self.engine = engine
        self.sampling = sampling
        self.checker = default_checker()
        self.matcher = KeywordMatcher()
        self.correct = 0

    def progress(self) -> dict[str, Any]:
        return {"correct": self.correct}

    async def __call__(self, job: Job) -> SampleRow:
        prompt = self.engine.chat_prompt(job.problem.problem)
        prompt_ids = tuple(self.engine.encode(prompt))
        context = self.engine.context_length
        if context is not None and len(prompt_ids) >= context:  # not one token would fit: never generated
            return self._skipped(job, {"prompt_tokens": len(prompt_ids), "context": context})
        request = Request(
            prompt_ids=prompt_ids,
            max_new_tokens=self.sampling.max_new_tokens,
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            seed=derive_seed(self.sampling.seed, job.problem.id, job.sample_index),
        )
        (completion,) = await self.engine.generate([request])
        response = stored(prompt, completion.text)  # with the opening marker a template wrote for the model
        trace = parse(response)
        answer = extract_answer(trace.solution)
        correct = await asyncio.to_thread(self.checker.is_correct, job.problem.gold, answer)
        self.correct += correct
        return SampleRow(
            id=job.id,
            problem_id=job.problem.id,
            sample=job.sample_index,
            problem=job.problem.problem,
            answer=job.problem.gold,
            response=response,
            predicted=answer,
            correct=correct,
            truncated=completion.finish_reason == "length",
            tokens=len(completion.token_ids),
            switches=trace.stats(self.matcher).switches,
        )

    def _skipped(self, job: Job, details: dict[str, int]) -> SampleRow:
        problem = job.problem
        return SampleRow(
            id=job.id,
            problem_id=problem.id,
            sample=job.sample_index,
            problem=problem.problem,
            answer=problem.gold,
            response="",
            predicted=None,
            correct=False,
            truncated=False,
            tokens=0,
            switches=0,
            skipped=LONGER_THAN_CONTEXT,
            details=details,
        )


def load_problems(config: GenerateConfig) -> list[ProblemRow]:
    fields = FieldMap(problem=config.problem_field, answer=config.answer_field, id=config.id_field)
    return read_problems(config.problems, fields, config.limit, seed=config.sampling.seed)


def kept_traces(rows: list[SampleRow | ErrorRow], keep_correct: bool) -> list[SampleRow]:
    """The rows of traces.jsonl: every finished sample, or only the correct ones."""
    return [row for row in rows if isinstance(row, SampleRow) and not row.skipped and (row.correct or not keep_correct)]


def skipped(rows: list[SampleRow]) -> dict[str, int]:
    """How many samples were skipped, by reason."""
    return dict(Counter(row.skipped for row in rows if row.skipped))


def summarize(rows: list[SampleRow | ErrorRow], problems: int, keep_correct: bool) -> dict[str, Any]:
    finished = [row for row in rows if isinstance(row, SampleRow)]
    generated = [row for row in finished if not row.skipped]
    return {
        "problems": problems,
        "samples": len(rows),
        "correct": sum(r.correct for r in finished),
        "accuracy": statistics.fmean(r.correct for r in finished) if finished else 0.0,
        "truncated": sum(r.truncated for r in finished),
        "skipped": skipped(finished),
        "errors": len(rows) - len(finished),
        "error_ids": error_ids(rows),
        "traces_written": len(kept_traces(rows, keep_correct)),
        "tokens_mean": statistics.fmean(r.tokens for r in generated) if generated else 0.0,
        "switches_mean": statistics.fmean(r.switches for r in generated) if generated else 0.0,
        "generated_tokens": sum(r.tokens for r in finished),
    }


def generate_stage(
    config: GenerateConfig, engine_config: EngineConfig, problems: list[ProblemRow] | None = None
) -> RowStage[SampleRow]:
    """The generate run as the template's parts; eval runs one per benchmark, giving the problems it loaded
    (then `config.problems` only names them)."""
    output = Path(config.output)
    problems = load_problems(config) if problems is None else problems
    jobs = [Job(f"{p.id}#{k}", p, k) for p in problems for k in range(config.samples)]

    def write_traces(rows: list[SampleRow | ErrorRow]) -> None:
        write_jsonl(output / TRACES_FILE, map(asdict, kept_traces(rows, config.keep_correct)))

    return RowStage(
        name="generate",
        folder=output,
        configs=(config, engine_config),
        overwrite=config.overwrite,
        rows_file=SAMPLES_FILE,
        row_type=SampleRow,
        ids=[job.id for job in jobs],
        items=lambda: jobs,
        worker=WorkerSpec(Sampler, (config.sampling,)),
        summarize=lambda rows: summarize(rows, len(problems), config.keep_correct),
        facts={"problems": config.problems},
        counts=("samples", "correct", "errors"),
        finish=write_traces,
        fingerprinted=("problems",),
    )


def generate(
    config: GenerateConfig,
    engine_config: EngineConfig = EngineConfig(),
    executor_config: ExecutorConfig = ExecutorConfig(),
    engine: Engine | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Sample `config.samples` traces per problem into `config.output`; returns the summary."""
    return run_stage(generate_stage(config, engine_config), engine_config, executor_config, engine, quiet)
