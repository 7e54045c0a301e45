"""The order a mutant's tests run in under mutmut (tests/conftest.py): fastest first, shared fixture values kept
together."""

import json
import time
from pathlib import Path
from types import SimpleNamespace

from conftest import fastest_first


def _item(nodeid: str, **params: str) -> SimpleNamespace:
    scopes = {"engine": "session", "row": "function"}
    item = SimpleNamespace(
        nodeid=nodeid,
        _fixtureinfo=SimpleNamespace(
            name2fixturedefs={name: [SimpleNamespace(scope=scopes[name])] for name in params},
        ),
    )
    if params:
        item.callspec = SimpleNamespace(params=params)
    return item


def test_the_fastest_tests_run_first_and_unrecorded_ones_last():
    items = [_item("slow"), _item("new"), _item("fast"), _item("middle")]
    ordered = fastest_first(items, {"slow": 9.0, "fast": 0.1, "middle": 2.0})
    assert [item.nodeid for item in ordered] == ["fast", "middle", "slow", "new"]


def test_tests_of_one_session_fixture_value_stay_together_ordered_by_their_fastest():
    items = [
        _item("a-slow", engine="a"),
        _item("b-fast", engine="b"),
        _item("plain", row="1"),
        _item("a-fast", engine="a"),
        _item("b-slow", engine="b"),
    ]
    seconds = {"a-slow": 8.0, "b-fast": 0.5, "plain": 3.0, "a-fast": 1.0, "b-slow": 9.0}
    ordered = [item.nodeid for item in fastest_first(items, seconds)]
    # a function-scoped parameter is set up per test anyway: "plain" is its own group, not engine b's
    assert ordered == ["b-fast", "b-slow", "a-fast", "a-slow", "plain"]


def test_under_a_mutant_a_test_far_past_its_recorded_time_fails_and_others_run_as_ever(pytester, monkeypatch):
    source = (Path(__file__).with_name("conftest.py")).read_text()
    pytester.makeconftest(source.replace("MUTANT_MIN_SECONDS = 10.0", "MUTANT_MIN_SECONDS = 0.5"))
    pytester.makepyfile(
        test_hang="""
        import time

        def test_hangs():
            time.sleep(30)

        def test_quick():
            time.sleep(0.8)  # past the least limit, within five times its own record

        def test_unrecorded():
            time.sleep(0.6)
        """
    )
    recorded = {"test_hang.py::test_hangs": 0.01, "test_hang.py::test_quick": 1.0}
    (pytester.path / "mutmut-stats.json").write_text(json.dumps({"duration_by_test": recorded}))
    monkeypatch.setenv("MUTANT_UNDER_TEST", "retrosearch.x_f__mutmut_1")
    started = time.monotonic()
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert time.monotonic() - started < 10
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*MutantTooSlow: test_hang.py::test_hangs ran past 0.5 s under a mutant*"])
    too_slow = (pytester.path / "mutants-too-slow.log").read_text()
    assert too_slow == "retrosearch.x_f__mutmut_1 test_hang.py::test_hangs 0.5\n"  # to review which mutants
    monkeypatch.delenv("MUTANT_UNDER_TEST")  # not under mutmut: no limit, whatever is recorded
    recorded["test_hang.py::test_quick"] = 0.0001
    (pytester.path / "mutmut-stats.json").write_text(json.dumps({"duration_by_test": recorded}))
    pytester.makepyfile(test_hang="import time\n\ndef test_quick():\n    time.sleep(0.7)\n")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


MUTATED = '''
def x_total__mutmut_orig(values):
    """Sum."""
    return sum(values, start=0)


def x_total__mutmut_1(values):
    """Sum."""
    return sum(values, start=None)


def x_total__mutmut_2(values):
    """Sum."""
    return sum(values, start=1)
'''


def test_a_mutants_change_is_read_from_the_mutated_source_whatever_its_number():
    from mutants import change_of

    assert change_of(MUTATED, "x_total__mutmut_1") == ("return sum(values, start=0)", "return sum(values, start=None)")
    renumbered = MUTATED.replace("x_total__mutmut_1", "x_total__mutmut_7")
    assert change_of(renumbered, "x_total__mutmut_7") == change_of(MUTATED, "x_total__mutmut_1")
    assert change_of(MUTATED, "x_total__mutmut_2")[1] == "return sum(values, start=1)"


def test_a_reviewed_equivalent_mutant_runs_no_test_and_is_reported_skipped(pytester, monkeypatch):
    from mutants import EQUIVALENTS_ENV, SKIPPED

    pytester.makeconftest((Path(__file__).with_name("conftest.py")).read_text())
    pytester.makepyfile(mutated_module=MUTATED, test_it="def test_runs():\n    assert False, 'ran'\n")
    listing = pytester.path / "equivalents.json"
    change = {"before": "return sum(values, start=0)", "after": "return sum(values, start=None)", "why": "falsy"}
    listing.write_text(json.dumps({"mutated_module.x_total": [change]}))
    monkeypatch.setenv(EQUIVALENTS_ENV, str(listing))
    monkeypatch.syspath_prepend(pytester.path)
    monkeypatch.setenv("MUTANT_UNDER_TEST", "mutated_module.x_total__mutmut_1")
    assert pytester.runpytest_inprocess("-p", "no:cacheprovider").ret == SKIPPED
    monkeypatch.setenv("MUTANT_UNDER_TEST", "mutated_module.x_total__mutmut_2")  # another change: its tests run
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(failed=1)
    monkeypatch.delenv(EQUIVALENTS_ENV)  # no list handed over: every mutant runs its tests
    monkeypatch.setenv("MUTANT_UNDER_TEST", "mutated_module.x_total__mutmut_1")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(failed=1)
