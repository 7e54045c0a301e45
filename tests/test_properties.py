"""Properties over generated traces: formats, blank lines, markdown, keyword variants, trailing newlines."""

import asyncio
import hashlib

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scripted import ScriptedEngine

from retrosearch.config import build
from retrosearch.data.inputs import FieldMap, to_sample, with_response
from retrosearch.search.retro_search import RetroSearch, RetroSearchConfig
from retrosearch.trace import FORMATS, SEPARATOR, KeywordMatcher, parse

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYWORD_OPENINGS = ["Wait, ", "wait ", "**Wait**, ", "  Hmm, ", "## Alternatively, ", "But wait, ", "WAIT! ", "> Hmm. "]
NON_KEYWORD_OPENINGS = ["Waiting ", "So wait, ", "Hmmm ", "Await ", "", "* ", "1. "]
words = st.sampled_from(["x = 3", "so", "check", "$x^2$", "**bold**", "end.", "\\frac{1}{2}", "7", "é"])
step = st.builds(
    lambda opening, body, newline: opening + " ".join(body) + newline,
    st.sampled_from(KEYWORD_OPENINGS + NON_KEYWORD_OPENINGS),
    st.lists(words, min_size=0, max_size=4),
    st.sampled_from(["", "", "\n", " "]),
)
steps = st.lists(step, min_size=1, max_size=12)


def wrap(body: str, name: str, tail: str) -> str:
    fmt = FORMATS[name]
    if fmt.open is None:
        return body
    return f"{fmt.open}\n{body}{fmt.close}{tail}"


traces = st.builds(
    wrap,
    steps.map(SEPARATOR.join),
    st.sampled_from(["r1", "openthoughts", "plain"]),
    st.sampled_from(["", "\n\nThe answer is \\boxed{5}.", "\n\n\\boxed{5}\n", "\n"]),
)


@SETTINGS
@given(traces)
def test_parse_render_round_trip(text):
    assert parse(text).render() == text
    for fmt in FORMATS.values():
        assert parse(text, fmt).render() == text


@SETTINGS
@given(traces, st.data())
def test_prefix_plus_rest_is_the_text(text, data):
    trace = parse(text)
    index = data.draw(st.integers(0, len(trace.steps) - 1))
    rest = SEPARATOR.join(trace.steps[index:]) + trace.tail
    assert trace.prefix(index) + rest == text
    assert text.startswith(trace.prefix(index))
    assert trace.prefix(index).count(SEPARATOR) - trace.head.count(SEPARATOR) == index


@SETTINGS
@given(traces)
def test_switches_are_steps_that_open_with_a_keyword_after_the_first_content(text):
    trace = parse(text)
    matcher = KeywordMatcher()
    switches = trace.switch_indices(matcher)
    first_content = next((i for i, s in enumerate(trace.steps) if s.strip()), len(trace.steps))
    assert switches == [i for i, s in enumerate(trace.steps) if i > first_content and matcher.match(s)]
    stats = trace.stats(matcher)
    assert stats.switches == len(switches) == sum(stats.keywords.values())
    assert stats.steps == sum(1 for s in trace.steps if s.strip())


ENDINGS = [
    "\n</think>\n\nThe answer is \\boxed{5}.",
    "\n</think>\n\n\\boxed{4}",
    "\n\nMore.\n\nMore.\n</think>\n\n\\boxed{5}",
]
REST = ["", "Then 5.\n\n", "Wait, 5.\n\n", "A.\n\nB.\n\nC.\n\nD.\n\n", "Hmm, so.\n\nE.\n\n"]


def random_model(prompt: str, seed: int) -> list[str]:
    """A deterministic model: it tries to switch, else writes "Go on."; after that, a seeded way to an answer."""
    if not prompt.endswith("Go on.\n\n"):
        return ["Wait, no.\n\n", "Go on.\n\n"]
    digest = hashlib.sha256(str(seed).encode()).digest()
    return [REST[digest[0] % len(REST)] + "Done." + ENDINGS[digest[1] % len(ENDINGS)], "Go on.\n\n"]


r1_traces = st.builds(
    lambda body, answer: "<think>\n" + SEPARATOR.join(body) + f"\n</think>\n\nThe answer is \\boxed{{{answer}}}.",
    steps,
    st.sampled_from(["5", "5", "4"]),
)


