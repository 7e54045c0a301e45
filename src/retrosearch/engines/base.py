"""The one interface every engine implements: `await engine.generate(requests) -> completions`.

Engines see token ids and strings, never traces. A request may forbid its completion from STARTING
with some words (case-insensitive, after leading whitespace and markdown): that is how Retro-Search
suppresses a thought switch for one step, and each engine must enforce it for every tokenization.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType

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


@dataclass(frozen=True)
class Completion:
    """Generated token ids and their exact decoded text (nothing cut off after a stop)."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: str  # "stop", "eos", "length" or "limit"


class Engine(ABC):
    """A text generator over one model; `tokenizer` is that model's Hugging Face tokenizer."""

    model_id: str
    revision: str | None = None
    tokenizer: object
    context_length: int | None = None  # most tokens a prompt and its completion may hold; None: not known
    # telemetry a run reports: tokens generated since the engine was made, and engine-specific counts
    generated_tokens: int = 0
    counts: Mapping[str, int] = MappingProxyType({})

    @abstractmethod
    async def generate(self, requests: Sequence[Request]) -> list[Completion]: ...

    def chat_prompt(self, user: str) -> str:
        """The model's chat template around one user turn, ready for the assistant's reply."""
        template = getattr(self.tokenizer, "chat_template", None)
        if not template:
            return user
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False
        )

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))
