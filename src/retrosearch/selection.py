"""`retrosearch select --shortest-correct-of N`: the shortest-correct-of-N baseline as a traces file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrosearch.data import read_jsonl, write_jsonl
from retrosearch.search.shortest_of_n import shortest_correct_of_n


@dataclass(frozen=True)
class SelectConfig:
    input: str = ""
    output: str = ""
    shortest_correct_of: int = 4


def select(config: SelectConfig) -> dict[str, Any]:
    rows = shortest_correct_of_n(read_jsonl(Path(config.input)), config.shortest_correct_of)
    Path(config.output).parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(Path(config.output), rows)
    return {"problems_with_a_correct_trace": len(rows), "output": config.output}
