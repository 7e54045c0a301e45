import random
import re
import statistics

import pytest

from retrosearch.answers import extract_answer
from retrosearch.organism.analysis import lines_of_thought
from retrosearch.organism.task import Op, Problem, check_step, parse_problem, sample_problems
from retrosearch.organism.teacher import Habits, solve
from retrosearch.organism.tokenizer import build_tokenizer
from retrosearch.trace import KeywordMatcher, parse


def teacher_traces(count: int, habits: Habits = Habits(), seed: int = 0):
    rng = random.Random(seed)
    return [solve(p, rng, habits) for p in sample_problems("train", count, seed)]


def test_every_problem_has_one_answer_and_splits_do_not_overlap():
    train = sample_problems("train", 2000, 0)
    test = sample_problems("test", 500, 0)
    assert not {p.id for p in train} & {p.id for p in test}
    assert all(p.split == "test" for p in test)
    for problem in train[:200]:
        assert sum(problem.evaluate(x) == problem.target for x in range(10)) == 1
        assert parse_problem(problem.text) == problem
    assert sample_problems("test", 50, 3) == sample_problems("test", 50, 3)


def test_checker_accepts_right_steps_and_rejects_wrong_ones():
    assert Op("*", 7).apply(8) == 6
    assert check_step("8 * 7 = 6") is True
    assert check_step("8 + 8 = 3") is False
    assert check_step("4 + 9 = 3 , want 0 , no", target=0) is True
    assert check_step("4 + 9 = 3 , want 3 , yes", target=3) is True
    assert check_step("4 + 9 = 3 , want 0 , yes", target=0) is False
    assert check_step("4 + 9 = 3 , want 3 , no", target=3) is False
    assert check_step("4 + 9 = 3 , want 3 , yes", target=0) is False
    assert check_step("Wait , try x = 4") is None


def test_every_teacher_trace_verifies():
    matcher = KeywordMatcher()
    for record in teacher_traces(1000):
        problem: Problem = record.problem
        trace = parse(record.text)
        assert trace.render() == record.text
        assert extract_answer(trace.solution) == str(record.answer)
        assert record.correct == (record.answer == problem.answer)
        for step in trace.steps:
            assert check_step(step, problem.target) is not False, step
        assert len(trace.switch_indices(matcher)) == record.switches
        if not record.gave_up:
            assert record.correct
            assert any(step.endswith(", yes") for step in trace.steps)


def test_habit_rates_follow_the_settings():
    never = teacher_traces(400, Habits(under_thinking=0.0, prune=0.0, over_thinking=0.0))
    assert not any(r.under_thinking or r.over_thinking or r.abandoned for r in never)
    # with no abandoned lines and as many lines as digits, the teacher always finds the answer
    assert all(r.correct for r in never)
    often = teacher_traces(3000, Habits(under_thinking=0.5, prune=0.2, over_thinking=0.5), seed=1)
    found = [r for r in often if not r.gave_up]
    assert statistics.fmean(r.over_thinking for r in found) == pytest.approx(0.5, abs=0.04)
    # the answer's line is abandoned at the rate of under-thinking, every other line at the rate of pruning
    answer_lines = abandoned_answer_lines = other_lines = abandoned_other_lines = 0
    for record in often:
        for line in lines_of_thought(record.text):
            if "again" in line.head:
                continue
            is_answer = line.candidate == record.problem.answer
            answer_lines += is_answer
            other_lines += not is_answer
            abandoned_answer_lines += is_answer and not line.completed
            abandoned_other_lines += not is_answer and not line.completed
    assert abandoned_answer_lines / answer_lines == pytest.approx(0.5, abs=0.04)
    assert abandoned_other_lines / other_lines == pytest.approx(0.2, abs=0.03)
    sure = teacher_traces(1000, Habits(over_thinking=1.0, recheck_again=0.5), seed=2)
    rechecks = [r.rechecks for r in sure if not r.gave_up]
    assert statistics.fmean(rechecks) == pytest.approx(1 + 0.5 + 0.25 + 0.125, abs=0.1)
    assert max(rechecks) == Habits().max_rechecks


