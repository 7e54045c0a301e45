"""A run folder: held by one run at a time, its config hash guards resumption, manifest.json and
summary.json record the run."""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import json
import os
import platform
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from retrosearch.data.outputs import LEDGER, recording, write_json, written

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
LOCK = ".lock"
TRASH = ".overwritten"  # where --overwrite moves a run's files before removing them
PATH_KEYS = ("input", "problems", "data_dir", "model", "shards", "tokenizer")  # entries that may name local paths
READ_FILES = ("system_prompt_file", "chat_template")  # files every stage that prompts reads: their contents count
WHOLE_FILE_LIMIT = 256 * 2**20  # larger files are fingerprinted by size and modification time


class RunError(RuntimeError):
    """A run cannot start as asked; the message says what to do."""


def config_payload(*configs: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for config in configs:
        payload[type(config).__name__] = asdict(config)
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


def fingerprint(path: Path) -> str:
    """What a local input holds: file contents (sizes and modification times for very large files), for a
    folder those of every file in it by relative name, hidden files (a run folder's lock) left out."""
    digest = hashlib.sha256()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    else:
        files = [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode() + b"\0")
        status = file.stat()
        if status.st_size > WHOLE_FILE_LIMIT:
            digest.update(f"{status.st_size}:{status.st_mtime_ns}".encode())
            continue
        with open(file, "rb") as handle:
            while chunk := handle.read(2**20):
                digest.update(chunk)
    return digest.hexdigest()[:16]


@dataclass
class RunFolder:
    """A run folder held for one run: its config, config hash and what the manifest records."""

    path: Path
    payload: dict[str, Any]
    digest: str
    inputs: dict[str, str]  # fingerprints of the local inputs the results depend on
    earlier_seconds: float = 0.0  # wall seconds of the runs in this folder before this one

    def write_manifest(self, facts: dict[str, Any]) -> None:
        write_json(
            self.path / MANIFEST,
            {
                "config": self.payload,
                "config_hash": self.digest,
                "input_fingerprints": self.inputs,
                "versions": versions(),
                "earlier_runs_seconds": round(self.earlier_seconds, 1),
                **facts,
            },
        )

    def finished_summary(self) -> dict[str, Any] | None:
        """The summary of an earlier run of the same config that finished, else None."""
        manifest, summary = self.path / MANIFEST, self.path / SUMMARY
        if manifest.exists() and summary.exists() and json.loads(manifest.read_text()).get("finished"):
            return json.loads(summary.read_text())
        return None

    def save_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.path / SUMMARY, summary)


@contextmanager
def open_run(
    output: Path,
    payload: dict[str, Any],
    overwrite: bool,
    resume_keys: tuple[str, ...] = (),
    fingerprinted: tuple[str, ...] = (),
) -> Iterator[RunFolder]:
    """Create or reopen a run folder and hold it for the run. A folder made with another config, or with
    other contents of the inputs named in `fingerprinted`, is refused, and so is a folder another run holds.

    `resume_keys` name config entries that may change between a run and its resumption
    (batch size, device: they change speed, never results). The folder's own path is no part of the
    config, and input paths count resolved, so `--output ./x` resumes `--output x` and a moved folder
    resumes. `--overwrite` empties only a run folder (one with a manifest) or an empty one.
    """
    resolved = comparable(payload, resume_keys)
    inputs = _fingerprints(payload, (*fingerprinted, *READ_FILES))
    digest = _digest(resolved, inputs)
    manifest_path = output / MANIFEST
    if output.exists() and not output.is_dir():
        raise RunError(f"{output} is a file; --output names a run folder")
    if output.is_symlink():
        raise RunError(f"{output} is a link; --output names a run folder of its own")
    ours = (LOCK, TRASH, LEDGER)
    foreign = output.exists() and not manifest_path.exists() and any(c.name not in ours for c in output.iterdir())
    if foreign:
        raise RunError(
            f"{output} holds files and is no retrosearch run folder (it has no {MANIFEST}); a stage writes only into "
            "an empty folder or its own run folder: choose another --output"
        )
    _refuse_inputs_inside(output, payload)
    output.mkdir(parents=True, exist_ok=True)
    earlier = 0.0
    with hold(output):
        if overwrite:
            _empty(output)
        elif manifest_path.exists():
            previous = json.loads(manifest_path.read_text())
            # the stored hash, or the stored config hashed by today's rules: a setting a later version counts as
            # speed-only (or adds as one) does not strand runs made before
            earlier_inputs = previous.get("input_fingerprints") or {}
            today = _digest(comparable(previous.get("config", {}), resume_keys), earlier_inputs)
            # inputs a run made before they were fingerprinted did not record are taken as they are now
            recorded = {key: value for key, value in inputs.items() if key in earlier_inputs}
            if not {digest, _digest(resolved, recorded)} & {previous.get("config_hash"), today}:
                raise RunError(
                    f"{output} holds a run with other {_differences(previous, resolved, inputs, resume_keys)}; "
                    "pass --overwrite to start again or choose a new --output"
                )
            earlier = seconds_so_far(output, previous)
        with recording(output):
            yield RunFolder(output, payload, digest, inputs, earlier)


