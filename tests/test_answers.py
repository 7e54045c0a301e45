import os
import subprocess
import sys
import threading
import time

from retrosearch.answers import (
    AnswerChecker,
    Verdict,
    _plain,
    _verify,
    default_checker,
    die_with_starter,
    extract_answer,
    is_correct,
    last_boxed,
)


def test_extraction_takes_the_last_box_with_nested_braces():
    assert last_boxed("\\boxed{1} then \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_answer("so \\fbox{7}.") == "7"
    assert extract_answer("The final answer is 42.") == "42"
    assert extract_answer("no answer here") is None
    assert last_boxed("\\boxed{unclosed") is None


def test_equivalent_forms_are_correct_and_others_are_not():
    assert is_correct("6", "6")
    assert is_correct("\\frac{1}{2}", "0.5")
    assert is_correct("27.0", "27")
    assert not is_correct("6", "7")
    assert not is_correct(None, "7") and not is_correct("7", None)


SLOW = "9^{9^{9^{9}}}"  # math-verify works on this for minutes


def test_hard_timeout_gives_false_with_a_reason_and_the_checker_recovers():
    checker = AnswerChecker(timeout_seconds=1)
    started = time.monotonic()
    assert checker.check(SLOW, "5") == Verdict(False, "answer check timed out after 1 s")
    assert time.monotonic() - started < 20 and checker.timeouts == 1
    assert checker.check(SLOW, "6").correct is False and checker.timeouts == 2
    checker.timeout_seconds = 30
    assert checker.check("\\frac{1}{2}", "0.5") == Verdict(True)
    checker.close()


def test_a_timeout_ends_only_its_own_check():
    checker = AnswerChecker(timeout_seconds=2, workers=2)
    results: dict[str, bool] = {}

    def check(name: str, gold: str, predicted: str) -> None:
        results[name] = checker.is_correct(gold, predicted)

    slow = threading.Thread(target=check, args=("slow", SLOW, "5"))
    slow.start()
    time.sleep(0.2)
    quick = [threading.Thread(target=check, args=(f"q{i}", f"{i}/2", f"{i / 2}")) for i in range(1, 7)]
    for thread in quick:
        thread.start()
    for thread in [slow, *quick]:
        thread.join()
    assert results == {"slow": False, **{f"q{i}": True for i in range(1, 7)}}
    assert checker.timeouts == 1
    checker.close()


def test_the_deadline_counts_a_checks_own_run_not_its_wait():
    checker = AnswerChecker(timeout_seconds=3, workers=1)
    assert checker.is_correct("\\frac{1}{2}", "0.5")  # the one worker is up
    waited: list[tuple[bool, float]] = []

    def quick() -> None:
        started = time.monotonic()
        waited.append((checker.is_correct("\\frac{3}{4}", "0.75"), time.monotonic() - started))

    slow = threading.Thread(target=checker.is_correct, args=(SLOW, "5"))
    slow.start()
    time.sleep(0.3)
    thread = threading.Thread(target=quick)
    thread.start()
    slow.join()
    thread.join()
    ((correct, seconds),) = waited
    assert correct and seconds > 2  # it waited for the slow check's deadline, then was judged in full
    checker.close()


def test_workers_end_with_the_process_that_started_them(tmp_path):
    script = (
        "import os, sys, time\n"
        "from retrosearch.answers import AnswerChecker\n"
        "checker = AnswerChecker(workers=2)\n"
        "assert checker.is_correct('\\\\frac{1}{2}', '0.5')\n"
        "import threading\n"
        f"threading.Thread(target=checker.is_correct, args=({SLOW!r}, '5'), daemon=True).start()\n"
        "time.sleep(1)\n"  # a worker is in the middle of a check that takes minutes
        "print(os.getpid(), flush=True)\n"
        "time.sleep(600)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    parent = int(process.stdout.readline())
    children = descendants(parent)
    assert children  # the forkserver, its resource tracker and a worker
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and [pid for pid in children if alive(pid)]:
        time.sleep(0.1)
    assert not [pid for pid in children if alive(pid)]


def descendants(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(child) for child in found] + [grandchild for child in found for grandchild in descendants(int(child))]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_checks_run_safely_from_many_threads():
    checker = AnswerChecker(timeout_seconds=30, workers=2)
    results: list[bool] = []

    def check(index: int) -> None:
        results.append(checker.is_correct(f"{index}/2", f"{index / 2}"))

    threads = [threading.Thread(target=check, args=(i,)) for i in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 8
    checker.close()


def test_verification_itself_in_process():
    """What the checker's worker runs (in process, so that a change to it is seen by the tests)."""
    assert _verify("\\frac{1}{2}", "0.5") is True
    assert _verify("x^2", "x*x") is True
    assert _verify("\\$18.90", "18.9") is True
    assert _verify("32,\\!348", "32348") is True
    assert _verify("$\\frac{3}{4}$", "0.75") is True
    assert _verify("\\boxed{7}", "7") is True
    assert _verify("6", "7") is False
    assert _verify("", "7") is False


def test_currency_and_kerning_marks_are_dropped_before_comparing():
    assert _plain("\\$32,\\!348") == "32,348"
    assert _plain(" $7$ ") == "7" and _plain("7.") == "7"


def test_the_default_checker_is_made_once():
    assert default_checker() is default_checker()
    assert isinstance(default_checker(), AnswerChecker)


def test_a_worker_that_died_is_a_crash_not_an_answer_and_is_replaced():
    checker = AnswerChecker(timeout_seconds=30)
    assert checker.is_correct("\\frac{1}{2}", "0.5")
    (worker,) = list(checker._idle.queue)
    worker.process.kill()
    worker.process.join()
    assert checker.check("\\frac{1}{2}", "0.5") == Verdict(False, "answer checker crashed")
    assert checker.check("\\frac{1}{2}", "0.5") == Verdict(True)
    checker.close()


def test_plainly_equal_answers_never_reach_the_pool():
    checker = AnswerChecker(timeout_seconds=30)
    assert checker.is_correct("$ 1 2 $", "12.")
    assert checker.is_correct("\\$5", "5")
    assert checker._started == 0
    assert checker.is_correct("\\frac{1}{2}", "0.5") and checker._started == 1
    checker.close()
    assert checker._started == 0 and checker._idle.empty()


def test_an_empty_gold_or_prediction_is_never_correct():
    for gold, predicted in (("", ""), ("", "7"), ("7", ""), ("  ", "  "), ("$$", "$$")):
        assert not is_correct(gold, predicted), (gold, predicted)


def test_answer_phrases_and_boxes():
    assert extract_answer("The answer is: $\\frac{1}{2}$.") == "\\frac{1}{2}"
    assert extract_answer("the answer is 3.\nLater: the final answer is 4.") == "4"
    assert extract_answer("\\boxed{2} and the answer is 3.") == "2"
    assert extract_answer("The answer is 5") == "5"
    assert extract_answer("So the answer is 3.14.") == "3.14"
    assert extract_answer("the answer is $x = 2$, clearly") == "x = 2"
    assert extract_answer("The answer is\nnot here. The final answer is: 7") == "7"
    assert extract_answer("the answer is 4 apples\nmore") == "4 apples"
    assert extract_answer("a\nthe answer is 7\nb\nc") == "7"  # its own line, with lines before and after
    assert extract_answer("the answer is $x$ or $y$") == "x"
    assert extract_answer("the answer is 5 or $6$") == "5 or"


def test_extraction_of_long_runs_of_spaces():
    """Regression: the old backtracking pattern took 11 s on 40k spaces and grew as the square (minutes here)."""
    assert extract_answer("the answer is" + " " * 200_000 + "x") == "x"
    assert extract_answer("the answer is" + " " * 200_000) is None
    assert extract_answer("") is None
    assert last_boxed("\\boxed{a}\\fbox{b}") == "b"
    assert last_boxed("\\fbox{b} \\boxed{ {c} }") == "{c}"
    assert last_boxed("\\boxed{}") == ""
    assert last_boxed("no box") is None


def test_a_forked_child_checks_with_workers_of_its_own():
    checker = AnswerChecker(timeout_seconds=30)
    assert checker.is_correct("\\frac{1}{2}", "0.5")  # the parent's worker and starter thread exist now
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: a hang here fails the test by its deadline, a wrong answer by the exit code
        if not die_with_starter(parent):  # a test process killed mid-wait (mutmut's limits) takes it along
            os._exit(1)
        checker.timeout_seconds = 1
        timed_out = checker.check(SLOW, "5").reason.startswith("answer check timed out")  # a worker is replaced
        checker.timeout_seconds = 30  # the new worker's checks: its start-up is slow under tracing (mutmut)
        os._exit(
            0 if timed_out and checker.is_correct("\\frac{3}{4}", "0.75") and not checker.is_correct("1", "2") else 1
        )
    deadline, reaped = time.monotonic() + 60, (0, 0)
    try:
        while (reaped := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        if reaped[0] == 0:  # past the deadline, or the wait itself cut short (a test's time limit): no orphan
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    finished, status = reaped
    assert finished == pid and os.waitstatus_to_exitcode(status) == 0
    assert checker.is_correct("\\frac{1}{2}", "0.5")  # the parent's own worker is untouched
    checker.close()


def test_a_workers_start_up_is_no_part_of_the_first_checks_deadline():
    """Spawning a worker and importing math-verify take longer than this deadline; the check alone does not."""
    checker = AnswerChecker(timeout_seconds=0.1)  # a check on a running worker takes about 5 ms here
    started = time.monotonic()
    assert checker.check("\\frac{3}{4}", "0.75") == Verdict(True)
    assert time.monotonic() - started > 0.1  # the start-up (0.4 s here, idle) really was longer than the deadline
    checker.close()


def test_ctrl_c_while_a_worker_starts_neither_kills_it_nor_prints(capfd):
    """A terminal's Ctrl-C reaches every process of the group, a worker still importing included."""
    import signal

    from retrosearch.answers import _Worker

    worker = _Worker()
    sent = 0
    while not worker.connection.poll(0.005) and worker.process.is_alive():
        os.kill(worker.process.pid, signal.SIGINT)  # throughout its start-up, from the first instant
        sent += 1
    assert sent > 10  # the window was really hit, many times
    assert worker.wait_until_ready(), "the worker died of a Ctrl-C sent while it started"
    worker.stop()
    assert "KeyboardInterrupt" not in capfd.readouterr().err


def test_an_empty_answer_is_false_without_a_worker_and_plain_strips_only_its_own_marks():
    checker = AnswerChecker(timeout_seconds=30)
    for gold, predicted in (("", "7"), ("7", ""), ("$$", "7"), (None, "7"), ("7", None)):
        assert checker.check(gold, predicted) == Verdict(False), (gold, predicted)
    assert checker._started == 0  # decided before any worker: none was started
    assert checker.check("X", "X") == Verdict(True) and checker._started == 0
    assert (_plain("X"), _plain("AX."), _plain(" $5$ ")) == ("X", "AX", "5")


class _SilentWorker:
    """A worker whose start-up never finishes: no process, nothing ever said on its pipe."""

    made = 0

    def __init__(self) -> None:
        type(self).made += 1

    def wait_until_ready(self) -> bool:
        return False

    def stop(self) -> None:
        pass


def test_a_worker_that_does_not_start_is_a_reason_and_is_replaced(monkeypatch):
    import retrosearch.answers as answers

    monkeypatch.setattr(answers, "_Worker", _SilentWorker)
    monkeypatch.setattr(_SilentWorker, "made", 0)
    checker = AnswerChecker(workers=2)
    assert (checker.timeout_seconds, checker.workers) == (5.0, 2)
    assert AnswerChecker().workers == 1  # one worker unless asked for more
    assert checker.check("\\frac{1}{2}", "0.5") == Verdict(False, "answer checker did not start")
    assert _SilentWorker.made == 2 and checker._started == 1  # the one taken, and its replacement, idle
    (idle,) = list(checker._idle.queue)
    assert checker._take() is idle and _SilentWorker.made == 2  # an idle worker first, though one more is allowed
    checker._take()  # none idle: the second of the two allowed
    assert checker._started == 2 and _SilentWorker.made == 3


def test_waiting_for_a_start_up_gives_up_after_its_limit(monkeypatch):
    import multiprocessing

    import retrosearch.answers as answers

    monkeypatch.setattr(answers, "STARTUP_SECONDS", 0.05)
    worker = answers._Worker.__new__(answers._Worker)  # its pipe alone: no process says ready on it
    worker.connection, silent = multiprocessing.Pipe()
    worker.ready = False
    waited = []
    waiting = threading.Thread(target=lambda: waited.append(worker.wait_until_ready()), daemon=True)
    waiting.start()
    waiting.join(timeout=5)
    assert waited == [False]
    silent.send(answers.READY)
    assert worker.wait_until_ready() and worker.ready


def test_a_later_worker_start_leaves_the_earlier_workers_alive():
    """A worker dies with the thread that started it (the kernel's death signal follows the thread): all are
    started from one thread that lives as long as the process, so starting another never ends an earlier one."""
    import gc

    checker = AnswerChecker(timeout_seconds=30, workers=2)
    first = checker._take()
    assert first.wait_until_ready()  # its death signal is set up by now
    second = checker._take()
    gc.collect()
    assert second.wait_until_ready()
    time.sleep(0.2)
    assert first.process.is_alive() and second.process.is_alive()
    for worker in (first, second):
        checker._idle.put(worker)
    assert checker.is_correct("\\frac{1}{2}", "0.5") and checker.is_correct("\\frac{1}{2}", "0.5")
    checker.close()