def test_a_line_says_at_its_cue_whether_it_will_succeed():
    """The first step works the last operation backwards; a line's second result is compared with it right there
    (`… , need 4 , yes`), and says yes exactly when the line will succeed: a reader can tell a promising line
    before it ends from the step just written."""
    for record in teacher_traces(300):
        problem = record.problem
        first = next(step for step in parse(record.text).steps if step.strip())
        needed = int(first.split()[-1])
        assert check_step(first, problem.target) is True
        for candidate in range(10):
            second = problem.chain(candidate)[1][2]
            assert (second == needed) == (candidate == problem.answer)
        for line in lines_of_thought(record.text):
            assert line.cue == (line.candidate == problem.answer)  # every line reaches its cue
            assert not line.completed or line.succeeded == line.cue
        cues = [step for step in parse(record.text).steps if f", need {needed} , " in step]
        assert len(cues) == len(lines_of_thought(record.text))
    assert check_step("4 + 6 = 0 , need 0 , yes") is True
    assert check_step("4 + 6 = 0 , need 0 , yes", target=9) is True  # the need is the backwards step's to check
    assert check_step("4 + 6 = 0 , need 3 , yes") is False
    assert check_step("4 + 6 = 0 , need 3 , no") is True
    assert check_step("4 + 6 = 0 , need 0 , no") is False
    assert check_step("4 + 6 = 1 , need 1 , yes") is False  # the arithmetic first
    assert check_step("to get 5 by + 1 need 4", target=5) is True
    assert check_step("to get 5 by + 1 need 3", target=5) is False
    assert check_step("to get 6 by + 1 need 5", target=5) is False


def test_over_thinking_puts_a_large_share_of_tokens_after_the_first_success():
    tokenizer = build_tokenizer()
    shares = []
    for record in teacher_traces(600):
        if record.correct and not record.gave_up:
            tokens = len(tokenizer(record.text)["input_ids"])
            success = f", want {record.problem.target} , yes"
            after = len(tokenizer(record.text[record.text.index(success) :])["input_ids"])
            shares.append(after / tokens)
    assert statistics.fmean(shares) > 0.25


def test_tokenizer_round_trips_every_teacher_trace():
    tokenizer = build_tokenizer()
    keyword_ids = {tokenizer.convert_tokens_to_ids(k) for k in ("But wait", "Let me double-check", "\n\n")}
    assert tokenizer.unk_token_id not in keyword_ids
    for record in teacher_traces(1000):
        for text in (record.text, record.problem.text):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert tokenizer.unk_token_id not in ids
            assert tokenizer.decode(ids) == text
    ids = tokenizer("12 + 7", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["1", "2", " +", " 7"]
    assert re.search("<think>", tokenizer.decode(tokenizer("<think>")["input_ids"]))


def test_organism_teacher_on_the_command_line(tmp_path, capsys):
    from retrosearch.answers import is_correct
    from retrosearch.cli import main
    from retrosearch.data.inputs import read_samples

    out = tmp_path / "teacher" / "traces.jsonl"
    command = ["organism", "teacher", "--count", "12", "--split", "test", "--seed", "3"]
    assert main([*command, "--output", str(out.parent)]) == 0
    assert "traces" in capsys.readouterr().out
    samples = read_samples(str(out))
    assert len(samples) == 12 and len({s.id for s in samples}) == 12
    test_ids = {p.id for p in sample_problems("test", 12, 3)}
    assert {s.id for s in samples} == test_ids
    correct = [is_correct(s.gold, extract_answer(parse(s.response).solution)) for s in samples]
    assert 0 < sum(correct) < 12  # the teacher gives up or errs on purpose sometimes
    again = tmp_path / "again"
    assert main([*command, "--output", str(again)]) == 0
    assert (again / "traces.jsonl").read_text() == out.read_text()
