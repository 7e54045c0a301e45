"""Retro-Search stated exactly, against a scripted engine: which switches are visited and in what order,
what each rollout is prompted with, what is banned, which rollout wins, how lengths and seeds are made."""

import asyncio
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scripted import Script, ScriptedEngine

from retrosearch.config import build
from retrosearch.search.retro_search import RetroSearch, RetroSearchConfig, Revision
from retrosearch.seeds import derive_seed
from retrosearch.trace import DEFAULT_KEYWORDS, SEPARATOR, parse

PROBLEM = "Find x."
CHAT = "User: Find x.\nAssistant: "


def ending(answer: str = "5") -> str:
    return f"\n</think>\n\nThe answer is \\boxed{{{answer}}}."


def r1(*steps: str, answer: str = "5") -> str:
    return "<think>\n" + SEPARATOR.join(steps) + ending(answer)


def equal(gold: str, answer: str | None) -> bool:
    return answer == gold


def search(script: Script, **settings) -> tuple[RetroSearch, ScriptedEngine]:
    engine = ScriptedEngine(script)
    return RetroSearch(engine, equal, build(RetroSearchConfig, settings)), engine


def run(searcher: RetroSearch, text: str, sample_id: str = "s", gold: str = "5"):
    return asyncio.run(searcher.revise(sample_id, PROBLEM, gold, parse(text)))


def rollout_prompts(engine: ScriptedEngine) -> list[str]:
    """The phase-1 prompt of every rollout, in the order they were asked for."""
    return [seen.prompt for seen in engine.seen if seen.request.banned_starts]


# Six steps, switches at steps 2 and 4: "Try 3." "3 fails." "Wait, try 5." "5 works." "Wait, check." "Still 5."
SIX = r1("Try 3.", "3 fails.", "Wait, try 5.", "5 works.", "Wait, check.", "Still 5.")


def test_a_shorter_correct_rollout_replaces_the_rest_and_prompts_are_token_exact():
    trace = parse(SIX)
    script = Script().after(CHAT + trace.prefix(2), "Try 5.\n\n5 works." + ending())
    searcher, engine = search(script)
    result = run(searcher, SIX)
    assert result.trace.render() == r1("Try 3.", "3 fails.", "Try 5.", "5 works.")
    assert (result.length_before, result.length_after) == (6, 4)
    assert result.revisions == [Revision(switch_index=2, keyword="Wait", length_before=6, length_after=4, rollout=0)]
    first, second = engine.seen
    assert first.prompt == CHAT + "<think>\nTry 3.\n\n3 fails.\n\n"
    assert first.request.prompt_ids == tuple(engine.encode(first.prompt))
    assert first.completion.text == "Try 5.\n\n" and first.completion.finish_reason == "stop"
    assert second.request.prompt_ids == first.request.prompt_ids + first.completion.token_ids
    assert second.prompt == first.prompt + "Try 5.\n\n"
    assert result.rollouts == 1
    assert result.generated_tokens == len(first.completion.token_ids) + len(second.completion.token_ids)


def test_every_switch_is_visited_once_left_to_right_on_the_current_trace():
    text = r1("A.", "Wait, B.", "C.", "Wait, D.", "E.", "Wait, F.", "G.", "H.", "I.")
    trace = parse(text)
    # switch 1: a long rollout (not shorter); switch 3: accepted, and its own text holds a new switch at 5
    accepted = r1("A.", "Wait, B.", "C.", "D2.", "Wait, E2.", "F2.")
    script = (
        Script()
        .after(CHAT + trace.prefix(1), "B2.\n\nX.\n\nX.\n\nX.\n\nX.\n\nX.\n\nX.\n\nX.\n\nX." + ending())
        .after(CHAT + trace.prefix(3), "D2.\n\nWait, E2.\n\nF2." + ending())
        # the same text as phase 2 of the accepted rollout: told apart by the seeds of switch 4
        .after(CHAT + parse(accepted).prefix(4), "E3." + ending("4"), seeds=rollout_seeds(derive_seed(0, "s", 4, 0)))
    )
    searcher, engine = search(script)
    result = run(searcher, text)
    assert rollout_prompts(engine) == [
        CHAT + trace.prefix(1),
        CHAT + trace.prefix(3),
        CHAT + parse(accepted).prefix(4),  # the new trace's switch, not the old trace's switch 5
    ]
    assert result.trace.render() == accepted
    assert [r.switch_index for r in result.revisions] == [3]
    assert result.rollouts == 3


