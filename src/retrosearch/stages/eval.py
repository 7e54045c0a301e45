"""`retrosearch eval`: accuracy (avg@k, pass@k), length and thought switches on math benchmarks."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from retrosearch.config import at_least, option, overwrite_option
from retrosearch.data.inputs import FieldMap, ProblemRow, read_problems
from retrosearch.data.outputs import write_jsonl, write_whole
from retrosearch.engines import Engine, EngineConfig, SamplingConfig
from retrosearch.executors import ExecutorConfig, make_executor
from retrosearch.runner import ErrorRow
from retrosearch.stages.folder import RunFolder
from retrosearch.stages.generate import SAMPLES_FILE, GenerateConfig, SampleRow, generate_stage, skipped
from retrosearch.stages.template import read_rows, run_once, run_rows
from retrosearch.tables import markdown

PROBLEMS_FILE = "problems.jsonl"
RESULTS_FILE = "results.md"


@dataclass(frozen=True)
class Benchmark:
    name: str
    hub_id: str  # "name", "name:split" or "name@config:split"
    local_dir: str  # folder under --data-dir holding test.jsonl
    problem_field: str
    answer_field: str


BENCHMARKS = {
    b.name: b
    for b in (
        Benchmark("aime24", "HuggingFaceH4/aime_2024:train", "aime24", "problem", "answer"),
        Benchmark("aime25", "math-ai/aime25:test", "aime25", "problem", "answer"),
        Benchmark("amc23", "math-ai/amc23:test", "amc23", "question", "answer"),
        Benchmark("math500", "HuggingFaceH4/MATH-500:test", "math500", "problem", "answer"),
        Benchmark("gsm8k", "openai/gsm8k@main:test", "gsm8k", "question", "answer"),
        Benchmark(
            "olympiadbench",
            "Hothan/OlympiadBench@OE_TO_maths_en_COMP:train",
            "olympiadbench",
            "question",
            "final_answer",
        ),
        Benchmark(
            "gaokao2023en", "MARIO-Math-Reasoning/Gaokao2023-Math-En:train", "gaokao2023en", "question", "answer"
        ),
    )
}
ALL = (*BENCHMARKS, "organism")


@dataclass(frozen=True)
class EvalConfig:
    benchmarks: tuple[str, ...] = option(
        ("organism",), "benchmark names (" + " ".join(ALL) + ") or all (the seven math benchmarks)"
    )
    output: str = option("runs/eval", "run folder (rerunning the same command resumes it)")
    data_dir: str | None = option(None, "local benchmark copies laid out as DIR/<name>/test.jsonl (default: hub ids)")
    samples: int = option(4, "k samples per problem")
    limit: int | None = option(None, "only the first N problems of each benchmark (organism default: 500)")
    sampling: SamplingConfig = option(SamplingConfig(), "sampling settings")
    overwrite: bool = overwrite_option()

    def __post_init__(self) -> None:
        at_least(self, 1, "samples", "limit")


def gold_answer(benchmark: str, value: Any) -> str:
    """The gold answer of a benchmark row as text (GSM8K keeps it after '####')."""
    if benchmark == "gsm8k" and isinstance(value, str):
        return value.split("####")[-1].strip().replace(",", "")
    if isinstance(value, list):  # OlympiadBench: "$a$,$b$" items, and several items for several answers
        return ", ".join(str(v).replace("$,$", ", ").replace("$", "") for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def load_benchmark(name: str, data_dir: str | None, limit: int | None, seed: int = 0) -> tuple[list[ProblemRow], int]:
    """Problems of one benchmark; and how many rows had no gold answer (left out)."""
    if name == "organism":
        return read_problems("organism", limit=limit, seed=seed), 0
    spec = BENCHMARKS[name]
    source = str(Path(data_dir) / spec.local_dir / "test.jsonl") if data_dir else spec.hub_id
    fields = FieldMap(problem=spec.problem_field, answer=spec.answer_field)
    rows = read_problems(
        source,
        fields,
        gold=lambda value: None if value in (None, "", []) else gold_answer(name, value),
        require_gold=False,
        id_prefix=name,
    )
    kept = [row for row in rows if row.gold and row.gold.strip()]  # e.g. GaoKao rows whose answer is in the question
    return kept[:limit] if limit is not None else kept, len(rows) - len(kept)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def score(correct_by_problem: Sequence[Sequence[bool]], k: int) -> dict[str, float]:
    """avg@k (mean accuracy over all k samples) and pass@k, the one place both are computed."""
    if not correct_by_problem:
        return {"avg@k": 0.0, "pass@k": 0.0}
    return {
        "avg@k": statistics.fmean(statistics.fmean(flags) for flags in correct_by_problem),
        "pass@k": statistics.fmean(
            pass_at_k(len(flags), sum(flags), min(k, len(flags))) for flags in correct_by_problem
        ),
    }


def summarize_samples(rows: list[SampleRow | ErrorRow], k: int) -> dict[str, Any]:
    scored = [row for row in rows if isinstance(row, SampleRow)]  # failed generations: counted, not scored
    generated = [row for row in scored if not row.skipped]  # a skipped sample scores as wrong, has no length
    by_problem: dict[str, list[bool]] = defaultdict(list)
    for row in scored:
        by_problem[row.problem_id].append(row.correct)
    scores = score(list(by_problem.values()), k)
    return {
        "problems": len(by_problem),
        "samples": len(scored),
        "accuracy": scores["avg@k"],
        "pass@k": scores["pass@k"],
        "tokens_mean": statistics.fmean(r.tokens for r in generated) if generated else 0.0,
        "switches_mean": statistics.fmean(r.switches for r in generated) if generated else 0.0,
        "truncated": sum(r.truncated for r in scored),
        "skipped": skipped(scored),
        "failed_samples": len(rows) - len(scored),
    }


def results_table(model: str, results: dict[str, dict[str, Any]], k: int) -> str:
    """The paper's table for one model: a row per benchmark, and their average."""

    def row(name: str, r: dict[str, Any]) -> list[Any]:
        figures = (f"{r['accuracy']:.3f}", f"{r['pass@k']:.3f}", f"{r['tokens_mean']:.1f}", f"{r['switches_mean']:.2f}")
        return [name, *figures, r["truncated"]]

    rows = [row(name, r) for name, r in results.items()]
    if len(results) > 1:
        mean = {
            key: statistics.fmean(r[key] for r in results.values())
            for key in ("accuracy", "pass@k", "tokens_mean", "switches_mean")
        }
        rows.append(row("average", {**mean, "truncated": sum(r["truncated"] for r in results.values())}))
    headers = (model, f"accuracy (avg@{k})", f"pass@{k}", "avg tokens", "avg switches", "truncated")
    notes = [
        f"\n{name}: {count} samples skipped ({reason}), scored as wrong\n"
        for name, r in results.items()
        for reason, count in r.get("skipped", {}).items()
    ]
    return markdown(headers, rows) + "".join(notes)


