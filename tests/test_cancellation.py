"""Cancellation and timeouts behave like asyncio's own (real ffmpeg, real HTTP inputs).

A waiter (``wait``) never touches the task and always propagates its own cancel or
timeout; the owner (``execute``) cancels the task when its caller is cancelled and
propagates; ``cancel()`` and a caller's timeout kill ffmpeg at once (the output is
discarded, so no graceful flush); no subprocess transport is left unclosed.

The stop-time bounds are generous (3 s) and still well under the 5 s grace period
the old code spent on a ``-preset veryslow`` encode flushing an output thrown away.
"""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path
from typing import Any

import pytest

from ffmpeg_tasks import (
    ConfigurationError,
    LocalExecutor,
    LocalStorage,
    TaskManager,
    TaskStatus,
)
from ffmpeg_tasks.storage.base import StoredFile

from .helpers import make_manager, stored_mp4s
from .servers import MediaServer
from .test_manager import _ffmpeg_children, leftovers

#: Never ends within a test, and takes far longer than 5 s to flush on SIGTERM.
SLOW = "-i in.mp4 -vf scale=1280:720 -c:v libx264 -preset veryslow -an out.mp4"
QUICK = "-i in.mp4 -c:v libx264 -preset ultrafast -an out.mp4"
STOP_BOUND = 3.0  # seconds for a doomed run to stop; the old code took >= 5

no_unclosed_transports = pytest.mark.filterwarnings("error::ResourceWarning")


async def slow_task(tm: TaskManager, media_server: MediaServer, **kwargs: object) -> str:
    task = await tm.register(
        SLOW, {"in.mp4": media_server.media_url("long.mp4")}, "out.mp4", **kwargs
    )
    return task.id


async def until_processing(tm: TaskManager, task_id: str) -> None:
    """Wait until ffmpeg runs (and a little more, so it is really encoding)."""
    for _ in range(3000):
        if (await tm.status(task_id)).phase.value == "processing":
            await asyncio.sleep(0.3)
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the task never reached ffmpeg")


def assert_clean(tmp_path: Path) -> None:
    gc.collect()  # an unclosed transport warns when collected (an error here)
    assert leftovers(tmp_path) == []
    assert not stored_mp4s(tmp_path)
    assert not _ffmpeg_children()


# -- wait(): a waiter only ----------------------------------------------------------------


async def test_wait_timeout_raises_and_leaves_the_task_running(
    tmp_path: Path, media_server: MediaServer
) -> None:
    async with make_manager(tmp_path) as tm:
        task_id = await slow_task(tm, media_server)
        await tm.submit(task_id)
        with pytest.raises(TimeoutError):
            await tm.wait(task_id, timeout=1)
        assert (await tm.status(task_id)).status is TaskStatus.RUNNING
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await tm.wait(task_id)
        assert (await tm.status(task_id)).status is TaskStatus.RUNNING
        assert (await tm.cancel(task_id)).status is TaskStatus.CANCELLED


async def test_a_cancelled_waiter_propagates_and_the_task_runs_on(
    tmp_path: Path, media_server: MediaServer
) -> None:
    counts: list[int] = []

    async def waiter(task_id: str) -> None:
        try:
            await tm.wait(task_id)
        finally:
            current = asyncio.current_task()
            assert current is not None
            counts.append(current.cancelling())

    async with make_manager(tmp_path) as tm:
        task_id = await slow_task(tm, media_server)
        await tm.submit(task_id)
        await until_processing(tm, task_id)
        w = asyncio.create_task(waiter(task_id))
        await asyncio.sleep(0.2)
        w.cancel()
        with pytest.raises(asyncio.CancelledError):
            await w
        assert counts == [1]  # the cancel was not uncancelled/swallowed on the way
        assert (await tm.status(task_id)).status is TaskStatus.RUNNING
        await tm.cancel(task_id)


async def test_a_shielded_waiter_keeps_waiting_after_its_caller_is_cancelled(
    tmp_path: Path, media_server: MediaServer
) -> None:
    async with make_manager(tmp_path) as tm:
        task = await tm.register(
            "-re " + QUICK, {"in.mp4": media_server.media_url("clip.mp4")}, "out.mp4"
        )
        await tm.submit(task.id)
        inner = asyncio.ensure_future(tm.wait(task.id))

        async def shielded_waiter() -> None:
            await asyncio.shield(inner)

        outer = asyncio.create_task(shielded_waiter())
        await asyncio.sleep(0.2)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        assert not inner.done()
        done = await asyncio.wait_for(inner, 60)
        assert done.status is TaskStatus.COMPLETED, (done.error_code, done.error)


# -- TaskGroup, asyncio.timeout: execute() is the owner ------------------------------------


