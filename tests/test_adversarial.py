"""Malformed and adversarial inputs through `inspect` and `revise`: each ends with exit 0 or 2 and at most one
line of error, never a traceback, and quickly."""

import json
import time

import pytest

from retrosearch.cli import main

GOOD = {"problem": "1 + 1?", "answer": "2", "response": "<think>\nTry 2.\n\nWait, 2 works.\n</think>\n\\boxed{2}"}


def jsonl(*rows) -> bytes:
    return b"".join((row if isinstance(row, bytes) else json.dumps(row).encode()) + b"\n" for row in rows)


CASES = {
    "empty.jsonl": b"",
    "blank-lines.jsonl": b"\n\n   \n",
    "json-list-in-jsonl.jsonl": json.dumps([GOOD, GOOD]).encode(),
    "array-per-line.jsonl": jsonl(b"[1, 2, 3]"),
    "string-per-line.jsonl": jsonl(b'"abc"'),
    "number-per-line.jsonl": jsonl(b"42"),
    "null-per-line.jsonl": jsonl(b"null"),
    "problem-is-object.jsonl": jsonl({**GOOD, "problem": {"text": "x"}}),
    "problem-is-empty.jsonl": jsonl({**GOOD, "problem": "   "}),
    "answer-is-object.jsonl": jsonl({**GOOD, "answer": {"value": 2}}),
    "answer-is-bool.jsonl": jsonl({**GOOD, "answer": True}),
    "answer-is-null.jsonl": jsonl({**GOOD, "answer": None}),
    "answer-is-nan.jsonl": jsonl(b'{"problem": "p", "answer": NaN, "response": "x"}'),
    "response-is-list.jsonl": jsonl({**GOOD, "response": ["a", "b"]}),
    "response-is-number.jsonl": jsonl({**GOOD, "response": 3}),
    "response-is-null.jsonl": jsonl({**GOOD, "response": None}),
    "id-is-list.jsonl": jsonl({**GOOD, "id": [1, 2]}),
    "id-is-object.jsonl": jsonl({**GOOD, "id": {"a": 1}}),
    "id-is-null.jsonl": jsonl({**GOOD, "id": None}, {**GOOD, "id": None}),
    "id-has-newline.jsonl": jsonl({**GOOD, "id": "a\nb"}),
    "duplicate-ids.jsonl": jsonl({**GOOD, "id": "a"}, {**GOOD, "id": "a"}),
    "nul-bytes.jsonl": jsonl({**GOOD, "response": "<think>\nTry\u00002.\n</think>\n\\boxed{2}"}),
    "lone-surrogate.jsonl": jsonl(
        b'{"problem": "p\\ud800", "answer": "2", "response": "\\udcff<think>\\nx\\n</think> \\\\boxed{2}"}'
    ),
    "invalid-utf8.jsonl": jsonl(b'{"problem": "p\xff", "answer": "2", "response": "x"}'),
    "bom-crlf.jsonl": b"\xef\xbb\xbf" + jsonl(GOOD).replace(b"\n", b"\r\n"),
    "deep-nesting.jsonl": jsonl(b"[" * 100_000 + b"]" * 100_000),
    "deep-answer.jsonl": jsonl({**GOOD, "answer": "\\boxed{" * 5000 + "2" + "}" * 5000}),
    "unclosed-boxed.jsonl": jsonl({**GOOD, "response": "<think>\nx\n</think>\n" + "\\boxed{" * 20000}),
    "many-switches.jsonl": jsonl({**GOOD, "response": "<think>\n" + "Wait, 2.\n\n" * 20000 + "</think>\n\\boxed{2}"}),
    "long-spaces.jsonl": jsonl({**GOOD, "response": "the answer is" + " " * 100_000 + "2"}),
    "huge-line.jsonl": jsonl({**GOOD, "response": "<think>\n" + "x" * 5_000_000 + "\n</think>\n\\boxed{2}"}),
    "conversations-is-string.jsonl": jsonl({"conversations": "hello", "answer": "2"}),
    "conversations-odd-turns.jsonl": jsonl({"conversations": [1, None, {"from": "human"}], "answer": "2"}),
    "messages-no-assistant.jsonl": jsonl({"messages": [{"role": "user", "content": "p"}], "answer": "2"}),
    "s1k-number.jsonl": jsonl({"question": "p", "solution": "\\boxed{2}", "thinking_trajectories": 5}),
    "truncated-last-line.jsonl": jsonl(GOOD)[:-20],
    "object.json": json.dumps(GOOD).encode(),
    "broken.json": b'[{"problem": ',
    "random.parquet": b"PAR1 this is not parquet",
    "unknown.csv": b"a,b\n1,2\n",
}


def write_case(folder, name: str):
    path = folder / name
    path.write_bytes(CASES[name])
    return path


def assert_clean(code: int, capsys, seconds: float) -> None:
    err = capsys.readouterr().err
    assert code in (0, 2), err[-3000:]
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("retrosearch: error")]
    assert len(errors) <= 1 and (code == 0 or errors), err[-2000:]
    assert seconds < 60


@pytest.mark.parametrize("name", sorted(CASES))
def test_inspect_takes_any_input_without_a_traceback(name, tmp_path, capsys):
    path = write_case(tmp_path, name)
    started = time.monotonic()
    code = main(["inspect", str(path)])
    assert_clean(code, capsys, time.monotonic() - started)


@pytest.fixture
def organism_here(monkeypatch, organism_engine):
    monkeypatch.setattr("retrosearch.executors.local.load_engine", lambda config: organism_engine)


@pytest.mark.parametrize("name", sorted(CASES))
def test_revise_takes_any_input_without_a_traceback(name, tmp_path, capsys, organism_here):
    path = write_case(tmp_path, name)
    started = time.monotonic()
    code = main(["revise", "--input", str(path), "--output", str(tmp_path / "run"), "--max-new-tokens", "40"])
    assert_clean(code, capsys, time.monotonic() - started)


@pytest.mark.parametrize(
    "options",
    [
        ["--limit", "-1"],
        ["--shard", "5/2"],
        ["--shard", "x"],
        ["--partial", "0"],
        ["--gamma", "1.5"],
        ["--rollouts", "0"],
        ["--keywords", ""],
        ["--max-new-tokens", "0"],
        ["--batch-size", "0"],
        ["--concurrency", "-3"],
        ["--input", "/"],
        ["--input", "no/such/file.jsonl"],
        ["--output", "/proc/version"],
        ["--config", "/dev/null"],
    ],
)
def test_revise_refuses_impossible_options_in_one_line(options, tmp_path, capsys, organism_here):
    path = write_case(tmp_path, "bom-crlf.jsonl")
    command = ["revise", "--input", str(path), "--output", str(tmp_path / "run"), "--max-new-tokens", "40"]
    started = time.monotonic()
    code = main([*command, *options])
    assert_clean(code, capsys, time.monotonic() - started)
