"""`retrosearch decontaminate`: find the rows of a dataset whose problem is a benchmark problem (n-gram overlap,
`retrosearch.contamination`), list each with the benchmark problems it matches, and with `--drop` write the clean
rows, each as it was in the input, for sft or export to take."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrosearch.config import at_least, option, overwrite_option
from retrosearch.contamination import DEFAULT_MIN_COVERAGE, DEFAULT_NGRAM, ContaminationIndex, check_min_coverage
from retrosearch.data.inputs import DataError, FieldMap, read_problems, read_records, record_id, record_problem
from retrosearch.data.outputs import write_jsonl
from retrosearch.stages.eval import expand, load_benchmark
from retrosearch.stages.folder import RunFolder
from retrosearch.stages.template import run_once

MATCHES_FILE = "matches.jsonl"
CLEAN_FILE = "clean.jsonl"


@dataclass(frozen=True)
class DecontaminateConfig:
    input: str = option("", "rows to check: JSONL, JSON, Parquet or a Hugging Face dataset id (any layout)")
    output: str = option("runs/decontaminate", "run folder: OUTPUT/matches.jsonl, and OUTPUT/clean.jsonl with --drop")
    against: tuple[str, ...] = option(
        ("all",), "benchmarks to check against (names as eval takes them, organism included; all: the seven)"
    )
    data_dir: str | None = option(None, "local benchmark copies laid out as DIR/<name>/test.jsonl (default: hub ids)")
    ngram: int = option(DEFAULT_NGRAM, "tokens per n-gram (open-r1: 8)")
    min_coverage: float = option(
        DEFAULT_MIN_COVERAGE, "share of a benchmark problem's tokens the shared n-grams must cover (0: any n-gram)"
    )
    math_check: bool = option(True, "a match must hold the problem's numbers and symbols in order (see the guide)")
    drop: bool = option(False, "write the rows that match no benchmark problem to OUTPUT/clean.jsonl")
    limit: int | None = option(None, "only the first N rows")
    problem_field: str | None = option(None, "field holding the problem text (default: detect the usual ones)")
    id_field: str | None = option(None, "field holding a unique row id (default: detect; else the row number)")
    overwrite: bool = overwrite_option()

    def __post_init__(self) -> None:
        at_least(self, 1, "ngram", "limit")
        check_min_coverage(self.min_coverage)


def benchmark_index(config: DecontaminateConfig) -> tuple[ContaminationIndex, dict[str, int]]:
    """The index of every problem of the benchmarks named, and how many problems each gave."""
    from retrosearch.organism.task import split_size

    index = ContaminationIndex(config.ngram, config.min_coverage, config.math_check)
    counts = {}
    for name in expand(config.against):
        if name == "organism":  # its whole test split, not only the problems eval samples from it
            problems = read_problems("organism", limit=split_size("test"))
        else:
            problems, _ = load_benchmark(name, config.data_dir, None)
        for problem in problems:
            index.add(name, problem.id, problem.problem)
        counts[name] = len(problems)
    return index, counts


def records(config: DecontaminateConfig) -> Iterator[tuple[int, dict[str, Any], str]]:
    """(row number, record, 'file:line') of each input row, up to --limit."""
    for number, (record, where) in enumerate(read_records(config.input), start=1):
        if config.limit is not None and number > config.limit:
            return
        yield number, record, where


def problems(config: DecontaminateConfig) -> Iterator[tuple[int, str, str, str]]:
    """(row number, id, 'file:line', problem text) of each input row, up to --limit."""
    fields = FieldMap(id=config.id_field)
    for number, record, where in records(config):
        yield (
            number,
            record_id(record, fields, where, f"row-{number}"),
            where,
            record_problem(record, where, config.problem_field),
        )


def check_rows(config: DecontaminateConfig) -> int:
    """Read every row once before any work, as the other stages do: a bad row or a repeated id is refused in one
    line before anything is written. The number of rows."""
    seen: set[str] = set()
    for _, row_id, where, _ in problems(config):
        if row_id in seen:
            raise DataError(f"{where}: id '{row_id}' repeats an earlier row's; ids must be unique (or --id-field)")
        seen.add(row_id)
    if not seen:
        raise DataError(f"{config.input}: no rows found")
    return len(seen)


def find_matches(config: DecontaminateConfig, index: ContaminationIndex, total: int) -> list[dict[str, Any]]:
    """One entry per matching row: its number, id, where it is, and the benchmark problems it matches."""
    from tqdm import tqdm

    found = []
    for number, row_id, where, problem in tqdm(problems(config), total=total, desc="decontaminate", unit="row"):
        matched = index.matches(problem)
        if matched:
            found.append({"row": number, "id": row_id, "source": where, "matches": [m.as_dict() for m in matched]})
    return found


def clean_records(config: DecontaminateConfig, dropped: set[int]) -> Iterator[dict[str, Any]]:
    return (record for number, record, _ in records(config) if number not in dropped)


def decontaminate(config: DecontaminateConfig, quiet: bool = False) -> dict[str, Any]:
    """Check `config.input` against the benchmarks; a rerun with the same settings and input returns its summary."""
    if not config.input:
        raise ValueError("decontaminate needs --input: a file or dataset id of rows with problems")

    def work(run: RunFolder) -> dict[str, Any]:
        total = check_rows(config)
        index, against = benchmark_index(config)
        found = find_matches(config, index, total)
        write_jsonl(run.path / MATCHES_FILE, found)
        summary: dict[str, Any] = {
            "rows": total,
            "contaminated": len(found),
            "by_benchmark": dict(Counter(name for row in found for name in {m["benchmark"] for m in row["matches"]})),
            "against": against,
            "ngram": config.ngram,
            "matches": str(run.path / MATCHES_FILE),
        }
        if config.drop:
            write_jsonl(run.path / CLEAN_FILE, clean_records(config, {row["row"] for row in found}))
            summary.update(kept=total - len(found), dropped=len(found), clean=str(run.path / CLEAN_FILE))
        return summary

    return run_once("decontaminate", Path(config.output), (config,), config.overwrite, work, ("input",), quiet)
