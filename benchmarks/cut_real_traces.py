"""First-correct-solution cuts on the real long traces in ../shared/data/traces: `retrosearch cut` with each method
on each file, token counts with the real R1-Distill tokenizer in ../shared/data/tokenizers.

    python benchmarks/cut_real_traces.py [--output runs/cut-real-traces]

Prints one JSON object: per file and method, the rows, the rows that could be cut (finished, answer correct against
gold), the share of those that were cut, their mean tokens before and after and the ratio, and how many cut traces'
final answers check correct against gold again (the rule must keep every one). Rerunning reuses the run folders.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from retrosearch.answers import extract_answer, is_correct
from retrosearch.stages.cut import CutConfig, cut
from retrosearch.trace import parse

SHARED = Path(os.environ.get("RETROSEARCH_SHARED") or Path(__file__).resolve().parents[2] / "shared")
TRACES = SHARED / "data" / "traces"
TOKENIZER = SHARED / "data" / "tokenizers" / "deepseek-r1-distill-qwen"


def figures(rows: list[dict]) -> dict:
    eligible = [row for row in rows if row["status"] in ("revised", "unchanged")]
    cuts = [row for row in eligible if row["status"] == "revised"]
    before = [row["tokens_before"] for row in eligible]
    after = [row["tokens_after"] for row in eligible]
    return {
        "rows": len(rows),
        "correct_finished": len(eligible),
        "cut": len(cuts),
        "cut_share": len(cuts) / len(eligible) if eligible else 0.0,
        "tokens_before_mean": statistics.fmean(before) if before else 0.0,
        "tokens_after_mean": statistics.fmean(after) if after else 0.0,
        "tokens_ratio": sum(after) / sum(before) if before else 0.0,
        "cut_rows_tokens_ratio": (
            sum(row["tokens_after"] for row in cuts) / sum(row["tokens_before"] for row in cuts) if cuts else 0.0
        ),
        "cut_answers_still_correct": sum(
            is_correct(row["gold"], extract_answer(parse(row["revised"]).solution)) for row in cuts
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="runs/cut-real-traces", help="folder of the run folders")
    args = parser.parse_args()
    files = sorted(TRACES.glob("*.jsonl"))
    if not files or not (TOKENIZER / "tokenizer.json").exists():
        raise SystemExit(f"cut_real_traces: the traces and tokenizer of ../shared are absent ({SHARED})")
    report: dict[str, dict] = {}
    for method in ("first-correct", "first-correct-plus-one"):
        everything: list[dict] = []
        for path in files:
            folder = Path(args.output) / method / path.stem
            config = CutConfig(input=str(path), output=str(folder), method=method, tokenizer=str(TOKENIZER))
            summary = cut(config, quiet=True)
            rows = [json.loads(line) for line in Path(summary["rows"]).read_text().splitlines()]
            report.setdefault(path.stem, {})[method] = figures(rows)
            everything += rows
        report.setdefault("all", {})[method] = figures(everything)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
