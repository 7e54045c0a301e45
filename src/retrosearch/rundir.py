"""A run folder: its config hash guards resumption; manifest.json and summary.json record the run."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
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
LOCK = ".lock"
PATH_KEYS = ("input", "problems", "data_dir", "model")  # config entries that may name local paths


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


@contextmanager
def open_run(
    output: Path, payload: dict[str, Any], overwrite: bool, resume_keys: tuple[str, ...] = ()
) -> Iterator[str]:
    """Create or reopen a run folder and hold it for the run; yields the config hash. A folder made with
    another config is refused, and so is a folder another run holds.

    `resume_keys` name config entries that may change between a run and its resumption
    (batch size, device: they change speed, never results). The folder's own path is no part of the
    config, and input paths count resolved, so `--output ./x` resumes `--output x` and a moved folder
    resumes. `--overwrite` empties only a run folder (one with a manifest) or an empty one.
    """
    digest = config_hash(without(_resolved(payload), (*resume_keys, "output")))
    manifest_path = output / MANIFEST
    if output.exists() and not output.is_dir():
        raise RunError(f"{output} is a file; --output names a run folder")
    foreign = output.exists() and not manifest_path.exists() and any(c.name != LOCK for c in output.iterdir())
    if overwrite and foreign:
        raise RunError(
            f"{output} is not a retrosearch run folder (it has no {MANIFEST}); --overwrite removes only "
            "run folders: choose another --output"
        )
    output.mkdir(parents=True, exist_ok=True)
    with hold(output):
        if overwrite:
            for child in output.iterdir():
                if child.name != LOCK:
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        elif manifest_path.exists():
            previous = json.loads(manifest_path.read_text()).get("config_hash")
            if previous != digest:
                raise RunError(
                    f"{output} holds a run with another config (hash {previous}, now {digest}); "
                    "pass --overwrite to start again or choose a new --output"
                )
        yield digest


def _resolved(payload: dict[str, Any]) -> dict[str, Any]:
    """Path-valued entries (input, problems) as absolute paths where they name local files."""

    def resolve(key: str, value: Any) -> Any:
        if key in PATH_KEYS and isinstance(value, str) and value and Path(value).exists():
            return str(Path(value).resolve())
        return value

    return {
        name: {k: resolve(k, v) for k, v in section.items()} if isinstance(section, dict) else section
        for name, section in payload.items()
    }


@contextmanager
def hold(output: Path) -> Iterator[None]:
    """Hold a run folder for one run: a second run on it is refused at once. The lock is the kernel's
    (flock), so a killed run's lock is gone with it and the next run takes the folder over."""
    with open(output / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunError(f"{output} is in use by a run ({holder}); wait for it, or choose another --output") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {platform.node()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def without(payload: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The config payload with `keys` left out of every section."""
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