def expand(benchmarks: Sequence[str]) -> list[str]:
    names: list[str] = []
    for name in benchmarks:
        chosen = list(BENCHMARKS) if name == "all" else [name]
        for item in chosen:
            if item not in ALL:
                raise ValueError(f"unknown benchmark {item!r}; known: {', '.join(ALL)}, all")
            names.append(item)
    return list(dict.fromkeys(names))


def evaluate(
    config: EvalConfig,
    engine_config: EngineConfig = EngineConfig(),
    executor_config: ExecutorConfig = ExecutorConfig(),
    engine: Engine | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Sample k answers per problem of each benchmark; a rerun with the same settings, model and data resumes
    (or, finished, returns the results at once); other settings or changed inputs are refused."""
    output = Path(config.output)
    names = expand(config.benchmarks)

    def work(run: RunFolder) -> dict[str, Any]:
        results: dict[str, dict[str, Any]] = {}
        with make_executor(executor_config, engine_config, engine) as executor:
            for name in names:
                problems, no_gold = load_benchmark(name, config.data_dir, config.limit, config.sampling.seed)
                folder = output / name
                write_jsonl(folder / PROBLEMS_FILE, map(asdict, problems))
                generate_config = GenerateConfig(
                    problems=name, output=str(folder / "generate"), samples=config.samples, sampling=config.sampling
                )
                stage = generate_stage(generate_config, engine_config, problems)
                run_rows(stage, executor, quiet=True)
                rows = list(read_rows(folder / "generate" / SAMPLES_FILE, SampleRow, set(stage.ids)))
                results[name] = {**summarize_samples(rows, config.samples), "left_out_no_gold": no_gold}
        footer = f"\nrun folder {output}, config {run.digest} (retrosearch show-config {output})\n"
        write_whole(output / RESULTS_FILE, results_table(engine_config.model, results, config.samples) + footer)
        failed = sum(result["failed_samples"] for result in results.values())
        return {"model": engine_config.model, "k": config.samples, "benchmarks": results, "errors": failed}

    return run_once(
        "eval",
        output,
        (config, engine_config),
        config.overwrite,
        work,
        fingerprinted=("model", "data_dir"),
        quiet=quiet,
        show=lambda summary: print(results_table(summary["model"], summary["benchmarks"], summary["k"]), end=""),
    )
