"""Prompt fidelity: one join rule between a chat prompt and a trace (the opening marker exactly once, whoever
opens it), system prompts and template arguments, `retrosearch prompt`, and token-exact rollout prompts."""

import itertools
import json

import pytest

from retrosearch.cli import main
from retrosearch.data.inputs import FieldMap, iter_samples
from retrosearch.engines.base import PromptConfig, chat_prompt
from retrosearch.prompting import completion_part, join, joined_ids, opened_by, overlap, stored
from retrosearch.tools.prompt import rollout_prompt
from retrosearch.trace import FORMATS, KeywordMatcher, parse

SKY_T1_SYSTEM_PROMPT = "Your role as an assistant involves thoroughly exploring questions through a systematic long"


def r1_template_opening(shared_tokenizer, tmp_path) -> str:
    """The current hub revision of the R1-Distill template: the shipped one with `<think>\\n` after the prompt."""
    path = tmp_path / "r1-opens.jinja"
    path.write_text(shared_tokenizer.chat_template + "{% if add_generation_prompt %}<think>\n{% endif %}")
    return str(path)


@pytest.mark.parametrize("format_name", ["r1", "openthoughts"])
@pytest.mark.parametrize("template_opens", [True, False])
@pytest.mark.parametrize("trace_opens", [True, False])
def test_the_opening_marker_appears_exactly_once_whoever_opens_it(format_name, template_opens, trace_opens):
    fmt = FORMATS[format_name]
    prompt = "User: Find x.\nAssistant: " + (fmt.open + "\n" if template_opens else "")
    reasoning = "Try 3.\n\nWait, try 5.\n\n5 works.\n" + fmt.close + "\n\nThe answer is \\boxed{5}."
    trace = (fmt.open + "\n" if trace_opens else "") + reasoning
    joined = join(prompt, trace)
    assert joined.count(fmt.open) == (1 if template_opens or trace_opens else 0)
    assert joined.endswith(reasoning) and joined.startswith(prompt)
    assert prompt + completion_part(prompt, trace) == joined
    assert opened_by(prompt) == (fmt.open + "\n" if template_opens else "")
    # what a model writes after this prompt is stored with its opening marker: it parses and round-trips
    written = joined[len(prompt) :]
    kept = stored(prompt, written)
    assert kept.count(fmt.open) == (1 if template_opens or trace_opens else 0)
    if template_opens or trace_opens:
        assert parse(kept).format.name == format_name and parse(kept).render() == kept
        assert join(prompt, kept) == joined  # prompting the stored trace again gives the same text


def test_the_join_keeps_what_differs_after_the_marker():
    assert overlap("A: <think>\n", "<think>Try.") == len("<think>")  # no newline in the trace: none taken
    assert join("A: <think>\n", "<think>Try.") == "A: <think>\nTry."
    assert overlap("A: <think>", "<think>\nTry.") == len("<think>")
    assert join("A: <think>", "<think>\nTry.") == "A: <think>\nTry."
    assert overlap("A: <think>\n", "<|begin_of_thought|>\nTry.") == 0  # another marker is no overlap
    assert overlap("A: <think>\nsomething", "<think>\nTry.") == 0  # a marker not at the end opens nothing
    assert stored("A: <think>\n", "<think>\nTry.") == "<think>\nTry."  # a model that opened it again: kept
    assert stored("A: <think>\n", "\n<think>Try.") == "\n<think>Try."  # after whitespace, and without its newline
    assert stored("A: <think>\n", "Try.") == "<think>\nTry."
    assert overlap("A: <think>\n\n", "<think>\n\nTry.") == len("<think>\n\n")  # all the whitespace both have


def test_only_a_marker_at_the_prompts_end_opens_the_reasoning_wherever_else_one_stands():
    assert opened_by("<think>\n") == "<think>\n"  # a prompt that is only the marker
    assert opened_by("Q: why <think> here?\nA: <think>\n") == "<think>\n"  # the last one counts
    assert opened_by("A: <think>\nsomething") == ""


@pytest.mark.parametrize("before", ["\n", " ", "\n\n  "])
def test_whitespace_before_the_traces_marker_does_not_double_it(before):
    trace = before + "<think>\nTry 3.\n</think>\n\\boxed{3}"
    assert join("A: <think>\n", trace) == "A: <think>\nTry 3.\n</think>\n\\boxed{3}"
    assert completion_part("A: <think>\n", trace) == "Try 3.\n</think>\n\\boxed{3}"
    assert join("A: ", trace) == "A: " + trace  # a template that opens nothing takes the trace as it is


