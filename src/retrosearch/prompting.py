"""The one rule that joins a model's generation prompt to a trace, used by generate, revise, sft and eval.

A chat template may open the reasoning itself (DeepSeek-R1-Distill's current template ends its generation prompt
with `<｜Assistant｜><think>\\n`, and the model then writes only the rest), or leave it to the model (older copies of
the same template, Sky-T1/OpenThoughts models, which write `<|begin_of_thought|>` themselves). A stored trace always
holds its own opening marker, so it parses and round-trips byte-exactly whatever template made it. What the model
reads is the generation prompt and then the trace with the part the prompt already holds left out: the marker
appears exactly once in all four cases (template opens or not, trace opens or not).
"""

from __future__ import annotations

from collections.abc import Callable

from retrosearch.trace import FORMATS

MARKERS = tuple(fmt.open for fmt in FORMATS.values() if fmt.open)


def opened_by(prompt: str) -> str:
    """The end of a generation prompt from the reasoning's opening marker on (e.g. '<think>\\n'), or '' when the
    template leaves the opening to the model."""
    for marker in MARKERS:
        at = prompt.rfind(marker)
        if at >= 0 and not prompt[at + len(marker) :].strip():
            return prompt[at:]
    return ""


def overlap(prompt: str, trace: str) -> int:
    """How many leading characters of `trace` the prompt already holds: none, unless the template opened the
    reasoning and the trace opens with the same marker, maybe after whitespace (then that whitespace, the marker
    and the whitespace after it they share)."""
    opened = opened_by(prompt)
    marker = opened.rstrip()
    leading = len(trace) - len(trace.lstrip())  # whitespace before the trace's own marker goes with it
    if not opened or not trace.startswith(marker, leading):
        return 0
    after_trace, after_prompt = trace[leading + len(marker) :], opened[len(marker) :]
    shared = 0  # the whitespace after the marker, as far as both have the same
    while shared < min(len(after_trace), len(after_prompt)) and after_trace[shared] == after_prompt[shared]:
        shared += 1
    return leading + len(marker) + shared


def join(prompt: str, trace: str) -> str:
    """What the model reads for `trace` (or a prefix of it) after `prompt`: the opening marker exactly once."""
    return prompt + trace[overlap(prompt, trace) :]


def joined_ids(encode: Callable[[str], list[int]], prompt: str, trace: str) -> tuple[int, ...]:
    """The ids of `join(prompt, trace)` as the model saw them when it wrote the trace: the chat prompt's, then the
    trace's, tokenized apart (tokenizing the joined text can merge tokens across the join)."""
    return tuple(encode(prompt)) + tuple(encode(trace[overlap(prompt, trace) :]))


def stored(prompt: str, completion: str) -> str:
    """The trace to keep for a completion of `prompt`: with the opening marker the template wrote for the model
    put back in front, so that it parses (a completion that opened the reasoning itself is kept as it is)."""
    opened = opened_by(prompt)
    if not opened or completion.lstrip().startswith(opened.rstrip()):
        return completion
    return opened + completion


def completion_part(prompt: str, trace: str) -> str:
    """The part of a stored trace a model writes after `prompt` (an SFT target): `join(prompt, trace)` is
    `prompt + completion_part(prompt, trace)`."""
    return trace[overlap(prompt, trace) :]
