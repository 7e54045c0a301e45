"""First-correct-solution cuts: the rule on scripted traces (exact texts), a property over generated traces, the
real traces in ../shared, and `retrosearch cut` end to end on every input layout."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from retrosearch.answers import extract_answer, is_correct
from retrosearch.cli import main
from retrosearch.organism import checkpoint_path
from retrosearch.organism.task import confirmed_candidate
from retrosearch.search.first_correct import CUT, NO_CORRECT_ROUND, NOTHING_AFTER, first_correct_cut, stated_answer
from retrosearch.stages.revise import RevisedRow
from retrosearch.stages.sft import SFTRunConfig, training_pairs
from retrosearch.trace import SEPARATOR, parse

SOLUTION = "\n</think>\n\nSo the area is \\boxed{12}."


def think(*steps: str, solution: str = SOLUTION) -> str:
    return "<think>\n" + SEPARATOR.join(steps) + solution


def equal(gold: str, answer: str) -> bool:
    return gold == answer


def test_the_cut_ends_the_reasoning_at_the_round_that_first_states_the_gold_answer():
    trace = think("Area is 3 times 4.", "So \\boxed{12}.", "Wait, check: 4 times 3.", "Yes, the answer is 12.")
    result = first_correct_cut(parse(trace), "12", equal)
    assert result.text == think("Area is 3 times 4.", "So \\boxed{12}.")
    assert (result.reason, result.rounds, result.first_correct_round, result.kept_steps) == (CUT, 2, 1, 2)


def test_a_wrong_intermediate_answer_ends_a_round_but_not_the_cut():
    trace = think("Guess: the answer is 10.", "Wait, 10 misses a side.", "So \\boxed{12}.", "Hmm, again: 12.")
    result = first_correct_cut(parse(trace), "12", equal)
    assert result.text == think("Guess: the answer is 10.", "Wait, 10 misses a side.", "So \\boxed{12}.")
    assert (result.rounds, result.first_correct_round, result.kept_steps) == (2, 2, 3)


def test_plus_one_keeps_the_next_round_and_nothing_after_it():
    steps = ("So \\boxed{12}.", "Wait, recheck.", "Still \\boxed{12}.", "Hmm, once more.", "The answer is 12.")
    result = first_correct_cut(parse(think(*steps)), "12", equal, extra_rounds=1)
    assert result.text == think(*steps[:3])
    assert (result.rounds, result.first_correct_round, result.kept_steps) == (3, 1, 3)


def test_nothing_is_cut_where_no_round_follows_the_rounds_kept():
    last_round = think("Compute.", "So \\boxed{12}.")
    result = first_correct_cut(parse(last_round), "12", equal)
    assert (result.reason, result.rounds, result.first_correct_round, result.kept_steps) == (NOTHING_AFTER, 1, 1, 2)
    trailing_blank = think("So \\boxed{12}.", "", solution="\n\n</think>\n\n\\boxed{12}")
    assert first_correct_cut(parse(trailing_blank), "12", equal).reason == NOTHING_AFTER
    one_round = think("Compute.", "So \\boxed{12}.", "Wait, recheck.")
    result = first_correct_cut(parse(one_round), "12", equal, extra_rounds=1)
    assert (result.reason, result.text, result.kept_steps) == (NOTHING_AFTER, one_round, 3)


def test_an_answer_stated_only_in_the_solution_leaves_the_trace_as_it_was():
    trace = think("Area is 3 times 4.", "Wait, that is 12.")
    result = first_correct_cut(parse(trace), "12", equal)
    assert (result.text, result.reason, result.rounds, result.first_correct_round) == (trace, NO_CORRECT_ROUND, 0, 0)
    assert result.kept_steps == 2  # all of them


def test_the_trace_keeps_its_own_markers_spacing_and_solution():
    openthoughts = (
        "<|begin_of_thought|>\n\nSo the answer is $12$.\n\nWait, let me verify.\n\n<|end_of_thought|>\n\n"
        "<|begin_of_solution|>\n\n\\boxed{12}\n\n<|end_of_solution|>"
    )
    result = first_correct_cut(parse(openthoughts), "12", equal)
    assert result.text == (
        "<|begin_of_thought|>\n\nSo the answer is $12$.\n\n<|end_of_thought|>\n\n"
        "<|begin_of_solution|>\n\n\\boxed{12}\n\n<|end_of_solution|>"
    )
    tight = "<think>So \\boxed{12}.\n\nWait, again.</think>\\boxed{12}"
    assert first_correct_cut(parse(tight), "12", equal).text == "<think>So \\boxed{12}.</think>\\boxed{12}"


def test_the_organism_states_the_candidate_its_success_step_confirms():
    steps = ["to get 3 by + 3 need 0", "try x = 1", "1 * 7 = 7", "7 + 6 = 3", "3 + 3 = 6 , want 3 , no"]
    steps += ["Wait , try x = 2", "2 * 7 = 4", "4 + 6 = 0", "0 + 3 = 3 , want 3 , yes"]
    steps += ["Wait , check x = 2 again", "2 * 7 = 4", "4 + 6 = 0", "0 + 3 = 3 , want 3 , yes", ""]
    assert [stated_answer(steps, i) for i in range(len(steps))] == [None] * 8 + ["2"] + [None] * 3 + ["2", None]
    assert confirmed_candidate(["0 + 3 = 3 , want 3 , yes"], 0) is None  # no line names its candidate
    trace = "<think>\n\n" + SEPARATOR.join(steps) + "</think>\n\nthe answer is \\boxed{2}"
    assert first_correct_cut(parse(trace), "2", equal).text == (
        "<think>\n\n" + SEPARATOR.join([*steps[:9], ""]) + "</think>\n\nthe answer is \\boxed{2}"
    )


ANSWERS = st.sampled_from(["12", "10", "7"])
STEP = st.one_of(
    st.sampled_from(["Compute.", "Wait, check.", "Hmm.", "", "  ", "x = 3"]),
    ANSWERS.map(lambda answer: f"So \\boxed{{{answer}}}."),
    ANSWERS.map(lambda answer: f"The answer is {answer}."),
)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(STEP, max_size=12), extra_rounds=st.integers(0, 2), gold=ANSWERS)
def test_a_cut_is_a_prefix_of_the_reasoning_closed_once_with_its_final_answer_unchanged(steps, extra_rounds, gold):
    trace = parse(think(*steps, solution=f"\n\n</think>\n\nSo \\boxed{{{gold}}}."))
    result = first_correct_cut(trace, gold, equal, extra_rounds)
    cut = parse(result.text)
    assert result.text.count("</think>") == 1 and cut.tail == trace.tail
    assert extract_answer(cut.solution) == gold
    original_reasoning = SEPARATOR.join(trace.steps)
    assert original_reasoning.startswith(SEPARATOR.join(cut.steps).rstrip())
    answers = [(i, stated_answer(trace.steps, i)) for i in range(len(trace.steps))]
    rounds = [(i, answer) for i, answer in answers if answer is not None]
    if result.reason == CUT:
        end = result.kept_steps - 1
        kept = [answer for i, answer in rounds if i <= end]
        assert kept[-1 - extra_rounds] == gold and gold not in kept[: -1 - extra_rounds]  # the first correct round
        assert stated_answer(trace.steps, end) is not None and any(s.strip() for s in trace.steps[end + 1 :])
        assert len(cut.steps) < len(trace.steps) or len(result.text) < len(trace.render())
    else:
        assert result.text == trace.render()
        assert (result.reason == NO_CORRECT_ROUND) == (gold not in [answer for _, answer in rounds])


def test_on_the_real_traces_every_cut_keeps_a_correct_final_answer_and_is_shorter(shared_traces):
    cuts = 0
    for path in shared_traces:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            trace = parse(row["code"][0])
            if not trace.finished or trace.format.close is None:
                continue
            answer = extract_answer(trace.solution)
            if answer is None or not is_correct(row["gt"], answer):
                continue
            for extra_rounds in (0, 1):
                result = first_correct_cut(trace, row["gt"], is_correct, extra_rounds)
                if result.reason == CUT:
                    cuts += 1
                    assert len(result.text) < len(row["code"][0])
                    assert extract_answer(parse(result.text).solution) == answer
                    last_kept = stated_answer(trace.steps, result.kept_steps - 1)
                    assert last_kept is not None and (extra_rounds or is_correct(row["gt"], last_kept))
    assert cuts > 0  # the real traces do state answers in their reasoning


LAYOUTS = {
    "r1": {"id": "r1", "problem": "p", "answer": "12", "response": think("So \\boxed{12}.", "Wait, again.")},
    "openthoughts-chat": {
        "id": "chat",
        "answer": "12",
        "conversations": [
            {"from": "user", "value": "p"},
            {
                "from": "assistant",
                "value": "<|begin_of_thought|>\n\nThe answer is 12.\n\nHmm, check.\n\n<|end_of_thought|>\n\n"
                "<|begin_of_solution|>\n\n\\boxed{12}\n\n<|end_of_solution|>",
            },
        ],
    },
    "messages": {
        "id": "msg",
        "answer": "12",
        "messages": [
            {"role": "user", "content": "p"},
            {"role": "assistant", "content": think("So \\boxed{12}.", "Wait, again.")},
        ],
    },
    "s1k": {
        "id": "s1k",
        "question": "p",
        "solution": "12",
        "answer": "12",
        "thinking_trajectories": ["So \\boxed{12}.\n\nWait, again."],
        "attempt": "\\boxed{12}",
    },
    "only-in-solution": {"id": "late", "problem": "p", "answer": "12", "response": think("Compute.", "Wait, more.")},
    "wrong": {"id": "wrong", "problem": "p", "answer": "13", "response": think("So \\boxed{12}.", "Wait.")},
    "unfinished": {"id": "open", "problem": "p", "answer": "12", "response": "<think>\nSo \\boxed{12}.\n\nWait"},
    "plain": {"id": "plain", "problem": "p", "answer": "12", "response": "So \\boxed{12}.\n\nWait, again."},
}
CUT_TEXT = {
    "r1": ("response", think("So \\boxed{12}.")),
    "openthoughts-chat": (
        "conversations",
        "<|begin_of_thought|>\n\nThe answer is 12.\n\n<|end_of_thought|>\n\n"
        "<|begin_of_solution|>\n\n\\boxed{12}\n\n<|end_of_solution|>",
    ),
    "messages": ("messages", think("So \\boxed{12}.")),
    "s1k": ("thinking_trajectories", ["So \\boxed{12}."]),
}


def _written(record: dict, field: str):
    if field in ("conversations", "messages"):
        turn = record[field][-1]
        return turn.get("value", turn.get("content"))
    return record[field]


def test_cut_on_the_command_line_writes_revise_rows_in_each_inputs_own_layout(tmp_path, capsys):
    source = tmp_path / "traces.jsonl"
    source.write_text("".join(json.dumps(record) + "\n" for record in LAYOUTS.values()))
    output = tmp_path / "fcs"
    assert main(["cut", "--input", str(source), "--output", str(output)]) == 0
    rows = {row["id"]: row for row in map(json.loads, (output / "revised.jsonl").read_text().splitlines())}
    assert list(rows) == [record["id"] for record in LAYOUTS.values()]
    for name, (field, text) in CUT_TEXT.items():
        row = RevisedRow(**rows[LAYOUTS[name]["id"]])
        assert (row.status, row.reason) == ("revised", CUT), name
        assert _written(row.record, field) == text, name
        untouched = {key: value for key, value in row.record.items() if key != field}
        assert untouched == {key: value for key, value in LAYOUTS[name].items() if key != field}, name
        assert row.tokens_after < row.tokens_before and row.steps_after < row.steps_before, name
        assert row.details == {"rounds": 1, "first_correct_round": 1, "kept_steps": 1 + (name == "openthoughts-chat")}
    statuses = {row["id"]: (row["status"], row["reason"]) for row in rows.values()}
    assert statuses["late"] == ("unchanged", NO_CORRECT_ROUND)
    assert statuses["wrong"] == ("skipped", "incorrect original answer")
    assert statuses["open"] == ("skipped", "unfinished reasoning")
    assert statuses["plain"] == ("skipped", "no thinking markers")
    assert rows["late"]["record"] == LAYOUTS["only-in-solution"]
    summary = json.loads((output / "summary.json").read_text())
    assert (summary["samples"], summary["revised"], summary["unchanged"], summary["errors"]) == (8, 4, 1, 0)
    assert summary["method"] == "first-correct" and summary["rollouts"] == summary["generated_tokens"] == 0
    assert summary["skipped"] == {"incorrect original answer": 1, "unfinished reasoning": 1, "no thinking markers": 1}
    searched = [rows[i] for i in ("r1", "chat", "msg", "s1k", "late")]
    assert summary["tokens_ratio"] == pytest.approx(
        sum(r["tokens_after"] for r in searched) / sum(r["tokens_before"] for r in searched)
    )
    written = (output / "revised.jsonl").read_bytes()
    assert main(["cut", "--input", str(source), "--output", str(output)]) == 0  # finished: the summary again
    assert (output / "revised.jsonl").read_bytes() == written
    organism = AutoTokenizer.from_pretrained(checkpoint_path())
    pairs, _ = training_pairs(SFTRunConfig(input=str(output / "revised.jsonl"), trace_field="revised"), organism)
    assert [pair["completion"] for pair in pairs] == [rows[i]["revised"] for i in ("r1", "chat", "msg", "s1k", "late")]


def test_plus_one_and_a_rerun_resume_the_same_folder(tmp_path):
    source = tmp_path / "traces.jsonl"
    rows = [
        {
            "id": str(i),
            "problem": "p",
            "answer": "12",
            "response": think("So \\boxed{12}.", "Wait.", "\\boxed{12}", "X"),
        }
        for i in range(6)
    ]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "fcs1"
    assert main(["cut", "--input", str(source), "--output", str(output), "--method", "first-correct-plus-one"]) == 0
    whole = (output / "revised.jsonl").read_bytes()
    lines = whole.decode().splitlines(keepends=True)
    (output / "revised.jsonl").write_text("".join(lines[:2]) + lines[4][:30])  # killed mid-write
    manifest = json.loads((output / "manifest.json").read_text())
    (output / "manifest.json").write_text(json.dumps({**manifest, "finished": None}))
    assert main(["cut", "--input", str(source), "--output", str(output), "--method", "first-correct-plus-one"]) == 0
    assert (output / "revised.jsonl").read_bytes() == whole
    revised = [json.loads(line)["revised"] for line in lines]
    assert revised == [think("So \\boxed{12}.", "Wait.", "\\boxed{12}")] * 6
    assert main(["cut", "--input", str(source), "--output", str(output)]) == 2  # another method: another run
    no_gold = tmp_path / "no-gold.jsonl"
    no_gold.write_text("".join(json.dumps({k: v for k, v in row.items() if k != "answer"}) + "\n" for row in rows))
    assert main(["cut", "--input", str(no_gold), "--output", str(tmp_path / "g"), "--gold-from-trace"]) == 0
    assert {json.loads(line)["status"] for line in (tmp_path / "g" / "revised.jsonl").open()} == {"revised"}


def test_bad_input_gets_one_line(tmp_path, capsys):
    assert main(["cut", "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not Path(tmp_path / "o").exists()


def test_a_local_tokenizer_counts_as_an_input_its_contents_and_all(tmp_path, capsys):
    import shutil

    tokenizer = tmp_path / "tokenizer"
    shutil.copytree(checkpoint_path(), tokenizer)
    source = tmp_path / "traces.jsonl"
    source.write_text(json.dumps(LAYOUTS["r1"]) + "\n")
    command = ["cut", "--input", str(source), "--output", str(tmp_path / "run"), "--tokenizer", str(tokenizer)]
    assert main(command) == 0
    capsys.readouterr()
    config = json.loads((tokenizer / "tokenizer_config.json").read_text())
    (tokenizer / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 7}))
    assert main(command) == 2
    error = capsys.readouterr().err
    assert "holds a run with other" in error and "tokenizer" in error, error


def test_the_cut_commands_limit_input_contents_overwrite_and_printing(tmp_path, capsys):
    from dataclasses import replace

    from retrosearch.stages.cut import CutConfig, cut
    from retrosearch.stages.folder import RunError

    source = tmp_path / "traces.jsonl"
    source.write_text("".join(json.dumps({**LAYOUTS["r1"], "id": f"r{n}"}) + "\n" for n in range(3)))
    config = CutConfig(input=str(source), output=str(tmp_path / "run"), limit=2)
    summary = cut(config, quiet=True)
    printed = capsys.readouterr()
    assert printed.out == "" and "cut: 100%" in printed.err and "2/2" in printed.err  # the bar, its label and total
    path = tmp_path / "run" / "revised.jsonl"
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["r0", "r1"]
    assert summary["samples"] == 2 and summary["rows"] == str(path)
    source.write_text("".join(json.dumps({**LAYOUTS["r1"], "id": f"s{n}"}) + "\n" for n in range(3)))
    with pytest.raises(RunError, match="input"):  # the input's contents are part of the run
        cut(config, quiet=True)
    cut(replace(config, overwrite=True), quiet=True)
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["s0", "s1"]
    cut(replace(config, output=str(tmp_path / "shown")))
    assert "retrosearch cut" in capsys.readouterr().out  # printed unless asked to be quiet
    assert CutConfig(input="x", limit=1).limit == 1
    with pytest.raises(ValueError, match="--limit must be at least 1"):
        CutConfig(input="x", limit=0)
    with pytest.raises(ValueError, match=r"^cut needs --input: a traces file or dataset id$"):
        cut(CutConfig())
