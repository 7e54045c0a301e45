"""The one interface every engine implements: `await engine.generate(requests) -> completions`.

Engines see token ids and strings, never traces. A request may forbid its completion from STARTING
with some words (case-insensitive, after leading whitespace and markdown): that is how Retro-Search
suppresses a thought switch for one step, and each engine must enforce it for every tokenization.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from retrosearch.config import at_least, option


@dataclass(frozen=True)
class SamplingConfig:
    """How every stage samples: generate, eval and each Retro-Search rollout."""

    temperature: float = option(0.6, "sampling temperature")
    top_p: float = option(0.95, "nucleus sampling threshold")
    max_new_tokens: int = option(32768, "most tokens one generation may write (per rollout, in revise)")
    seed: int = option(0, "global seed; per-request seeds derive from it and the sample id")

    def __post_init__(self) -> None:
        at_least(self, 0, "temperature")
        at_least(self, 1, "max_new_tokens")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"--top-p must be in (0, 1] (got {self.top_p})")


@dataclass(frozen=True)
class PromptConfig:
    """How a problem becomes a chat prompt: the model's template, with a system prompt and template arguments."""

    system_prompt: str | None = option(
        None, "system prompt before the problem (e.g. the one a Sky-T1/OpenThoughts model was trained with)"
    )
    system_prompt_file: str | None = option(None, "file holding the system prompt")
    chat_template_kwargs: str | None = option(
        None, "JSON object of chat-template arguments, e.g. '{\"enable_thinking\": true}'"
    )
    chat_template: str | None = option(None, "Jinja chat-template file to use instead of the tokenizer's own")

    def __post_init__(self) -> None:
        if self.system_prompt is not None and self.system_prompt_file is not None:
            raise ValueError("give --system-prompt or --system-prompt-file, not both")
        self.template_arguments()  # refused at once, not at the first prompt

    def system(self) -> str | None:
        if self.system_prompt_file is None:
            return self.system_prompt
        return _read_text(self.system_prompt_file, "--system-prompt-file")

    def template_arguments(self) -> dict[str, Any]:
        if not self.chat_template_kwargs:
            return {}
        try:
            arguments = json.loads(self.chat_template_kwargs)
        except json.JSONDecodeError as error:
            raise ValueError(f"--chat-template-kwargs is not JSON ({error.msg}): {self.chat_template_kwargs}") from None
        if not isinstance(arguments, dict):
            raise ValueError("--chat-template-kwargs takes a JSON object, e.g. '{\"enable_thinking\": true}'")
        return arguments


def _read_text(path: str, option_name: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{option_name} {path}: cannot be read ({error})") from None


def encode(tokenizer: Any, text: str) -> list[int]:
    """A text's token ids as the model reads them in a prompt: no special tokens added (templates write their own)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def chat_prompt(tokenizer: Any, user: str, prompt: PromptConfig = PromptConfig()) -> str:
    """The chat template around one user turn (after the system prompt, if any), ready for the assistant's reply.
    A tokenizer without a template gets the system prompt and the problem separated by a blank line."""
    system = prompt.system()
    template = _read_text(prompt.chat_template, "--chat-template") if prompt.chat_template else None
    template = template or getattr(tokenizer, "chat_template", None)
    if not template:
        return f"{system}\n\n{user}" if system else user
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user})
    return tokenizer.apply_chat_template(
        messages, chat_template=template, add_generation_prompt=True, tokenize=False, **prompt.template_arguments()
    )


# Which of the caller's work items a request serves, by position: engines serve lower positions first when
# requests wait, so the items that started first finish first. The runner sets it for each item's work.
WORK_POSITION: ContextVar[int] = ContextVar("work_position", default=0)


@dataclass(frozen=True)
class Request:
    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    temperature: float = 0.6
    top_p: float = 0.95
    seed: int = 0
    stop: tuple[str, ...] = ()
    banned_starts: tuple[str, ...] = ()
    # (needle, count, until): stop once the completion holds `count` occurrences of `needle`
    # before the first `until` (None: anywhere). Lets a caller stop a rollout that can no longer win.
    occurrence_limit: tuple[str, int, str | None] | None = None
    # The caller's next request given this one's completion, or None to end there; its prompt is this prompt and
    # this completion's ids. An engine that holds the row's cache continues the row in place (no second prefill);
    # the others send it as a new request and rely on their prefix cache. Its completion is `Completion.continued`.
    then: Callable[[Completion], Request | None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Completion:
    """Generated token ids and their exact decoded text (nothing cut off after a stop)."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: str  # "stop", "eos", "length" or "limit"
    continued: Completion | None = None  # the completion of the request's `then`


def chained(parts: Sequence[Completion]) -> Completion:
    """The first completion, each later one its predecessor's `continued`."""
    result = parts[-1]
    for part in reversed(parts[:-1]):
        result = replace(part, continued=result)
    return result


class Engine(ABC):
    """A text generator over one model; `tokenizer` is that model's Hugging Face tokenizer."""

    model_id: str
    revision: str | None = None
    tokenizer: object
    context_length: int | None = None  # most tokens a prompt and its completion may hold; None: not known
    # telemetry a run reports: tokens generated since the engine was made, and engine-specific counts
    generated_tokens: int = 0
    counts: Mapping[str, int] = MappingProxyType({})

    continues_in_place: bool = False  # the engine serves `Request.then` itself

    @abstractmethod
    async def generate(self, requests: Sequence[Request]) -> list[Completion]: ...

    async def complete(self, request: Request) -> Completion:
        """One request's completion, its `then` followed: in place where the engine can, else as a new request."""
        (completion,) = await self.generate([request])
        if self.continues_in_place or request.then is None:
            return completion
        follow = request.then(completion)
        if follow is None:
            return completion
        return replace(completion, continued=await self.complete(follow))

    prompt: PromptConfig = PromptConfig()  # set from the engine options by load_engine

    def chat_prompt(self, user: str) -> str:
        """The model's chat template around one user turn, ready for the assistant's reply."""
        return chat_prompt(self.tokenizer, user, self.prompt)

    def encode(self, text: str) -> list[int]:
        return encode(self.tokenizer, text)

    def reset_prefix_cache(self) -> None:
        """Forget cached prompts (a benchmark's fair start); engines without a prefix cache have nothing to do."""
        return None

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))
