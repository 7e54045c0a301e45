"""Reading inputs: samples (traces) and problems in the common shapes, from files or the hub.

Readers yield `Sample`s with the file and line they came from; bad input raises `DataError` with a
one-line message naming file, line and field, before anything is written.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrosearch.answers import extract_answer

PROBLEM_FIELDS = ("problem", "question", "prompt", "input")
ANSWER_FIELDS = ("answer", "gold", "gt", "ground_truth", "final_answer", "expected_answer")
TRACE_FIELDS = ("response", "generation", "output", "completion", "trace", "code", "model_output")
ID_FIELDS = ("id", "idx", "unique_id", "problem_id", "uid")
CHAT_FIELDS = ("conversations", "messages")


class DataError(ValueError):
    """Bad input: the message is one line naming file, line and field, and what to do."""


@dataclass(frozen=True)
class FieldMap:
    """Which fields hold problem, gold answer and trace; None means detect the common shapes."""

    problem: str | None = None
    answer: str | None = None
    trace: str | None = None
    id: str | None = None
    gold_from_trace: bool = False  # the dataset holds only correct traces: their answer is gold


@dataclass
class Sample:
    id: str
    problem: str
    gold: str | None
    response: str
    source: str  # file:line, for messages
    record: dict[str, Any] = field(default_factory=dict)
    layout: str = "field"  # how `response` maps back into `record`
    trace_field: str = ""
    newline: str = "\n"  # the input's line ending: the trace is read with "\n" and written back with this


def _first(record: dict, names: Iterable[str]) -> str | None:
    return next((name for name in names if name in record), None)


def _text(value: Any) -> Any:
    """Harness outputs store the model output as a one-element list."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    return value


def _chat_turns(record: dict, name: str) -> tuple[str | None, str | None]:
    user = assistant = None
    for turn in record[name]:
        if not isinstance(turn, dict):
            continue
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if role in ("user", "human") and user is None:
            user = content
        elif role in ("assistant", "gpt"):
            assistant = content
    return user, assistant


def _field(record: dict, named: str | None, candidates: tuple[str, ...], where: str, option: str) -> str | None:
    """The field to read: the one named with `option` (it must be there), else the first candidate present."""
    if named is None:
        return _first(record, candidates)
    if named not in record:
        raise DataError(f"{where}: field '{named}' is missing; check {option}")
    return named


def record_id(record: dict, fields: FieldMap, where: str, default: str) -> str:
    id_field = _field(record, fields.id, ID_FIELDS, where, "--id-field")
    if id_field is None:
        return default
    value = record[id_field]
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(
            f"{where}: the id ('{id_field}') is missing; give every row an id, or name another with --id-field"
        )
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise DataError(f"{where}: the id ('{id_field}') is {type(value).__name__}, not text or a number; fix the row")
    return str(value)


