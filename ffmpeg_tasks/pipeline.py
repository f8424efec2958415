"""The run pipeline: one execution of one task — fetch → ffmpeg steps → check → store.

A :class:`Run` gets a :class:`RunContext` (the backends, the settings and three
callbacks into its manager) and never the manager itself.  The manager owns the task's
status; a run only reports progress through ``update`` and raises when it fails.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ._lifecycle import all_or_nothing, cancel_and_wait, shielded
from .diagnose import diagnose
from .downloader.base import Downloader
from .errors import FFmpegTasksError, StorageError, TaskFailure, TaskTimeoutError
from .events import Event, EventType
from .executor.base import Executor
from .metadata import OutputMetadata
from .models import Phase, StoredObject, Task
from .output_types import verify_outputs
from .outputs import collect_outputs
from .plan import TaskPlan
from .probe import StreamDump, check_expectations, probe_outputs
from .progress_tracker import ProgressTracker
from .retry import RetryPolicy
from .sniff import check_file
from .storage.base import Storage
from .storage.content_types import content_type_for
from .telemetry import Telemetry
from .transitions import LostOwnership, check_owner, update_progress

__all__ = ["Run", "RunContext"]

log = logging.getLogger("ffmpeg_tasks")

STORE_PROGRESS_EVERY = 1.0  # seconds between progress writes to the task store


def work_dir_path(root: Path | None, task_id: str) -> Path:
    """Where one run's private directory goes: a new name under ``root`` (default: temp)."""
    base = root if root is not None else Path(tempfile.gettempdir())
    return base / f"ffmpeg-tasks-{task_id[:12]}-{secrets.token_hex(4)}"