@no_unclosed_transports
async def test_task_group_with_a_failing_sibling(tmp_path: Path, media_server: MediaServer) -> None:
    reached: list[str] = []
    stopped_at: list[float] = []

    async def owner(task_id: str) -> None:
        await tm.execute(task_id)
        reached.append("after execute")

    async def waiter(task_id: str) -> None:
        await tm.wait(task_id)
        reached.append("after wait")

    async def failing(task_id: str) -> None:
        await until_processing(tm, task_id)
        stopped_at.append(time.monotonic())
        raise ValueError("sibling failed")

    async with make_manager(tmp_path) as tm:
        owned = await slow_task(tm, media_server)
        waited = await slow_task(tm, media_server)
        await tm.submit(waited)

        async def run_group() -> None:
            async with asyncio.TaskGroup() as group:
                group.create_task(owner(owned))
                group.create_task(waiter(waited))
                group.create_task(failing(owned))

        with pytest.raises(ExceptionGroup) as info:
            await run_group()
        took = time.monotonic() - stopped_at[0]
        assert [type(e) for e in info.value.exceptions] == [ValueError]
        assert reached == []
        assert (await tm.status(owned)).status is TaskStatus.CANCELLED
        assert (await tm.status(waited)).status is TaskStatus.RUNNING  # a waiter's end only
        assert took < STOP_BOUND, took
        await tm.cancel(waited)
    assert_clean(tmp_path)


@no_unclosed_transports
async def test_execute_under_a_caller_timeout_stops_ffmpeg_at_once(
    tmp_path: Path, media_server: MediaServer
) -> None:
    async with make_manager(tmp_path) as tm:
        task_id = await slow_task(tm, media_server)
        runner = asyncio.create_task(tm.execute(task_id))
        await until_processing(tm, task_id)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await asyncio.shield(runner)  # the timeout cancels only our wait …
        assert not runner.done()  # … the runner, shielded, goes on
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await runner  # the owner's timeout: cancels the task
        took = time.monotonic() - start
        task = await tm.status(task_id)
        assert task.status is TaskStatus.CANCELLED
        assert task.error_code == "cancelled"
        assert took < 0.5 + STOP_BOUND, took
    assert_clean(tmp_path)


# -- cancel() -----------------------------------------------------------------------------


@no_unclosed_transports
async def test_cancel_while_others_wait_and_execute(
    tmp_path: Path, media_server: MediaServer
) -> None:
    async with make_manager(tmp_path) as tm:
        task_id = await slow_task(tm, media_server)
        owner = asyncio.create_task(tm.execute(task_id))
        await until_processing(tm, task_id)
        waiter = asyncio.create_task(tm.wait(task_id))
        await asyncio.sleep(0.1)
        start = time.monotonic()
        cancelled = await tm.cancel(task_id)
        took = time.monotonic() - start
        assert cancelled.status is TaskStatus.CANCELLED
        assert took < STOP_BOUND, took
        # Neither was cancelled itself: both get the CANCELLED task, not an exception.
        assert (await owner).status is TaskStatus.CANCELLED
        assert (await waiter).status is TaskStatus.CANCELLED
    assert_clean(tmp_path)


async def until_cancelling(runner: asyncio.Task[Any]) -> None:
    """Wait (at most 10 s) until someone has asked ``runner`` to stop."""
    async with asyncio.timeout(10):
        while not runner.cancelling():
            await asyncio.sleep(0.001)


async def test_cancel_whose_own_caller_is_cancelled_propagates_and_still_cancels(
    tmp_path: Path, media_server: MediaServer
) -> None:
    async with make_manager(tmp_path) as tm:
        task_id = await slow_task(tm, media_server)
        await tm.submit(task_id)
        await until_processing(tm, task_id)
        runner = tm._local.runners[task_id]
        canceller = asyncio.create_task(tm.cancel(task_id))
        await until_cancelling(runner)  # until it has asked the runner to stop
        canceller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await canceller
        task = await tm.wait(task_id, timeout=30)
        assert task.status is TaskStatus.CANCELLED
    assert leftovers(tmp_path) == []
    assert not _ffmpeg_children()


# -- the task's own deadline, a release --------------------------------------------------


@no_unclosed_transports
async def test_the_task_deadline_fails_it_without_a_graceful_flush(
    tmp_path: Path, media_server: MediaServer
) -> None:
    async with make_manager(tmp_path) as tm:
        task_id = await slow_task(tm, media_server, timeout=1.0)
        runner = asyncio.create_task(tm.execute(task_id))
        await until_processing(tm, task_id)
        start = time.monotonic()
        task = await runner
        took = time.monotonic() - start
    assert task.status is TaskStatus.FAILED
    assert task.error_code == "timeout"
    assert took < STOP_BOUND, took  # the deadline was <= 0.7 s away
    assert_clean(tmp_path)


