"""The tasks this process runs: one asyncio task each, at most N at once, owned until they settle.

:class:`LocalRuns` starts a task's run, records how it ended (through
:mod:`.transitions`), and knows which runs to release rather than cancel when a worker
shuts down. The manager delegates to it; the run itself is :class:`.pipeline.Run`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ._lifecycle import WarmUp, cancel_and_wait, shielded
from .errors import InvalidTaskStateError, TaskFailure
from .events import Event, EventBus, EventType
from .models import Task, TaskStatus
from .pipeline import Run, RunContext
from .store.base import TaskStore
from .telemetry import TaskSpan, Telemetry
from .transitions import (
    LostOwnership,
    cancel_unstarted,
    check_owner,
    finish,
    queue,
    release,
    start,
)

__all__ = ["LocalRuns"]

log = logging.getLogger("ffmpeg_tasks")


class LocalRuns:
    """Runs tasks in this process for one manager."""

    def __init__(
        self,
        *,
        store: Callable[[], TaskStore],
        status: Callable[[str], Awaitable[Task]],
        context: Callable[[], RunContext],
        bus: EventBus,
        worker_id: str,
        work_dir: Path | None,
        max_concurrent: int | None,
        telemetry: Telemetry,
    ) -> None:
        self._telemetry = telemetry
        self._store = store
        self._status = status
        self._context = context
        self._bus = bus
        self.worker_id = worker_id
        self.work_dir = work_dir
        self._slots = asyncio.Semaphore(max_concurrent) if max_concurrent else None
        self.runners: dict[str, asyncio.Task[Task]] = {}
        #: Set when a worker shuts down: runs cancelled from now on go back to PENDING.
        self.releasing = False
        self._release_ids: set[str] = set()
        self._warm_ups: dict[int, asyncio.Task[None]] = {}

    def should_release(self, task_id: str) -> bool:
        return self.releasing or task_id in self._release_ids

    async def release_one(self, task_id: str) -> bool:
        """Stop the run of ``task_id`` here and put the task back to PENDING; False if none."""
        runner = self.runners.get(task_id)
        if runner is None:
            return False
        self._release_ids.add(task_id)
        runner.add_done_callback(lambda _t: self._release_ids.discard(task_id))
        runner.cancel()
        await asyncio.wait([runner])  # our caller's cancel propagates; the release goes on
        return True

    async def aclose(self) -> None:
        """Stop the warm-ups, cancel every run and wait until all have settled."""
        for helper in self._warm_ups.values():
            await cancel_and_wait(helper)
        runners = list(self.runners.values())
        for runner in runners:
            runner.cancel()
        if runners:
            await asyncio.gather(*runners, return_exceptions=True)

    def start(self, task: Task, *, takeover: bool | str = False) -> asyncio.Task[Task]:
        if task.id in self.runners:
            raise InvalidTaskStateError(f"task {task.id!r} is already running")
        allowed = (TaskStatus.PENDING, TaskStatus.RUNNING) if takeover else (TaskStatus.PENDING,)
        if task.status not in allowed:
            raise InvalidTaskStateError(
                f"task {task.id!r} is {task.status.value}; only pending tasks can be executed"
            )
        runner = asyncio.create_task(self._run(task.id, takeover), name=f"ffmpeg-task-{task.id}")
        self.runners[task.id] = runner
        runner.add_done_callback(lambda _t: self.runners.pop(task.id, None))
        return runner

    async def own(self, task_id: str, runner: asyncio.Task[Task]) -> Task:
        """Await the runner as its owner: cancelling our caller cancels it (and propagates)."""
        current = asyncio.current_task()
        assert current is not None
        before = current.cancelling()
        try:
            task = await runner  # a cancel of our caller is passed on to the runner
        except asyncio.CancelledError:
            if current.cancelling() > before:
                raise  # our caller was cancelled: so was the task, which has settled
            return await self._status(task_id)  # someone called cancel()
        if current.cancelling() > before:
            raise asyncio.CancelledError  # the runner ended anyway; our cancel still stands
        return task

    async def _run(self, task_id: str, takeover: bool | str = False) -> Task:
        if self._slots is not None:
            try:
                # only a task that is still waiting: it may have started elsewhere since
                await self.update(
                    task_id, lambda t: queue(t) if t.status is TaskStatus.PENDING else t
                )
                with self._telemetry.queued():
                    await self._slots.acquire()
            except asyncio.CancelledError:
                if not self.should_release(task_id):
                    await shielded(self.cancel_pending(task_id))
                raise
            try:
                return await self._pipeline(task_id, takeover)
            finally:
                self._slots.release()
        return await self._pipeline(task_id, takeover)

    async def cancel_pending(self, task_id: str) -> Task:
        """Record CANCELLED for a task that has not started; return the task as it is."""

        def mutate(task: Task) -> Task:
            if task.status is not TaskStatus.PENDING:
                return task
            return cancel_unstarted(task)

        task = await self.update(task_id, mutate)
        if task.status is TaskStatus.CANCELLED:
            self._bus.publish(Event(EventType.CANCELLED, task_id, task=task))
        return task

    async def _pipeline(self, task_id: str, takeover: bool | str = False) -> Task:
        task = await self._status(task_id)
        if task.status is not TaskStatus.PENDING and not (
            takeover and task.status is TaskStatus.RUNNING
        ):
            raise InvalidTaskStateError(f"task {task_id!r} is {task.status.value}, not pending")
        taken = task.status is TaskStatus.RUNNING
        if isinstance(takeover, str) and taken and task.worker != takeover:
            # not the run that was judged dead: a newer one, live
            raise InvalidTaskStateError(f"task {task_id!r} was started by someone else")
        if task.cancel_requested:  # cancelled while a job engine was moving it
            return await self._finish_unstarted_cancel(task)
        running = start(task, self.worker_id)
        if not await self._store().replace(task, running):
            raise InvalidTaskStateError(f"task {task_id!r} was started by someone else")
        self._bus.publish(Event(EventType.STARTED, task_id))
        run = Run(self._context(), running, self.work_dir)
        with self._telemetry.task(running) as span:
            return await self._settle(task_id, running, run, span)

    async def _settle(self, task_id: str, running: Task, run: Run, span: TaskSpan) -> Task:
        """Execute ``run`` and record how it ended: completed, failed, cancelled, released."""
        try:
            outputs, metadata = await run.execute()
            final = await self._finish(
                task_id,
                TaskStatus.COMPLETED,
                outputs=outputs,
                metadata=metadata,
                progress=100.0,
                attempts={**running.attempts, **run.attempts},
                diagnostics=run.diagnostics,
            )
        except LostOwnership as lost:
            span.end_as("lost")
            return self._lost(lost)
        except asyncio.CancelledError:
            if run.lost is not None:  # the reporter saw a takeover and stopped us
                span.end_as("lost")
                current = asyncio.current_task()
                if current is not None and current.uncancel() > 0:
                    raise  # cancelled by someone else too
                return self._lost(run.lost)

            async def record_cancel() -> None:
                await run.discard_uploads()
                if self.should_release(task_id):
                    span.end_as("released")
                    await self._release(task_id)
                    return
                span.end_as("cancelled", "cancelled")
                try:
                    final = await self._finish(
                        task_id,
                        TaskStatus.CANCELLED,
                        error="cancelled",
                        error_code="cancelled",
                        diagnostics=run.diagnostics,
                        attempts={**running.attempts, **run.attempts},
                    )
                except LostOwnership:
                    span.end_as("lost")
                    return
                self._bus.publish(Event(EventType.CANCELLED, task_id, task=final))

            await shielded(record_cancel())  # all of it, even if cancelled again meanwhile
            raise
        except Exception as exc:
            if isinstance(exc, TaskFailure):
                message, code = exc.message, exc.code
            else:
                log.exception("task %s failed unexpectedly", task_id)
                message, code = f"internal error ({type(exc).__name__})", "internal_error"
            span.end_as("failed", code)

            async def record_failure() -> Task:
                await run.discard_uploads()
                final = await self._finish(
                    task_id,
                    TaskStatus.FAILED,
                    error=message,
                    error_code=code,
                    diagnostics=run.diagnostics,
                    attempts={**running.attempts, **run.attempts},
                )
                self._bus.publish(Event(EventType.FAILED, task_id, message=message, task=final))
                return final

            try:  # a cancel that arrives meanwhile propagates once the failure is recorded
                return await shielded(record_failure())
            except LostOwnership as lost:
                span.end_as("lost")
                return self._lost(lost)
        span.end_as("completed")
        self._bus.publish(Event(EventType.COMPLETED, task_id, percent=100.0, task=final))
        return final

    async def _finish_unstarted_cancel(self, task: Task) -> Task:
        done = cancel_unstarted(task)
        if not await self._store().replace(task, done):
            raise InvalidTaskStateError(f"task {task.id!r} was started by someone else")
        self._bus.publish(Event(EventType.CANCELLED, task.id, task=done))
        return done

    async def _release(self, task_id: str) -> None:
        """Put a task this process was running back to PENDING (queued)."""

        def mutate(task: Task) -> Task:
            check_owner(task, self.worker_id)
            return release(task)

        try:
            await self.update(task_id, mutate)
        except LostOwnership:
            return
        self._bus.publish(Event(EventType.QUEUED, task_id, message="released by a shutdown"))

    @staticmethod
    def _lost(lost: LostOwnership) -> Task:
        # The new owner stores under the same keys, so nothing of ours is deleted.
        log.warning("task %s: %s; leaving it to the new owner", lost.task.id, lost)
        return lost.task

    def warm_up(self, backend: object) -> None:
        """Once per backend, in the background: its ``warm_up()`` if it is a :class:`WarmUp`.

        A run calls this for the executor as it starts downloading, and for the
        storage and the downloader as ffmpeg starts, so one-time setup (the sandbox
        self-test, the S3 client) overlaps work instead of delaying it.  Failures
        are only logged: the real call reports them.
        """
        if not isinstance(backend, WarmUp) or id(backend) in self._warm_ups:
            return
        target = backend

        async def run() -> None:
            try:
                await target.warm_up()
            except Exception as exc:
                log.debug("warm-up of %r failed: %r", backend, exc)

        self._warm_ups[id(backend)] = asyncio.create_task(run(), name="ffmpeg-tasks-warm-up")

    async def _finish(self, task_id: str, status: TaskStatus, **changes: Any) -> Task:
        def mutate(task: Task) -> Task:
            check_owner(task, self.worker_id)
            return finish(task, status, **changes)

        return await self.update(task_id, mutate)

    async def update(self, task_id: str, mutate: Callable[[Task], Task]) -> Task:
        """Compare-and-set loop: apply ``mutate`` to the latest version."""
        for _ in range(100):
            task = await self._status(task_id)
            new = mutate(task)
            if new is task or await self._store().replace(task, new):
                return new
        raise InvalidTaskStateError(f"task {task_id!r} keeps changing under us")