def record_problem(record: Any, where: str, problem_field: str | None = None) -> str:
    """The problem text of a row in any layout the tool reads: the field named, else a chat's first user turn,
    else the first of the usual problem fields."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object per row, got {type(record).__name__}")
    chat = _first(record, CHAT_FIELDS)
    if problem_field is None and chat and isinstance(record[chat], list):
        problem = _chat_turns(record, chat)[0]
    else:
        named = _field(record, problem_field, PROBLEM_FIELDS, where, "--problem-field")
        problem = None if named is None else record[named]
    if not isinstance(problem, str) or not problem.strip():
        raise DataError(
            f"{where}: no problem text (looked for {', '.join(PROBLEM_FIELDS)}, a chat's user turn); "
            "name it with --problem-field"
        )
    _check_unicode(problem, where, "problem")
    return problem


def to_sample(record: dict, where: str, fields: FieldMap, row_number: int) -> Sample:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object per row, got {type(record).__name__}")
    layout, trace_field = "field", fields.trace
    problem = gold = response = None
    chat = _first(record, CHAT_FIELDS)
    if fields.trace is None and chat and isinstance(record[chat], list):
        problem, response = _chat_turns(record, chat)
        layout, trace_field = "chat", chat
    elif fields.trace is None and "thinking_trajectories" in record:
        thinking = _text(record["thinking_trajectories"])
        response = f"<think>\n{thinking}\n</think>\n\n{record.get('attempt', '')}"
        layout, trace_field = "s1k", "thinking_trajectories"
    else:
        trace_field = _field(record, fields.trace, TRACE_FIELDS, where, "--trace-field")
        if trace_field is None:
            raise DataError(
                f"{where}: no trace field (looked for {', '.join(TRACE_FIELDS)}, conversations, "
                "thinking_trajectories); name it with --trace-field"
            )
        response = _text(record[trace_field])
    problem_field = _field(record, fields.problem, PROBLEM_FIELDS, where, "--problem-field")
    if problem_field is not None:
        problem = record[problem_field]
    if not isinstance(problem, str) or not problem.strip():
        raise DataError(
            f"{where}: no problem text (looked for {', '.join(PROBLEM_FIELDS)}); name it with --problem-field"
        )
    if not isinstance(response, str):
        raise DataError(f"{where}: field '{trace_field}' is not text; name the trace with --trace-field")
    answer_field = _field(record, fields.answer, ANSWER_FIELDS, where, "--answer-field")
    if answer_field is not None:
        gold = _gold_text(record[answer_field])
    elif fields.gold_from_trace:
        gold = extract_answer(response)
    elif "solution" in record and isinstance(record["solution"], str):
        gold = extract_answer(record["solution"])
    if gold is None and not fields.gold_from_trace:
        raise DataError(
            f"{where}: no gold answer (looked for {', '.join(ANSWER_FIELDS)}, solution); "
            "name it with --answer-field, or pass --gold-from-trace for a dataset of correct traces"
        )
    sample_id = record_id(record, fields, where, f"row-{row_number}")
    for name, text in (("problem", problem), ("trace", response), ("gold answer", gold), ("id", sample_id)):
        _check_unicode(text, where, name)
    newline = "\r\n" if "\r\n" in response else "\n"  # steps are split on blank lines, whatever the line ending
    return Sample(
        sample_id, problem, gold, response.replace("\r\n", "\n"), where, record, layout, trace_field or "", newline
    )


def _check_unicode(text: str | None, where: str, what: str) -> None:
    """JSON may hold lone surrogates (\\ud800), which no tokenizer or UTF-8 file takes: refuse them here."""
    if text is None:
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise DataError(
            f"{where}: the {what} holds {text[error.start]!r} at character {error.start + 1}, not valid Unicode "
            "(a lone surrogate); fix the text"
        ) from None


def _gold_text(value: Any) -> str | None:
    value = _text(value)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None if value is None else str(value)


def with_response(sample: Sample, response: str) -> dict[str, Any]:
    """The input record with its trace replaced by `response`, in the input's own layout and line endings."""
    record = dict(sample.record)

    def written(text: str) -> str:
        return text.replace("\n", sample.newline) if sample.newline != "\n" else text

    if sample.layout == "chat":
        turns = [dict(t) for t in record[sample.trace_field]]
        for turn in reversed(turns):
            if turn.get("role", turn.get("from")) in ("assistant", "gpt"):
                turn["content" if "content" in turn else "value"] = written(response)
                break
        record[sample.trace_field] = turns
    elif sample.layout == "s1k":
        thinking, attempt = (written(part) for part in _split_s1k(response))
        original = record["thinking_trajectories"]
        record["thinking_trajectories"] = [thinking] if isinstance(original, list) else thinking
        record["attempt"] = attempt
    else:
        original = record.get(sample.trace_field)
        is_list = isinstance(original, list) and len(original) == 1
        record[sample.trace_field] = [written(response)] if is_list else written(response)
    return record


def _split_s1k(response: str) -> tuple[str, str]:
    """(thinking, attempt) of a response built as "<think>\\n{thinking}\\n</think>\\n\\n{attempt}", also when a
    revision closed the reasoning without the newline before the marker."""
    opened = response.find("<think>")
    start = 0 if opened < 0 else opened + len("<think>")
    close = response.find("</think>", start)
    if close < 0:
        return response[start:].removeprefix("\n"), ""
    thinking = response[start:close].removeprefix("\n").removesuffix("\n")
    return thinking, response[close + len("</think>") :].removeprefix("\n\n")


def read_records(path: str) -> Iterator[tuple[dict, str]]:
    """(record, 'file:line') pairs from JSONL, JSON, Parquet or a Hugging Face dataset id."""
    local = Path(path)
    if not local.exists():
        if not _looks_like_hub_id(path):
            raise DataError(f"{path}: no such file")
        yield from _hub_records(path)
        return
    if local.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty; give a file with one sample per line")
    if local.suffix == ".parquet":
        import pyarrow.parquet as pq

        for number, record in enumerate(pq.read_table(local).to_pylist(), start=1):
            yield record, f"{path}:row {number}"
        return
    if local.suffix == ".json":
        try:
            records = json.loads(_utf8(local.read_bytes(), path, "the file"))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{error.lineno}: broken JSON ({error.msg})") from None
        except RecursionError:
            raise DataError(f"{path}: JSON nested too deeply to read") from None
        if not isinstance(records, list):
            raise DataError(f"{path}: expected a JSON list of samples")
        for number, record in enumerate(records, start=1):
            yield record, f"{path}:item {number}"
        return
    if local.suffix not in (".jsonl", ".ndjson"):
        raise DataError(f"{path}: unknown format '{local.suffix}'; use .jsonl, .json or .parquet")
    with open(local, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = _utf8(raw, f"{path}:{number}", "the line")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}:{number}: broken JSON line ({error.msg}); fix or remove it") from None
            except RecursionError:
                raise DataError(f"{path}:{number}: JSON nested too deeply to read; fix or remove the line") from None
            yield record, f"{path}:{number}"


