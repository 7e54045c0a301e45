"""The `retrosearch revise` command line as the subprocess tests run it: one thread, short rollouts."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def command_env() -> dict[str, str]:
    """The environment of a command a test starts (read when called: conftest points TMPDIR elsewhere)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}


def revise_command(input_path: Path, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "retrosearch.cli",
        "revise",
        "--input",
        str(input_path),
        "--max-new-tokens",
        "400",
        *options,
    ]
