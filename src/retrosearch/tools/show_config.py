"""`retrosearch show-config RUN`: the command line that reproduces a run, its config hash, input fingerprints and
versions, from the run folder's manifest; for a recipe's folder, the same for each of its stages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrosearch.config import option
from retrosearch.data.inputs import DataError
from retrosearch.stages.folder import MANIFEST
from retrosearch.stages.folder import manifest_of as recorded


@dataclass(frozen=True)
class ShowConfigConfig:
    run: str = option("", "a run folder (a recipe's folder: each of its stages)", positional=True)
    json: bool = option(False, "print the manifests as JSON instead of lines")


def manifest_of(folder: Path) -> dict[str, Any]:
    manifest = recorded(folder)
    if manifest is None:
        raise DataError(f"{folder}: no {MANIFEST}; give a run folder that retrosearch wrote")
    return manifest


def stage_folders(folder: Path) -> list[Path]:
    """A recipe folder's stage folders (those with a manifest), in the order they finished."""
    stages = [child for child in folder.iterdir() if child.is_dir() and (child / MANIFEST).is_file()]
    return sorted(stages, key=lambda child: (manifest_of(child).get("finished") or "~", child.name))


def described(folder: Path, manifest: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{name} {version}" for name, version in (manifest.get("versions") or {}).items() if version)
    lines = [
        f"{folder}: {manifest.get('command')}, "
        + (f"finished {manifest['finished']}" if manifest.get("finished") else "not finished")
    ]
    lines.append(f"  command line: {manifest.get('command_line')}")
    if manifest.get("config_hash"):
        lines.append(f"  config hash:  {manifest['config_hash']}")
    if manifest.get("input_fingerprints"):
        fingerprints = ", ".join(f"{key} {value}" for key, value in manifest["input_fingerprints"].items())
        lines.append(f"  inputs:       {fingerprints}")
    if versions:
        lines.append(f"  versions:     {versions}")
    return lines


def show_config(config: ShowConfigConfig) -> dict[str, Any]:
    """Print how a run (or each stage of a recipe's run) was made; returns the manifests by folder."""
    if not config.run:
        raise ValueError("show-config needs RUN: a run folder")
    folder = Path(config.run)
    manifest = manifest_of(folder)
    manifests = {str(folder): manifest}
    if manifest.get("command") == "run":
        manifests |= {str(stage): manifest_of(stage) for stage in stage_folders(folder)}
    if config.json:
        print(json.dumps(manifests, indent=2, ensure_ascii=False))
    else:
        print("\n".join(line for path, found in manifests.items() for line in described(Path(path), found)))
    return {"manifests": manifests}
