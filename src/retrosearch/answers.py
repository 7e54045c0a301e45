"""Final-answer extraction and checking against gold.

Checking uses math-verify. Its own timeouts rely on signals, which only work in the main thread, so they
are switched off and each check runs in a worker process of its own with a hard deadline instead: a
worker takes one check at a time, the deadline counts from when it starts that check (not the wait for a
free worker), and a check past its deadline ends only that worker, which is replaced; every other check
goes on. The checker is safe to call from any thread. Plainly equal answers never reach a worker. A worker
ends with the process that started it, whatever it is doing.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import queue
import re
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection

BOXED_COMMANDS = ("\\boxed", "\\fbox")
ANSWER_PHRASE = re.compile(r"(?:final answer|the answer) is:?", re.IGNORECASE)
SENTENCE_END = re.compile(r"\.(?:\s|$)")


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
    """The final answer of a response: the last boxed expression, else the last 'the answer is X'."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    for phrase in reversed([match.end() for match in ANSWER_PHRASE.finditer(text)]):
        answer = _phrase_answer(text, phrase)
        if answer:
            return answer
    return None


def _phrase_answer(text: str, start: int) -> str:
    """What follows 'the answer is' on its line: inside $...$ if it opens with one, else up to the sentence's
    end. Linear in the line's length (a backtracking pattern was quadratic on long runs of spaces)."""
    line = text[start : text.find("\n", start) if "\n" in text[start:] else len(text)].strip()
    if line.startswith("$"):
        return line[1:].partition("$")[0].strip()
    end = SENTENCE_END.search(line)
    return (line[: end.start()] if end else line).partition("$")[0].strip()


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


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str = ""  # why a check could not decide: "timed out after 5 s", "checker crashed"


def die_with_starter(starter: int) -> bool:
    """On Linux, have the kernel kill this process the moment the thread that started it ends (PR_SET_PDEATHSIG),
    even one killed outright; False if the process `starter` had already ended before that was set."""
    if sys.platform != "linux":
        return True
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    return os.getppid() == starter


def _serve(checks: Connection, owner: int) -> None:
    """A worker: one check at a time from its pipe, until the pipe closes. On Linux the kernel also kills it
    the moment its starter ends, even in the middle of a check that holds the interpreter for minutes."""
    # Ctrl-C is the command's to handle (one line, exit 130), not ours. The worker starts with SIGINT blocked (the
    # starter thread's mask, inherited): one sent while it imports waits, and is dropped once ignored here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if not die_with_starter(owner):
        return
    _verify("1", "1")  # math-verify imported before any check's deadline starts
    checks.send(READY)
    while True:
        try:
            gold, predicted = checks.recv()
        except (EOFError, OSError):
            return
        try:
            result = _verify(gold, predicted)
        except Exception:
            result = False
        checks.send(result)


# Workers are started from this one thread, which lives as long as the process: the kernel's death signal
# follows the thread that started a worker, and a short-lived thread (asyncio.to_thread's) would take its
# workers with it. Spawned, not forked: a forked worker would inherit the parent's sockets and keep, say,
# a dead Ray actor's connection open, so that nobody notices the actor died.
_starter: tuple[int, ThreadPoolExecutor] | None = None
READY = "ready"
STARTUP_SECONDS = 300.0  # spawning a worker and importing math-verify: slow on a loaded machine, never a check


def _start_with_ctrl_c_blocked(process) -> None:
    """Blocked in the starter thread only (the main thread still takes Ctrl-C); the worker inherits the mask.
    multiprocessing's resource tracker, started on first use, unblocks SIGINT in the thread that starts it:
    it is started first."""
    resource_tracker.ensure_running()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    process.start()


def _start(process) -> None:
    global _starter
    if _starter is None or _starter[0] != os.getpid():  # a forked child has no copy of the thread
        _starter = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="answer-checker-starter"))
    _starter[1].submit(_start_with_ctrl_c_blocked, process).result()


class _Worker:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, os.getpid()), daemon=True)
        _start(self.process)
        child.close()  # the worker's end lives in the worker alone
        self.ready = False

    def wait_until_ready(self) -> bool:
        """Start-up is no part of a check's deadline: under load it alone took longer than the deadline, and a
        check then said "timed out" where a run on an idle machine said "correct"."""
        if not self.ready and self.connection.poll(STARTUP_SECONDS):
            self.ready = self.connection.recv() == READY
        return self.ready

    def stop(self) -> None:
        self.connection.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)


class AnswerChecker:
    """Thread-safe gold-vs-prediction check with a hard timeout per check, each in its own worker."""

    def __init__(self, timeout_seconds: float = 5.0, workers: int = 1) -> None:
        self.timeout_seconds = timeout_seconds
        self.workers = workers
        self.timeouts = 0
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._started = 0
        self._pid = os.getpid()
        self._lock = threading.Lock()
        atexit.register(self.close)

    def _take(self) -> _Worker:
        with self._lock:
            if self._pid != os.getpid():  # in a forked child the workers are the parent's: start anew
                self._idle, self._started, self._pid = queue.Queue(), 0, os.getpid()
            if self._idle.empty() and self._started < self.workers:
                self._started += 1
                return _Worker()
        return self._idle.get()

    def check(self, gold: str | None, predicted: str | None) -> Verdict:
        if gold is None or predicted is None:
            return Verdict(False)
        plain_gold, plain_predicted = _plain(gold), _plain(predicted)
        if not plain_gold or not plain_predicted:
            return Verdict(False)  # an empty gold answer would otherwise match an empty prediction
        if plain_gold == plain_predicted:
            return Verdict(True)
        worker = self._take()
        try:
            if not worker.wait_until_ready():
                return Verdict(False, "answer checker did not start")
            worker.connection.send((gold, predicted))
            if worker.connection.poll(self.timeout_seconds):
                result = worker.connection.recv()
                self._idle.put(worker)
                worker = None
                return Verdict(bool(result))
            with self._lock:
                self.timeouts += 1
            return Verdict(False, f"answer check timed out after {self.timeout_seconds:g} s")
        except (EOFError, OSError):
            return Verdict(False, "answer checker crashed")
        finally:
            if worker is not None:  # timed out or crashed: replace it, the other workers go on
                worker.stop()
                self._idle.put(_Worker())

    def is_correct(self, gold: str | None, predicted: str | None) -> bool:
        return self.check(gold, predicted).correct

    def close(self) -> None:
        with self._lock:
            while not self._idle.empty():
                self._idle.get_nowait().stop()
            self._started = 0


_default: AnswerChecker | None = None


def default_checker() -> AnswerChecker:
    global _default
    if _default is None:
        _default = AnswerChecker()
    return _default


def is_correct(gold: str | None, predicted: str | None) -> bool:
    return default_checker().is_correct(gold, predicted)
