"""The order a mutant's tests run in under mutmut (tests/conftest.py): fastest first, shared fixture values kept
together."""

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
