"""Why do organism students get (or not get) shorter? Habit figures of the SFT data and of each student.

    python benchmarks/organism_students.py runs/organism-self-improve

Reads the recipe's revise output (the SFT data, original vs revised) and every eval-* folder (the students'
samples on the held-out set) and prints one JSON line: per source, lines of thought per trace, abandoned lines
per trace, the line of the first success, the share of successful traces that re-check after it, and the share
of traces whose first candidate is already the answer (which no student can learn: candidates carry no hint).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from retrosearch.organism.analysis import lines_of_thought
from retrosearch.organism.task import parse_problem


def habit_figures(pairs: list[tuple[str, str]]) -> dict[str, float]:
    lines, abandoned, first_success, rechecks, first_right = [], [], [], [], []
    for problem_text, response in pairs:
        problem = parse_problem(problem_text)
        found = lines_of_thought(problem, response)
        lines.append(len(found))
        abandoned.append(sum(not line.completed for line in found))
        successes = [index for index, line in enumerate(found) if line.succeeded]
        if successes:
            first_success.append(successes[0] + 1)
            rechecks.append(successes[0] + 1 < len(found))
        first_right.append(bool(found) and found[0].candidate == problem.answer)
    return {
        "traces": len(pairs),
        "lines_per_trace": round(statistics.fmean(lines), 3),
        "abandoned_lines_per_trace": round(statistics.fmean(abandoned), 3),
        "first_success_line": round(statistics.fmean(first_success), 3) if first_success else None,
        "recheck_after_success_share": round(statistics.fmean(rechecks), 3) if rechecks else None,
        "first_candidate_right_share": round(statistics.fmean(first_right), 3),
    }


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/organism-self-improve")
    rows = [json.loads(line) for line in (root / "revise" / "revised.jsonl").read_text().splitlines()]
    searched = [row for row in rows if row["status"] in ("revised", "unchanged")]
    result = {
        f"sft_data_{field}": habit_figures([(row["problem"], row[field]) for row in searched])
        for field in ("original", "revised")
    }
    for folder in sorted(root.glob("eval-*")):
        samples = [json.loads(line) for line in (folder / "organism" / "samples.jsonl").read_text().splitlines()]
        result[folder.name] = habit_figures([(row["problem"], row["response"]) for row in samples])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
