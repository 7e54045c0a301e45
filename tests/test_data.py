import json

import pyarrow as pa
import pyarrow.parquet as pq

from retrosearch.cli import main
from retrosearch.data.inputs import FieldMap, read_samples, with_response

SHAPES = [
    {"id": "r1", "problem": "p", "answer": "2", "response": "<think>\nx\n</think>\n\n\\boxed{2}"},
    {"question": "p", "gt": "2", "code": ["<|begin_of_thought|>\n\nx<|end_of_thought|>\n\n\\boxed{2}"], "idx": 7},
    {
        "id": "c",
        "answer": "2",
        "conversations": [
            {"from": "user", "value": "p"},
            {"from": "assistant", "value": "<think>x</think> \\boxed{2}"},
        ],
    },
    {
        "id": "m",
        "answer": "2",
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "p"},
            {"role": "assistant", "content": "x \\boxed{2}"},
        ],
    },
    {
        "id": "s1k",
        "question": "p",
        "solution": "so \\boxed{2}",
        "thinking_trajectories": ["x"],
        "attempt": "\\boxed{2}",
    },
]


def test_common_shapes_are_read_and_written_back_in_their_own_layout(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in SHAPES))
    samples = read_samples(str(path))
    assert [s.id for s in samples] == ["r1", "7", "c", "m", "s1k"]
    assert all(s.problem == "p" and s.gold == "2" for s in samples)
    assert samples[4].response == "<think>\nx\n</think>\n\n\\boxed{2}"
    for sample, original in zip(samples, SHAPES, strict=True):
        assert with_response(sample, sample.response) == original
    rewritten = with_response(samples[2], "new")
    assert rewritten["conversations"][1]["value"] == "new" and SHAPES[2]["conversations"][1]["value"] != "new"


def test_generic_field_map_and_gold_from_trace(tmp_path):
    path = tmp_path / "custom.jsonl"
    path.write_text(json.dumps({"q": "p", "out": "so \\boxed{5}"}) + "\n")
    (sample,) = read_samples(str(path), FieldMap(problem="q", trace="out", gold_from_trace=True))
    assert (sample.problem, sample.gold, sample.id) == ("p", "5", "row-1")


def test_parquet_input_and_inspect_figures(tmp_path, shared_traces, capsys):
    rows = [json.loads(line) for line in shared_traces[0].read_text().splitlines()]
    table = pa.Table.from_pylist(
        [{"id": r["idx"], "problem": r["question"], "answer": r["answer"], "response": r["code"][0]} for r in rows]
    )
    parquet = tmp_path / "traces.parquet"
    pq.write_table(table, parquet)
    assert main(["inspect", str(shared_traces[0]), str(parquet), "--json"]) == 0
    jsonl_figures, parquet_figures = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert jsonl_figures["traces"] == parquet_figures["traces"] == len(rows)
    for key in (
        "tokens_mean",
        "tokens_median",
        "steps_mean",
        "thoughts_mean",
        "switches_mean",
        "switches_per_keyword",
        "answer_share",
        "correct_share",
    ):
        assert jsonl_figures[key] == parquet_figures[key]
    assert jsonl_figures["switches_mean"] > 1 and jsonl_figures["switches_per_keyword"]["Wait"] > 0


