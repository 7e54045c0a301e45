"""Does an organism checkpoint read its verdicts? Teacher-forced on held-out teacher traces, the probability it gives
`yes` (against `no`) at each verdict, split by kind (a line's cue, `… , need 4 , yes`; a line's end, `… , want 5 ,
yes`) and by whether the result written before it equals the value named: 1.0 and 0.0 is a model that compares.

    python benchmarks/organism_verdicts.py [--model organism] [--problems 60]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from retrosearch.organism import checkpoint_path
from retrosearch.organism.task import sample_problems
from retrosearch.organism.teacher import solve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="organism")
    parser.add_argument("--problems", type=int, default=60)
    args = parser.parse_args()
    path = checkpoint_path() if args.model == "organism" else args.model
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    yes, no = tokenizer.convert_tokens_to_ids([" yes", " no"])
    said: dict[str, list[float]] = {}
    rng = random.Random("verdicts")
    for problem in sample_problems("test", args.problems, seed=3):
        row = solve(problem, rng).to_row()
        chat = [{"role": "user", "content": row["problem"]}]
        text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) + row["response"]
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            probabilities = model(ids).logits[0].softmax(-1)
        tokens = tokenizer.convert_ids_to_tokens(ids[0])
        # a verdict reads `result , need|want value , yes|no`: the word three tokens back names its kind
        for index in range(5, len(tokens)):
            if tokens[index] in (" yes", " no") and tokens[index - 3] in (" need", " want"):
                matches = tokens[index - 5].strip() == tokens[index - 2].strip()
                before = probabilities[index - 1]
                key = f"{tokens[index - 3].strip()}_{'matching' if matches else 'not_matching'}"
                said.setdefault(key, []).append((before[yes] / (before[yes] + before[no])).item())
    print(
        json.dumps(
            {
                key: {"verdicts": len(values), "p_yes": round(statistics.fmean(values), 3)}
                for key, values in sorted(said.items())
            }
        )
    )


if __name__ == "__main__":
    main()