def _utf8(data: bytes, where: str, what: str) -> str:
    """Text of UTF-8 bytes (a byte-order mark dropped), or one line saying where they are not UTF-8."""
    try:
        return data.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{where}: not UTF-8 (byte {error.start + 1} of {what}); re-encode the file as UTF-8") from None


def _looks_like_hub_id(path: str) -> bool:
    name = path.partition(":")[0].partition("@")[0]
    return name.count("/") == 1 and not name.startswith((".", "/")) and Path(name).suffix == ""


HUB_DEFAULT_SPLIT = "train"


def _hub_records(dataset_id: str) -> Iterator[tuple[dict, str]]:
    """Rows of a hub dataset named name, name:split or name@config:split (default split: train)."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"{dataset_id}: not a local file; `pip install datasets` to read hub datasets") from None
    name, _, split = dataset_id.partition(":")
    name, _, config = name.partition("@")
    dataset = datasets.load_dataset(name, config or None, split=split or HUB_DEFAULT_SPLIT)
    for number, record in enumerate(dataset, start=1):
        yield record, f"{dataset_id}:row {number}"


def _unique(item_id: str, where: str, seen: dict[str, str]) -> None:
    """Refuse an id met before (naming both rows); remember it otherwise."""
    if item_id in seen:
        raise DataError(f"{where}: id '{item_id}' repeats {seen[item_id]}; ids must be unique")
    seen[item_id] = where


def iter_samples(path: str, fields: FieldMap = FieldMap(), limit: int | None = None) -> Iterator[Sample]:
    """Samples one at a time (ids must be unique): a dataset need not fit in memory."""
    seen: dict[str, str] = {}
    for number, (record, source) in enumerate(read_records(path), start=1):
        if limit is not None and number > limit:
            break
        sample = to_sample(record, source, fields, number)
        _unique(sample.id, source, seen)
        yield sample


def sample_ids(path: str, fields: FieldMap = FieldMap(), limit: int | None = None) -> list[str]:
    """Check every sample before any work starts (a streaming pass); their ids in input order."""
    ids = [sample.id for sample in iter_samples(path, fields, limit)]
    if not ids:
        raise DataError(f"{path}: no samples found")
    return ids


def read_samples(path: str, fields: FieldMap = FieldMap(), limit: int | None = None) -> list[Sample]:
    """All samples of a file, checked (ids must be unique)."""
    samples = list(iter_samples(path, fields, limit))
    if not samples:
        raise DataError(f"{path}: no samples found")
    return samples


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@dataclass
class ProblemRow:
    id: str
    problem: str
    gold: str | None


ORGANISM_PROBLEMS = ("organism", "organism:test", "organism:train")
ORGANISM_DEFAULT_COUNT = 500


def read_problems(
    source: str,
    fields: FieldMap = FieldMap(),
    limit: int | None = None,
    seed: int = 0,
    gold: Callable[[Any], str | None] | None = None,
    require_gold: bool = True,
    id_prefix: str | None = None,
) -> list[ProblemRow]:
    """Problems with gold answers: the one reader for problem sets. `source` is 'organism' (held-out),
    'organism:train', a file, or a hub id (name, name:split or name@config:split). `gold` turns a stored
    answer into text; without `require_gold`, rows lacking one come back with gold None. With `id_prefix`,
    problems are named prefix-N by their row number instead of by an id field."""
    if source in ORGANISM_PROBLEMS:
        from retrosearch.organism.task import sample_problems

        split = "train" if source.endswith(":train") else "test"
        chosen = sample_problems(split, limit or ORGANISM_DEFAULT_COUNT, seed=seed)
        return [ProblemRow(p.id, p.text, str(p.answer)) for p in chosen]
    problems: list[ProblemRow] = []
    seen: dict[str, str] = {}
    for number, (record, where) in enumerate(read_records(source), start=1):
        if limit is not None and len(problems) >= limit:
            break
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object per row, got {type(record).__name__}")
        problem_field = _field(record, fields.problem, PROBLEM_FIELDS, where, "--problem-field")
        if problem_field is None or not isinstance(record[problem_field], str):
            raise DataError(f"{where}: no problem text (looked for {', '.join(PROBLEM_FIELDS)}); use --problem-field")
        answer_field = _field(record, fields.answer, ANSWER_FIELDS, where, "--answer-field")
        answer = None
        if answer_field is not None:
            answer = (gold or _gold_text)(record[answer_field])
        elif isinstance(record.get("solution"), str):
            answer = extract_answer(record["solution"])
        if answer is None and require_gold:
            raise DataError(f"{where}: no gold answer (looked for {', '.join(ANSWER_FIELDS)}); use --answer-field")
        problem_id = f"{id_prefix}-{number}" if id_prefix else record_id(record, fields, where, f"problem-{number}")
        for name, text in (("problem", record[problem_field]), ("gold answer", answer), ("id", problem_id)):
            _check_unicode(text, where, name)
        _unique(problem_id, where, seen)
        problems.append(ProblemRow(problem_id, record[problem_field], answer))
    if not problems:
        raise DataError(f"{source}: no problems found")
    return problems