def test_a_byte_order_mark_is_read_and_bad_bytes_get_one_line(tmp_path, capsys):
    row = {"id": "a", "problem": "p", "answer": "2", "response": "<think>\nx\n</think>\n\n\\boxed{2}"}
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + (json.dumps(row) + "\n").encode())
    assert [s.id for s in read_samples(str(bom))] == ["a"]
    listed = tmp_path / "bom.json"
    listed.write_bytes(b"\xef\xbb\xbf" + json.dumps([row]).encode())
    assert [s.id for s in read_samples(str(listed))] == ["a"]
    broken = tmp_path / "latin1.jsonl"
    broken.write_bytes((json.dumps(row) + "\n").encode() + b'{"id": "b", "problem": "caf\xe9"}\n')
    assert main(["revise", "--input", str(broken), "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"retrosearch: error: {broken}:2: not UTF-8 (byte 28 of the line); re-encode the file as UTF-8"
    assert not (tmp_path / "out").exists()


def test_s1k_write_back_when_the_reasoning_closes_without_a_newline():
    record = {"id": "s", "question": "p", "answer": "2", "thinking_trajectories": ["a\n\nb"], "attempt": "\\boxed{2}"}
    sample = read_one(record)
    assert with_response(sample, sample.response) == record
    written = with_response(sample, "<think>\na\n\nc</think>\n\n\\boxed{2} done")
    assert written["thinking_trajectories"] == ["a\n\nc"] and written["attempt"] == "\\boxed{2} done"
    unclosed = with_response(sample, "<think>\na\n\nc")
    assert unclosed["thinking_trajectories"] == ["a\n\nc"] and unclosed["attempt"] == ""


def test_a_corrupt_line_in_an_existing_output_gets_one_line(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "a", "problem": "p", "answer": "2", "response": "x \\boxed{3}"}) + "\n")
    out = tmp_path / "out"
    assert main(["revise", "--input", str(source), "--output", str(out)]) == 0
    (out / "revised.jsonl").write_text('garbage\n{"id": "a"}\n')
    assert main(["revise", "--input", str(source), "--output", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.endswith(
        "revised.jsonl:1: this output line is not a row of ours; remove or fix it, or start afresh with --overwrite"
    )


def read_one(record: dict):
    from retrosearch.data.inputs import to_sample

    return to_sample(record, "f.jsonl:1", FieldMap(), 1)


def test_an_appended_log_line_is_readable_utf8(tmp_path):
    from retrosearch.data.outputs import append_jsonl

    append_jsonl(tmp_path / "log.jsonl", {"id": "é", "note": "数学"})
    append_jsonl(tmp_path / "log.jsonl", {"id": "b"})
    assert (tmp_path / "log.jsonl").read_bytes().decode("utf-8") == '{"id": "é", "note": "数学"}\n{"id": "b"}\n'


def test_a_whole_jsonl_file_is_readable_utf8(tmp_path):
    from retrosearch.data.outputs import write_jsonl

    write_jsonl(tmp_path / "rows.jsonl", [{"id": "é"}, {"id": "数学"}])
    assert (tmp_path / "rows.jsonl").read_bytes().decode("utf-8") == '{"id": "é"}\n{"id": "数学"}\n'


def test_a_json_file_is_indented_readable_utf8_and_takes_paths(tmp_path):
    from pathlib import Path

    from retrosearch.data.outputs import write_json

    write_json(tmp_path / "facts.json", {"model": "é", "input": Path("/data/x.jsonl")})
    assert (tmp_path / "facts.json").read_bytes().decode("utf-8") == (
        '{\n  "model": "é",\n  "input": "/data/x.jsonl"\n}\n'
    )


def test_an_appender_writes_readable_utf8_and_counts_an_error_row_as_not_done(tmp_path):
    from retrosearch.data.outputs import JsonlAppender

    appender = JsonlAppender(tmp_path / "rows.jsonl")
    appender.write({"id": "a", "text": "数学"})
    appender.write({"id": "b", "status": "error"})
    assert appender.done == {"a"}
    appender.write({"id": "b", "status": "revised"})
    assert appender.done == {"a", "b"}
    appender.close()
    assert (tmp_path / "rows.jsonl").read_bytes().decode("utf-8").splitlines()[0] == '{"id": "a", "text": "数学"}'
    reopened = JsonlAppender(tmp_path / "rows.jsonl")
    assert reopened.done == {"a", "b"}  # b's error row was superseded by its later row
    reopened.close()


def test_an_appender_makes_missing_folders_drops_a_torn_line_and_takes_each_ids_last_row(tmp_path):
    from retrosearch.data.outputs import JsonlAppender

    nested = tmp_path / "a" / "b" / "rows.jsonl"
    JsonlAppender(nested).close()
    assert nested.exists()
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(b"{")  # a run killed while writing its first row
    JsonlAppender(torn).close()
    assert torn.read_bytes() == b""
    retried = tmp_path / "retried.jsonl"
    retried.write_text('{"id": "a"}\n{"id": "a", "status": "error"}\n{"id": "b", "status": "error"}\n{"id": "b"}\n')
    appender = JsonlAppender(retried)
    assert appender.done == {"b"}  # a's last row is an error: it is tried again, as write_in_order keeps that row
    appender.close()


def test_claims_reach_only_the_ledgers_of_the_folders_a_path_lies_in_and_once(tmp_path):
    from retrosearch.data.outputs import LEDGER, claim, recording, written

    run, other = tmp_path / "run", tmp_path / "other"
    run.mkdir()
    other.mkdir()
    with recording(run):
        claim(run / "checkpoint-*")
        claim(run / "checkpoint-*")
        claim(run / "final" / "model.safetensors")
        claim(other / "elsewhere.json")  # outside the run folder: no ledger of it lists it
        claim(run)  # the folder itself is no name in it
        claim(run / LEDGER)
    assert (run / LEDGER).read_text(encoding="utf-8").splitlines() == ["checkpoint-*", "final"]
    assert written(run) == {"checkpoint-*", "final"} and not (other / LEDGER).exists()
