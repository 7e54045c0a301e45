"""How a streaming engine (openai, vllm) serves a Request, against a scripted backend: masked starts token
by token, `reject`, stop strings and limits cut on the text, streams closed, and every way a stream ends."""

import asyncio

import pytest
from scripted import Script, ScriptedStream

from retrosearch.engines.base import Completion, Request
from retrosearch.engines.streaming import ServerError, _mix, backend_finish

PROMPT = "Q: find x.\n\n"


def request_for(engine: ScriptedStream, **fields) -> Request:
    return Request(prompt_ids=tuple(engine.encode(PROMPT)), **{"max_new_tokens": 50, "seed": 11, **fields})


def complete(engine: ScriptedStream, **fields) -> Completion:
    (completion,) = asyncio.run(engine.generate([request_for(engine, **fields)]))
    return completion


def test_per_call_seeds_are_pinned():
    """The masked start's per-token seeds: part of every published result of a streaming engine."""
    assert _mix(11, 1) == 6884589245220255807
    assert _mix(0, 0) == 1
    assert _mix(2**62, 3) == 8939771141094278126
    assert _mix(5, 2) != _mix(2, 5)


def test_backend_finish_reasons():
    assert backend_finish(None) is None
    assert backend_finish("length") == "length"
    assert backend_finish("stop") == "eos"
    assert backend_finish("abort") == "eos"


def test_a_plain_request_is_one_call_and_ends_eos():
    engine = ScriptedStream(Script().after(PROMPT, "So x is 4."))
    completion = complete(engine)
    assert completion == Completion("So x is 4.", tuple(engine.encode("So x is 4.")), "eos")
    assert engine.counts == {"requests": 1, "calls": 1, "retries": 0, "rejected_starts": 0, "banned": 0}
    assert engine.generated_tokens == len(completion.token_ids)
    ((prompt, call),) = engine.calls
    assert prompt == PROMPT and call.seed == 11 and call.max_tokens == 50 and call.masked == ()


def test_the_budget_is_capped_by_the_context_and_a_full_context_asks_nothing():
    script = Script().after(PROMPT, "one two three four five six")
    engine = ScriptedStream(script)
    prompt_tokens = len(engine.encode(PROMPT))
    engine.context_length = prompt_tokens + 4
    completion = complete(engine, max_new_tokens=50)
    assert completion == complete(ScriptedStream(script), max_new_tokens=4) and completion.finish_reason == "length"
    assert [call.max_tokens for _, call in engine.calls] == [4]
    engine.context_length = prompt_tokens
    assert complete(engine, max_new_tokens=50) == Completion("", (), "length")
    assert len(engine.calls) == 1  # nothing was sent


def test_max_tokens_ends_length():
    engine = ScriptedStream(Script().after(PROMPT, "one two three four five"))
    completion = complete(engine, max_new_tokens=3)
    assert completion.text == "one two" and completion.finish_reason == "length"


def test_a_stop_string_cuts_the_text_right_after_it_and_closes_the_stream():
    engine = ScriptedStream(Script().after(PROMPT, "Go on.\n\nWait, more.\n\nEnd."))
    completion = complete(engine, stop=("\n\n",))
    assert completion.text == "Go on.\n\n" and completion.finish_reason == "stop"
    assert engine.closed == 1


def test_an_occurrence_limit_cuts_the_text_at_the_counted_occurrence():
    engine = ScriptedStream(Script().after(PROMPT, "A.\n\nB.\n\nC.\n\nD."))
    completion = complete(engine, occurrence_limit=("\n\n", 2, "</think>"))
    assert completion.text == "A.\n\nB.\n\n" and completion.finish_reason == "limit"


def test_a_masked_start_asks_one_token_at_a_time_until_the_start_is_decided():
    script = Script().after(PROMPT, "But wait, no.", "But then yes.")
    engine = ScriptedStream(script)
    completion = complete(engine, banned_starts=("But wait",))
    assert completion.text == "But then yes." and completion.finish_reason == "eos"
    calls = [call for _, call in engine.calls]
    # "But" and " " could still become "But wait"; "then" decides the start; the rest streams freely
    assert [c.max_tokens for c in calls] == [1, 1, 1, 47]
    assert [c.text_before for c in calls] == ["", "But", "But ", "But then"]
    assert [c.seed for c in calls] == [_mix(11, 1), _mix(11, 2), _mix(11, 3), 11]
    wait = engine.tokenizer.ids["wait"]
    assert wait in calls[2].masked and calls[3].masked == ()
    assert engine.counts["calls"] == 4 and engine.counts["requests"] == 1
    assert engine.generated_tokens == len(engine.encode("But then yes."))


