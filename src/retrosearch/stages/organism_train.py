"""`retrosearch organism train`: train (or resume training) the organism in a run folder, which is also the
checkpoint. The trainer itself is `organism/train.py`, which needs torch, so `--help` does not. A rerun resumes from
the last evaluation's checkpoint; other settings are refused, as in every stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retrosearch.data.outputs import claim
from retrosearch.organism.train_config import TrainConfig, TrainRun
from retrosearch.stages.folder import RunFolder
from retrosearch.stages.template import run_once


def train_run(run: TrainRun, config: TrainConfig, quiet: bool = False) -> dict[str, Any]:
    def work(folder: RunFolder) -> dict[str, Any]:
        from retrosearch.organism.train import LOG_FILE, STATE_FILE, train

        for name in (STATE_FILE, "*.json", "*.safetensors", "*.jinja"):  # the checkpoint, written by transformers
            claim(folder.path / name)
        train(folder.path, config)
        last = json.loads((folder.path / LOG_FILE).read_text().splitlines()[-1])
        # stopped by --minutes: the run is not finished, and rerunning it trains on
        return {**last, "checkpoint": str(folder.path), "stopped_early": last["step"] < config.steps}

    return run_once("organism-train", Path(run.output), (run, config), run.overwrite, work, quiet=quiet)
