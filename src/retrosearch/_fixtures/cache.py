"""Test models built once per machine, in a cache folder (`~/.cache/retrosearch`, or `RETROSEARCH_CACHE`)."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("RETROSEARCH_CACHE") or Path.home() / ".cache" / "retrosearch")


def built_once(folder: Path, build: Callable[[Path], object]) -> Path:
    """`folder`, a Hugging Face model folder that `build(path)` writes, built on first use: written aside, then
    renamed into place (a killed build leaves no half folder), under a lock that keeps concurrent builds apart."""
    if (folder / "model.safetensors").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "model.safetensors").exists():
            building = folder.with_name(folder.name + ".building")
            shutil.rmtree(building, ignore_errors=True)
            build(building)
            building.rename(folder)
    return folder
