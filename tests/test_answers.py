import threading

from retrosearch.answers import AnswerChecker, _verify, extract_answer, is_correct, last_boxed


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


def test_hard_timeout_gives_false_and_the_checker_recovers():
    checker = AnswerChecker(timeout_seconds=0.0001)
    assert checker.is_correct("\\frac{1}{2}", "0.5") is False
    checker.timeout_seconds = 30
    assert checker.is_correct("\\frac{1}{2}", "0.5") is True
    checker.close()


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


def test_plainly_equal_answers_never_reach_the_pool():
    checker = AnswerChecker(timeout_seconds=30)
    assert checker.is_correct("$ 1 2 $", "12.")
    assert checker.is_correct("\\$5", "5")
    assert checker._pool is None
    assert checker.is_correct("\\frac{1}{2}", "0.5") and checker._pool is not None
    checker.close()
    assert checker._pool is None


def test_an_empty_gold_or_prediction_is_never_correct():
    for gold, predicted in (("", ""), ("", "7"), ("7", ""), ("  ", "  "), ("$$", "$$")):
        assert not is_correct(gold, predicted), (gold, predicted)


def test_answer_phrases_and_boxes():
    assert extract_answer("The answer is: $\\frac{1}{2}$.") == "\\frac{1}{2}"
    assert extract_answer("the answer is 3.\nLater: the final answer is 4.") == "4"
    assert extract_answer("\\boxed{2} and the answer is 3.") == "2"
    assert extract_answer("The answer is 5") == "5"
    assert extract_answer("") is None
    assert last_boxed("\\boxed{a}\\fbox{b}") == "b"
    assert last_boxed("\\fbox{b} \\boxed{ {c} }") == "{c}"
    assert last_boxed("\\boxed{}") == ""
    assert last_boxed("no box") is None
