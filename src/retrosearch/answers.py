"""Final-answer extraction and checking against gold.

Checking uses math-verify. Its own timeouts rely on signals, which only work in the main thread, so
they are switched off and each check runs in a worker process with a hard deadline instead; the
checker is safe to call from any thread. Plainly equal answers never reach the pool.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import re
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool

BOXED_COMMANDS = ("\\boxed", "\\fbox")
ANSWER_PHRASE = re.compile(r"(?:final answer|the answer) is[:\s]*\$?([^\n$]+?)\$?\s*(?:\.|$)", re.IGNORECASE)


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (or \\fbox{...}), braces balanced."""
    start = max(text.rfind(command + "{") for command in BOXED_COMMANDS)
    if start < 0:
        return None
    depth = 0
    open_at = text.index("{", start)
    for index in range(open_at, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : index].strip()
    return None


def extract_answer(text: str) -> str | None:
    """The final answer of a response: the last boxed expression, else 'the answer is X'."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    phrases = ANSWER_PHRASE.findall(text)
    return phrases[-1].strip() if phrases else None


def _plain(answer: str) -> str:
    return _unescape(answer).strip().strip("$").replace(" ", "").rstrip(".")


def _unescape(answer: str) -> str:
    """Drop LaTeX currency signs and thin-space kerning ("\\$32,\\!348"), which math-verify misreads."""
    return answer.replace("\\$", "").replace("\\!", "")


def _verify(gold: str, predicted: str) -> bool:
    from math_verify import parse, verify

    # Its signal timeouts are off on purpose (the pool enforces the deadline): silence its warning.
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    def wrap(answer: str) -> str:
        answer = _unescape(answer)
        return answer if "$" in answer or "\\boxed" in answer else f"${answer}$"

    gold_parsed = parse(wrap(gold), parsing_timeout=None)
    predicted_parsed = parse(wrap(predicted), parsing_timeout=None)
    return bool(verify(gold_parsed, predicted_parsed, timeout_seconds=None))


class AnswerChecker:
    """Thread-safe gold-vs-prediction check with a hard timeout per check."""

    def __init__(self, timeout_seconds: float = 5.0, workers: int = 1) -> None:
        self.timeout_seconds = timeout_seconds
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        atexit.register(self.close)

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # forkserver, not fork: a forked checker would inherit the parent's sockets and keep, say,
                # a dead Ray actor's connection open, so that nobody notices the actor died
                context = multiprocessing.get_context("forkserver" if sys.platform == "linux" else "spawn")
                self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
            return self._pool

    def _reset(self) -> None:
        with self._lock:
            if self._pool is not None:
                for process in list(getattr(self._pool, "_processes", {}).values()):
                    process.kill()
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    def is_correct(self, gold: str | None, predicted: str | None) -> bool:
        if gold is None or predicted is None or not _plain(gold) or not _plain(predicted):
            return False  # an empty gold answer would otherwise match an empty prediction
        if _plain(gold) == _plain(predicted):
            return True
        for _ in range(2):  # a pool broken by another check's timeout gets one more try
            future = self._executor().submit(_verify, gold, predicted)
            try:
                return future.result(timeout=self.timeout_seconds)
            except FutureTimeout:
                self._reset()
                return False
            except BrokenProcessPool:
                self._reset()
        return False

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None


_default: AnswerChecker | None = None


def default_checker() -> AnswerChecker:
    global _default
    if _default is None:
        _default = AnswerChecker()
    return _default


def is_correct(gold: str | None, predicted: str | None) -> bool:
    return default_checker().is_correct(gold, predicted)
