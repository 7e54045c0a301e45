"""Earlier work first: the runner tags each item's requests with its position, and engines serve waiting
requests of earlier items first (transformers: the admission queue; servers: the in-flight slots)."""

import asyncio
from dataclasses import dataclass

from retrosearch.data.outputs import JsonlAppender
from retrosearch.engines import EngineConfig, Request, load_engine
from retrosearch.engines.base import WORK_POSITION
from retrosearch.engines.slots import PrioritySlots
from retrosearch.runner import run_items


@dataclass
class Item:
    id: str


def test_the_runner_gives_each_items_work_its_position(tmp_path):
    seen = {}

    async def work(item: Item) -> dict:
        await asyncio.sleep(0.01 * (5 - int(item.id)))  # later items finish first
        seen[item.id] = WORK_POSITION.get()
        await asyncio.to_thread(lambda: seen.setdefault(f"{item.id}-thread", WORK_POSITION.get()))
        return {"id": item.id}

    appender = JsonlAppender(tmp_path / "rows.jsonl")
    asyncio.run(run_items([Item(str(i)) for i in range(5)], 5, work, appender, 5, "test"))
    appender.close()
    assert {key: value for key, value in seen.items() if "-" not in key} == {str(i): i for i in range(5)}
    assert all(seen[f"{i}-thread"] == i for i in range(5))  # threads and child tasks inherit it


def test_a_freed_slot_goes_to_the_earliest_item_then_the_longest_waiting():
    order = []

    async def main():
        slots = PrioritySlots(1)
        release = asyncio.Event()

        async def user(position: int, name: str) -> None:
            WORK_POSITION.set(position)
            async with slots.hold():
                order.append(name)
                if name == "first":
                    await release.wait()

        first = asyncio.create_task(user(50, "first"))
        await asyncio.sleep(0)
        waiters = [asyncio.create_task(user(p, n)) for p, n in [(5, "5a"), (2, "2a"), (9, "9"), (2, "2b"), (3, "3")]]
        await asyncio.sleep(0)
        waiters[-1].cancel()  # a waiter that gives up is skipped, and its turn not lost
        release.set()
        await asyncio.gather(first, *waiters, return_exceptions=True)
        assert slots.free == 1

    asyncio.run(main())
    assert order == ["first", "2a", "2b", "5a", "9"]


def test_the_transformers_engine_admits_waiting_requests_of_earlier_items_first():
    engine = load_engine(EngineConfig(model="organism", device="cpu", batch_size=1))
    prompt = tuple(engine.encode(engine.chat_prompt("1 + 2 =")))
    finished = []

    async def ask(position: int, tokens: int) -> None:
        WORK_POSITION.set(position)
        await engine.generate([Request(prompt_ids=prompt, max_new_tokens=tokens, seed=position)])
        finished.append(position)

    async def main():
        busy = asyncio.create_task(ask(100, 300))  # holds the one row while the others queue up
        await asyncio.sleep(0.05)
        await asyncio.gather(busy, *(ask(position, 3) for position in (7, 3, 9, 1, 4)))

    asyncio.run(main())
    assert finished == [100, 1, 3, 4, 7, 9]
