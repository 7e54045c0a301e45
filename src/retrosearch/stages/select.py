"""`retrosearch select --shortest-correct-of N`: the shortest-correct-of-N baseline as a traces file."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from retrosearch.config import at_least, option, overwrite_option
from retrosearch.data.inputs import DataError
from retrosearch.data.outputs import write_jsonl
from retrosearch.search.shortest_of_n import shortest_correct_of_n
from retrosearch.stages.folder import RunFolder
from retrosearch.stages.generate import TRACES_FILE, SampleRow
from retrosearch.stages.template import read_rows, run_once


@dataclass(frozen=True)
class SelectConfig:
    input: str = option("", "the samples.jsonl of a generate run (several samples per problem)")
    output: str = option("runs/select", "run folder; the chosen traces land in OUTPUT/traces.jsonl")
    shortest_correct_of: int = option(4, "keep the shortest correct trace among the first N samples of each problem")
    overwrite: bool = overwrite_option()

    def __post_init__(self) -> None:
        at_least(self, 1, "shortest_correct_of")


def select(config: SelectConfig, quiet: bool = False) -> dict[str, Any]:
    if not config.input or not Path(config.input).is_file():
        raise DataError(f"{config.input or '--input'}: no such file; give the samples.jsonl of a generate run")

    def work(run: RunFolder) -> dict[str, Any]:
        samples = [asdict(row) for row in read_rows(Path(config.input), SampleRow) if isinstance(row, SampleRow)]
        chosen = shortest_correct_of_n(samples, config.shortest_correct_of)
        write_jsonl(run.path / TRACES_FILE, chosen)
        return {"problems_with_a_correct_trace": len(chosen), "traces": str(run.path / TRACES_FILE)}

    return run_once("select", Path(config.output), (config,), config.overwrite, work, ("input",), quiet)
