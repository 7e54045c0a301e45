"""Which tokens would make a completion start with a banned word, for any tokenizer.

Banning single token ids misses multi-token spellings ("Alter" + "natively"), leading-space and
newline variants, and case variants. Instead the completion's start is tracked as text: while it
is still a (case-insensitive) prefix of some banned word, every token whose text would make it open
with a banned word as a whole word is masked (the trace parser's rule, `text.opens_with`: "Wait" and
"Wait," are banned, "Waiting" is not). A token that only extends the prefix stays allowed; the next
step checks again. Leading whitespace and markdown before the word are skipped, as the parser does.
"""

from __future__ import annotations

from collections.abc import Sequence

from retrosearch.text import normalize_start, opens_with


def token_texts(tokenizer) -> list[str]:
    """Each token's text as it reads after other text (keeps SentencePiece's leading space)."""
    anchor = tokenizer("a", add_special_tokens=False)["input_ids"]
    anchor_text = tokenizer.decode(anchor)
    texts = []
    for token_id in range(len(tokenizer)):
        joined = tokenizer.decode([*anchor, token_id])
        texts.append(joined[len(anchor_text) :] if joined.startswith(anchor_text) else joined)
    return texts


class StartBan:
    """Banned-start masks for one vocabulary and one word list, cached per prefix state."""

    def __init__(self, token_texts: Sequence[str], words: Sequence[str]) -> None:
        self.words = tuple(sorted({w.lower() for w in words if w.strip()}))
        self.token_texts = [t.lower() for t in token_texts]
        self._masks: dict[str, list[int]] = {}

    def state(self, completion_text: str) -> str | None:
        """The normalized start of a completion while a banned word could still follow, else None."""
        start = normalize_start(completion_text)
        if any(word.startswith(start) for word in self.words):
            return start
        return None

    def banned_ids(self, state: str) -> list[int]:
        if state not in self._masks:
            self._masks[state] = [
                token_id
                for token_id, text in enumerate(self.token_texts)
                if self._completes_word(state + text if state else normalize_start(text))
            ]
        return self._masks[state]

    def _completes_word(self, start: str) -> bool:
        return any(opens_with(start, word) for word in self.words)

    def violates(self, completion_text: str) -> bool:
        """True if a finished completion starts with a banned word (for checks and tests)."""
        return self._completes_word(normalize_start(completion_text))


# the key under which a request carries its banned starts to a backend that masks them itself (vLLM's processor)
BANNED_STARTS = "retrosearch_banned_starts"


class StartBans:
    """The banned-start masks of one engine, one per word list, built on first use. The vocabulary's token
    texts are read once, and only when a mask is needed (`masks=False`: a ban checked on text alone)."""

    def __init__(self, tokenizer: object, masks: bool = True) -> None:
        self.tokenizer = tokenizer
        self.masks = masks
        self._token_texts: list[str] | None = None
        self._bans: dict[tuple[str, ...], StartBan] = {}

    def __call__(self, words: Sequence[str]) -> StartBan:
        key = tuple(words)
        if key not in self._bans:
            if self._token_texts is None and self.masks:
                self._token_texts = token_texts(self.tokenizer)
            self._bans[key] = StartBan(self._token_texts or (), key)
        return self._bans[key]
