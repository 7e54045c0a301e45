"""`retrosearch eval`: accuracy (avg@k, pass@k), length and thought switches on math benchmarks."""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from retrosearch.data import DataError, read_records, write_json, write_jsonl
from retrosearch.engines import Engine, EngineConfig, load_engine
from retrosearch.generate import SAMPLES_FILE, GenerateConfig, generate


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
    benchmarks: tuple[str, ...] = ("organism",)  # names, or "all" (the seven math benchmarks)
    output: str = "runs/eval"
    data_dir: str | None = None  # local copies laid out as <data_dir>/<name>/test.jsonl
    samples: int = 4  # k samples per problem
    limit: int | None = None  # first N problems of each benchmark (organism default: 500)
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 32768
    seed: int = 0
    overwrite: bool = False


def gold_answer(benchmark: str, value: Any) -> str:
    """The gold answer of a benchmark row as text (GSM8K keeps it after '####')."""
    if benchmark == "gsm8k" and isinstance(value, str):
        return value.split("####")[-1].strip().replace(",", "")
    if isinstance(value, list):  # OlympiadBench: "$a$,$b$" items, and several items for several answers
        return ", ".join(str(v).replace("$,$", ", ").replace("$", "") for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def load_benchmark(name: str, data_dir: str | None, limit: int | None) -> tuple[list[dict[str, str]], int]:
    """Problems of one benchmark as rows of id, problem, answer; and how many rows had no gold answer."""
    spec = BENCHMARKS[name]
    if data_dir:
        source = str(Path(data_dir) / spec.local_dir / "test.jsonl")
        records = read_records(source)
    else:
        records = _hub_rows(spec.hub_id)
    rows, no_gold = [], 0
    for number, (record, where) in enumerate(records, start=1):
        if limit is not None and len(rows) >= limit:
            break
        if spec.problem_field not in record or spec.answer_field not in record:
            raise DataError(f"{where}: fields '{spec.problem_field}' and '{spec.answer_field}' are expected")
        if record[spec.answer_field] in (None, "", []):
            no_gold += 1  # e.g. two GaoKao rows whose answer sits inside the question text
            continue
        rows.append(
            {
                "id": f"{name}-{number}",
                "problem": str(record[spec.problem_field]),
                "answer": gold_answer(name, record[spec.answer_field]),
            }
        )
    return rows, no_gold


def _hub_rows(hub_id: str):
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{hub_id}: `pip install datasets` to load benchmarks from the hub, or pass --data-dir"
        ) from None
    name, _, split = hub_id.partition(":")
    name, _, config = name.partition("@")
    dataset = datasets.load_dataset(name, config or None, split=split or "test")
    for number, record in enumerate(dataset, start=1):
        yield record, f"{hub_id}:row {number}"


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


def summarize_samples(rows: list[dict[str, Any]], k: int) -> dict[str, Any]:
    failed = sum(row.get("status") == "error" for row in rows)
    rows = [row for row in rows if row.get("status") != "error"]  # failed generations: counted, not scored
    by_problem: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        by_problem[row["problem_id"]].append(bool(row.get("correct")))
    scores = score(list(by_problem.values()), k)
    return {
        "problems": len(by_problem),
        "samples": len(rows),
        "accuracy": scores["avg@k"],
        "pass@k": scores["pass@k"],
        "tokens_mean": statistics.fmean(r["tokens"] for r in rows) if rows else 0.0,
        "switches_mean": statistics.fmean(r["switches"] for r in rows) if rows else 0.0,
        "truncated": sum(bool(r.get("truncated")) for r in rows),
        "failed_samples": failed,
    }


def markdown_table(model: str, results: dict[str, dict[str, Any]], k: int) -> str:
    lines = [
        f"| {model} | accuracy (avg@{k}) | pass@{k} | avg tokens | avg switches | truncated |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['accuracy']:.3f} | {r['pass@k']:.3f} | {r['tokens_mean']:.1f} | "
            f"{r['switches_mean']:.2f} | {r['truncated']} |"
        )
    if len(results) > 1:
        mean = {
            key: statistics.fmean(r[key] for r in results.values())
            for key in ("accuracy", "pass@k", "tokens_mean", "switches_mean")
        }
        total = sum(r["truncated"] for r in results.values())
        lines.append(
            f"| average | {mean['accuracy']:.3f} | {mean['pass@k']:.3f} | {mean['tokens_mean']:.1f} | "
            f"{mean['switches_mean']:.2f} | {total} |"
        )
    return "\n".join(lines) + "\n"


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
    config: EvalConfig, engine_config: EngineConfig = EngineConfig(), engine: Engine | None = None, quiet: bool = False
) -> dict[str, Any]:
    output = Path(config.output)
    names = expand(config.benchmarks)
    loaded = {name: load_benchmark(name, config.data_dir, config.limit) for name in names if name != "organism"}
    engine = engine or load_engine(engine_config)
    results: dict[str, dict[str, Any]] = {}
    base = GenerateConfig(
        samples=config.samples,
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
        overwrite=config.overwrite,
    )
    for name in names:
        folder = output / name
        no_gold = 0
        if name == "organism":
            stage = replace(base, problems="organism", output=str(folder), limit=config.limit or 500)
        else:
            problems, no_gold = loaded[name]
            folder.mkdir(parents=True, exist_ok=True)
            write_jsonl(folder / "problems.jsonl", problems)
            stage = replace(base, problems=str(folder / "problems.jsonl"), output=str(folder / "generate"))
        generate(stage, engine_config, engine=engine, quiet=True)
        samples_path = Path(stage.output) / SAMPLES_FILE
        rows = [json.loads(line) for line in samples_path.read_text().splitlines()]
        results[name] = {**summarize_samples(rows, config.samples), "left_out_no_gold": no_gold}
    table = markdown_table(engine_config.model, results, config.samples)
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.md").write_text(table)
    summary = {"model": engine_config.model, "k": config.samples, "benchmarks": results}
    write_json(output / "summary.json", summary)
    if not quiet:
        print(table)
    return summary
