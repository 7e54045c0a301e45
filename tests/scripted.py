"""A scripted engine for tests: it answers every request from a script and records what it saw.

The script says what "the model" writes after a given context, optionally only for some seeds. The
engine then behaves as a real one does with that text: it emits it token by token (a reversible word
tokenizer), ends on stop strings, occurrence limits, `max_new_tokens` or the end of the text (EOS), and
honours banned starts the way a masking engine does: of the script's candidates it writes the first one
that does not open with a banned word. A request the script does not cover fails loudly.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from retrosearch.engines.banning import StartBan
from retrosearch.engines.base import Completion, Engine, Request
from retrosearch.engines.streaming import StreamingEngine, _Call
from retrosearch.engines.watch import finish

PIECES = re.compile(r"\s+|\w+|[^\w\s]")


class WordTokenizer:
    """Reversible: runs of whitespace, words and single symbols are tokens; `decode(encode(t)) == t`."""

    chat_template = None
    eos_token_id = 0

    def __init__(self) -> None:
        self.pieces: list[str] = ["</s>"]
        self.ids: dict[str, int] = {}

    def _id(self, piece: str) -> int:
        if piece not in self.ids:
            self.ids[piece] = len(self.pieces)
            self.pieces.append(piece)
        return self.ids[piece]

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [self._id(piece) for piece in PIECES.findall(text)]}

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.pieces[i] for i in ids if i)

    def __len__(self) -> int:
        return len(self.pieces)


class UnscriptedRequest(AssertionError):
    """The code under test asked for something the test did not expect."""


@dataclass
class Entry:
    context: str | None  # None: after any prompt
    candidates: tuple[str, ...]
    seeds: frozenset[int] | None


@dataclass
class Script:
    """What the model writes after a context (chat prompt included), as candidates in order of preference.

    A request matches an entry when its prompt starts with the context and what follows in the prompt is a
    prefix of a candidate: the engine continues that candidate. Phase 1 and phase 2 of one rollout thus
    read one text. The longest matching context wins; `seeds` restricts an entry to some requests.
    """

    entries: list[Entry] = field(default_factory=list)

    def after(self, context: str, *candidates: str, seeds: Sequence[int] | None = None) -> Script:
        self.entries.append(Entry(context, candidates, None if seeds is None else frozenset(seeds)))
        return self

    def otherwise(self, *candidates: str) -> Script:
        """What the model writes after any prompt no other entry covers (continued across phases)."""
        self.entries.append(Entry(None, candidates, None))
        return self

    def __call__(self, prompt: str, seed: int) -> list[str]:
        matches = []
        for entry in self.entries:
            if entry.seeds is not None and seed not in entry.seeds:
                continue
            if entry.context is None:
                rests = [c[len(written) :] for c in entry.candidates if (written := _overlap(prompt, c)) is not None]
                matches.append((-1, False, rests))
                continue
            if not prompt.startswith(entry.context):
                continue
            written = prompt[len(entry.context) :]
            rests = [c[len(written) :] for c in entry.candidates if c.startswith(written)]
            if rests:
                matches.append((len(entry.context), entry.seeds is not None, rests))
        if not matches:
            raise UnscriptedRequest(f"no script for seed {seed} after ...{prompt[-120:]!r}")
        return max(matches, key=lambda match: match[:2])[2]


def _overlap(prompt: str, candidate: str) -> str:
    """The longest end of `prompt` that `candidate` starts with: what was already written of it."""
    for start in range(max(0, len(prompt) - len(candidate)), len(prompt) + 1):
        if candidate.startswith(prompt[start:]):
            return prompt[start:]
    return ""


@dataclass(frozen=True)
class Seen:
    """One request as the engine received it, with its prompt decoded."""

    prompt: str
    request: Request
    completion: Completion


Responder = Callable[[str, int], Sequence[str]]  # (decoded prompt, seed) -> candidate texts, preferred first


class ScriptedEngine(Engine):
    def __init__(self, script: Responder, chat: str = "User: {}\nAssistant: ") -> None:
        self.script = script
        self.chat = chat
        self.tokenizer = WordTokenizer()
        self.model_id = "scripted"
        self.seen: list[Seen] = []

    def chat_prompt(self, user: str) -> str:
        return self.chat.format(user)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        return [self.answer(request) for request in requests]

    def answer(self, request: Request) -> Completion:
        prompt = self.decode(request.prompt_ids)
        candidates = list(self.script(prompt, request.seed))
        if request.banned_starts:
            ban = StartBan((), request.banned_starts)
            allowed = [text for text in candidates if not ban.violates(text)]
            if not allowed:
                raise UnscriptedRequest(f"every scripted candidate opens with a banned word: {candidates}")
            candidates = allowed
        ids = self.tokenizer(candidates[0])["input_ids"]
        completion = Completion(self.decode(ids), tuple(ids), "eos")
        if request.max_new_tokens <= 0:
            ids, completion = [], Completion("", (), "length")
        for count in range(1, len(ids) + 1):
            text = self.decode(ids[:count])
            ended = finish(request, text)
            if ended is not None:
                completion = Completion(text, tuple(ids[:count]), ended[0])
                break
            if count == request.max_new_tokens and count < len(ids):
                completion = Completion(text, tuple(ids[:count]), "length")
                break
        self.seen.append(Seen(prompt, request, completion))
        return completion

    def prompts(self) -> list[str]:
        return [seen.prompt for seen in self.seen]


class ScriptedStream(StreamingEngine):
    """A streaming backend (server, vLLM) played from a script, one token per streamed piece.

    `ending` says how every stream ends: "finish" (a finish reason on the last piece, as servers do),
    "silent" (the stream just stops: no finish reason). `honour_masks=False` plays a server that
    ignores the banned-start mask. Every call is recorded with its prompt decoded; closed streams counted.
    """

    def __init__(
        self, script: Responder, ending: str = "finish", honour_masks: bool = True, ban_method: str = "logit_bias"
    ) -> None:
        self.script = script
        self.ending = ending
        self.honour_masks = honour_masks
        self.ban_method = ban_method  # type: ignore[assignment]
        self.tokenizer = WordTokenizer()
        if isinstance(script, Script):  # the ban's token list is read once: know every word up front
            for entry in script.entries:
                self.tokenizer(" ".join([entry.context or "", *entry.candidates]))
        self.model_id = "scripted-stream"
        self.calls: list[tuple[str, _Call]] = []
        self.closed = 0
        self._setup_streaming()

    async def _deltas(self, call: _Call) -> AsyncIterator[tuple[str, str | None]]:
        prompt = self.tokenizer.decode(call.prompt_ids)
        self.calls.append((prompt, call))
        candidates = [self.tokenizer(text)["input_ids"] for text in self.script(prompt, call.seed)]
        if self.honour_masks and call.masked:
            candidates = [ids for ids in candidates if not ids or ids[0] not in call.masked] or [[]]
        ids = candidates[0][: call.max_tokens]
        cut = len(ids) < len(candidates[0])
        try:
            for index, token in enumerate(ids):
                last = index == len(ids) - 1
                reason = ("length" if cut else "eos") if last and self.ending == "finish" else None
                yield self.tokenizer.decode([token]), reason
            if not ids and self.ending == "finish":
                yield "", "eos"
        finally:
            self.closed += 1