@no_unclosed_transports
async def test_a_release_stops_ffmpeg_at_once_and_puts_the_task_back(
    tmp_path: Path, media_server: MediaServer
) -> None:
    async with make_manager(tmp_path) as tm:
        task_id = await slow_task(tm, media_server)
        await tm.submit(task_id)
        await until_processing(tm, task_id)
        start = time.monotonic()
        await tm.aclose(release=True)  # a worker shutting down
        took = time.monotonic() - start
        task = await tm.status(task_id)
    assert task.status is TaskStatus.PENDING
    assert took < STOP_BOUND, took
    assert_clean(tmp_path)


# -- no unclosed transports ----------------------------------------------------------------


@no_unclosed_transports
@pytest.mark.parametrize("delay", [0.0, 0.002, 0.02, 0.3])
async def test_no_unclosed_transport_when_a_run_is_cancelled(
    work: Path, ffmpeg_bin: str, delay: float
) -> None:
    """Cancelled while spawning (the earlier delays) or while running (the later)."""
    args = ["-progress", "pipe:1", "-re", "-f", "lavfi", "-i", "testsrc2", "-f", "null", "-"]
    async with LocalExecutor() as ex:
        run = asyncio.create_task(ex.run(args, work, progress=lambda _b: None))
        await asyncio.sleep(delay)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        assert ex.running == 0
        done = await ex.run(["-f", "lavfi", "-i", "testsrc2", "-t", "0.1", "-f", "null", "-"], work)
        assert done.returncode == 0
    gc.collect()


# -- a cancel that arrives while a failed run cleans up ------------------------------------


class _GatedDeleteStorage(LocalStorage):
    """LocalStorage whose ``delete`` waits for a gate, to cancel a run in its clean-up."""

    def __init__(self, root: Path, *, gate_put: bool = False) -> None:
        super().__init__(root)
        self.deleting = asyncio.Event()
        self.putting = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate_put = gate_put

    async def put(self, *args: Any, **kwargs: Any) -> StoredFile:
        self.putting.set()
        if self.gate_put:
            await asyncio.Event().wait()  # until cancelled
        return await super().put(*args, **kwargs)

    async def delete(self, key: str) -> None:
        self.deleting.set()
        await self.gate.wait()
        await super().delete(key)


async def test_a_cancel_during_a_failed_runs_clean_up_still_records_it(
    tmp_path: Path, media_server: MediaServer
) -> None:
    storage = _GatedDeleteStorage(tmp_path / "out")
    async with make_manager(tmp_path, storage=storage) as tm:
        task = await tm.register(
            QUICK,
            {"in.mp4": media_server.media_url("clip.mp4")},
            "out.mp4",
            expect={"min_duration": 100},  # fails: the upload is discarded
        )
        owner = asyncio.create_task(tm.execute(task.id))
        await asyncio.wait_for(storage.deleting.wait(), 60)
        canceller = asyncio.create_task(tm.cancel(task.id))
        await asyncio.sleep(0.2)
        storage.gate.set()
        final = await asyncio.wait_for(canceller, 30)
        assert final.status is TaskStatus.FAILED  # it had failed: the record is not lost
        assert final.error_code == "expectation_failed"
        assert (await owner).status is TaskStatus.FAILED
    assert not list((tmp_path / "out").rglob("*.mp4"))
    assert leftovers(tmp_path) == []


async def test_a_second_cancel_during_a_cancelled_runs_clean_up_still_records_it(
    tmp_path: Path, media_server: MediaServer
) -> None:
    storage = _GatedDeleteStorage(tmp_path / "out", gate_put=True)
    async with make_manager(tmp_path, storage=storage) as tm:
        task = await tm.register(QUICK, {"in.mp4": media_server.media_url("clip.mp4")}, "out.mp4")
        await tm.submit(task.id)
        await asyncio.wait_for(storage.putting.wait(), 60)
        first = asyncio.create_task(tm.cancel(task.id))
        await asyncio.wait_for(storage.deleting.wait(), 30)  # discarding the upload
        second = asyncio.create_task(tm.cancel(task.id))  # cancels the runner again
        await asyncio.sleep(0.2)
        storage.gate.set()
        for canceller in (first, second):
            final = await asyncio.wait_for(canceller, 30)
            assert final.status is TaskStatus.CANCELLED
    assert not list((tmp_path / "out").rglob("*.mp4"))
    assert leftovers(tmp_path) == []


async def test_a_cancelled_aclose_still_settles_the_tasks_and_closes_the_backends(
    tmp_path: Path, media_server: MediaServer
) -> None:
    tm = make_manager(tmp_path)
    await tm.__aenter__()
    task_id = await slow_task(tm, media_server)
    await tm.submit(task_id)
    await until_processing(tm, task_id)
    runner = tm._local.runners[task_id]
    closer = asyncio.create_task(tm.aclose())
    await until_cancelling(runner)
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer
    assert (await tm.status(task_id)).status is TaskStatus.CANCELLED
    with pytest.raises(ConfigurationError, match="closed"):
        await tm.executor.run(["-version"], tmp_path)
    assert not _ffmpeg_children()
