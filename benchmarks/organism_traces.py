"""For the benchmark scripts: the organism's own generations (correct and incorrect) as a traces file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RETROSEARCH = [sys.executable, "-m", "retrosearch.cli"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # each run as a single-core user would, measured alone


def organism_traces(work: Path, count: int) -> Path:
    """`retrosearch generate` for `count` held-out organism problems into work/gen; its samples.jsonl."""
    generated = work / "gen"
    command = [*RETROSEARCH, "generate", "--problems", "organism", "--limit", str(count), "--output", str(generated)]
    subprocess.run(command, check=True, env=ONE_THREAD, capture_output=True)
    return generated / "samples.jsonl"
