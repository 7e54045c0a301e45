import threading

from retrosearch.answers import AnswerChecker, extract_answer, is_correct, last_boxed


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