def test_without_accepted_rollouts_each_switch_is_tried_exactly_once():
    text = r1("A.", "Wait, B.", "Hmm, C.", "D.", "Alternatively, E.", "F.", "But wait, G.", "H.", "I.", "J.")
    trace = parse(text)
    script = Script()
    for index in (1, 2, 4, 6):
        script.after(CHAT + trace.prefix(index), "Y.\n\nY." + ending("4"))  # short but wrong
    searcher, engine = search(script)
    result = run(searcher, text)
    assert rollout_prompts(engine) == [CHAT + trace.prefix(i) for i in (1, 2, 4, 6)]
    assert result.trace.render() == text and result.revisions == [] and result.rollouts == 4


def test_only_the_first_step_is_banned_and_the_requests_carry_exact_limits():
    trace = parse(SIX)
    script = Script().after(CHAT + trace.prefix(2), "Wait, try 7.\n\n7 works." + ending(), "Try 5.\n\nOK." + ending())
    script.after(CHAT + parse(r1("Try 3.", "3 fails.", "Try 5.", "OK.")).prefix(4), "unused")
    config = dict(max_new_tokens=300, step_max_tokens=50, temperature=0.7, top_p=0.9)
    searcher, engine = search(script, **config)
    result = run(searcher, SIX)
    first, second = engine.seen
    assert first.request.banned_starts == DEFAULT_KEYWORDS
    assert first.request.stop == (SEPARATOR,)
    assert first.request.max_new_tokens == 50
    assert first.request.occurrence_limit is None
    assert (first.request.temperature, first.request.top_p) == (0.7, 0.9)
    assert first.completion.text == "Try 5.\n\n"  # the switching candidate was banned: the thought goes on
    assert second.request.banned_starts == ()
    assert second.request.stop == ()
    assert second.request.max_new_tokens == 300 - len(first.completion.token_ids)
    # 6 steps now, rollout from step 2: at most 3 more segments, the first of them already written
    assert second.request.occurrence_limit == (SEPARATOR, 2, "</think>")
    assert (second.request.temperature, second.request.top_p) == (0.7, 0.9)
    assert result.trace.render() == r1("Try 3.", "3 fails.", "Try 5.", "OK.")


def test_the_first_step_is_capped_by_the_rollout_budget_too():
    trace = parse(SIX)
    script = Script().after(CHAT + trace.prefix(2), "Try 5.\n\nOK." + ending())
    searcher, engine = search(script, max_new_tokens=40, step_max_tokens=2048)
    run(searcher, SIX)
    assert engine.seen[0].request.max_new_tokens == 40


@pytest.mark.parametrize(
    ("rollout", "why"),
    [
        ("Try 5.\n\n5 works." + ending("6"), "wrong answer"),
        ("Try 5.\n\nA.\n\nB.\n\nC." + ending(), "not shorter: as long as the trace"),
        ("Try 5.\n\n5 works.\n\nThe answer is \\boxed{5}.", "reasoning never closed"),
        ("\n\nTry 5." + ending(), "empty first step"),
    ],
)
def test_rollouts_that_must_not_win(rollout, why):
    script = Script().after(CHAT + parse(SIX).prefix(2), rollout).after(CHAT + parse(SIX).prefix(4), "X" + ending("9"))
    searcher, _ = search(script, bound=False)
    result = run(searcher, SIX)
    assert result.trace.render() == SIX, why
    assert result.revisions == []
    assert result.length_after == result.length_before == 6


def test_a_first_step_that_closes_the_reasoning_is_a_whole_rollout():
    script = Script().after(CHAT + parse(SIX).prefix(2), "Try 5." + ending())
    searcher, engine = search(script)
    result = run(searcher, SIX)
    # the blank line after the closing marker ends phase 1; phase 2 writes the answer
    assert [seen.completion.text for seen in engine.seen] == ["Try 5.\n</think>\n\n", "The answer is \\boxed{5}."]
    assert engine.seen[1].request.occurrence_limit is None
    assert result.trace.render() == r1("Try 3.", "3 fails.", "Try 5.")
    assert result.revisions == [Revision(2, "Wait", 6, 3, 0)]


