"""Decontamination: which rows hold a benchmark problem (`retrosearch.contamination`, the `decontaminate` stage):
exact matches and misses on hand-made problems, the real Sky-T1 traces against the benchmarks they were evaluated
on, the organism's splits, and the stage's files, refusals and resumption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrosearch.cli import main
from retrosearch.contamination import build_index, contains, tokens
from retrosearch.data.inputs import DataError, read_problems
from retrosearch.organism.task import split_size
from retrosearch.stages.decontaminate import DecontaminateConfig, decontaminate
from retrosearch.stages.folder import RunError
from tests.conftest import BENCHMARKS

AIME = (
    "Every morning Aya goes for a $9$-kilometer-long walk and stops at a coffee shop afterwards. When she walks at a "
    "constant speed of $s$ kilometers per hour, the walk takes her 4 hours, including $t$ minutes spent in the "
    "coffee shop. Find the number of minutes the walk takes her."
)
STOCK = "What is the value of $2^{10} - 1000$ in lowest terms? Express your answer as a common fraction."
SAME_STOCK_PHRASE = "Halve $2^{10}-1000$. Express your answer as a common fraction."  # and the same mathematics


def index(**settings):
    return build_index([("aime24", "aime24-1", AIME), ("math500", "math500-7", STOCK)], **settings)


def matched(text: str, **settings) -> list[str]:
    return [match.problem_id for match in index(**settings).matches(text)]


def test_spaces_latex_spacing_dollars_braces_and_separators_do_not_change_the_tokens():
    assert tokens(r"$x^2+3x=\dfrac{1}{2}$") == tokens(r"x ^ 2 + 3 x = \frac 1 2")
    assert tokens(r"\left( 1{,}000 \right)\,\quad 2,000") == ["(", "1000", ")", "2000"]
    assert tokens("Ｆｉｎｄ 𝑥 ≤ 3") == ["find", "x", "≤", "3"]  # NFKC folds wide and mathematical letters
    assert tokens(r"\leftarrow \le \cdot") == [r"\leftarrow", r"\leq", "*"]
    assert contains(("1", "+", "2"), ()) and contains(("a", "1", "+", "2"), ("1", "+"))
    assert not contains(("1", "x", "+"), ("1", "+"))


def test_the_same_problem_reformatted_or_inside_a_longer_row_is_a_match():
    spaced = AIME.replace(" ", "   ").replace("$9$", r"$ 9 $").replace("4 hours", r"4\, hours")
    assert matched(spaced) == ["aime24-1"]
    assert matched("Problem: " + AIME.upper() + "\nPut your final answer in \\boxed{}.") == ["aime24-1"]
    assert matched(AIME.replace("Find the number of minutes the walk takes her.", "")) == ["aime24-1"]  # 90% of it
    assert matched(
        r"What is the value of $2^{10}-1000$  in lowest terms?Express your answer as a common fraction."
    ) == ["math500-7"]


def test_other_numbers_a_paraphrase_or_a_stock_phrase_are_not():
    assert matched(AIME.replace("$9$", "$10$")) == []  # every word the same, one number other
    assert matched(AIME.replace("4 hours", "3 hours")) == []
    paraphrase = (
        "Aya walks 12 kilometers each morning and then visits a cafe. At s km/h the trip lasts 5 hours counting "
        "t minutes in the cafe. How many minutes does the trip last?"
    )
    assert matched(paraphrase) == []
    assert matched(SAME_STOCK_PHRASE) == []
    assert matched(AIME[: len(AIME) // 3], math_check=False) == []  # a third of the problem covers too little of it


def test_each_rule_can_be_turned_off_down_to_open_r1s_any_shared_ngram():
    assert matched(SAME_STOCK_PHRASE, min_coverage=0.0) == ["math500-7"]  # the stock phrase is a shared 8-gram
    assert matched(AIME.replace("$9$", "$10$"), math_check=False) == ["aime24-1"]
    assert matched(AIME[: len(AIME) // 3], min_coverage=0.0, math_check=False) == ["aime24-1"]
    with pytest.raises(ValueError, match="--ngram must be at least 1"):
        build_index([], n=0)
    with pytest.raises(ValueError, match="--min-coverage must be between 0 and 1"):
        build_index([], min_coverage=1.5)


def test_a_problem_shorter_than_n_tokens_matches_whole():
    short = build_index([("math500", "m-1", r"Compute $\dbinom{8}{4}$.")])
    assert [m.ngram for m in short.matches(r"Please compute $\dbinom{8}{4}$. Thanks")] == [r"compute \dbinom 8 4 ."]
    assert short.matches(r"Compute $\dbinom{8}{5}$.") == []
    assert short.matches("compute") == []


def test_matches_come_once_per_problem_in_the_order_problems_were_added():
    both = build_index([("a", "1", AIME), ("b", "2", AIME), ("c", "3", STOCK)])
    found = both.matches(AIME + " " + AIME)
    assert [(m.benchmark, m.problem_id) for m in found] == [("a", "1"), ("b", "2")]
    assert found[0].ngram == " ".join(tokens(AIME)[:8])


def test_the_organisms_train_split_is_clean_against_its_whole_test_split():
    test = read_problems("organism", limit=split_size("test"))
    organism = build_index([("organism", p.id, p.problem) for p in test])
    assert sum(bool(organism.matches(p.problem)) for p in read_problems("organism:train", limit=3000)) == 0
    assert all(organism.matches(p.problem)[0].problem_id == p.id for p in test[:300])
    loose = build_index([("organism", p.id, p.problem) for p in test], math_check=False)
    assert sum(bool(loose.matches(p.problem)) for p in read_problems("organism:train", limit=300)) > 100


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def math500():
    if not (BENCHMARKS / "math500" / "test.jsonl").exists():
        pytest.skip(f"../shared/data/benchmarks is absent ({BENCHMARKS}); the shared data sits beside the checkout")
    return BENCHMARKS


def test_every_sky_t1_math500_trace_is_found_in_math500_and_dropped(math500, shared_traces, tmp_path, capsys):
    traces = next(path for path in shared_traces if path.name.endswith("_math500.jsonl"))
    output = tmp_path / "d"
    arguments = ["--input", str(traces), "--against", "all", "--data-dir", str(math500), "--output", str(output)]
    code = main(["decontaminate", *arguments, "--drop"])
    assert code == 0 and "contaminated" in capsys.readouterr().out
    found = rows(output / "matches.jsonl")
    assert len(found) == 500 and rows(output / "clean.jsonl") == []
    assert all({m["benchmark"] for m in row["matches"]} == {"math500"} for row in found)
    assert [row["id"] for row in found] == [str(row["idx"]) for row in rows(traces)]
    assert found[0]["source"] == f"{traces}:1" and found[0]["row"] == 1


def test_the_amc23_traces_are_found_in_amc23_and_where_gaokao_repeats_amc_2023(math500, shared_traces, tmp_path):
    traces = next(path for path in shared_traces if path.name.endswith("_amc23.jsonl"))
    config = DecontaminateConfig(input=str(traces), output=str(tmp_path / "d"), data_dir=str(math500))
    summary = decontaminate(config, quiet=True)
    assert summary["rows"] == summary["contaminated"] == 40
    assert summary["by_benchmark"]["amc23"] == 40
    assert summary["by_benchmark"].get("gaokao2023en", 0) > 0  # Gaokao2023-Math-En holds AMC 2023 problems
    assert summary["by_benchmark"].keys() <= {"amc23", "gaokao2023en"}
    assert summary["against"]["gsm8k"] == 1319 and not (tmp_path / "d" / "clean.jsonl").exists()


def organism_rows(split: str, count: int) -> list[dict]:
    return [{"id": p.id, "problem": p.problem, "answer": p.gold} for p in read_problems(split, limit=count)]


def test_drop_keeps_every_clean_row_as_it_was_in_any_layout(tmp_path):
    test = organism_rows("organism", 3)
    chats = [
        {
            "uid": f"c{i}",
            "messages": [{"role": "user", "content": row["problem"]}, {"role": "assistant", "content": "x"}],
        }
        for i, row in enumerate([*organism_rows("organism:train", 2), test[0]])
    ]
    source = tmp_path / "chat.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in chats), encoding="utf-8")
    config = DecontaminateConfig(input=str(source), output=str(tmp_path / "d"), against=("organism",), drop=True)
    summary = decontaminate(config, quiet=True)
    assert (summary["rows"], summary["contaminated"], summary["kept"], summary["dropped"]) == (3, 1, 2, 1)
    assert summary["by_benchmark"] == {"organism": 1} and summary["against"] == {"organism": split_size("test")}
    assert rows(tmp_path / "d" / "clean.jsonl") == chats[:2]
    (entry,) = rows(tmp_path / "d" / "matches.jsonl")
    assert (entry["id"], entry["row"], entry["matches"][0]["problem_id"]) == ("c2", 3, test[0]["id"])


def test_a_rerun_returns_its_summary_and_other_settings_are_refused_by_name(tmp_path):
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in organism_rows("organism", 4)), encoding="utf-8")
    config = DecontaminateConfig(input=str(source), output=str(tmp_path / "d"), against=("organism",), drop=True)
    first = decontaminate(config, quiet=True)
    assert first["contaminated"] == 4 and rows(tmp_path / "d" / "clean.jsonl") == []
    assert decontaminate(config, quiet=True) == first
    with pytest.raises(RunError, match=r"other settings \(DecontaminateConfig.ngram\)"):
        decontaminate(DecontaminateConfig(**{**config.__dict__, "ngram": 5}), quiet=True)
    limited = DecontaminateConfig(**{**config.__dict__, "output": str(tmp_path / "e"), "limit": 2})
    assert decontaminate(limited, quiet=True)["rows"] == 2


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('{"id": 1, "problem": "a"}\n{"id": 1, "problem": "b"}\n', "rows.jsonl:2: id '1' repeats"),
        ('{"id": 1, "text": "a"}\n', "rows.jsonl:1: no problem text"),
        ('{"id": 1, "problem": "a"}\nnot json\n', "rows.jsonl:2: broken JSON line"),
    ],
)
def test_bad_rows_are_refused_in_one_line_before_anything_is_written(tmp_path, capsys, lines, message):
    source = tmp_path / "rows.jsonl"
    source.write_text(lines, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        decontaminate(DecontaminateConfig(input=str(source), output=str(tmp_path / "d"), against=("organism",)))
    assert not (tmp_path / "d" / "matches.jsonl").exists()
    code = main(["decontaminate", "--input", str(source), "--against", "organism", "--output", str(tmp_path / "e")])
    error = capsys.readouterr().err.strip()
    assert code != 0 and message in error and "Traceback" not in error and len(error.splitlines()) == 1
    with pytest.raises(ValueError, match="--min-coverage must be between 0 and 1"):
        DecontaminateConfig(min_coverage=-0.1)
