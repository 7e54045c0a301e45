"""Text <-> Trace: reasoning split into steps (blank lines) and thoughts (steps opening with a keyword).

`parse(text).render() == text` byte for byte, for every text: the head (up to and including the
opening marker), the steps (the reasoning split on blank lines, empty ones kept) and the tail (from
the closing marker on) are all kept as they were.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from retrosearch.text import normalize_start, opens_with

SEPARATOR = "\n\n"
DEFAULT_KEYWORDS = (
    "Wait",
    "Alternatively",
    "Hmm",
    "But wait",
    "Let me double-check",
    "Another approach",
    "On second thought",
)


@dataclass(frozen=True)
class TraceFormat:
    name: str
    open: str | None
    close: str | None


FORMATS = {
    "r1": TraceFormat("r1", "<think>", "</think>"),
    "openthoughts": TraceFormat("openthoughts", "<|begin_of_thought|>", "<|end_of_thought|>"),
    "plain": TraceFormat("plain", None, None),
}


def detect_format(text: str) -> TraceFormat:
    if "<|begin_of_thought|>" in text or "<|end_of_thought|>" in text:
        return FORMATS["openthoughts"]
    if "<think>" in text or "</think>" in text:
        return FORMATS["r1"]
    return FORMATS["plain"]


@dataclass(frozen=True)
class KeywordMatcher:
    keywords: tuple[str, ...] = DEFAULT_KEYWORDS

    def match(self, step: str) -> str | None:
        """The keyword that opens `step` (whole word, case-insensitive), if any."""
        start = normalize_start(step)
        return next(
            (keyword for keyword in sorted(self.keywords, key=len, reverse=True) if opens_with(start, keyword.lower())),
            None,
        )


@dataclass
class Trace:
    head: str
    steps: list[str]
    tail: str
    format: TraceFormat = field(default_factory=lambda: FORMATS["plain"])

    def render(self) -> str:
        return self.head + SEPARATOR.join(self.steps) + self.tail

    def prefix(self, step_index: int) -> str:
        """The text before step `step_index`: what a model continues from to write that step."""
        return self.head + "".join(step + SEPARATOR for step in self.steps[:step_index])

    @property
    def finished(self) -> bool:
        """Whether the reasoning was closed (a cut-off trace has no closing marker)."""
        return self.format.close is None or bool(self.tail)

    @property
    def solution(self) -> str:
        return self.tail if self.format.close is not None else self.render()

    def switch_indices(self, matcher: KeywordMatcher) -> list[int]:
        """Indices of steps that switch to a new thought (never the first non-blank step)."""
        indices = []
        seen_content = False
        for index, step in enumerate(self.steps):
            if not step.strip():
                continue
            if seen_content and matcher.match(step):
                indices.append(index)
            seen_content = True
        return indices

    def stats(self, matcher: KeywordMatcher) -> TraceStats:
        switches = self.switch_indices(matcher)
        keywords = Counter(matcher.match(self.steps[i]) for i in switches)
        content_steps = sum(1 for step in self.steps if step.strip())
        return TraceStats(
            steps=content_steps,
            thoughts=(1 + len(switches)) if content_steps else 0,
            switches=len(switches),
            keywords=dict(keywords),
        )


@dataclass(frozen=True)
class TraceStats:
    steps: int
    thoughts: int
    switches: int
    keywords: dict[str, int]


def parse(text: str, trace_format: TraceFormat | None = None) -> Trace:
    fmt = trace_format or detect_format(text)
    if fmt.open is None or fmt.close is None:
        return Trace("", text.split(SEPARATOR), "", fmt)
    open_at = text.find(fmt.open)
    head_end = 0 if open_at < 0 else open_at + len(fmt.open)
    close_at = text.find(fmt.close, head_end)
    body_end = len(text) if close_at < 0 else close_at
    return Trace(text[:head_end], text[head_end:body_end].split(SEPARATOR), text[body_end:], fmt)


def check_keywords(keywords: Sequence[str]) -> None:
    """Refuse an empty list or a blank keyword, which would open a thought at every step."""
    if not keywords or not all(keyword.strip() for keyword in keywords):
        raise ValueError("--keywords takes one or more words (none may be blank)")


def with_keywords(keywords: Sequence[str] | None) -> KeywordMatcher:
    """The matcher of the given keywords (checked), or of the default ones when none are given."""
    if not keywords:
        return KeywordMatcher(DEFAULT_KEYWORDS)
    check_keywords(keywords)
    return KeywordMatcher(tuple(keywords))
