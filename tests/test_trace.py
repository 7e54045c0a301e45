import json

import pytest

from retrosearch.data.inputs import read_samples
from retrosearch.trace import (
    DEFAULT_KEYWORDS,
    FORMATS,
    KeywordMatcher,
    TraceFormat,
    TraceStats,
    detect_format,
    parse,
    with_keywords,
)


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
        "</think>x<think>y</think>z",
        "<think>a<think>b</think>c</think>d",
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


def test_keyword_lists_from_options():
    assert with_keywords(None).keywords == DEFAULT_KEYWORDS
    assert with_keywords([]).keywords == DEFAULT_KEYWORDS
    assert with_keywords(["Actually", "Hold on"]).keywords == ("Actually", "Hold on")
    assert with_keywords(["Actually"]).match("Wait, no") is None


def test_the_longest_keyword_wins_and_only_whole_words_count():
    matcher = KeywordMatcher(("But", "But wait", "Wait"))
    assert matcher.match("But wait, no") == "But wait"
    assert matcher.match("But no") == "But"
    assert matcher.match("Butter") is None
    assert matcher.match("Wait") == "Wait"
    assert matcher.match("Wait2") is None
    assert matcher.match("Waits, then") is None  # a longer word followed by punctuation
    assert matcher.match("") is None


def test_format_detection_and_unfinished_traces():
    assert detect_format("<|begin_of_thought|>x").name == "openthoughts"
    assert detect_format("x<|end_of_thought|>").name == "openthoughts"
    assert detect_format("<think>x").name == "r1"
    assert detect_format("x</think>").name == "r1"
    assert detect_format("<think> and <|end_of_thought|>").name == "openthoughts"
    assert detect_format("plain").name == "plain"
    plain = parse("a\n\nWait, b")
    assert plain.finished and plain.solution == "a\n\nWait, b" and plain.head == plain.tail == ""
    closed = parse("<think>a</think>tail")
    assert (closed.head, closed.steps, closed.tail) == ("<think>", ["a"], "</think>tail")
    assert closed.solution == "</think>tail"
    no_open = parse("a\n\nb</think>t")
    assert (no_open.head, no_open.steps, no_open.tail) == ("", ["a", "b"], "</think>t")
    assert not parse("<think>a\n\nb").finished
    assert parse("<think>a</think>").finished  # the closing marker alone closes it


def test_stats_of_an_empty_and_a_blank_trace():
    matcher = KeywordMatcher()
    assert parse("").stats(matcher) == TraceStats(steps=0, thoughts=0, switches=0, keywords={})
    assert parse("\n\n\n\n").stats(matcher).thoughts == 0
    assert parse("\n\nWait, a\n\n\n\nHmm b").stats(matcher) == TraceStats(2, 2, 1, {"Hmm": 1})


def test_markers_the_first_opening_and_the_first_closing_after_it():
    twice = parse("<think>a<think>b</think>c</think>d")
    assert (twice.head, twice.steps, twice.tail) == ("<think>", ["a<think>b"], "</think>c</think>d")
    early_close = parse("</think>x<think>y</think>z")
    assert (early_close.head, early_close.steps, early_close.tail) == ("</think>x<think>", ["y"], "</think>z")
    only_close = parse("</think>x")
    assert (only_close.head, only_close.steps, only_close.tail) == ("", [""], "</think>x")
    assert only_close.finished


def test_a_format_without_a_closing_marker_splits_the_whole_text():
    half = TraceFormat("half", "<t>", None)
    trace = parse("<t>a\n\nb", half)
    assert (trace.head, trace.steps, trace.tail, trace.format) == ("", ["<t>a", "b"], "", half)
    assert trace.render() == "<t>a\n\nb"


def test_case_decides_no_order_only_length_does():
    matcher = KeywordMatcher(("wait", "Wait again"))
    assert matcher.match("Wait again, x") == "Wait again"
    assert matcher.match("WAIT, x") == "wait"


def test_an_empty_or_blank_keyword_list_is_refused_in_one_line():
    from retrosearch.trace import check_keywords

    for keywords in ([], ["Wait", "  "]):
        with pytest.raises(ValueError) as error:
            check_keywords(keywords)
        assert str(error.value) == "--keywords takes one or more words (none may be blank)"
    check_keywords(["Wait"])


def test_a_keyword_ending_in_an_unspaced_script_opens_a_step_whatever_follows():
    from retrosearch.text import opens_with

    assert opens_with("ab等x", "ab等")  # its last character is CJK: what follows never continues the word
    assert not opens_with("ab等x", "ab") and not opens_with("a等bx", "a等b")  # a Latin last character: it goes on
    assert not opens_with("ab\x01c", "ab\x01")  # a character without a Unicode name is in no unspaced script