def test_a_masked_start_that_runs_out_of_tokens_ends_length():
    engine = ScriptedStream(Script().after(PROMPT, "But then yes."))
    completion = complete(engine, banned_starts=("But wait",), max_new_tokens=2)
    assert completion.text == "But " and completion.finish_reason == "length"
    assert len(engine.calls) == 2


@pytest.mark.parametrize(("budget", "text", "calls"), [(3, "But then", 3), (4, "But then ", 4), (5, "But then yes", 4)])
def test_the_budget_counts_the_masked_tokens_too(budget, text, calls):
    engine = ScriptedStream(Script().after(PROMPT, "But then yes."))
    completion = complete(engine, banned_starts=("But wait",), max_new_tokens=budget)
    assert (completion.text, completion.finish_reason) == (text, "length")
    assert len(engine.calls) == calls


def test_a_masked_start_can_stop_at_once():
    engine = ScriptedStream(Script().after(PROMPT, "\n\nSo."))
    completion = complete(engine, banned_starts=("Wait",), stop=("\n\n",))
    assert completion.text == "\n\n" and completion.finish_reason == "stop"


def test_a_backend_that_ignores_the_mask_is_caught():
    engine = ScriptedStream(Script().after(PROMPT, "Wait, no.", "Go on."), honour_masks=False)
    message = r"ignored the banned-start mask \(logit_bias\); try --ban-method generation_config \(transformers serve\)"
    with pytest.raises(ServerError, match=message + " or --ban-method reject$"):
        complete(engine, banned_starts=("Wait",))


def test_a_stream_that_ends_without_a_finish_reason_is_an_error():
    engine = ScriptedStream(Script().after(PROMPT, "So x is 4."), ending="silent")
    with pytest.raises(ServerError, match=r"^the stream ended without a finish reason$"):
        complete(engine)


def test_reject_resamples_whole_attempts_until_the_start_is_allowed():
    first = _mix(11, 0)
    script = Script().after(PROMPT, "Wait, no.", seeds=[11, _mix(11, 1)]).after(PROMPT, "Go on.", seeds=[_mix(11, 2)])
    engine = ScriptedStream(script, ban_method="reject")
    completion = complete(engine, banned_starts=("Wait",))
    assert completion.text == "Go on." and completion.finish_reason == "eos"
    assert [call.seed for _, call in engine.calls] == [11, _mix(11, 1), _mix(11, 2)]
    assert first != 11 and engine.counts["rejected_starts"] == 2 and engine.counts["banned"] == 0
    assert engine.closed == 3  # a rejected attempt's stream is closed at once
    assert engine._ban._token_texts is None  # rejecting needs no pass over the vocabulary


def test_reject_watches_a_multi_token_start_until_it_is_decided():
    script = Script().after(PROMPT, "But wait, no.", seeds=[11]).after(PROMPT, "But then yes.")
    engine = ScriptedStream(script, ban_method="reject")
    completion = complete(engine, banned_starts=("But wait",))
    assert completion.text == "But then yes." and engine.counts["rejected_starts"] == 1


def test_counters_add_up_over_requests():
    engine = ScriptedStream(Script().after(PROMPT, "Wait, no."), ban_method="reject")
    engine.ban_attempts = 1
    engine.counts["requests"] = 5
    engine.generated_tokens = 100
    first = complete(engine, banned_starts=("Wait",))
    second = complete(engine)
    assert first.finish_reason == "banned" and second.text == "Wait, no."
    assert engine.counts["requests"] == 7 and engine.counts["banned"] == 1
    complete(engine, banned_starts=("Wait",))
    assert engine.counts["banned"] == 2
    assert engine.generated_tokens == 100 + len(second.token_ids)


def test_reject_gives_up_after_its_attempts():
    engine = ScriptedStream(Script().after(PROMPT, "Wait, no."), ban_method="reject")
    engine.ban_attempts = 3
    completion = complete(engine, banned_starts=("Wait",))
    assert completion == Completion("", (), "banned")
    assert engine.counts["rejected_starts"] == 3 and engine.counts["banned"] == 1
    assert [len(call.text_before) for _, call in engine.calls] == [0, 0, 0]


def test_reject_lets_a_longer_word_through_on_the_first_attempt():
    engine = ScriptedStream(Script().after(PROMPT, "Waiting is fine."), ban_method="reject")
    completion = complete(engine, banned_starts=("Wait",))
    assert completion.text == "Waiting is fine." and engine.counts["rejected_starts"] == 0
