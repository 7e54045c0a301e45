"""The runner: a row is on disk the moment it finishes, at most `concurrency` are in flight, an exception
becomes that row's error row, rows finished by an earlier run are skipped and its error rows tried again;
`write_in_order` puts the file in input order at the end."""

import asyncio
import json
import time
from dataclasses import dataclass

import pytest

from retrosearch.data.outputs import JsonlAppender, write_in_order
from retrosearch.runner import run_items


@dataclass
class Item:
    id: str
    delay: float


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run(items, path, concurrency=3, work=None, postfix=None):
    in_flight, peak = 0, 0

    async def default_work(item: Item) -> dict:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(item.delay)
        in_flight -= 1
        if item.id == "bad":
            raise ValueError("broken sample")
        return {"id": item.id, "status": "ok"}

    appender = JsonlAppender(path)
    try:
        stats = asyncio.run(
            run_items(iter(items), len(items), work or default_work, appender, concurrency, "test", postfix)
        )
    finally:
        appender.close()
    return stats, peak


def test_rows_reach_disk_as_they_finish_and_are_put_in_input_order_at_the_end(tmp_path):
    items = [Item(f"r{i}", delay) for i, delay in enumerate([0.3, 0.0, 0.2, 0.0, 0.1, 0.0, 0.05])]
    stats, peak = run(items, tmp_path / "out.jsonl", concurrency=3)
    finished = [row["id"] for row in lines(tmp_path / "out.jsonl")]
    assert finished[:2] == ["r1", "r3"] and finished.index("r0") > finished.index("r4")  # a slow row held none back
    assert sorted(finished) == sorted(item.id for item in items)
    write_in_order(tmp_path / "out.jsonl", [item.id for item in items])
    assert [row["id"] for row in lines(tmp_path / "out.jsonl")] == [item.id for item in items]
    assert peak == 3
    assert stats.skipped_existing == 0


def test_concurrency_one_runs_one_at_a_time(tmp_path):
    items = [Item(f"r{i}", 0.001) for i in range(4)]
    _, peak = run(items, tmp_path / "out.jsonl", concurrency=1)
    assert peak == 1


def test_an_exception_becomes_an_error_row_and_the_run_goes_on(tmp_path):
    items = [Item("a", 0.0), Item("bad", 0.0), Item("c", 0.0)]
    run(items, tmp_path / "out.jsonl")
    rows = lines(tmp_path / "out.jsonl")
    assert sorted(rows, key=lambda row: row["id"]) == [
        {"id": "a", "status": "ok"},
        {"id": "bad", "status": "error", "reason": "ValueError: broken sample"},
        {"id": "c", "status": "ok"},
    ]


def test_a_rerun_tries_error_rows_again_and_the_new_row_replaces_the_old(tmp_path):
    path = tmp_path / "out.jsonl"
    run([Item("a", 0.0), Item("bad", 0.0), Item("c", 0.0)], path)
    seen: list[str] = []

    async def work(item: Item) -> dict:
        seen.append(item.id)
        return {"id": item.id, "status": "ok", "again": True}

    stats, _ = run([Item("a", 0.0), Item("bad", 0.0), Item("c", 0.0)], path, work=work)
    assert seen == ["bad"] and stats.skipped_existing == 2
    write_in_order(path, ["a", "bad", "c"])
    assert lines(path) == [
        {"id": "a", "status": "ok"},
        {"id": "bad", "status": "ok", "again": True},
        {"id": "c", "status": "ok"},
    ]


def test_rows_of_an_earlier_run_are_skipped_and_counted(tmp_path):
    path = tmp_path / "out.jsonl"
    run([Item("a", 0.0), Item("b", 0.0)], path)
    seen: list[str] = []

    async def work(item: Item) -> dict:
        seen.append(item.id)
        return {"id": item.id, "status": "ok"}

    stats, _ = run([Item("a", 0.0), Item("b", 0.0), Item("c", 0.0)], path, work=work)
    assert seen == ["c"]
    assert stats.skipped_existing == 2
    assert [row["id"] for row in lines(path)] == ["a", "b", "c"]


def test_the_postfix_is_asked_for_as_rows_are_written(tmp_path):
    calls: list[int] = []
    run([Item(f"r{i}", 0.0) for i in range(3)], tmp_path / "out.jsonl", postfix=lambda: calls.append(1) or {})
    assert len(calls) == 3


def test_a_cancelled_run_writes_no_unfinished_row(tmp_path):
    path = tmp_path / "out.jsonl"

    async def work(item: Item) -> dict:
        if item.id == "slow":
            await asyncio.sleep(10)
        return {"id": item.id, "status": "ok"}

    async def main():
        appender = JsonlAppender(path)
        task = asyncio.create_task(
            run_items(iter([Item("a", 0), Item("slow", 0), Item("c", 0)]), 3, work, appender, 3, "t")
        )
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        appender.close()

    asyncio.run(main())
    assert sorted(row["id"] for row in lines(path)) == ["a", "c"]  # every finished row kept, the unfinished not


