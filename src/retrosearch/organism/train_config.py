"""The settings of `retrosearch organism train` (apart from the trainer, so `--help` needs no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from retrosearch.config import option, overwrite_option


@dataclass(frozen=True)
class TrainConfig:
    steps: int = option(2600, "optimizer steps")
    minutes: float | None = option(None, "stop after this much wall time (rerun to go on)", speed_only=True)
    batch_size: int = option(32, "traces per step")
    learning_rate: float = option(2e-3, "peak learning rate")
    min_learning_rate: float = option(2e-4, "learning rate at the end of the cosine")
    warmup_steps: int = option(100, "linear warm-up steps")
    weight_decay: float = option(0.1, "AdamW weight decay")
    grad_clip: float = option(1.0, "gradient norm clip")
    eval_every: int = option(250, "steps between evaluations")
    eval_problems: int = option(64, "held-out problems per evaluation")
    seed: int = option(0, "data and init seed")
    threads: int | None = option(None, "torch CPU threads (default: torch's choice)", speed_only=True)
    init_from: str | None = option(None, "start from these weights with a fresh optimizer (e.g. to retrain habits)")


@dataclass(frozen=True)
class TrainRun:
    output: str = option("runs/organism", "run folder, also the checkpoint (rerunning the same command resumes it)")
    overwrite: bool = overwrite_option()
