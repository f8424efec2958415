"""``TaskManager``: register, execute and track FFmpeg tasks in the host's event loop.

The manager owns the policy — spec checks, the command plan, status transitions,
retries, events, clean-up — and talks to four small backends: a downloader, an
executor, a storage and a task store.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import shutil
import tempfile
from collections.abc import (
    AsyncIterator,
    Callable,
    Mapping,
    Sequence,
)
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from ._lifecycle import AsyncResource, cancel_and_wait, shielded
from .backends.base import Backend
from .downloader.base import Downloader
from .errors import (
    ConfigurationError,
    FFmpegTasksError,
    InvalidSpecError,
    InvalidTaskStateError,
    TaskFailure,
    TaskNotFoundError,
)
from .events import Event, EventBus, EventHandler, EventType
from .executor.base import Executor
from .ffmpeg import find_ffprobe
from .models import Phase, Task, TaskStatus, new_task_id, utcnow
from .pipeline import Run, RunContext
from .plan import TaskPlan, plan_task
from .policy import CommandPolicy
from .retry import RetryPolicy
from .spec import SpecLimits, validate_spec
from .storage.base import Storage
from .store.base import TaskStore
from .transitions import (
    LostOwnership,
    cancel_unstarted,
    check_owner,
    finish,
    interrupted,
    new_worker_id,
    queue,
    release,
    request_cancel,
    requeue,
    start,
    worker_is_dead,
)

__all__ = ["TaskManager"]

log = logging.getLogger("ffmpeg_tasks")

#: A task's whole execution (fetch, run, store) ends by then unless told otherwise.
DEFAULT_DEADLINE = 6 * 3600.0


class TaskManager(AsyncResource):
    """Runs FFmpeg tasks: register → execute (download, ffmpeg, store) → status.

    Every argument is optional: ``TaskManager()`` stores into a local directory,
    downloads over HTTP(S) from public addresses, runs the ffmpeg found on this
    host and keeps tasks in memory.  The manager owns the backends it is given and
    closes them in :meth:`aclose` (or at the end of ``async with``).
    """

    def __init__(
        self,
        *,
        storage: Storage | None = None,
        downloader: Downloader | None = None,
        executor: Executor | None = None,
        store: TaskStore | None = None,
        policy: CommandPolicy | None = None,
        limits: SpecLimits | None = None,
        work_dir: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
        deadline: float | None = DEFAULT_DEADLINE,
        stall_timeout: float | None = None,
        max_input_bytes: int | None = None,
        retry: RetryPolicy | None = None,
        max_concurrent_tasks: int | None = None,
        upload_concurrency: int = 4,
        retention: float | timedelta | None = None,
        on_event: EventHandler | None = None,
        on_interrupted: Literal["fail", "requeue"] = "fail",
        ffprobe: str | os.PathLike[str] | bool = True,
        backend: Backend | None = None,
    ) -> None:
        self._storage = storage
        self._downloader = downloader
        self._executor = executor
        self._store = store
        self.policy = policy if policy is not None else CommandPolicy()
        self.limits = limits if limits is not None else SpecLimits()
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self.timeout = timeout
        if deadline is not None and deadline <= 0:
            raise ConfigurationError(f"deadline={deadline!r} must be positive, or None for none")
        self.deadline = deadline
        self.stall_timeout = stall_timeout
        self.max_input_bytes = max_input_bytes
        self.retry = retry if retry is not None else RetryPolicy()
        self.upload_concurrency = upload_concurrency
        if isinstance(retention, timedelta):
            retention = retention.total_seconds()
        self.retention = retention
        self.on_interrupted = on_interrupted
        self.backend = backend
        self._ffprobe_setting = ffprobe
        self._ffprobe: str | bool | None = False  # False: not looked up yet
        self.worker_id = new_worker_id()
        self._bus = EventBus()
        if on_event is not None:
            self._bus.add_handler(on_event)
        self._task_slots = asyncio.Semaphore(max_concurrent_tasks) if max_concurrent_tasks else None
        self._runners: dict[str, asyncio.Task[Task]] = {}
        self._started = False
        self._start_lock = asyncio.Lock()
        self._closed = False
        self._releasing = False
        self._release_ids: set[str] = set()
        self._janitor: asyncio.Task[None] | None = None
        self._warm_ups: dict[int, asyncio.Task[None]] = {}

    # -- construction helpers ---------------------------------------------------

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> TaskManager:
        """Configure from environment variables, as the original service did.

        ``S3_BUCKET`` selects S3 storage (``AWS_REGION``, default ``us-east-1``;
        ``AWS_ENDPOINT_URL`` for MinIO, R2 …; credentials from the standard AWS
        chain); without it outputs go to ``FFMPEG_TASKS_STORAGE_DIR``.  See
        ``docs/configuration.md`` for the other variables.
        """
        from .config import settings_from_env

        kwargs = settings_from_env(os.environ if env is None else env)
        kwargs.update(overrides)
        return cls(**kwargs)

    # -- backends (created lazily so that TaskManager() never fails) -----------

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            from .storage.local import LocalStorage

            self._storage = LocalStorage()
        return self._storage

    @property
    def downloader(self) -> Downloader:
        if self._downloader is None:
            from .downloader.http import HttpDownloader

            self._downloader = HttpDownloader()
        return self._downloader

    @property
    def executor(self) -> Executor:
        """The executor; raises ``FFmpegNotFoundError`` if the default one finds no ffmpeg."""
        if self._executor is None:
            from .executor.local import LocalExecutor

            self._executor = LocalExecutor()
        return self._executor

    @property
    def ffprobe_path(self) -> str | None:
        """ffprobe used for output metadata; None when absent or disabled (``ffprobe=False``)."""
        if self._ffprobe is False:
            setting = self._ffprobe_setting
            if setting is False:
                self._ffprobe = None
            elif setting is True:
                self._ffprobe = find_ffprobe()
            else:
                self._ffprobe = find_ffprobe(setting)
        return self._ffprobe if isinstance(self._ffprobe, str) else None

    @property
    def store(self) -> TaskStore:
        if self._store is None:
            from .store.memory import MemoryTaskStore

            self._store = MemoryTaskStore()
        return self._store

    async def __aenter__(self) -> TaskManager:
        await self._ensure_started()
        return self

    async def _ensure_started(self) -> None:
        if self._closed:
            raise InvalidTaskStateError("the TaskManager is closed")
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            await self.recover()
            if self.backend is not None:
                await self.backend.start(self)
                self._bus.add_handler(self._share_event)
            if self.retention is not None:
                self._janitor = asyncio.create_task(self._purge_loop(self.retention))
            self._started = True

    async def aclose(self, *, release: bool = False) -> None:
        """Cancel running tasks, wait for them to settle, then close every backend.

        Cancelled tasks end CANCELLED; with ``release=True`` (a worker shutting down)
        they go back to PENDING instead, for another worker or a restart to run.  A
        cancel of the caller meanwhile propagates once all of that is done.
        """
        if self._closed:
            return
        self._closed = True
        if release:
            self.release_on_cancel()
        await shielded(self._close())

    async def _close(self) -> None:
        for helper in (self._janitor, *self._warm_ups.values()):
            if helper is not None:
                await cancel_and_wait(helper)
        runners = list(self._runners.values())
        for runner in runners:
            runner.cancel()
        if runners:
            await asyncio.gather(*runners, return_exceptions=True)
        await self._bus.aclose()
        for backend in (self.backend, self._downloader, self._executor, self._storage, self._store):
            if backend is not None:
                try:
                    await backend.aclose()
                except Exception:
                    log.exception("closing %r failed", backend)

    def release_on_cancel(self) -> None:
        """From now on, a task cancelled while running here goes back to PENDING.

        For a worker that is shutting down: its job engine cancels the jobs, and
        the tasks should run again elsewhere rather than end CANCELLED.
        ``cancel()`` of a task by a caller is not affected once it was requested
        before this call.
        """
        self._releasing = True

    def _should_release(self, task_id: str) -> bool:
        return self._releasing or task_id in self._release_ids

    # -- the public API ---------------------------------------------------------

    async def register(
        self,
        command: str | Sequence[str],
        input_files: Mapping[str, str],
        output_filename: str | None = None,
        *,
        output_files: Sequence[str] | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        idempotency_key: str | None = None,
        expect: Mapping[str, Any] | None = None,
    ) -> Task:
        """Check and record a task; it is PENDING until executed or submitted.

        ``command`` is one ffmpeg command (without the program name) or a list of
        commands run in order in one work dir.  ``timeout`` bounds ffmpeg's run;
        ``deadline`` (default: the manager's) bounds a whole execution — fetch,
        run and store.  Raises :class:`InvalidSpecError`
        (or its subclass :class:`CommandRejectedError`) naming the bad part.
        """
        await self._ensure_started()
        commands = (command,) if isinstance(command, str) else tuple(command)
        outputs = _declared_outputs(output_filename, output_files)
        validate_spec(commands, input_files, outputs, self.limits)
        plan_task(self.policy, commands, input_files, outputs)  # raises on a bad command
        options: dict[str, Any] = {}
        if timeout is not None:
            if timeout <= 0:
                raise InvalidSpecError("timeout must be positive", field="timeout")
            options["timeout"] = float(timeout)
        if deadline is not None:
            if deadline <= 0:
                raise InvalidSpecError("deadline must be positive", field="deadline")
            options["deadline"] = float(deadline)
        if expect:
            options["expect"] = dict(expect)
        task = Task(
            id=new_task_id(),
            commands=commands,
            input_files=dict(input_files),
            output_files=outputs,
            options=options,
            idempotency_key=idempotency_key,
        )
        return await self.store.create(task)

    async def plan(
        self,
        command: str | Sequence[str],
        input_files: Mapping[str, str],
        output_filename: str | None = None,
        *,
        output_files: Sequence[str] | None = None,
    ) -> TaskPlan:
        """Dry run: the argv, downloads, storage keys and policy verdicts; runs nothing."""
        commands = (command,) if isinstance(command, str) else tuple(command)
        outputs = _declared_outputs(output_filename, output_files)
        validate_spec(commands, input_files, outputs, self.limits)
        binary: str | None
        try:
            binary = str((await self.executor.describe()).get("ffmpeg_path") or "ffmpeg")
        except FFmpegTasksError:
            binary = "ffmpeg"
        return plan_task(self.policy, commands, input_files, outputs, binary=binary)

    async def status(self, task_id: str) -> Task:
        """The task as it is now.  Raises :class:`TaskNotFoundError`."""
        task = await self.store.get(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        return task

    async def list(
        self, status: TaskStatus | str | None = None, *, limit: int | None = None
    ) -> builtins.list[Task]:
        """Known tasks, oldest first, optionally with one ``status``."""
        return await self.store.list(TaskStatus(status) if status is not None else None, limit)

    async def execute(self, task_id: str, *, takeover: bool = False) -> Task:
        """Run a PENDING task now and return it finished.

        A failed job is a result (``status`` FAILED, ``error``/``error_code`` set),
        not an exception.  Cancelling the caller cancels the task (and propagates,
        once the task has settled).  Workers pass
        ``takeover=True`` to also run a task left RUNNING by a worker that died (the
        job engine decided that); the run is counted in ``task.attempts["run"]``.
        """
        await self._ensure_started()
        runner = self._start_runner(await self.status(task_id), takeover=takeover)
        return await self._await_runner(task_id, runner)

    async def submit(self, task_id: str) -> Task:
        """Start a PENDING task in the background (or enqueue it on the backend); return at once."""
        await self._ensure_started()
        task = await self.status(task_id)
        if self.backend is None:
            self._start_runner(task)
            self._bus.publish(Event(EventType.QUEUED, task_id))
            return await self.status(task_id)
        if task.status is not TaskStatus.PENDING or task.phase is Phase.QUEUED:
            what = "already queued" if task.status is TaskStatus.PENDING else task.status.value
            raise InvalidTaskStateError(
                f"task {task_id!r} is {what}; only pending tasks can be submitted"
            )
        queued = queue(task)
        if not await self.store.replace(task, queued):
            raise InvalidTaskStateError(f"task {task_id!r} changed while being submitted")
        await self.backend.enqueue(queued)
        self._bus.publish(Event(EventType.QUEUED, task_id))
        return queued

    async def run(
        self,
        command: str | Sequence[str],
        input_files: Mapping[str, str],
        output_filename: str | None = None,
        **kwargs: Any,
    ) -> Task:
        """``register`` then ``execute``."""
        task = await self.register(command, input_files, output_filename, **kwargs)
        return await self.execute(task.id)

    async def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """Wait until the task is finished and return it (CANCELLED if someone cancelled it).

        Only a waiter: raises ``TimeoutError`` after ``timeout`` seconds, and a cancel
        of the caller propagates; neither touches the task, which keeps running.
        """
        async with asyncio.timeout(timeout):
            runner = self._runners.get(task_id)
            if runner is not None:
                await asyncio.wait([runner])  # never cancels the runner, never raises its end
                return await self.status(task_id)
            return await self._poll_until_finished(task_id)

    async def _poll_until_finished(self, task_id: str, interval: float = 0.1) -> Task:
        """Wait for a task another process runs, reading the shared store."""
        while True:
            task = await self.status(task_id)
            if task.status.is_terminal:
                return task
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, 1.0)

    async def cancel(self, task_id: str) -> Task:
        """Cancel a task in any phase and return it CANCELLED; a finished one is unchanged.

        If the caller of ``cancel()`` is cancelled itself, that propagates at once;
        the task's cancellation goes on and still ends CANCELLED.
        """
        while True:
            task = await self.status(task_id)
            if task.status.is_terminal:
                return task
            runner = self._runners.get(task_id)
            if runner is not None:
                runner.cancel()
                await asyncio.wait([runner])
                return await self.status(task_id)
            if task.status is TaskStatus.PENDING:
                done = await self._cancel_pending(task_id)
                if done.status is not TaskStatus.CANCELLED:
                    continue  # it started meanwhile
                if self.backend is not None and task.phase is Phase.QUEUED:
                    await self.backend.abort(task)
                return done
            if self.backend is None:
                raise InvalidTaskStateError(
                    f"task {task_id!r} is running in another process ({task.worker}) and this "
                    "manager has no backend to reach it"
                )
            await self._update(task_id, request_cancel)
            await self.backend.abort(task)
            async with asyncio.timeout(60):
                return await self._poll_until_finished(task_id)

    async def release(self, task_id: str) -> Task:
        """Stop a task running in this process and put it back to PENDING.

        For job engines that stop a job for their own reasons (a sweep, a shutdown)
        and will run it again: the task is not CANCELLED, its partial uploads are
        discarded and the next run starts over.  A task not running here is returned
        as it is.
        """
        runner = self._runners.get(task_id)
        if runner is None:
            return await self.status(task_id)
        self._release_ids.add(task_id)
        runner.add_done_callback(lambda _t: self._release_ids.discard(task_id))
        runner.cancel()
        await asyncio.wait([runner])  # our caller's cancel propagates; the release goes on
        return await self.status(task_id)

    async def events(self, task_id: str) -> AsyncIterator[Event]:
        """Yield the task's events until it ends (the last one is terminal)."""
        await self.status(task_id)  # TaskNotFoundError early
        remote = self.backend.events(task_id) if self.backend is not None else None
        if remote is not None and task_id not in self._runners:
            async for event in remote:
                yield event
            return
        async for event in self._bus.stream(task_id, lambda: self.status(task_id)):
            yield event

    async def _share_event(self, event: Event) -> None:
        if self.backend is not None and event.task_id in self._runners:
            await self.backend.publish(event)

    def add_event_handler(self, handler: EventHandler) -> None:
        """Call ``handler(event)`` for every event of every task (sync or async)."""
        self._bus.add_handler(handler)

    def remove_event_handler(self, handler: EventHandler) -> None:
        self._bus.remove_handler(handler)

    async def health(self) -> dict[str, Any]:
        """What works: ffmpeg (path, version, protections), storage, store.  Never raises."""
        report: dict[str, Any] = {"status": "ok"}
        try:
            info = dict(await self.executor.describe())
            info["found"] = "error" not in info
            report["ffmpeg"] = info
            if not info["found"]:
                report["status"] = "degraded"
        except Exception as exc:
            report["ffmpeg"] = {"found": False, "error": str(exc)}
            report["status"] = "degraded"
        for name, check in (("storage", self.storage.check), ("store", self._check_store)):
            try:
                await check()
                report[name] = {"ok": True, "backend": type(getattr(self, name)).__name__}
            except Exception as exc:
                report[name] = {
                    "ok": False,
                    "backend": type(getattr(self, name)).__name__,
                    "error": str(exc),
                }
                report["status"] = "degraded"
        report["tasks_running_here"] = len(self._runners)
        return report

    async def _check_store(self) -> None:
        await self.store.list(limit=1)

    async def recover(self) -> builtins.list[Task]:
        """Settle tasks left RUNNING by a process that died.

        Called on start.  Tasks whose ``worker`` was a process on this host that no
        longer exists are failed with code ``interrupted`` or, with
        ``on_interrupted="requeue"``, put back to PENDING.  Returns what it changed.
        """
        changed: builtins.list[Task] = []
        for task in await self.store.list(TaskStatus.RUNNING):
            if task.worker is None or not worker_is_dead(task.worker):
                continue
            new = requeue(task) if self.on_interrupted == "requeue" else interrupted(task)
            if await self.store.replace(task, new):
                changed.append(new)
        return changed

    # -- running ------------------------------------------------------------------

    def _start_runner(self, task: Task, *, takeover: bool = False) -> asyncio.Task[Task]:
        if task.id in self._runners:
            raise InvalidTaskStateError(f"task {task.id!r} is already running")
        allowed = (TaskStatus.PENDING, TaskStatus.RUNNING) if takeover else (TaskStatus.PENDING,)
        if task.status not in allowed:
            raise InvalidTaskStateError(
                f"task {task.id!r} is {task.status.value}; only pending tasks can be executed"
            )
        runner = asyncio.create_task(self._run(task.id, takeover), name=f"ffmpeg-task-{task.id}")
        self._runners[task.id] = runner
        runner.add_done_callback(lambda _t: self._runners.pop(task.id, None))
        return runner

    async def _await_runner(self, task_id: str, runner: asyncio.Task[Task]) -> Task:
        """Await the runner as its owner: cancelling our caller cancels it (and propagates)."""
        current = asyncio.current_task()
        assert current is not None
        before = current.cancelling()
        try:
            task = await runner  # a cancel of our caller is passed on to the runner
        except asyncio.CancelledError:
            if current.cancelling() > before:
                raise  # our caller was cancelled: so was the task, which has settled
            return await self.status(task_id)  # someone called cancel()
        if current.cancelling() > before:
            raise asyncio.CancelledError  # the runner ended anyway; our cancel still stands
        return task

    async def _run(self, task_id: str, takeover: bool = False) -> Task:
        if self._task_slots is not None:
            await self._update(task_id, queue)
            try:
                await self._task_slots.acquire()
            except asyncio.CancelledError:
                if not self._should_release(task_id):
                    await shielded(self._cancel_pending(task_id))
                raise
            try:
                return await self._pipeline(task_id, takeover)
            finally:
                self._task_slots.release()
        return await self._pipeline(task_id, takeover)

    async def _cancel_pending(self, task_id: str) -> Task:
        """Record CANCELLED for a task that has not started; return the task as it is."""

        def mutate(task: Task) -> Task:
            if task.status is not TaskStatus.PENDING:
                return task
            return cancel_unstarted(task)

        task = await self._update(task_id, mutate)
        if task.status is TaskStatus.CANCELLED:
            self._bus.publish(Event(EventType.CANCELLED, task_id, task=task))
        return task

    async def _pipeline(self, task_id: str, takeover: bool = False) -> Task:
        task = await self.status(task_id)
        if task.status is not TaskStatus.PENDING and not (
            takeover and task.status is TaskStatus.RUNNING
        ):
            raise InvalidTaskStateError(f"task {task_id!r} is {task.status.value}, not pending")
        if task.cancel_requested:  # cancelled while a job engine was moving it
            return await self._finish_unstarted_cancel(task)
        running = start(task, self.worker_id)
        if not await self.store.replace(task, running):
            raise InvalidTaskStateError(f"task {task_id!r} was started by someone else")
        self._bus.publish(Event(EventType.STARTED, task_id))
        work = await asyncio.to_thread(self._make_work_dir, task_id)
        run = Run(self._run_context(), running, work)
        try:
            try:
                outputs, metadata = await run.execute()
            finally:
                await shielded(asyncio.to_thread(shutil.rmtree, work, True))
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
            return self._lost(lost)
        except asyncio.CancelledError:
            if run.lost is not None:  # the reporter saw a takeover and stopped us
                current = asyncio.current_task()
                if current is not None and current.uncancel() > 0:
                    raise  # cancelled by someone else too
                return self._lost(run.lost)

            async def record_cancel() -> None:
                await run.discard_uploads()
                if self._should_release(task_id):
                    await self._release(task_id)
                    return
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
                return self._lost(lost)
        self._bus.publish(Event(EventType.COMPLETED, task_id, percent=100.0, task=final))
        return final

    async def _finish_unstarted_cancel(self, task: Task) -> Task:
        done = cancel_unstarted(task)
        if not await self.store.replace(task, done):
            raise InvalidTaskStateError(f"task {task.id!r} was started by someone else")
        self._bus.publish(Event(EventType.CANCELLED, task.id, task=done))
        return done

    async def _release(self, task_id: str) -> None:
        """Put a task this process was running back to PENDING (queued)."""

        def mutate(task: Task) -> Task:
            check_owner(task, self.worker_id)
            return release(task)

        try:
            await self._update(task_id, mutate)
        except LostOwnership:
            return
        self._bus.publish(Event(EventType.QUEUED, task_id, message="released by a shutdown"))

    @staticmethod
    def _lost(lost: LostOwnership) -> Task:
        # The new owner stores under the same keys, so nothing of ours is deleted.
        log.warning("task %s: %s; leaving it to the new owner", lost.task.id, lost)
        return lost.task

    def _start_warm_up(self, backend: object) -> None:
        """Once per backend, in the background: its optional ``warm_up()``.

        A run calls this for the executor as it starts downloading, and for the
        storage and the downloader as ffmpeg starts, so one-time setup (the sandbox
        self-test, the S3 client) overlaps work instead of delaying it.  Failures
        are only logged: the real call reports them.
        """
        warm_up = getattr(backend, "warm_up", None)
        if not callable(warm_up) or id(backend) in self._warm_ups:
            return

        async def run() -> None:
            try:
                await warm_up()
            except Exception as exc:
                log.debug("warm-up of %r failed: %r", backend, exc)

        self._warm_ups[id(backend)] = asyncio.create_task(run(), name="ffmpeg-tasks-warm-up")

    def _run_context(self) -> RunContext:
        return RunContext(
            executor=self.executor,
            downloader=self.downloader,
            storage=self.storage,
            ffprobe_path=self.ffprobe_path,
            retry=self.retry,
            upload_concurrency=self.upload_concurrency,
            timeout=self.timeout,
            deadline=self.deadline,
            stall_timeout=self.stall_timeout,
            max_input_bytes=self.max_input_bytes,
            worker=self.worker_id,
            plan=lambda task: plan_task(
                self.policy, task.commands, task.input_files, task.output_files
            ),
            publish=self._bus.publish,
            update=self._update,
            warm_up=self._start_warm_up,
        )

    def _make_work_dir(self, task_id: str) -> Path:
        root = self.work_dir
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"ffmpeg-tasks-{task_id[:12]}-", dir=root))

    async def _finish(self, task_id: str, status: TaskStatus, **changes: Any) -> Task:
        def mutate(task: Task) -> Task:
            check_owner(task, self.worker_id)
            return finish(task, status, **changes)

        return await self._update(task_id, mutate)

    async def _update(self, task_id: str, mutate: Callable[[Task], Task]) -> Task:
        """Compare-and-set loop: apply ``mutate`` to the latest version."""
        for _ in range(100):
            task = await self.status(task_id)
            new = mutate(task)
            if new is task or await self.store.replace(task, new):
                return new
        raise InvalidTaskStateError(f"task {task_id!r} keeps changing under us")

    async def _purge_loop(self, retention: float) -> None:
        while True:
            await asyncio.sleep(min(max(retention / 4, 1.0), 60.0))
            try:
                await self.store.purge(utcnow() - timedelta(seconds=retention))
            except Exception:
                log.exception("purging expired tasks failed")


def _declared_outputs(
    output_filename: str | None, output_files: Sequence[str] | None
) -> tuple[str, ...]:
    if output_files is not None and not isinstance(output_files, str):
        names = tuple(output_files)
        if output_filename is not None and output_filename not in names:
            names = (output_filename, *names)
        return names
    if output_filename is None:
        raise InvalidSpecError("output_filename is required", field="output_filename")
    return (output_filename,)
