"""A run folder: its config hash guards resumption; manifest.json and summary.json record the run."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from retrosearch.data import write_json

MANIFEST = "manifest.json"
SUMMARY = "summary.json"


class RunError(RuntimeError):
    """A run cannot start as asked; the message says what to do."""


def config_payload(*configs: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for config in configs:
        payload[type(config).__name__] = asdict(config) if is_dataclass(config) else config
    return payload


def config_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("retrosearch", "torch", "transformers", "tokenizers", "math-verify", "vllm", "trl"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def prepare(output: Path, payload: dict[str, Any], overwrite: bool, resume_keys: tuple[str, ...] = ()) -> str:
    """Create or reopen a run folder; refuse to resume one made with another config.

    `resume_keys` name config entries that may change between a run and its resumption
    (batch size, device: they change speed, never results).
    """
    digest = config_hash(_without(payload, resume_keys))
    manifest_path = output / MANIFEST
    if overwrite and output.exists():
        shutil.rmtree(output)
    if manifest_path.exists():
        previous = json.loads(manifest_path.read_text()).get("config_hash")
        if previous != digest:
            raise RunError(
                f"{output} holds a run with another config (hash {previous}, now {digest}); "
                "pass --overwrite to start again or choose a new --output"
            )
    output.mkdir(parents=True, exist_ok=True)
    return digest


def _without(payload: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {
        name: {k: v for k, v in section.items() if k not in keys} if isinstance(section, dict) else section
        for name, section in payload.items()
    }


def write_manifest(output: Path, payload: dict[str, Any], digest: str, extra: dict[str, Any]) -> None:
    write_json(
        output / MANIFEST,
        {"config": payload, "config_hash": digest, "versions": versions(), **extra},
    )


def print_summary(title: str, summary: dict[str, Any], console: Console | None = None) -> None:
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:,.3f}"
        elif isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
        table.add_row(key, str(value))
    (console or Console()).print(table)


def save_summary(output: Path, summary: dict[str, Any]) -> None:
    write_json(output / SUMMARY, summary)
