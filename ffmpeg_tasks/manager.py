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
from collections.abc import (
    AsyncIterator,
    Mapping,
    Sequence,
)
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import attrs

from ._lifecycle import AsyncResource, StoreBound, cancel_and_wait, shielded
from .argv import task_commands
from .backends.base import Backend, engine_name
from .downloader.base import Downloader
from .downloader.router import DownloaderRouter, StaticCheck
from .errors import (
    ConfigurationError,
    DownloadError,
    FFmpegTasksError,
    InvalidSpecError,
    InvalidTaskStateError,
    TaskNotFoundError,
)
from .events import Event, EventBus, EventHandler, EventType, log_transition, poll_store
from .executor.base import Executor
from .ffmpeg import find_ffprobe
from .janitor import purge_loop, sweep_loop
from .models import Phase, Task, TaskStatus, new_task_id
from .overlap import choose
from .pipeline import RunContext
from .plan import TaskPlan, plan_task
from .policy import CommandPolicy
from .retry import RetryPolicy
from .runner import LocalRuns
from .spec import SpecLimits, declared_outputs, validate_spec
from .storage.base import Storage
from .store.base import TaskStore
from .telemetry import Telemetry, default_telemetry
from .transitions import (
    interrupted,
    new_worker_id,
    queue,
    request_cancel,
    requeue,
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
        downloader: Downloader | Mapping[str, Downloader] | None = None,
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
        overlap_inputs: bool = False,
        overlap_outputs: bool = True,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._storage = storage
        self._downloader: Downloader | None = (
            DownloaderRouter(downloader) if isinstance(downloader, Mapping) else downloader
        )
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
        #: ffmpeg reads streamable inputs (MPEG-TS, Matroska …) while they download
        #: (``plan()`` says which).  Off by default: read from a FIFO, some containers
        #: report no duration (the percent then follows the bytes read, with no ETA) and
        #: tags stored at the end are not read.
        self.overlap_inputs = overlap_inputs
        #: Outputs are uploaded while ffmpeg writes them, where the storage can.
        self.overlap_outputs = overlap_outputs
        self.backend = backend
        self._ffprobe_setting = ffprobe
        self._ffprobe: str | bool | None = False  # False: not looked up yet
        self.worker_id = new_worker_id()
        self._bus = EventBus()
        self._bus.add_handler(log_transition)
        #: Spans and metrics (OpenTelemetry, when installed): the global providers by default.
        self.telemetry = telemetry if telemetry is not None else default_telemetry()
        self._bus.add_handler(self.telemetry.on_event)
        if on_event is not None:
            self._bus.add_handler(on_event)
        self._bound: builtins.list[StoreBound] = (
            [on_event] if isinstance(on_event, StoreBound) else []
        )
        self._local = LocalRuns(
            store=lambda: self.store,
            status=self.status,
            context=self._run_context,
            bus=self._bus,
            worker_id=self.worker_id,
            work_dir=self.work_dir,
            max_concurrent=max_concurrent_tasks,
            telemetry=self.telemetry,
        )
        self._started = False
        self._start_lock = asyncio.Lock()
        self._closed = False
        self._janitor: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

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
            for handler in self._bound:
                await handler.bind(self.store)
            self._sweeper = asyncio.create_task(
                sweep_loop(self.work_dir), name="ffmpeg-tasks-sweep"
            )
            if self.backend is not None:
                await self.backend.start(self.store)
                self._bus.add_handler(self._share_event)
            if self.retention is not None:
                self._janitor = asyncio.create_task(purge_loop(self.store, self.retention))
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
        for helper in (self._janitor, self._sweeper):
            if helper is not None:
                await cancel_and_wait(helper)
        await self._local.aclose()
        for handler in self._bound:
            await handler.unbind()
        await self._bus.aclose()
        for backend in (self.backend, self._downloader, self._executor, self._storage, self._store):
            if backend is not None:
                try:
                    await backend.aclose()
                except Exception:
                    log.exception("closing %r failed", backend)

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
        return self._closed

    def release_on_cancel(self) -> None:
        """From now on, a task cancelled while running here goes back to PENDING.

        For a worker that is shutting down: its job engine cancels the jobs, and
        the tasks should run again elsewhere rather than end CANCELLED.
        ``cancel()`` of a task by a caller is not affected once it was requested
        before this call.
        """
        self._local.releasing = True

    # -- the public API ---------------------------------------------------------

    async def register(
        self,
        command: str | Sequence[str] | None = None,
        input_files: Mapping[str, str | os.PathLike[str]] | None = None,
        output_filename: str | None = None,
        *,
        argv: Sequence[str] | None = None,
        output_files: Sequence[str] | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        idempotency_key: str | None = None,
        expect: Mapping[str, Any] | None = None,
    ) -> Task:
        """Check and record a task; it is PENDING until executed or submitted.

        ``command`` is one ffmpeg command (without the program name) or a list of
        commands run in order in one work dir; or give ``argv``, one command as a
        list of arguments (ffmpeg-python's or typed-ffmpeg's ``compile()``; a
        leading ``ffmpeg`` is dropped).  ``timeout`` bounds ffmpeg's run;
        ``deadline`` (default: the manager's) bounds a whole execution — fetch,
        run and store.  Raises :class:`InvalidSpecError`
        (or its subclass :class:`CommandRejectedError`) naming the bad part.
        """
        await self._ensure_started()
        commands = task_commands(command, argv)
        outputs = declared_outputs(output_filename, output_files)
        input_files = self._check_inputs(commands, input_files, outputs)
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
        command: str | Sequence[str] | None = None,
        input_files: Mapping[str, str | os.PathLike[str]] | None = None,
        output_filename: str | None = None,
        *,
        argv: Sequence[str] | None = None,
        output_files: Sequence[str] | None = None,
    ) -> TaskPlan:
        """Dry run: the argv, downloads, storage keys and policy verdicts; runs nothing."""
        commands = task_commands(command, argv)
        outputs = declared_outputs(output_filename, output_files)
        input_files = self._check_inputs(commands, input_files, outputs)
        try:
            binary = self.executor.ffmpeg_path
        except FFmpegTasksError:  # no ffmpeg here: the plan still shows the argv
            binary = "ffmpeg"
        plan = plan_task(self.policy, commands, input_files, outputs, binary=binary)
        modes = choose(plan, input_files, self.downloader, enabled=self.overlap_inputs)
        notes = [
            f"{name}: ffmpeg reads it while it downloads"
            if why is None
            else f"{name}: downloaded before ffmpeg starts ({why})"
            for name, why in modes.items()
        ]
        return attrs.evolve(plan, notes=(*plan.notes, *notes))

    def _check_inputs(
        self,
        commands: Sequence[str],
        input_files: Mapping[str, str | os.PathLike[str]] | None,
        outputs: Sequence[str],
    ) -> dict[str, str]:
        """The spec checked against the schemes this manager's downloader serves, and each
        input against the downloader's own static check (a bucket, a directory …)."""
        if not isinstance(input_files, Mapping):
            raise InvalidSpecError(
                "input_files must be a mapping of file name to URL", field="input_files"
            )
        inputs = {
            name: os.fspath(url) if isinstance(url, os.PathLike) else url
            for name, url in input_files.items()
        }
        downloader = self.downloader
        limits = self.limits
        schemes = getattr(downloader, "schemes", None)  # a router's, maybe behind a cache
        if isinstance(schemes, frozenset):
            limits = attrs.evolve(limits, url_schemes=schemes)
        validate_spec(commands, inputs, outputs, limits)
        if isinstance(downloader, StaticCheck):
            for name, url in inputs.items():
                try:
                    downloader.check_input(url)
                except DownloadError as exc:
                    raise InvalidSpecError(
                        f"input_files[{name!r}]: {exc.message}",
                        field="input_files",
                        code=exc.code,
                    ) from None
        return inputs

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

    async def execute(self, task_id: str, *, takeover: bool | str = False) -> Task:
        """Run a PENDING task now and return it finished.

        A failed job is a result (``status`` FAILED, ``error``/``error_code`` set),
        not an exception.  Cancelling the caller cancels the task (and propagates,
        once the task has settled).  Workers pass
        ``takeover=True`` to also run a task left RUNNING by a worker that died (the
        job engine decided that), or the dead worker's id to take it over only from
        that run; the run is counted in ``task.attempts["run"]``.
        """
        await self._ensure_started()
        runner = self._local.start(await self.status(task_id), takeover=takeover)
        return await self._local.own(task_id, runner)

    async def submit(self, task_id: str) -> Task:
        """Start a PENDING task in the background (or enqueue it on the backend); return at once."""
        await self._ensure_started()
        task = await self.status(task_id)
        if self.backend is None:
            self._local.start(task)
            self._bus.publish(Event(EventType.QUEUED, task_id))
            return await self.status(task_id)
        if task.status is not TaskStatus.PENDING or task.phase is Phase.QUEUED:
            what = "already queued" if task.status is TaskStatus.PENDING else task.status.value
            raise InvalidTaskStateError(
                f"task {task_id!r} is {what}; only pending tasks can be submitted"
            )
        queued = queue(task, engine=engine_name(self.backend))
        if not await self.store.replace(task, queued):
            raise InvalidTaskStateError(f"task {task_id!r} changed while being submitted")
        try:
            await self.backend.enqueue(queued)
        except BaseException:  # not queued after all: it may be submitted again
            await shielded(
                self.store.replace(queued, attrs.evolve(task, version=queued.version + 1))
            )
            raise
        self._bus.publish(Event(EventType.QUEUED, task_id))
        return queued

    async def run(
        self,
        command: str | Sequence[str] | None = None,
        input_files: Mapping[str, str | os.PathLike[str]] | None = None,
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
            runner = self._local.runners.get(task_id)
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
            runner = self._local.runners.get(task_id)
            if runner is not None:
                runner.cancel()
                await asyncio.wait([runner])
                return await self.status(task_id)
            if task.status is TaskStatus.PENDING:
                done = await self._local.cancel_pending(task_id)
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
            await self._local.update(task_id, request_cancel)
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
        await self._local.release_one(task_id)
        return await self.status(task_id)

    async def fail_interrupted(self, task_id: str, *, runs: int) -> Task:
        """FAIL (``interrupted``) a task whose ``runs`` runs each ended with its worker's
        death — a job engine's last resort against a task that kills its workers."""
        task = await self._local.update(
            task_id, lambda t: t if t.status.is_terminal else interrupted(t, runs=runs)
        )
        self._bus.publish(Event(EventType(task.status.value), task_id, task=task))
        return task

    async def events(self, task_id: str) -> AsyncIterator[Event]:
        """Yield the task's events until it ends (the last one is terminal)."""
        await self.status(task_id)  # TaskNotFoundError early
        snapshot = lambda: self.status(task_id)  # noqa: E731
        if self.backend is not None and task_id not in self._local.runners:
            # Another process may run it: the backend's channel, else the shared store.
            remote = self.backend.events(task_id)
            async for event in remote if remote is not None else poll_store(snapshot):
                yield event
            return
        async for event in self._bus.stream(task_id, snapshot):
            yield event

    async def _share_event(self, event: Event) -> None:
        if self.backend is not None and event.task_id in self._local.runners:
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
        report["tasks_running_here"] = len(self._local.runners)
        return report

    async def _check_store(self) -> None:
        await self.store.list(limit=1)

    async def recover(self) -> builtins.list[Task]:
        """Settle tasks left RUNNING by a process that died.

        Called on start.  Tasks whose ``worker`` was a process on this host that no
        longer exists are failed with code ``interrupted`` or, with
        ``on_interrupted="requeue"``, put back to PENDING.  Tasks submitted to a job
        engine (``task.engine`` set) are left alone: the engine retries them, and
        its next worker takes them over.  Returns what it changed.
        """
        changed: builtins.list[Task] = []
        for task in await self.store.list(TaskStatus.RUNNING):
            if task.engine is not None:
                continue
            if task.worker is None or not worker_is_dead(task.worker):
                continue
            new = requeue(task) if self.on_interrupted == "requeue" else interrupted(task)
            if await self.store.replace(task, new):
                changed.append(new)
        return changed

    # -- running ------------------------------------------------------------------

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
            update=self._local.update,
            warm_up=self._local.warm_up,
            overlap_inputs=self.overlap_inputs,
            overlap_outputs=self.overlap_outputs,
            telemetry=self.telemetry,
        )