def test_a_rollout_cut_by_its_token_budget_does_not_win():
    script = Script().after(CHAT + parse(SIX).prefix(2), "Try 5.\n\n5 works." + ending())
    script.after(CHAT + parse(SIX).prefix(4), "Z.\n\nZ." + ending())
    searcher, engine = search(script, max_new_tokens=8, bound=False)
    result = run(searcher, SIX)
    assert [seen.completion.finish_reason for seen in engine.seen] == ["stop", "length", "stop", "length"]
    assert result.revisions == []


def rollout_seeds(seed: int) -> list[int]:
    """Phase 1 and phase 2 of one rollout (the test's copy of the rule, pinned below)."""
    return [seed, derive_seed(seed, "continue")]


def test_n_rollouts_keep_the_shortest_correct_one_and_ties_go_to_the_lower_index():
    prefix = CHAT + parse(SIX).prefix(2)
    seeds = [derive_seed(0, "s", 2, r) for r in range(5)]
    texts = [
        "R0.\n\nA.\n\nB." + ending(),  # correct, 5 steps
        "R1.\n\nA." + ending(),  # correct, 4 steps
        "R2.\n\nB." + ending(),  # correct, 4 steps: a tie, lost to the lower index
        "R3." + ending("7"),  # shortest, wrong
        "R4.\n\nA.\n\nB.\n\nC." + ending(),  # correct, as long as the trace
    ]
    script = Script()
    for seed, text in zip(seeds, texts, strict=True):
        script.after(prefix, text, seeds=rollout_seeds(seed))
    searcher, engine = search(script, rollouts=5, bound=False)
    result = run(searcher, SIX)
    assert result.revisions == [Revision(2, "Wait", 6, 4, 1)]
    assert result.trace.render() == r1("Try 3.", "3 fails.", "R1.", "A.")
    assert result.rollouts == 5
    assert sorted(s.request.seed for s in engine.seen if s.request.banned_starts) == sorted(seeds)


def test_seeds_derive_from_seed_sample_switch_and_rollout_only():
    assert 0 <= derive_seed(0, "s", 2, 0) < 2**63
    assert len({derive_seed(*parts) for parts in [(0, "s", 2, 0), (1, "s", 2, 0), (0, "t", 2, 0), (0, "s", 4, 0)]}) == 4
    assert derive_seed(0, "s", 2, 0) != derive_seed(0, "s", 2, 1)

    def seen_seeds(sample_id: str, seed: int = 0) -> list[int]:
        script = Script().otherwise("Z.\n\nZ.\n\nZ.\n\nZ.\n\nZ.\n\nZ." + ending())
        searcher, engine = search(script, seed=seed, bound=False)
        run(searcher, SIX, sample_id=sample_id)
        return [s.request.seed for s in engine.seen]

    first = seen_seeds("s")
    assert first == [*rollout_seeds(derive_seed(0, "s", 2, 0)), *rollout_seeds(derive_seed(0, "s", 4, 0))]
    assert seen_seeds("s") == first
    assert set(seen_seeds("other")).isdisjoint(first)
    assert set(seen_seeds("s", seed=1)).isdisjoint(first)


def test_seed_values_are_pinned():
    """Changing the derivation changes every published result: it must be deliberate."""
    assert derive_seed(0, "s", 2, 0) == 8411858266411292233
    assert derive_seed(7, "row-1", "partial") == 347899425283237794


def test_concurrent_samples_see_the_same_requests_as_alone():
    other = r1("P.", "Wait, Q.", "R.", answer="8")
    script = Script().otherwise("Z.\n\nZ.\n\nZ.\n\nZ.\n\nZ.\n\nZ." + ending())
    searcher, engine = search(script, bound=False)
    run(searcher, SIX, sample_id="a")
    alone = [(s.prompt, s.request) for s in engine.seen]

    async def both():
        return await asyncio.gather(
            searcher.revise("b", PROBLEM, "8", parse(other)), searcher.revise("a", PROBLEM, "5", parse(SIX))
        )

    engine.seen.clear()
    asyncio.run(both())
    together = [(s.prompt, s.request) for s in engine.seen if "Try 3." in s.prompt]
    assert together == alone


