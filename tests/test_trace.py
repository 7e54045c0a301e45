import json

from retrosearch.data import read_samples
from retrosearch.trace import FORMATS, KeywordMatcher, parse


def test_round_trip_is_byte_exact_on_all_shared_traces(shared_traces):
    count = 0
    for path in shared_traces:
        for sample in read_samples(str(path)):
            assert parse(sample.response).render() == sample.response
            count += 1
    assert count == 570


def test_round_trip_of_awkward_texts():
    for text in [
        "",
        "\n\n",
        "a\n\n\n\nb",
        "<think>\n\n</think>",
        "</think>only close",
        "x\n\n\nWait, y",
        "<|begin_of_thought|>\n\na\n\nb<|end_of_thought|>\n\n<|begin_of_solution|>s<|end_of_solution|>",
    ]:
        assert parse(text).render() == text
        for fmt in FORMATS.values():
            assert parse(text, fmt).render() == text


def test_keywords_match_case_whitespace_and_markdown_variants():
    matcher = KeywordMatcher()
    assert matcher.match("Wait, that is wrong") == "Wait"
    assert matcher.match("  **wait** no") == "Wait"
    assert matcher.match("\n## ALTERNATIVELY, we could") == "Alternatively"
    assert matcher.match("But wait, 3") == "But wait"
    assert matcher.match("Let me double-check: 4") == "Let me double-check"
    assert matcher.match("Waiting for nothing") is None
    assert matcher.match("So wait") is None
    assert KeywordMatcher(("Actually",)).match("actually no") == "Actually"


def test_switches_thoughts_and_prefixes():
    text = "<think>\nStart here.\n\nWait, no.\n\nCompute.\n\nAlternatively, x.\n</think>\n\nThe answer is \\boxed{2}."
    trace = parse(text)
    assert trace.format.name == "r1"
    assert trace.switch_indices(KeywordMatcher()) == [1, 3]
    stats = trace.stats(KeywordMatcher())
    assert (stats.steps, stats.thoughts, stats.switches) == (4, 3, 2)
    assert stats.keywords == {"Wait": 1, "Alternatively": 1}
    assert trace.prefix(1) == "<think>\nStart here.\n\n"
    assert text.startswith(trace.prefix(3))
    assert trace.finished and "\\boxed{2}" in trace.solution
    assert not parse("<think>\nWait, cut off").finished
    # a keyword in the very first step opens the first thought; it switches from nothing
    assert parse("Wait, first.\n\nWait, second.").switch_indices(KeywordMatcher()) == [1]


def test_openthoughts_shape_from_shared_data(shared_traces):
    row = json.loads(shared_traces[0].read_text().splitlines()[0])
    trace = parse(row["code"][0])
    assert trace.format.name == "openthoughts"
    assert trace.head.endswith("<|begin_of_thought|>")
