"""Text conventions shared by the trace parser and the engines' start bans (so the two always agree)."""

from __future__ import annotations

import unicodedata

# What may stand before a keyword at the start of a step: whitespace and markdown emphasis.
LEADING_NOISE = " \t\r\n*_#>`"


def normalize_start(text: str) -> str:
    """The start of a step as keyword matching sees it: leading noise dropped, lower case."""
    return text.lstrip(LEADING_NOISE).lower()


# Scripts written without spaces between words: there, the next letter never tells that a word goes on.
UNSPACED_SCRIPTS = ("CJK", "HIRAGANA", "KATAKANA", "HALFWIDTH KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR")


def opens_with(start: str, keyword: str) -> bool:
    """Whether a normalized start opens with a lower-case keyword as a whole word ("wait," yes, "waiting" no;
    "等等我" yes: Chinese and Japanese put no space after a word, so what follows never continues it).

    The one rule for both the switch matcher (a step that opens so is a thought switch) and the start ban
    (a token may not make a completion open so; it may carry the word on into a longer one)."""
    if not keyword or not start.startswith(keyword):
        return False
    following = start[len(keyword) : len(keyword) + 1]
    return not following.isalnum() or unicodedata.name(keyword[-1], "").startswith(UNSPACED_SCRIPTS)
