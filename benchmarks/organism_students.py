"""Why do organism students get (or not get) shorter? Habit figures of the SFT data and of each student.

    python benchmarks/organism_students.py runs/organism-self-improve

Reads the recipe's revise output (the SFT data, original vs revised), any other dataset stage's output (a cut's or a
second revise's revised.jsonl, a select's traces.jsonl) and every eval-* folder (the students' samples on the
held-out set) and prints one JSON line: per source, lines of thought per trace; how often a line whose cue says yes
(`… , need 4 , yes`: it would succeed) is abandoned right there (under-thinking), against a line whose cue says no
(pruning, which is harmless); lines ended before their cue; the line of the first success; the share of successful
traces that re-check after it and the re-checks they write; the share of steps written after the first success; and
the share of traces whose first candidate is already the answer (luck, which no student can learn).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from retrosearch.organism.analysis import lines_of_thought
from retrosearch.organism.task import parse_problem
from retrosearch.trace import parse


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 3) if values else None


def habit_figures(pairs: list[tuple[str, str]]) -> dict[str, float | None]:
    lines, first_success, rechecks, recheck_counts, after_share, first_right = [], [], [], [], [], []
    said: dict[bool | None, list[bool]] = {True: [], False: [], None: []}  # per cue: was the line abandoned
    for problem_text, response in pairs:
        problem = parse_problem(problem_text)
        found = lines_of_thought(response)
        lines.append(len(found))
        successes = [index for index, line in enumerate(found) if line.succeeded]
        for line in found[: successes[0] + 1 if successes else len(found)]:  # re-checks apart
            said[line.cue].append(not line.completed)
        if successes:
            first_success.append(successes[0] + 1)
            later = len(found) - successes[0] - 1
            rechecks.append(later > 0)
            recheck_counts.append(later)
            steps = [step for step in parse(response).steps if step.strip()]
            success = f", want {problem.target} , yes"
            first_yes = next(index for index, step in enumerate(steps) if step.rstrip().endswith(success))
            after_share.append((len(steps) - first_yes - 1) / len(steps))
        first_right.append(bool(found) and found[0].candidate == problem.answer)
    considered = sum(map(len, said.values()))
    return {
        "traces": len(pairs),
        "lines_per_trace": _mean(lines),
        "cue_yes_lines_abandoned_share": _mean(said[True]),
        "cue_no_lines_abandoned_share": _mean(said[False]),
        "lines_ended_before_their_cue_share": round(len(said[None]) / considered, 3) if considered else None,
        "first_success_line": _mean(first_success),
        "recheck_after_success_share": _mean(rechecks),
        "rechecks_per_success": _mean(recheck_counts),
        "steps_after_first_success_share": _mean(after_share),
        "first_candidate_right_share": _mean(first_right),
    }


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _command(folder: Path) -> str | None:
    manifest = folder / "manifest.json"
    return json.loads(manifest.read_text()).get("command") if manifest.exists() else None


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/organism-self-improve")
    searched = [row for row in _rows(root / "revise" / "revised.jsonl") if row["status"] in ("revised", "unchanged")]
    result = {
        f"sft_data_{field}": habit_figures([(row["problem"], row[field]) for row in searched])
        for field in ("original", "revised")
    }
    for folder in sorted(root.iterdir()):  # the other datasets a comparison recipe makes: cuts, partial, shortest
        if folder.name != "revise" and (folder / "revised.jsonl").exists():
            rows = [row for row in _rows(folder / "revised.jsonl") if row["status"] in ("revised", "unchanged")]
            result[f"sft_data_{folder.name}"] = habit_figures([(row["problem"], row["revised"]) for row in rows])
        elif (folder / "traces.jsonl").exists() and _command(folder) == "select":
            rows = _rows(folder / "traces.jsonl")
            result[f"sft_data_{folder.name}"] = habit_figures([(row["problem"], row["response"]) for row in rows])
    for folder in sorted(root.glob("eval-*")):
        samples_file = folder / "organism" / "generate" / "samples.jsonl"
        samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
        result[folder.name] = habit_figures([(row["problem"], row["response"]) for row in samples])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