def test_partial_revisits_a_seeded_share_of_switches():
    text = r1(*[f"Wait, S{i}." if i % 2 else f"T{i}." for i in range(24)])
    trace = parse(text)
    switches = trace.switch_indices(RetroSearch(ScriptedEngine(Script()), equal).matcher)
    assert len(switches) == 12
    script = Script().otherwise("Y." + ending("4"))  # never wins: the trace never changes

    def visited(sample_id: str, partial: float, seed: int = 0) -> list[int]:
        searcher, engine = search(script, partial=partial, seed=seed, bound=False)
        run(searcher, text, sample_id=sample_id)
        return [s.prompt.count(SEPARATOR) for s in engine.seen if s.request.banned_starts]  # = the switch index

    draws = random.Random(derive_seed(0, "s", "partial"))
    expected = [index for index in switches if draws.random() < 0.5]
    assert visited("s", 0.5) == expected
    assert 0 < len(expected) < 12
    assert visited("s", 0.5) == expected  # the same choice every time
    assert visited("t", 0.5) != expected  # per sample
    assert visited("s", 0.5, seed=3) != expected
    assert visited("s", 1.0) == switches


def test_length_in_tokens_counts_prefix_plus_generated_and_must_be_strictly_shorter():
    trace = parse(SIX)
    searcher, engine = search(Script(), length_unit="tokens", bound=False)
    total = engine.count_tokens(SIX)
    prefix_tokens = engine.count_tokens(trace.prefix(2))
    budget = total - prefix_tokens  # a rollout of exactly this many tokens is as long as the trace

    def rollout_with(tokens: int) -> str:
        for count in range(100):
            for last in ("done", "done."):
                candidate = "Try 5.\n\n" + "x " * count + last + ending()
                if engine.count_tokens(candidate) == tokens:
                    return candidate
        raise AssertionError(f"cannot build a rollout of {tokens} tokens")

    for tokens, wins in ((budget, False), (budget - 1, True)):
        rollout = rollout_with(tokens)
        script = Script().after(CHAT + trace.prefix(2), rollout).after(CHAT + trace.prefix(4), "N" + ending("0"))
        searcher, engine = search(script, length_unit="tokens", bound=False)
        result = run(searcher, SIX)
        assert result.length_before == total
        assert bool(result.revisions) is wins, tokens
        if wins:
            assert result.length_after == prefix_tokens + tokens == total - 1
            assert result.revisions[0].length_after == total - 1