def test_the_r1_distill_template_shipped_and_opening_gives_one_think(shared_tokenizer, tmp_path):
    rows = tmp_path / "r1.jsonl"
    trace = "<think>\nTry 3.\n\nWait, try 5.\n\n5 works.\n</think>\n\nThe answer is \\boxed{5}."
    rows.write_text(json.dumps({"problem": "Find x.", "answer": "5", "response": trace}) + "\n")
    folder = shared_tokenizer.name_or_path
    for prompt in (PromptConfig(), PromptConfig(chat_template=r1_template_opening(shared_tokenizer, tmp_path))):
        for switch in (None, 0):
            shown = rollout_prompt(folder, str(rows), 0, switch, prompt)
            assert shown["text"].count("<think>") == (1 if prompt.chat_template or switch == 0 else 0)
            assert shared_tokenizer.decode(shown["ids"]) == shown["text"]
        assert shown["text"].endswith("<｜Assistant｜><think>\nTry 3.\n\n")


def test_an_openthoughts_row_with_the_sky_t1_system_prompt(shared_tokenizer, shared_traces, tmp_path, capsys):
    source = str(next(path for path in shared_traces if "math500" in path.name))
    system = tmp_path / "sky-t1.txt"
    system.write_text(SKY_T1_SYSTEM_PROMPT)
    command = ["prompt", "--model", shared_tokenizer.name_or_path, "--input", source, "--row", "2", "--switch", "0"]
    assert main([*command, "--system-prompt-file", str(system)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("<｜begin▁of▁sentence｜>" + SKY_T1_SYSTEM_PROMPT + "<｜User｜>")
    assert text.count("<|begin_of_thought|>") == 1 and text.endswith("\n\n")
    assert main([*command, "--system-prompt", "Be brief.", "--ids"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "Be brief." in shown["text"] and shared_tokenizer.decode(shown["ids"]) == shown["text"]
    assert main([*command[:-2], "--switch", "9999"]) == 2
    assert "thought switches; --switch counts from 0" in capsys.readouterr().err
    assert main([*command[:-4], "--row", "100000"]) == 2
    assert "there is no row 100000" in capsys.readouterr().err


def test_system_prompts_and_template_arguments_are_checked_and_reach_the_template(shared_tokenizer, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        PromptConfig(system_prompt="a", system_prompt_file="b")
    with pytest.raises(ValueError, match="takes a JSON object"):
        PromptConfig(chat_template_kwargs="[1]")
    with pytest.raises(ValueError, match="is not JSON"):
        PromptConfig(chat_template_kwargs="{enable_thinking: true}")
    template = tmp_path / "kw.jinja"
    template.write_text("{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{{ mode | default('-') }}")
    prompt = PromptConfig(system_prompt="S", chat_template=str(template), chat_template_kwargs='{"mode": "think"}')
    assert chat_prompt(shared_tokenizer, "P", prompt) == "[system]S[user]Pthink"


def test_rollout_prompts_are_token_exact_at_every_switch_of_the_real_traces(shared_traces, shared_tokenizer):
    """A rollout prompt's ids are the chat prompt's, then the trace's up to the switch, tokenized apart: those are
    the ids the model saw when it wrote the trace if the trace's own ids split at every switch, i.e. if tokenizing
    the whole trace gives the concatenated ids of its pieces between switches (pre-tokenization looks one
    character ahead, so each split point is checked by this one comparison per trace). Every switch of all 570
    traces, with the real R1-Distill tokenizer."""
    matcher = KeywordMatcher()

    def encode(text: str) -> list[int]:
        return shared_tokenizer(text, add_special_tokens=False)["input_ids"]

    switches = 0
    for path in shared_traces:
        for sample in iter_samples(str(path), FieldMap(gold_from_trace=True)):
            trace = parse(sample.response)
            cuts = [0, *(len(trace.prefix(index)) for index in trace.switch_indices(matcher)), len(sample.response)]
            pieces = [encode(sample.response[start:end]) for start, end in itertools.pairwise(cuts)]
            whole = encode(sample.response)
            assert whole == [token for piece in pieces for token in piece], sample.source
            switches += len(cuts) - 2
            prompt = chat_prompt(shared_tokenizer, sample.problem)
            last = sample.response[: cuts[-2]]  # the trace before its last switch
            ids, prompt_ids = list(joined_ids(encode, prompt, last)), encode(prompt)
            assert ids == prompt_ids + whole[: len(ids) - len(prompt_ids)]  # what the model saw, token for token
            assert shared_tokenizer.decode(ids) == join(prompt, last)
    assert switches > 10_000


def test_sft_pairs_train_the_way_the_model_will_be_prompted(shared_tokenizer, tmp_path):
    from retrosearch.stages.sft import SFTRunConfig, training_pairs

    trace = "<think>\nTry 3.\n\nWait, try 5.\n</think>\n\nThe answer is \\boxed{5}."
    rows = tmp_path / "r1.jsonl"
    rows.write_text(json.dumps({"problem": "Find x.", "answer": "5", "response": trace}) + "\n")
    opening = PromptConfig(chat_template=r1_template_opening(shared_tokenizer, tmp_path))
    for prompt, completion in ((PromptConfig(), trace), (opening, trace.removeprefix("<think>\n"))):
        (pair,), _ = training_pairs(SFTRunConfig(input=str(rows), prompt=prompt), shared_tokenizer)
        assert pair["completion"] == completion  # the reasoning verbatim; the marker where the prompt lacks it
        assert (pair["prompt"] + pair["completion"]).count("<think>") == 1
    (pair,), _ = training_pairs(SFTRunConfig(input=str(rows), prompt=PromptConfig(system_prompt="S")), shared_tokenizer)
    assert pair["prompt"].startswith("<｜begin▁of▁sentence｜>S<｜User｜>Find x.")


def test_generate_stores_the_marker_a_template_opened(tmp_path):
    from scripted import Script, ScriptedEngine

    from retrosearch.engines import EngineConfig
    from retrosearch.stages.generate import GenerateConfig, generate

    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({"id": "p", "problem": "Find x.", "answer": "5"}) + "\n")
    written = "Try 5.\n\n5 works.\n</think>\n\nThe answer is \\boxed{5}."
    engine = ScriptedEngine(
        Script().after("User: Find x.\nAssistant: <think>\n", written), chat="User: {}\nAssistant: <think>\n"
    )
    generate(
        GenerateConfig(problems=str(problems), output=str(tmp_path / "run")), EngineConfig(), engine=engine, quiet=True
    )
    row = json.loads((tmp_path / "run" / "samples.jsonl").read_text())
    assert row["response"] == "<think>\n" + written and row["correct"] is True
    assert parse(row["response"]).format.name == "r1" and parse(row["response"]).render() == row["response"]


def test_the_prompt_settings_are_part_of_a_runs_config(tmp_path, capsys, monkeypatch, organism_engine):
    monkeypatch.setattr("retrosearch.executors.local.load_engine", lambda config: organism_engine)
    from retrosearch.stages.teacher import export_teacher

    traces = tmp_path / "t.jsonl"
    export_teacher(traces, 2, split="test")
    command = ["revise", "--input", str(traces), "--output", str(tmp_path / "run"), "--max-new-tokens", "60"]
    assert main([*command, "--system-prompt", "Think."]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["EngineConfig"]["prompt"]["system_prompt"] == "Think."
    capsys.readouterr()
    assert main(command) == 2
    assert "other settings (EngineConfig.prompt.system_prompt)" in capsys.readouterr().err


def test_the_openthoughts_recipe_trains_and_evaluates_with_the_sky_t1_system_prompt():
    import shlex
    from pathlib import Path

    from retrosearch.pipelines.recipe import load_recipe, plan, run_recipe

    path = str(Path(__file__).parents[1] / "recipes/weak-to-strong/openthoughts-r1-distill-32b.yaml")
    prompts = {name: options.get("system_prompt") for name, _, options in plan(load_recipe(path))}
    assert prompts["revise"] is None  # the revision model, an R1 distill, takes no system prompt
    for stage in ("sft-original", "sft-revised", "eval-original", "eval-revised"):
        assert prompts[stage].startswith(SKY_T1_SYSTEM_PROMPT) and "<|begin_of_thought|>" in prompts[stage]
    line = next(line for line in run_recipe(path, dry_run=True).splitlines() if "eval-revised:" in line)
    words = shlex.split(line.split(": ", 1)[1])
    assert words[words.index("--system-prompt") + 1] == prompts["eval-revised"]  # the plan runs as printed


def test_sft_rows_hold_the_ids_the_model_is_prompted_with(shared_tokenizer, shared_traces):
    """Tokenizing prompt + completion as one text merges tokens across the join with this tokenizer; the rows
    SFT trains on are tokenized apart, as rollouts are prompted and as the model writes."""
    from retrosearch.stages.sft import training_row

    sample = next(iter_samples(str(shared_traces[0]), FieldMap(gold_from_trace=True)))
    prompt = chat_prompt(shared_tokenizer, sample.problem)

    def encode(text: str) -> list[int]:
        return shared_tokenizer(text, add_special_tokens=False)["input_ids"]

    row = training_row(shared_tokenizer, prompt, sample.response)
    assert row["input_ids"] == encode(prompt) + encode(sample.response) + [shared_tokenizer.eos_token_id]
    assert row["input_ids"][:-1] != encode(prompt + sample.response)  # the merge this avoids
    assert row["completion_mask"] == [0] * len(encode(prompt)) + [1] * (len(row["input_ids"]) - len(encode(prompt)))
