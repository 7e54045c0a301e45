"""`retrosearch decontaminate` at scale: rows per second, peak memory and how the time grows with the rows.

    python benchmarks/decontamination.py [--rows 1000000] [--work /tmp/decontamination]

Writes a JSONL of `--rows` rows made from the seven benchmarks' own problems (../shared/data/benchmarks): one row in
a hundred is a benchmark problem reformatted (spaces doubled, LaTeX thin spaces, upper case, an instruction around
it), every other row is a benchmark problem with each of its numbers changed (the hard case: the same wording, other
problems). Runs the stage on the first tenth and on all rows, each in a fresh process, against all seven benchmarks,
and prints one JSON object: per run the rows, wall seconds, rows per second and peak memory (max RSS), the time per
row of the whole run over that of the tenth (linear: about 1), and whether every reformatted copy was found and no
renumbered problem was.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(os.environ.get("RETROSEARCH_SHARED") or Path(__file__).resolve().parents[2] / "shared")
BENCHMARKS = SHARED / "data" / "benchmarks"
COPY_EVERY = 100
NUMBER = re.compile(r"\d+")


def benchmark_problems() -> list[str]:
    from retrosearch.stages.eval import BENCHMARKS as SPECS
    from retrosearch.stages.eval import load_benchmark

    return [problem.problem for name in SPECS for problem in load_benchmark(name, str(BENCHMARKS), None)[0]]


def renumbered(problem: str, rng: random.Random) -> str:
    return NUMBER.sub(lambda match: str(int(match.group()) + rng.randrange(1, 9)), problem)


def reformatted(problem: str) -> str:
    return "Solve this: " + problem.replace(" ", "  ").replace("$", r"$\,").upper() + " Think step by step."


def write_rows(path: Path, count: int) -> None:
    rng = random.Random(0)
    problems = [problem for problem in benchmark_problems() if NUMBER.search(problem)]
    with open(path, "w", encoding="utf-8") as handle:
        for number in range(count):
            problem = rng.choice(problems)
            copy = number % COPY_EVERY == 0
            text = reformatted(problem) if copy else renumbered(problem, rng)
            handle.write(json.dumps({"id": f"r{number}", "problem": text, "copy": copy}) + "\n")


def run(rows: Path, output: Path, limit: int) -> dict:
    """The stage in a fresh process (its peak memory is its own), timed from outside."""
    command = [sys.executable, "-m", "retrosearch.cli", "decontaminate", "--input", str(rows), "--output", str(output)]
    command += ["--against", "all", "--data-dir", str(BENCHMARKS), "--limit", str(limit), "--overwrite"]
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far: runs grow
    lines = (output / "matches.jsonl").read_text(encoding="utf-8").splitlines()
    matched = {json.loads(line)["row"] for line in lines}
    copies = {number for number in range(1, limit + 1) if (number - 1) % COPY_EVERY == 0}
    return {
        "rows": limit,
        "wall_seconds": round(seconds, 1),
        "rows_per_second": round(limit / seconds),
        "peak_rss_mib": round(peak_kib / 1024),
        "copies": len(copies),
        "copies_found": len(copies & matched),
        "renumbered_flagged": len(matched - copies),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--work", default="/tmp/decontamination")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = work / f"rows-{args.rows}.jsonl"
    if not rows.exists():
        write_rows(rows, args.rows)
    tenth = run(rows, work / "tenth", args.rows // 10)
    whole = run(rows, work / "whole", args.rows)
    per_row = (whole["wall_seconds"] / whole["rows"]) / (tenth["wall_seconds"] / tenth["rows"])
    report = {"tenth": tenth, "whole": whole, "time_per_row_whole_over_tenth": round(per_row, 2)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