def bpe_engine(script: Script) -> ScriptedEngine:
    """A scripted engine over a byte-level BPE (GPT-2 rules) in which a text ending in a blank line tokenizes it
    as one token, but the same blank line before a word as two: prefix + rollout tokens < whole text tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=alphabet, show_progress=False)
    core.train_from_iterator([SIX, CHAT, "\n\n"] * 50, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core)

    class Wrapped:  # no special tokens, as every engine encodes
        def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
            return tokenizer(text, add_special_tokens=False)

        def decode(self, ids) -> str:
            return tokenizer.decode(list(ids))

    engine = ScriptedEngine(script)
    engine.tokenizer = Wrapped()
    return engine


def test_a_rollout_as_long_as_the_trace_in_bpe_tokens_does_not_win():
    """Regression: the rollout was measured as tokens(prefix) + generated and the trace as tokens(whole); where
    the two split the blank line differently, an equally long rollout counted one token shorter and won."""
    trace = parse(SIX)
    probe = bpe_engine(Script())
    total = probe.count_tokens(SIX)
    assert probe.count_tokens(trace.prefix(2)) + probe.count_tokens(SIX[len(trace.prefix(2)) :]) == total - 1
    rest = next(
        candidate
        for filler in (" ".join(["s"] * count) + end for count in range(1, 12) for end in ("", "5"))
        if probe.count_tokens(trace.prefix(2) + (candidate := f"Try 5.\n\n5 works.\n\n{filler}." + ending())) == total
    )
    for bound in (True, False):
        script = Script().after(CHAT + trace.prefix(2), rest).after(CHAT + trace.prefix(4), "N" + ending("0"))
        engine = bpe_engine(script)
        searcher = RetroSearch(engine, equal, build(RetroSearchConfig, {"length_unit": "tokens", "bound": bound}))
        result = run(searcher, SIX)
        assert result.revisions == [], bound
        assert result.length_before == result.length_after == total


def test_the_token_bound_caps_the_rollout_at_the_tokens_left():
    trace = parse(SIX)
    script = Script().after(CHAT + trace.prefix(2), "Try 5.\n\n" + "y " * 400 + ending())
    script.after(CHAT + trace.prefix(4), "N" + ending("0"))
    searcher, engine = search(script, length_unit="tokens")
    total = engine.count_tokens(SIX)
    result = run(searcher, SIX)
    first, second = engine.seen[:2]
    prefix_tokens = engine.count_tokens(trace.prefix(2))
    # a rollout as long as the trace cannot win; the bound lets one token more run (where prefix and
    # rollout join, their tokens may count one more than the whole text's)
    assert first.request.max_new_tokens == total - prefix_tokens
    assert second.request.max_new_tokens == total - prefix_tokens - len(first.completion.token_ids)
    assert second.request.occurrence_limit is None
    assert second.completion.finish_reason == "length"
    assert result.revisions == []


def test_the_step_bound_skips_hopeless_switches_and_changes_nothing_but_work():
    # switch at the last step: a rollout needs at least one more segment than the trace has room for
    text = r1("A.", "B.", "Wait, C.", "D.", "Wait, E.")
    trace = parse(text)
    script = (
        Script()
        .after(CHAT + trace.prefix(2), "C2.\n\nD2.\n\nE2.\n\nF2." + ending())
        .after(CHAT + trace.prefix(4), "E2." + ending())
    )
    bounded, bounded_engine = search(script)
    unbounded, unbounded_engine = search(script, bound=False)
    on, off = run(bounded, text), run(unbounded, text)
    assert on.trace.render() == off.trace.render() == text and on.revisions == off.revisions == []
    assert [s.prompt for s in unbounded_engine.seen if s.request.banned_starts] == [
        CHAT + trace.prefix(2),
        CHAT + trace.prefix(4),
    ]
    # bounded: switch 4 is not even tried (4 + 1 segments cannot beat 5); switch 2 stops at its limit
    assert [s.prompt for s in bounded_engine.seen if s.request.banned_starts] == [CHAT + trace.prefix(2)]
    assert bounded_engine.seen[1].request.occurrence_limit == (SEPARATOR, 1, "</think>")
    assert bounded_engine.seen[1].completion.finish_reason == "limit"
    assert on.rollouts == 1 and off.rollouts == 2
    assert on.generated_tokens < off.generated_tokens


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(gamma=1.0), r"^gamma must be in \(0, 1\)$"),
        (dict(gamma=0.0), r"^gamma must be in \(0, 1\)$"),
        (dict(length_unit="chars"), r"^length_unit must be 'steps' or 'tokens'$"),
        (dict(rollouts=0), r"^rollouts must be at least 1$"),
        (dict(step_max_tokens=0), r"^--step-max-tokens must be at least 1 \(got 0\)$"),
        (dict(lookahead=0), r"^--lookahead must be at least 1 \(got 0\)$"),
        (dict(partial=0.0), r"^partial must be in \(0, 1\]$"),
        (dict(partial=1.5), r"^partial must be in \(0, 1\]$"),
    ],
)
def test_config_rejects_impossible_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        build(RetroSearchConfig, settings)


def test_config_accepts_the_edges():
    config = RetroSearchConfig(partial=1.0, gamma=0.5, rollouts=1, length_unit="tokens")
    assert (config.partial, config.gamma, config.rollouts) == (1.0, 0.5, 1)


def requests_for_one_rollout(rollout: str, **settings) -> tuple:
    """Revise SIX where only switch 2 is scripted (switch 4 gets a losing rollout); its requests and result."""
    script = Script().after(CHAT + parse(SIX).prefix(2), rollout).after(CHAT + parse(SIX).prefix(4), "L" + ending("0"))
    searcher, engine = search(script, **settings)
    result = run(searcher, SIX)
    at_two = [seen for seen in engine.seen if seen.prompt.startswith(CHAT + parse(SIX).prefix(2))]
    at_two = [seen for seen in at_two if not seen.prompt.startswith(CHAT + parse(SIX).prefix(4))]
    return at_two, result


def test_a_first_step_that_ends_the_generation_gets_no_second_phase():
    seen, result = requests_for_one_rollout("Try 5.\n</think> So \\boxed{5}", bound=False)
    assert [s.completion.finish_reason for s in seen] == ["eos"]
    assert result.revisions == [Revision(2, "Wait", 6, 3, 0)]


def test_a_first_step_cut_by_its_budget_is_not_continued():
    seen, result = requests_for_one_rollout("Try five six seven.\n\nOK." + ending(), step_max_tokens=3, bound=False)
    assert [(s.completion.text, s.completion.finish_reason) for s in seen] == [("Try five", "length")]
    assert result.revisions == []


def test_no_second_phase_when_the_first_step_used_up_the_room():
    # 5 steps, switch at 3: one segment of room, and the first step fills it
    text = r1("A.", "B.", "C.", "Wait, D.", "E.")
    script = Script().after(CHAT + parse(text).prefix(3), "D2.\n\nE2." + ending())
    searcher, engine = search(script)
    result = run(searcher, text)
    assert [(s.completion.text, s.request.stop) for s in engine.seen] == [("D2.\n\n", (SEPARATOR,))]
    assert result.revisions == [] and result.rollouts == 1


def test_no_second_phase_when_the_first_step_used_up_the_token_budget():
    seen, _ = requests_for_one_rollout("Try 5.\n\n5 works." + ending(), max_new_tokens=5, bound=False)
    assert [len(s.completion.token_ids) for s in seen] == [5]
    seen, _ = requests_for_one_rollout("Try 5.\n\n5 works." + ending(), max_new_tokens=6, bound=False)
    assert [s.request.max_new_tokens for s in seen] == [6, 1]


def test_a_rollout_cut_after_its_answer_but_before_the_end_does_not_win():
    rollout = "Try 5.\n\n5 works." + ending() + " And some more words after it."
    full, full_result = requests_for_one_rollout(rollout, bound=False)
    assert full_result.revisions == [Revision(2, "Wait", 6, 4, 0)]
    cut_at = len(full[0].completion.token_ids) + len(full[1].completion.token_ids) - 6
    seen, result = requests_for_one_rollout(rollout, max_new_tokens=cut_at, bound=False)
    assert seen[-1].completion.finish_reason == "length" and "\\boxed{5}" in seen[-1].completion.text
    assert result.revisions == []


PLAIN = "Try 3.\n\nSo \\boxed{5} maybe.\n\nWait, try 5.\n\n5 works.\n\nWait, check.\n\nStill \\boxed{5}."


def test_a_plain_trace_stays_plain():
    trace = parse(PLAIN)
    assert trace.format.name == "plain"
    script = Script().after(CHAT + trace.prefix(2), "Try 5.\n\n</think>\n\nSo \\boxed{5}")
    script.after(CHAT + trace.prefix(4), "L \\boxed{0}")
    searcher, _ = search(script)
    result = run(searcher, PLAIN)
    assert result.trace.format.name == "plain"
    assert result.revisions == [Revision(2, "Wait", 6, 5, 0)]


def test_a_rollout_that_writes_nothing_does_not_win_on_the_prefix_answer():
    trace = parse(PLAIN)
    script = Script().after(CHAT + trace.prefix(2), "").after(CHAT + trace.prefix(4), "")
    searcher, engine = search(script, bound=False)
    result = run(searcher, PLAIN)
    assert [s.completion.finish_reason for s in engine.seen] == ["eos", "eos"]
    assert result.revisions == []


def test_work_adds_up_over_every_switch():
    text = r1("A.", "Wait, B.", "C.", "Wait, D.", "E.", "F.", "G.")
    script = Script().otherwise("X.\n\nY." + ending("4"))
    searcher, engine = search(script)
    result = run(searcher, text)
    assert result.rollouts == 2
    assert result.generated_tokens == sum(len(s.completion.token_ids) for s in engine.seen) > 0
    assert len(engine.seen) == 4


class Gated(ScriptedEngine):
    """Answers only once every request in flight has arrived: counts how many rollouts run at once."""

    def __init__(self, script: Script) -> None:
        super().__init__(script)
        self.in_flight = self.most_in_flight = 0

    async def generate(self, requests):
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0)
        self.in_flight -= 1
        return await super().generate(requests)


@pytest.mark.parametrize("lookahead", [1, 3])
def test_the_next_switches_are_rolled_out_ahead_and_dropped_when_one_wins(lookahead):
    text = r1("A.", "Wait, B.", "C.", "Wait, D.", "E.", "Wait, F.", "G.", "H.", "I.")
    trace = parse(text)
    accepted = r1("A.", "B2.")
    script = (
        Script()
        .after(CHAT + trace.prefix(1), "B2." + ending())  # wins at once: switches 3 and 5 were rolled out for nothing
        .after(CHAT + trace.prefix(3), "D2.\n\nX." + ending("4"))
        .after(CHAT + trace.prefix(5), "F2.\n\nX." + ending("4"))
    )
    engine = Gated(script)
    searcher = RetroSearch(engine, equal, RetroSearchConfig(lookahead=lookahead))
    result = run(searcher, text)
    assert result.trace.render() == accepted and result.rollouts == 1
    assert engine.most_in_flight == lookahead
    ahead = [CHAT + trace.prefix(index) for index in (1, 3, 5)][:lookahead]
    assert rollout_prompts(engine) == ahead


@pytest.mark.parametrize("bound", [True, False])
def test_a_rollout_must_be_shorter_than_the_current_trace_not_only_than_the_original(bound):
    text = r1("A.", "Wait, B.", "C.", "D.", "E.", "Wait, F.", "G.", "H.", "I.")  # 9 steps
    first = r1("A.", "B2.", "C2.", "Wait, D2.", "E2.", "F2.")  # 6 steps: accepted at switch 1
    script = (
        Script()
        .after(CHAT + parse(text).prefix(1), "B2.\n\nC2.\n\nWait, D2.\n\nE2.\n\nF2." + ending())
        # at the accepted trace's switch 3: 6 steps again, shorter than the original's 9 but not than the current 6
        .after(CHAT + parse(first).prefix(3), "D3.\n\nE3.\n\nF3." + ending())
    )
    searcher, engine = search(script, bound=bound)
    result = run(searcher, text)
    assert result.trace.render() == first
    assert result.revisions == [Revision(switch_index=1, keyword="Wait", length_before=9, length_after=6, rollout=0)]
    assert CHAT + parse(first).prefix(3) in rollout_prompts(engine)  # it was tried, and refused


def scripted_rollouts(salt: int, switch_share: float):
    """A responder for any rollout: 1 to 8 steps, now and then a switch among them, always the right answer;
    phase 2 continues the text its phase 1 began (found by the seed Retro-Search derives for it)."""
    begun: dict[int, tuple[str, str]] = {}

    def respond(prompt: str, seed: int) -> list[str]:
        if seed in begun:
            base, text = begun[seed]
            return [text[len(prompt) - len(base) :]]
        draw = random.Random(f"{salt}|{prompt}|{seed}")
        steps = [f"R{draw.randint(0, 99)}." for _ in range(draw.randint(1, 8))]
        steps = [steps[0], *(("Wait, " + s) if draw.random() < switch_share else s for s in steps[1:])]
        text = SEPARATOR.join(steps) + ending()
        begun[derive_seed(seed, "continue")] = (prompt, text)
        return [text]

    return respond


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(st.sampled_from(["S.", "Wait, S.", "Hmm, S."]), min_size=2, max_size=12),
    salt=st.integers(0, 10_000),
    switch_share=st.sampled_from([0.0, 0.3, 0.6]),
    rollouts=st.integers(1, 3),
    length_unit=st.sampled_from(["steps", "tokens"]),
    bound=st.booleans(),
)
def test_the_trace_never_grows_after_an_accepted_revision(steps, salt, switch_share, rollouts, length_unit, bound):
    text = r1("Start.", *steps)
    settings_ = dict(rollouts=rollouts, length_unit=length_unit, bound=bound)
    searcher, _ = search(scripted_rollouts(salt, switch_share), **settings_)
    result = run(searcher, text)
    lengths = [result.length_before] + [revision.length_after for revision in result.revisions]
    assert all(later < earlier for earlier, later in itertools.pairwise(lengths)), lengths
    assert [revision.length_before for revision in result.revisions] == lengths[:-1]
    assert result.length_after == lengths[-1] == searcher.length(result.trace)
