"""Quality bars of the shipped organism (issue: the organism). Prints JSON; the last line is the result.

python benchmarks/organism_quality.py [--problems 500] [--seed 0] [--output runs/organism-quality] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from retrosearch.answers import extract_answer, is_correct
from retrosearch.engines import EngineConfig, SamplingConfig, load_engine
from retrosearch.organism import MAX_NEW_TOKENS
from retrosearch.organism.analysis import analyze
from retrosearch.organism.task import parse_problem
from retrosearch.search.retro_search import RetroSearchConfig
from retrosearch.stages.generate import SAMPLES_FILE, TRACES_FILE, GenerateConfig, generate
from retrosearch.stages.revise import OUTPUT_FILE, ReviseConfig, revise
from retrosearch.trace import parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--problems", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/organism-quality")
    parser.add_argument("--model", default="organism", help="a checkpoint to measure before shipping it")
    args = parser.parse_args()
    root = Path(args.output)
    started = time.monotonic()
    engine_config = EngineConfig(model=args.model)
    engine = load_engine(engine_config)
    generated = generate(
        GenerateConfig(
            output=str(root / "generate"),
            limit=args.problems,
            sampling=SamplingConfig(max_new_tokens=MAX_NEW_TOKENS, seed=args.seed),
            keep_correct=True,
            overwrite=True,
        ),
        engine_config,
        engine=engine,
        quiet=True,
    )
    rows = [json.loads(line) for line in (root / "generate" / SAMPLES_FILE).read_text().splitlines()]
    habits = [analyze(parse_problem(row["problem"]), row["response"]) for row in rows]
    revised = revise(
        ReviseConfig(input=str(root / "generate" / TRACES_FILE), output=str(root / "revise"), overwrite=True),
        RetroSearchConfig(sampling=SamplingConfig(max_new_tokens=MAX_NEW_TOKENS, seed=args.seed)),
        engine_config,
        engine=engine,
        quiet=True,
    )
    revised_rows = [json.loads(line) for line in (root / "revise" / OUTPUT_FILE).read_text().splitlines()]
    searched = [r for r in revised_rows if r["status"] in ("revised", "unchanged")]
    shortened = [r for r in searched if r["status"] == "revised"]
    still_correct = all(is_correct(r["gold"], extract_answer(parse(r["revised"]).solution)) for r in shortened)
    result = {
        "num_problems": len(rows),
        "seed": args.seed,
        "accuracy": generated["accuracy"],
        "valid_step_rate": sum(h.valid_steps for h in habits) / max(1, sum(h.computation_steps for h in habits)),
        "switches_per_trace": generated["switches_mean"],
        "under_thinking_rate": statistics.fmean(h.under_thinking for h in habits),
        "over_thinking_rate": statistics.fmean(h.over_thinking for h in habits),
        "tokens_per_trace": generated["tokens_mean"],
        "truncated": generated["truncated"],
        "retro_search_traces": len(searched),
        "retro_search_shortened_rate": len(shortened) / max(1, len(searched)),
        "retro_search_all_revisions_correct": still_correct,
        "retro_search_tokens_before_mean": revised["tokens_before_mean"],
        "retro_search_tokens_after_mean": revised["tokens_after_mean"],
        "retro_search_switches_before_mean": revised["switches_before_mean"],
        "retro_search_switches_after_mean": revised["switches_after_mean"],
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
