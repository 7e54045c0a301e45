"""The `retrosearch revise` command line as the subprocess tests run it: one thread, short rollouts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: Ray takes this machine's node address to be 127.0.0.1 (else it resolves
# loopback to the outward interface), so every Ray process the tests start listens on and dials loopback only
ONE_MACHINE = {"OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def command_env() -> dict[str, str]:
    """The environment of a command a test starts (read when called: conftest points TMPDIR elsewhere)."""
    return {**os.environ, **ONE_MACHINE}


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
