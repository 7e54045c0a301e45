"""Text conventions shared by the trace parser and the engines' start bans (so the two always agree)."""

from __future__ import annotations

# What may stand before a keyword at the start of a step: whitespace and markdown emphasis.
LEADING_NOISE = " \t\r\n*_#>`"


def normalize_start(text: str) -> str:
    """The start of a step as keyword matching sees it: leading noise dropped, lower case."""
    return text.lstrip(LEADING_NOISE).lower()