def manifest_of(folder: Path) -> dict[str, Any] | None:
    """A run folder's manifest; None where the folder has none (each caller says what it needed the folder to be),
    and one line where the file is broken."""
    return _record(folder / MANIFEST)


def summary_of(folder: Path) -> dict[str, Any] | None:
    """A run folder's summary; None where it has none, and one line where the file is broken."""
    return _record(folder / SUMMARY)


def _record(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RunError(f"{path}:{error.lineno}: broken JSON ({error.msg}); is the run folder damaged?") from None


def all_runs_seconds(summary: dict[str, Any]) -> float:
    """A summary's seconds over every run of its folder; one written before those were counted holds only its
    last run's."""
    return float(summary.get("wall_seconds_all_runs", summary.get("wall_seconds")) or 0.0)


def seconds_so_far(output: Path, manifest: dict[str, Any]) -> float:
    """The wall seconds of every run the folder has seen: the last one's own, or for one that was killed (its
    manifest has no time of its own), from its start to the last file it wrote; plus those of the runs before it."""
    earlier = float(manifest.get("earlier_runs_seconds") or 0.0)
    if manifest.get("wall_seconds") is not None:
        return earlier + float(manifest["wall_seconds"])
    if not manifest.get("started"):
        return earlier
    started = datetime.fromisoformat(manifest["started"]).timestamp()
    last_write = max(path.stat().st_mtime for path in output.rglob("*") if path.name != LOCK)
    return earlier + max(0.0, last_write - started)


def _refuse_inputs_inside(output: Path, payload: dict[str, Any]) -> None:
    """A run folder never holds its own input (`--overwrite` would remove it), nor lies inside an input folder (its
    writing would change what it reads, and the next run would find the input changed)."""
    folder = output.resolve()
    for section in payload.values():
        for key, value in section.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            for item in values:
                if key not in PATH_KEYS or not _local(item):
                    continue
                option, source = f"--{key.replace('_', '-')}", Path(item).resolve()
                if source.is_relative_to(folder):
                    raise RunError(f"{option} {item} lies inside --output {output}; choose another --output")
                if source.is_dir() and folder.is_relative_to(source):
                    raise RunError(f"--output {output} lies inside {option} {item}; choose another --output")


def _ours(output: Path) -> Callable[[str], bool]:
    """Whether a name in a run folder was written by its runs (its ledger says so). A folder made before runs kept a
    ledger cannot tell: it is refused, never emptied whole."""
    if not (output / LEDGER).exists():
        if any(child.name not in (LOCK, TRASH) for child in output.iterdir()):
            raise RunError(
                f"{output} was written by a retrosearch that kept no list of the files its runs wrote, so --overwrite "
                "cannot tell them from yours: move out what you keep and delete the folder, or choose another --output"
            )
        return lambda name: True
    names = written(output) | {MANIFEST, SUMMARY, LEDGER}
    return lambda name: any(fnmatch.fnmatchcase(name, pattern) for pattern in names)


def _empty(output: Path) -> None:
    """Remove what a run folder's runs wrote (its lock kept; files they did not write stay) all or nothing, never
    following a link out: every entry is first moved into one hidden folder inside it (a rename each, undone if one
    fails), then that folder goes."""
    trash = output / TRASH
    if trash.exists():
        shutil.rmtree(trash)  # left by an earlier --overwrite that was killed while removing
    ours = _ours(output)
    trash.mkdir()
    moved: list[str] = []
    try:
        for child in sorted(output.iterdir()):
            if child.name not in (LOCK, TRASH) and ours(child.name):
                child.rename(trash / child.name)
                moved.append(child.name)
    except OSError:
        for name in moved:
            (trash / name).rename(output / name)
        trash.rmdir()
        raise
    shutil.rmtree(trash)  # removes links themselves, never what they point to


def _digest(resolved: dict[str, Any], inputs: dict[str, str] | None) -> str:
    return config_hash({**resolved, "input_fingerprints": inputs} if inputs else resolved)


def _differences(
    manifest: dict[str, Any], resolved: dict[str, Any], inputs: dict[str, str], resume_keys: tuple[str, ...]
) -> str:
    """What differs between a folder's run and this one, as 'settings (a.b, c.d)' or 'input contents (x)'."""
    keys = differing_keys(comparable(manifest.get("config", {}), resume_keys), resolved)
    if keys:
        return f"settings ({', '.join(keys)})"
    changed = sorted(k for k in inputs if manifest.get("input_fingerprints", {}).get(k) != inputs[k])
    if changed:
        return f"input contents ({', '.join(changed)} changed since)"
    return "settings (an older retrosearch's run)"


def differing_keys(first: dict[str, Any], second: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted names of the entries that differ between two config payloads (nested configs looked into)."""
    keys = []
    for key in sorted({*first, *second}):
        one, two = first.get(key), second.get(key)
        if isinstance(one, dict) and isinstance(two, dict):
            keys += differing_keys(one, two, f"{prefix}{key}.")
        elif one != two:
            keys.append(f"{prefix}{key}")
    return keys


def comparable(payload: dict[str, Any], resume_keys: tuple[str, ...]) -> dict[str, Any]:
    """What a run's results depend on, as the manifest stores it: local paths resolved, the folder's own path
    and the speed-only entries left out, tuples as JSON lists."""
    return json.loads(json.dumps(without(_resolved(payload), (*resume_keys, "output")), default=str))


def _local(value: Any) -> bool:
    """Whether a config value names a local file or folder."""
    return isinstance(value, str) and bool(value) and Path(value).exists()


def _fingerprints(payload: dict[str, Any], keys: tuple[str, ...]) -> dict[str, str]:
    """Fingerprints of the local inputs named by `keys` (nested configs looked into); a list of paths (merge's
    shards) has one of them all."""
    found = {}
    for section in payload.values():
        for key, value in section.items():
            if isinstance(value, dict):
                found.update(_fingerprints({key: value}, keys))
            elif key in keys and _local(value):
                found[key] = fingerprint(Path(value))
            elif key in keys and isinstance(value, (list, tuple)) and value and all(map(_local, value)):
                found[key] = config_hash([fingerprint(Path(item)) for item in value])
    return found


def _resolved(payload: dict[str, Any]) -> dict[str, Any]:
    """Path-valued entries (input, problems) as absolute paths where they name local files."""

    def resolve(key: str, value: Any) -> Any:
        if key in PATH_KEYS and isinstance(value, (list, tuple)):
            return [resolve(key, item) for item in value]
        return str(Path(value).resolve()) if key in PATH_KEYS and _local(value) else value

    return {name: {k: resolve(k, v) for k, v in section.items()} for name, section in payload.items()}


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
    return {name: {k: v for k, v in section.items() if k not in keys} for name, section in payload.items()}
