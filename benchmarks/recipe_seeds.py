"""Mean and spread of a recipe repeated with several seeds (`retrosearch run RECIPE --seed N`), over the run folders
named, in any number and order:

    python benchmarks/recipe_seeds.py runs/organism-self-improve runs/organism-self-improve-seed2 ...

Prints one JSON object: per evaluated model, every averaged figure and change from the recipe's baseline (accuracy
points, tokens ratio, SFT data tokens ratio, ...) with its mean, sample standard deviation and value in each run, by
folder. The recipe records the same (`over_seeds` in recipe_summary.json) for the repeats it finds beside its own
folder; this script takes any set of folders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from retrosearch.pipelines.comparison import over_seeds, read_comparison


def main() -> None:
    comparisons = {folder: read_comparison(Path(folder)) for folder in sys.argv[1:]}
    unread = [folder for folder, comparison in comparisons.items() if comparison is None]
    if not comparisons or unread:
        sys.exit(
            f"recipe_seeds: {', '.join(unread) or 'no run folder named'}: no comparison in a recipe_summary.json "
            "(the recipe has not finished, or ran before comparisons were recorded); run the recipe"
        )
    print(json.dumps(over_seeds(comparisons)))


if __name__ == "__main__":
    main()