def test_the_progress_bar_counts_every_row_against_the_total(tmp_path, capsys):
    path = tmp_path / "out.jsonl"
    run([Item("a", 0.0)], path)
    capsys.readouterr()
    run([Item("a", 0.0), Item("b", 0.0), Item("c", 0.0)], path)
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert bar.startswith("test: 100%|") and "| 3/3 [" in bar and "sample/s]" in bar


def test_a_torn_last_line_is_dropped_and_its_row_done_again(tmp_path):
    path = tmp_path / "out.jsonl"
    whole = '{"id": "a", "status": "ok"}\n{"id": "b", "status": "ok"}\n'
    path.write_text(whole + '{"id": "c", "sta')  # killed in the middle of writing row c
    appender = JsonlAppender(path)
    assert appender.done == {"a", "b"}
    appender.write({"id": "c", "status": "ok"})
    appender.close()
    assert path.read_text() == whole + '{"id": "c", "status": "ok"}\n'
    JsonlAppender(path).close()  # a whole file is left as it is
    assert path.read_text().count("\n") == 3


def test_a_cancellation_from_inside_a_row_becomes_its_error_row(tmp_path):
    async def work(item: Item) -> dict:
        if item.id == "b":
            raise asyncio.CancelledError("a future it awaited was cancelled")
        return {"id": item.id, "status": "ok"}

    run([Item("a", 0.0), Item("b", 0.0), Item("c", 0.0)], tmp_path / "out.jsonl", work=work)
    rows = lines(tmp_path / "out.jsonl")
    assert {row["id"]: row["status"] for row in rows} == {"a": "ok", "b": "error", "c": "ok"}
    assert (
        next(row for row in rows if row["id"] == "b")["reason"] == "CancelledError: a future it awaited was cancelled"
    )


def test_write_in_order_keeps_each_ids_last_row_and_rows_of_other_ids(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text(
        "".join(
            json.dumps(row, ensure_ascii=False) + "\n"
            for row in [
                {"id": "c", "v": 1},
                {"id": "a", "v": "é"},
                {"id": "x", "v": 0},
                {"id": "c", "v": 2},
                {"id": "b", "v": 3},
            ]
        )
    )
    write_in_order(path, iter(["a", "b", "c", "missing"]))
    assert lines(path) == [{"id": "a", "v": "é"}, {"id": "b", "v": 3}, {"id": "c", "v": 2}, {"id": "x", "v": 0}]
    assert not (tmp_path / "out.jsonl.tmp").exists()
    write_in_order(tmp_path / "absent.jsonl", ["a"])
    assert not (tmp_path / "absent.jsonl").exists()


def test_a_retried_item_keeps_only_its_latest_row_even_where_ids_are_already_in_order(tmp_path):
    path = tmp_path / "out.jsonl"
    error = {"id": "b", "status": "error", "reason": "ServerError: gave up"}
    path.write_text("".join(json.dumps(row) + "\n" for row in [{"id": "a"}, error, {"id": "b", "v": "retried"}]))
    write_in_order(path, ["a", "b"])
    assert lines(path) == [{"id": "a"}, {"id": "b", "v": "retried"}]  # one row per id: the latest


def test_a_file_already_in_order_is_left_untouched(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n')
    before = path.stat().st_mtime_ns
    time.sleep(0.01)
    write_in_order(path, ["a", "b"])
    assert path.stat().st_mtime_ns == before
    write_in_order(path, ["b", "a"])
    assert path.read_text() == '{"id": "b"}\n{"id": "a"}\n'


def test_rows_of_unlisted_ids_follow_in_the_order_of_their_last_rows(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text(
        "".join(json.dumps(row) + "\n" for row in [{"id": "x", "v": 0}, {"id": "y", "v": 1}, {"id": "x", "v": 2}])
    )
    write_in_order(path, [])
    assert lines(path) == [{"id": "y", "v": 1}, {"id": "x", "v": 2}]


def test_each_items_work_runs_with_its_position_among_the_pending_items(tmp_path):
    """Engines serve earlier items first by the position each request carries (WORK_POSITION)."""
    from retrosearch.engines.base import WORK_POSITION

    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"id": "a", "status": "ok"}) + "\n")  # done by an earlier run: no position

    async def work(item: Item) -> dict:
        await asyncio.sleep(item.delay)
        return {"id": item.id, "position": WORK_POSITION.get()}

    run([Item("a", 0.0), Item("b", 0.02), Item("c", 0.0), Item("d", 0.01)], path, concurrency=2, work=work)
    assert {row["id"]: row.get("position") for row in lines(path)} == {"a": None, "b": 0, "c": 1, "d": 2}