def revise(text: str, **settings_) -> tuple:
    engine = ScriptedEngine(random_model)
    search = RetroSearch(engine, lambda gold, answer: answer == gold, build(RetroSearchConfig, settings_))
    return asyncio.run(search.revise("id", "Find x.", "5", parse(text))), engine


@SETTINGS
@given(r1_traces, st.sampled_from(["steps", "tokens"]), st.integers(1, 3))
def test_revisions_keep_the_prefix_and_the_bound_changes_nothing_but_work(text, unit, rollouts):
    bounded, bounded_engine = revise(text, length_unit=unit, rollouts=rollouts)
    unbounded, unbounded_engine = revise(text, length_unit=unit, rollouts=rollouts, bound=False)
    assert bounded.trace.render() == unbounded.trace.render()
    assert bounded.revisions == unbounded.revisions
    assert bounded.generated_tokens <= unbounded.generated_tokens
    assert len(bounded_engine.seen) <= len(unbounded_engine.seen)
    original = parse(text)
    revised = bounded.trace.render()
    event("revised" if bounded.revisions else "unchanged")
    if bounded.revisions:
        first = bounded.revisions[0].switch_index
        assert revised.startswith(original.prefix(first))
        assert revised.endswith("\\boxed{5}.") or revised.endswith("\\boxed{5}")
        lengths = [r.length_before for r in bounded.revisions] + [bounded.length_after]
        assert lengths == sorted(lengths, reverse=True) and len(set(lengths)) == len(lengths)
        assert bounded.length_after < bounded.length_before
        engine = bounded_engine
        measured = len(bounded.trace.steps) if unit == "steps" else engine.count_tokens(revised)
        assert bounded.length_after == measured
    else:
        assert revised == text and bounded.length_after == bounded.length_before


layouts = st.sampled_from(["field", "list", "chat", "messages", "s1k"])
thinking = steps.map(SEPARATOR.join).filter(lambda t: "</think>" not in t)


def record_of(layout: str, think: str) -> dict:
    response = f"<think>\n{think}\n</think>\n\n\\boxed{{5}}"
    if layout == "field":
        return {"id": "a", "problem": "p", "answer": "5", "response": response}
    if layout == "list":
        return {"idx": 1, "question": "p", "gt": "5", "code": [response]}
    if layout == "chat":
        turns = [{"from": "user", "value": "p"}, {"from": "assistant", "value": response}]
        return {"id": "c", "answer": "5", "conversations": turns}
    if layout == "messages":
        turns = [{"role": "system", "content": "s"}, {"role": "user", "content": "p"}]
        return {"id": "m", "answer": "5", "messages": [*turns, {"role": "assistant", "content": response}]}
    return {"id": "s", "question": "p", "answer": "5", "thinking_trajectories": [think], "attempt": "\\boxed{5}"}


@SETTINGS
@given(layouts, thinking, thinking)
def test_a_record_round_trips_to_its_own_layout(layout, think, other):
    record = record_of(layout, think)
    sample = to_sample(record, "f.jsonl:1", FieldMap(), 1)
    assert with_response(sample, sample.response) == record
    replaced = to_sample(record_of(layout, other), "f.jsonl:1", FieldMap(), 1)
    written = with_response(sample, replaced.response)
    assert to_sample(written, "f.jsonl:1", FieldMap(), 1).response == replaced.response


@SETTINGS
@given(step)
def test_the_start_ban_and_the_switch_matcher_follow_one_rule(text):
    from retrosearch.engines.banning import StartBan
    from retrosearch.trace import DEFAULT_KEYWORDS

    assert StartBan((), DEFAULT_KEYWORDS).violates(text) == (KeywordMatcher().match(text) is not None)


@SETTINGS
@given(r1_traces, st.sampled_from(["steps", "tokens"]), st.integers(1, 2), st.sampled_from([1.0, 0.5]))
def test_rolling_out_ahead_changes_nothing_but_work_in_flight(text, unit, rollouts, partial):
    one_by_one, _ = revise(text, length_unit=unit, rollouts=rollouts, partial=partial, lookahead=1)
    ahead, _ = revise(text, length_unit=unit, rollouts=rollouts, partial=partial, lookahead=4)
    assert ahead.trace.render() == one_by_one.trace.render()
    assert ahead.revisions == one_by_one.revisions
    assert (ahead.rollouts, ahead.generated_tokens) == (one_by_one.rollouts, one_by_one.generated_tokens)
