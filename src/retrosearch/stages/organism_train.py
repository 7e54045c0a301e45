"""`retrosearch organism train`: train (or resume training) the organism into `--out`; the trainer itself is
`organism/train.py`, which needs torch, so `--help` does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retrosearch.organism.train_config import TrainConfig, TrainRun


def train_run(run: TrainRun, config: TrainConfig) -> dict[str, Any]:
    from retrosearch.organism.train import train

    return {"checkpoint": str(train(Path(run.out), config))}
