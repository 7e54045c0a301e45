"""Durable outputs: every file a command writes goes through here.

Three ways to write: `JsonlAppender` (append-only rows keyed by id, each flushed the moment it is done, so a
rerun resumes), `write_in_order` (the rows rewritten in input order, whole-or-nothing) and whole files
(`write_whole`, `write_json`, `write_jsonl`: a temporary file renamed into place, so a reader never sees half
of one and a full disk leaves the old file).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from retrosearch.data.inputs import DataError

LEDGER = ".written"  # in a run folder: the names its runs wrote (or patterns a library writes), one a line
_RUN_FOLDERS: ContextVar[tuple[Path, ...]] = ContextVar("retrosearch_run_folders", default=())


@contextmanager
def recording(folder: Path) -> Iterator[None]:
    """While inside, every file written under `folder` (through this module, or claimed) is recorded in its ledger,
    so that `--overwrite` removes what runs wrote and nothing else."""
    token = _RUN_FOLDERS.set((*_RUN_FOLDERS.get(), folder.resolve()))
    try:
        yield
    finally:
        _RUN_FOLDERS.reset(token)


def claim(path: Path | str) -> None:
    """Record that a run writes `path` (or, with wildcards, the names matching it), before it is written: the run
    folders it lies in list its top-level name. For files written by libraries (checkpoints, weights)."""
    target = Path(path).parent.resolve() / Path(path).name
    for folder in _RUN_FOLDERS.get():
        if target != folder and target.is_relative_to(folder):
            name = target.relative_to(folder).parts[0]
            if name != LEDGER and name not in written(folder):
                with open(folder / LEDGER, "a", encoding="utf-8") as ledger:
                    ledger.write(name + "\n")


def written(folder: Path) -> set[str]:
    """The names (or patterns) a run folder's runs wrote."""
    ledger = folder / LEDGER
    return set(ledger.read_text(encoding="utf-8").splitlines()) if ledger.exists() else set()


class JsonlAppender:
    """Append-only JSONL keyed by id: rerunning skips the ids already finished. A row that is an error is
    not finished: a rerun tries it again, and its new row supersedes it (see `write_in_order`)."""

    def __init__(self, path: Path, overwrite: bool = False) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        claim(path)
        if overwrite and path.exists():
            path.unlink()
        self._drop_torn_tail()
        self.done: set[str] = set()
        if path.exists():
            for _, row in _indexed_rows(path):
                if row.get("status") == "error":
                    self.done.discard(row["id"])
                else:
                    self.done.add(row["id"])
        self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held open for the run, closed by close()

    def _drop_torn_tail(self) -> None:
        """A run killed mid-write leaves a last line without its newline: drop it."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as handle:
            data = handle.read()
            if not data.endswith(b"\n"):
                handle.truncate(data.rfind(b"\n") + 1)

    def write(self, row: Any) -> None:
        """Append a row (a dict or a typed row, a dataclass) and flush it to the file at once."""
        row = asdict(row) if is_dataclass(row) and not isinstance(row, type) else row
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        if row.get("status") != "error":
            self.done.add(row["id"])

    def close(self) -> None:
        self._handle.close()


def _indexed_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(byte offset, row) of each line of an output file; a line that is no row of ours stops with one line."""
    offset = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                row = None
            if not isinstance(row, dict) or "id" not in row:
                raise DataError(
                    f"{path}:{number}: this output line is not a row of ours; "
                    "remove or fix it, or start afresh with --overwrite"
                )
            yield offset, row
            offset += len(raw)


def write_in_order(path: Path, ids: Iterable[str]) -> None:
    """Rewrite an output file in input order, each id once (its last row wins: a retried error is replaced),
    whole-or-nothing. Rows are copied by offset, so memory holds offsets, not rows; rows of ids not listed
    follow in file order."""
    if not path.exists():
        return
    last: dict[str, int] = {}
    lines = 0
    for offset, row in _indexed_rows(path):
        last.pop(row["id"], None)  # re-inserted: the dict's order is the order of each id's last row
        last[row["id"]] = offset
        lines += 1
    wanted = list(dict.fromkeys(row_id for row_id in ids if row_id in last))
    listed = set(wanted)
    order = [*wanted, *(row_id for row_id in last if row_id not in listed)]
    if lines == len(order) and order == list(last):
        return  # already in order, each id once: a finished run's file is left untouched
    with _whole(path) as temporary, open(path, "rb") as source, open(temporary, "wb") as target:
        for row_id in order:
            source.seek(last[row_id])
            target.write(source.readline())


@contextmanager
def _whole(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` that replaces it once written, or is removed if the writing fails (a full
    disk): a file is written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    claim(path)
    temporary = path.with_suffix(path.suffix + ".tmp")
    try:
        yield temporary
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    temporary.replace(path)


def write_whole(path: Path, text: str) -> None:
    """Write whole-or-nothing: a temporary file renamed into place, so a reader never sees half of it."""
    with _whole(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_json(path: Path, payload: Any) -> None:
    write_whole(path, json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    """Append one row to a log (no ids, nothing resumed from it), on disk at once."""
    claim(path)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write a whole JSONL file at once: a temporary file renamed into place."""
    with _whole(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
