"""The keeper's background tasks end at a stop even when one swallows a cancellation."""

from __future__ import annotations

import asyncio
import time

from nodekeeper.keeper.task_stop import cancel_and_wait


def test_a_task_looping_on_wait_for_ends_even_when_its_cancel_meets_a_result() -> None:
    """The case seen in full runs: the cancellation arrives in the loop turn where the
    awaited result does. Python 3.11's wait_for then returns the result and the loop goes
    on (3.12 raises); cancel_and_wait cancels again and the task ends."""

    async def scenario() -> None:
        results: list[asyncio.Future[int]] = []
        rounds = 0

        async def looping() -> None:
            nonlocal rounds
            while True:
                future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                results.append(future)
                await asyncio.wait_for(future, 60)
                rounds += 1

        task = asyncio.create_task(looping(), name="looping")
        await asyncio.sleep(0)  # it waits on its first future
        results[-1].set_result(1)
        task.cancel()  # the same turn as the result
        assert await cancel_and_wait([task], 10) == []
        assert task.done()

    asyncio.run(scenario())


def test_a_task_that_swallows_its_first_cancel_is_cancelled_again() -> None:
    async def scenario() -> None:
        swallowed = 0

        async def stubborn_once() -> None:
            nonlocal swallowed
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                swallowed += 1
            await asyncio.Event().wait()  # would wait for ever after one cancel

        task = asyncio.create_task(stubborn_once(), name="stubborn once")
        await asyncio.sleep(0)
        assert await cancel_and_wait([task], 10) == []
        assert task.cancelled() and swallowed == 1

    asyncio.run(scenario())


def test_a_task_that_never_ends_is_named_at_the_deadline_and_does_not_hold_the_stop(
    caplog,
) -> None:
    async def scenario() -> tuple[list[str], float]:
        give_up = asyncio.Event()  # only so that the test leaves nothing behind

        async def never_ends() -> None:
            while True:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    if give_up.is_set():
                        raise

        quiet = asyncio.create_task(asyncio.Event().wait(), name="quiet")
        task = asyncio.create_task(never_ends(), name="never ends")
        await asyncio.sleep(0)
        began = time.monotonic()
        stuck = await cancel_and_wait([quiet, task], 0.5)
        took = time.monotonic() - began
        assert quiet.cancelled()
        give_up.set()
        task.cancel()
        await asyncio.wait([task])
        return stuck, took

    with caplog.at_level("WARNING", logger="nodekeeper.keeper"):
        stuck, took = asyncio.run(scenario())
    assert stuck == ["never ends"]
    assert 0.5 <= took < 5  # the deadline, not for ever
    assert "still running after 0.5 s of the keeper's stop: never ends" in caplog.text