def make_work_dir(path: Path) -> None:
    """Create ``path`` for this run only (blocking); errors name no host path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700)
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        raise TaskFailure(
            f"cannot create the task's work dir: {exc.strerror or type(exc).__name__}",
            code="disk_full" if full else "failed",
        ) from None


@attrs.frozen
class RunContext:
    """What a run needs from its manager."""

    executor: Executor
    downloader: Downloader
    storage: Storage
    ffprobe_path: str | None
    retry: RetryPolicy
    upload_concurrency: int
    timeout: float | None
    deadline: float | None
    stall_timeout: float | None
    max_input_bytes: int | None
    worker: str
    #: The checked plan of a task's commands.
    plan: Callable[[Task], TaskPlan]
    #: Deliver an event to the task's subscribers.
    publish: Callable[[Event], None]
    #: Compare-and-set a change to the stored task; returns the stored version.
    update: Callable[[str, Callable[[Task], Task]], Awaitable[Task]]
    #: Start a backend's one-time warm-up in the background (once per backend).
    warm_up: Callable[[object], None]
    #: Spans and metrics of the run's phases.
    telemetry: Telemetry


_PHASE_WORDS = {
    Phase.DOWNLOADING: "fetching inputs",
    Phase.PROCESSING: "running ffmpeg",
    Phase.UPLOADING: "storing outputs",
}


class Run:
    """One execution of one task: download → ffmpeg steps → store."""

    #: The run's private work dir, made by :meth:`execute` and removed when it ends.
    work: Path

    def __init__(self, ctx: RunContext, task: Task, work_root: Path | None = None) -> None:
        self.ctx = ctx
        self.task = task
        self.work_root = work_root
        self.diagnostics: str | None = None
        self.uploaded: list[str] = []
        self.attempts: dict[str, int] = {}
        self.progress: float | None = None
        self._written: tuple[float | None, int] = (None, 0)
        self.lost: LostOwnership | None = None
        self._main: asyncio.Task[Any] | None = None

    def _publish(self, event: Event) -> None:
        self.ctx.publish(event)

    async def _flush(self, **changes: Any) -> None:
        """Write phase, progress and attempts to the store (skipped if unchanged)."""
        state = (self.progress, len(self.attempts))
        if not changes and state == self._written:
            return
        self._written = state
        progress, attempts = self.progress, dict(self.attempts)

        def mutate(t: Task) -> Task:
            check_owner(t, self.ctx.worker)
            return update_progress(t, progress, attempts, **changes)

        self.task = await self.ctx.update(self.task.id, mutate)

    async def _reporter(self) -> None:
        while True:
            await asyncio.sleep(STORE_PROGRESS_EVERY)
            try:
                await self._flush()
            except LostOwnership as lost:
                self.lost = lost
                if self._main is not None:
                    self._main.cancel()
                return
            except Exception:
                log.warning("task %s: progress write failed", self.task.id, exc_info=True)

    async def execute(self) -> tuple[list[StoredObject], dict[str, OutputMetadata]]:
        self._main = asyncio.current_task()
        reporter = asyncio.create_task(self._reporter())
        deadline = self.task.options.get("deadline", self.ctx.deadline)
        window = asyncio.timeout(deadline)
        self.work = work_dir_path(self.work_root, self.task.id)
        try:
            async with window:
                await shielded(asyncio.to_thread(make_work_dir, self.work))
                return await self._execute()
        except TimeoutError:
            if not window.expired():
                raise
            raise TaskTimeoutError(
                f"the task's deadline of {deadline:g}s passed while "
                f"{_PHASE_WORDS.get(self.task.phase, 'running')}"
            ) from None
        finally:
            await cancel_and_wait(reporter)
            # even if the mkdir was cut short by a cancel: its thread may have finished
            await shielded(asyncio.to_thread(shutil.rmtree, self.work, True))

    async def _execute(self) -> tuple[list[StoredObject], dict[str, OutputMetadata]]:
        m = self.ctx
        executor = m.executor  # resolve ffmpeg before downloading anything
        plan = m.plan(self.task)
        m.warm_up(executor)
        with m.telemetry.phase("fetch") as span:
            fetched = await self._download_all()
            span.set("inputs", len(self.task.input_files))
            span.set("bytes", fetched)
        m.warm_up(m.storage)
        m.warm_up(m.downloader)  # for the next task
        self.progress = 0.0
        await self._flush(phase=Phase.PROCESSING)
        timeout = self.task.options.get("timeout", m.timeout)
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        dump = StreamDump()
        out_time: float | None = None
        for index, step in enumerate(plan.steps):
            tracker = ProgressTracker(step.timing)

            def on_stderr(line: str, tracker: ProgressTracker = tracker) -> None:
                tracker.feed_stderr(line)
                dump.feed(line)

            def on_progress(
                block: Mapping[str, str], tracker: ProgressTracker = tracker, index: int = index
            ) -> None:
                nonlocal out_time
                snap = tracker.update(block)
                out_time = snap.out_time if snap.out_time is not None else out_time
                percent = None
                if snap.percent is not None:
                    percent = (index + snap.percent / 100.0) / len(plan.steps) * 100.0
                    self.progress = round(percent, 2)
                self._publish(
                    Event(
                        EventType.RUNNING,
                        self.task.id,
                        percent=percent,
                        fps=snap.fps,
                        speed=snap.speed,
                        eta=snap.eta,
                        out_time=snap.out_time,
                        step=index,
                    )
                )

            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            with m.telemetry.phase("run") as span:
                span.set("step", index)
                result = await executor.run(
                    step.args,
                    self.work,
                    timeout=remaining,
                    stall_timeout=m.stall_timeout,
                    progress=on_progress,
                    on_stderr=on_stderr,
                )
                span.set("exit_code", result.returncode)
                self.diagnostics = result.stderr_tail
                if result.returncode != 0:
                    raise diagnose(result.returncode, result.stderr_tail)
            if index < len(plan.steps) - 1:  # later steps read these: check them as inputs
                await asyncio.to_thread(self._check_intermediates, step.outputs, step.sidecars)
        files = await asyncio.to_thread(self._collect, plan.outputs, plan.sidecars)
        self.progress = 100.0
        await self._flush(phase=Phase.UPLOADING)
        # ffprobe (and the expect= check) run beside the upload; a failure of either
        # cancels the other, and the caller discards whatever was stored.
        stored: list[StoredObject] = []
        metadata: dict[str, OutputMetadata] = {}

        async def upload() -> None:
            with m.telemetry.phase("store") as span:
                stored.extend(await self._upload_all(files))
                span.set("objects", len(stored))
                span.set("bytes", sum(s.size for s in stored))

        async def probe() -> None:
            with m.telemetry.phase("probe") as span:
                metadata.update(await self._metadata(files, dump, out_time))
                codecs = {s["codec"] for v in metadata.values() for s in v["streams"]}
                span.set("codecs", sorted(c for c in codecs if c))

        await all_or_nothing([upload(), probe()])
        return stored, metadata

    def _collect(
        self, outputs: Sequence[str], sidecars: Sequence[str], *, final: bool = True
    ) -> list[tuple[str, Path]]:
        """The files to store, each checked to be what its name says (blocking)."""
        files = collect_outputs(
            self.work, outputs, sidecars, exclude=self.task.input_files, delete_excluded=final
        )
        verify_outputs(files)
        return files

    def _check_intermediates(self, outputs: Sequence[str], sidecars: Sequence[str]) -> None:
        """What a step wrote for later steps: an output of its kind, and a safe input."""
        for name, path in self._collect(outputs, sidecars, final=False):
            check_file(name, path)

    async def _download_all(self) -> int:
        """Fetch and check every input; return their bytes."""
        sizes: list[int] = []

        async def download(name: str, url: str) -> None:
            sizes.append(await self._download(name, url))

        await all_or_nothing(download(n, u) for n, u in self.task.input_files.items())
        for name in self.task.input_files:
            await asyncio.to_thread(check_file, name, self.work / name)
        return sum(sizes)

    async def _download(self, name: str, url: str) -> int:
        dest = self.work / name

        def progress(done: int, total: int | None) -> None:
            self._publish(
                Event(
                    EventType.DOWNLOADING,
                    self.task.id,
                    name=name,
                    bytes_done=done,
                    bytes_total=total,
                )
            )

        async def attempt(n: int) -> int:
            return await self.ctx.downloader.fetch(
                url, dest, max_bytes=self.ctx.max_input_bytes, progress=progress, resume=n > 1
            )

        size = await self.ctx.retry.call(attempt, on_retry=self._retrying(f"download:{name}"))
        self.ctx.telemetry.fetched(size)
        return size

    def _retrying(self, what: str) -> Callable[[int, TaskFailure, float], None]:
        def on_retry(attempt: int, exc: TaskFailure, wait: float) -> None:
            log.info(
                "task %s: %s attempt %d failed (%s); retrying in %.1fs",
                self.task.id,
                what,
                attempt,
                exc.code,
                wait,
            )
            self.attempts[what] = attempt + 1
            self._publish(
                Event(
                    EventType.RETRYING,
                    self.task.id,
                    name=what,
                    message=f"{exc.code}: attempt {attempt} failed, retrying in {wait:.1f}s",
                )
            )

        return on_retry

    async def _upload_all(self, files: Sequence[tuple[str, Path]]) -> list[StoredObject]:
        slots = asyncio.Semaphore(self.ctx.upload_concurrency)
        results: dict[str, StoredObject] = {}

        async def upload(name: str, path: Path) -> None:
            async with slots:
                results[name] = await self._upload(name, path)

        await all_or_nothing(upload(name, path) for name, path in files)
        return [results[name] for name, _ in files]

    async def _upload(self, name: str, path: Path) -> StoredObject:
        key = f"{self.task.id}/{name}"
        content_type = content_type_for(name)

        def progress(done: int, total: int) -> None:
            self._publish(
                Event(
                    EventType.UPLOADING, self.task.id, name=name, bytes_done=done, bytes_total=total
                )
            )

        async def attempt(_n: int) -> StoredObject:
            try:
                stored = await self.ctx.storage.put(
                    path, key, content_type=content_type, progress=progress
                )
            except FFmpegTasksError:
                raise
            except OSError as exc:
                raise StorageError(f"could not store {name!r}: {exc.strerror or exc}") from exc
            return StoredObject(
                name=name,
                key=stored.key,
                uri=stored.uri,
                url=stored.url,
                size=stored.size,
                content_type=content_type,
            )

        self.uploaded.append(key)  # before the put: a cancelled put may still leave an object
        stored = await self.ctx.retry.call(attempt, on_retry=self._retrying(f"upload:{name}"))
        self.ctx.telemetry.stored(stored.size)
        return stored

    async def discard_uploads(self) -> None:
        """Remove what this run stored, so a failed or cancelled task leaves nothing."""
        for key in self.uploaded:
            try:
                await self.ctx.storage.delete(key)
            except Exception:
                log.warning("task %s: could not delete stored %s", self.task.id, key)
        self.uploaded.clear()

    async def _metadata(
        self, files: Sequence[tuple[str, Path]], dump: StreamDump, out_time: float | None
    ) -> dict[str, OutputMetadata]:
        """Metadata of the declared outputs (ffprobe, confined by the executor, if found)."""
        main = [(n, p) for n, p in files if n in self.task.output_files] or list(files[:1])
        metadata = await probe_outputs(
            self.ctx.executor, self.ctx.ffprobe_path, main, dump, out_time
        )
        expect = self.task.options.get("expect")
        if expect:
            per_output = all(isinstance(v, Mapping) for v in expect.values())
            targets = expect if per_output else {self.task.output_filename: expect}
            for name, bounds in targets.items():
                check_expectations(metadata, name, bounds)
        return metadata
