"""The organism: a tiny real reasoning model shipped inside the package (the embedded default)."""

from __future__ import annotations

from pathlib import Path

CHECKPOINT = Path(__file__).parent / "checkpoint"
MAX_NEW_TOKENS = 512  # the longest teacher trace is about 390 tokens


def checkpoint_path() -> Path:
    if not (CHECKPOINT / "model.safetensors").exists():
        raise FileNotFoundError(
            f"the organism checkpoint is missing at {CHECKPOINT}; train one with "
            "`retrosearch organism train --output DIR` and copy it there"
        )
    return CHECKPOINT
