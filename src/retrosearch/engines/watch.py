"""Where a growing completion must end: the stop strings and occurrence limits of a request, as text.

Every engine applies these the same way. An engine that sees its output token by token finishes on the
token that completed the match; one that sees streamed text (a server, vLLM) cuts the text right after it.
"""

from __future__ import annotations

from retrosearch.engines.base import Request


def stop_end(text: str, stops: tuple[str, ...], scan_from: int = 0) -> int | None:
    """End of the earliest stop string in `text` (searching from `scan_from`, minus an overlap), or None."""
    ends = []
    for stop in stops:
        found = text.find(stop, max(0, scan_from - len(stop) + 1))
        if found >= 0:
            ends.append(found + len(stop))
    return min(ends) if ends else None


def limit_end(text: str, limit: tuple[str, int, str | None] | None, scan_from: int = 0) -> int | None:
    """End of the `count`-th `needle` before the first `until`, or None while the limit is not reached.

    With `scan_from` (how much of the text an earlier call saw, unreached), the text is counted again only
    when a new `needle` has appeared since: checking at every token stays linear in the text's length."""
    if limit is None:
        return None
    needle, count, until = limit
    if scan_from and text.find(needle, max(0, scan_from - len(needle) + 1)) < 0:
        return None
    counted = text if until is None else text.partition(until)[0]
    if counted.count(needle) < count:
        return None
    end = -len(needle)
    for _ in range(count):
        end = counted.find(needle, end + len(needle))
    return end + len(needle)


def finish(request: Request, text: str, scan_from: int = 0) -> tuple[str, int] | None:
    """("stop" | "limit", where the text ends) once the request must end, else None."""
    end = stop_end(text, request.stop, scan_from)
    if end is not None:
        return "stop", end
    end = limit_end(text, request.occurrence_limit, scan_from)
    if end is not None:
        return "limit", end
    return None
