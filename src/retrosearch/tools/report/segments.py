"""A trace as the viewer shows it: segments of text, each marked kept, cut, new or answer, with the length of the
switch keyword that opens it (0: none), so that the page can highlight keywords without parsing anything."""

from __future__ import annotations

from retrosearch.text import LEADING_NOISE
from retrosearch.trace import SEPARATOR, KeywordMatcher, Trace, parse

Segment = tuple[str, int, str]  # (kind, keyword length, text)


def _keyword_length(step: str, matcher: KeywordMatcher) -> int:
    """Characters of `step` up to the end of its opening keyword (leading noise such as `**` included), 0 when no
    keyword opens it: the same rule as the switch matcher's."""
    keyword = matcher.match(step)
    return 0 if keyword is None else len(step) - len(step.lstrip(LEADING_NOISE)) + len(keyword)


def _segments(trace: Trace, matcher: KeywordMatcher, shared: int, rest: str) -> list[Segment]:
    """Every step of a trace: the first `shared` kept, the others of kind `rest`; only a thought switch (never the
    first step with content) has its keyword marked."""
    switches = set(trace.switch_indices(matcher))
    return [
        ("kept" if index < shared else rest, _keyword_length(step, matcher) if index in switches else 0, step)
        for index, step in enumerate(trace.steps)
    ]


def _capped(segments: list[Segment], max_chars: int) -> list[Segment]:
    """At most `max_chars` characters of text; what is left out is said in one last segment."""
    shown, used = [], 0
    for index, (kind, keyword, text) in enumerate(segments):
        if used + len(text) > max_chars:
            left = sum(len(text) for _, _, text in segments[index:])
            return [*shown, ("omitted", 0, f"… {left:,} more characters not shown in this report")]
        shown.append((kind, keyword, text))
        used += len(text)
    return shown


def _framed(trace: Trace, body: list[Segment]) -> list[Segment]:
    head = [("head", 0, trace.head)] if trace.head else []
    tail = [("answer", 0, trace.tail)] if trace.tail else []
    return head + body + tail


def compare(original: str, revised: str, matcher: KeywordMatcher, max_chars: int) -> tuple[list, list]:
    """The original and the revised trace as segments: the steps they share from the start are kept, the rest of
    the original is cut and the rest of the revised trace is new (one or more accepted rollouts)."""
    before, after = parse(original), parse(revised)
    shared = 0
    for old, new in zip(before.steps, after.steps, strict=False):
        if old != new:
            break
        shared += 1
    return (
        _capped(_framed(before, _segments(before, matcher, shared, "cut")), max_chars),
        _capped(_framed(after, _segments(after, matcher, shared, "new")), max_chars),
    )


def single(text: str, matcher: KeywordMatcher, max_chars: int) -> list[Segment]:
    """One trace (a generated sample) as segments, every step kept."""
    trace = parse(text)
    return _capped(_framed(trace, _segments(trace, matcher, len(trace.steps), "kept")), max_chars)


def joined(segments: list[Segment]) -> str:
    """The text the segments show (the trace itself when nothing was left out)."""
    head = "".join(text for kind, _, text in segments if kind == "head")
    tail = "".join(text for kind, _, text in segments if kind == "answer")
    body = SEPARATOR.join(text for kind, _, text in segments if kind not in ("head", "answer"))
    return head + body + tail
