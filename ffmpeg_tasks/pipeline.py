"""The run pipeline: one execution of one task — fetch → ffmpeg steps → check → store.

A :class:`Run` gets a :class:`RunContext` (the backends, the settings and three
callbacks into its manager) and never the manager itself.  The manager owns the task's
status; a run only reports progress through ``update`` and raises when it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

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
from .overlap import Feed, FeedRestarted, choose, wait_window
from .plan import TaskPlan
from .probe import StreamDump, check_expectations, probe_outputs
from .progress_tracker import ProgressTracker
from .retry import RetryPolicy
from .sniff import check_file
from .storage.base import Storage, StoredFile, UploadProgress
from .storage.content_types import content_type_for
from .telemetry import Telemetry
from .transitions import LostOwnership, check_owner, update_progress
from .workdirs import make_work_dir, work_dir_path

__all__ = ["Run", "RunContext"]

log = logging.getLogger("ffmpeg_tasks")

STORE_PROGRESS_EVERY = 1.0  # seconds between progress writes to the task store
HEARTBEAT_EVERY = 5.0  # a running task's record is rewritten at least this often


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
    #: Let ffmpeg read streamable inputs while they download (overlap.py).
    overlap_inputs: bool = False
    #: Upload outputs while ffmpeg writes them, where the storage can (``begin``).
    overlap_outputs: bool = True


@runtime_checkable
class GrowingOutput(Protocol):
    """An upload started while ffmpeg writes its file (``S3Storage.begin``)."""

    async def grow(self) -> None: ...
    async def finish(self, progress: UploadProgress | None = None) -> StoredFile | None: ...
    async def abort(self) -> None: ...


@runtime_checkable
class GrowingStorage(Protocol):
    """A storage that can upload a file while it is being written (output overlap)."""

    def begin(self, path: Path, key: str, *, content_type: str) -> GrowingOutput: ...


@contextlib.contextmanager
def _stopping(tasks: Sequence[asyncio.Task[None]]) -> Iterator[None]:
    """Cancel ``tasks`` (uploads that follow ffmpeg's writes) when the block ends."""
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()


def _remove_work_dir(path: Path, lock: int | None) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if lock is not None:
        os.close(lock)


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
        self._wrote_at = time.monotonic()
        self._cancelling = False
        self._out_time: float | None = None
        #: Input sizes the downloads announced, by name.
        self._sizes: dict[str, int] = {}
        #: How much of its one input a streamed run has fed ffmpeg (0..1), where ffmpeg
        #: reports no duration to take a percent from (MPEG-TS and others on a FIFO).
        self._fed: Callable[[], float | None] | None = None
        self._lock: int | None = None  # held on the work dir while it exists (workdirs.py)
        #: Outputs uploaded while ffmpeg writes them (output overlap), by name.
        self._growing: dict[str, GrowingOutput] = {}
        self.lost: LostOwnership | None = None
        self._main: asyncio.Task[Any] | None = None

    def _publish(self, event: Event) -> None:
        self.ctx.publish(event)

    async def _flush(self, *, read: bool = False, **changes: Any) -> None:
        """Write phase, progress and attempts to the store when they changed, and at
        least every ``HEARTBEAT_EVERY`` s.  With ``read``, always read the record: a
        cancel requested from another process stops the run, a new owner ends it."""
        state = (self.progress, len(self.attempts))
        now = time.monotonic()
        due = bool(changes) or state != self._written or now - self._wrote_at >= HEARTBEAT_EVERY
        if not due and not read:
            return
        progress, attempts = self.progress, dict(self.attempts)

        def mutate(t: Task) -> Task:
            check_owner(t, self.ctx.worker)
            if not due:
                return t
            return update_progress(t, progress, attempts, **changes)

        self.task = await self.ctx.update(self.task.id, mutate)
        if due:
            self._written, self._wrote_at = state, now
        if self.task.cancel_requested and self._main is not None and not self._cancelling:
            self._cancelling = True
            log.info("task %s: cancel requested from another process", self.task.id)
            self._main.cancel()

    async def _reporter(self) -> None:
        while True:
            await asyncio.sleep(STORE_PROGRESS_EVERY)
            try:
                await self._flush(read=True)
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
                await shielded(asyncio.to_thread(self._make_work_dir))
                return await self._execute()
        except TimeoutError:
            if not window.expired():
                raise
            raise TaskTimeoutError(
                f"the task's deadline of {deadline:g}s passed while "
                f"{_PHASE_WORDS.get(self.task.phase, 'running')}"
            ) from None
        finally:
            if self._growing:
                await shielded(self.abort_growing())
            await cancel_and_wait(reporter)
            # even if the mkdir was cut short by a cancel: its thread may have finished
            await shielded(asyncio.to_thread(_remove_work_dir, self.work, self._lock))
            self._lock = None

    def _make_work_dir(self) -> None:
        self._lock = make_work_dir(self.work)  # kept even if the caller was cancelled

    async def _execute(self) -> tuple[list[StoredObject], dict[str, OutputMetadata]]:
        m = self.ctx
        executor = m.executor  # resolve ffmpeg before downloading anything
        plan = m.plan(self.task)
        m.warm_up(executor)
        modes = choose(plan, self.task.input_files, m.downloader, enabled=m.overlap_inputs)
        feeds = {name: Feed(self.work, name) for name, why in modes.items() if why is None}
        timeout = self.task.options.get("timeout", m.timeout)
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        dump = StreamDump()
        if feeds:
            await self._run_streamed(executor, plan, feeds, dump, deadline)
        else:
            with m.telemetry.phase("fetch") as span:
                fetched = await self._download_all()
                span.set("inputs", len(self.task.input_files))
                span.set("bytes", fetched)
            await self._start_processing()
            for index in range(len(plan.steps)):
                await self._step(executor, plan, index, dump, deadline)
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
                metadata.update(await self._metadata(files, dump, self._out_time))
                codecs = {s["codec"] for v in metadata.values() for s in v["streams"]}
                span.set("codecs", sorted(c for c in codecs if c))

        async def discard() -> None:  # streamed inputs' downloads, beside the upload
            for feed in feeds.values():
                await asyncio.to_thread(feed.discard)

        await all_or_nothing([upload(), probe(), discard()])
        return stored, metadata

    async def _start_processing(self) -> None:
        m = self.ctx
        m.warm_up(m.storage)
        m.warm_up(m.downloader)  # for the next task
        self.progress = 0.0
        await self._flush(phase=Phase.PROCESSING)

    async def _step(
        self,
        executor: Executor,
        plan: TaskPlan,
        index: int,
        dump: StreamDump,
        deadline: float | None,
    ) -> None:
        """Run step ``index`` of ``plan``; raise the diagnosed failure if ffmpeg fails."""
        step = plan.steps[index]
        tracker = ProgressTracker(step.timing)
        count = len(plan.steps)

        def on_stderr(line: str) -> None:
            tracker.feed_stderr(line)
            dump.feed(line)

        def on_progress(block: Mapping[str, str]) -> None:
            snap = tracker.update(block)
            if snap.out_time is not None:
                self._out_time = snap.out_time
            share = snap.percent
            if share is None and self._fed is not None:
                fed = 1.0 if block.get("progress") == "end" else self._fed()
                share = None if fed is None else min(fed, 1.0) * 100.0
            percent = None
            if share is not None:
                percent = (index + share / 100.0) / count * 100.0
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
        growth = self._start_growing(plan) if count == 1 else []
        with self.ctx.telemetry.phase("run") as span, _stopping(growth):
            span.set("step", index)
            result = await executor.run(
                step.args,
                self.work,
                timeout=remaining,
                stall_timeout=self.ctx.stall_timeout,
                progress=on_progress,
                on_stderr=on_stderr,
            )
            span.set("exit_code", result.returncode)
            self.diagnostics = result.stderr_tail
            if result.returncode != 0:
                raise diagnose(result.returncode, result.stderr_tail)
        if index < count - 1:  # later steps read these: check them as inputs
            await asyncio.to_thread(self._check_intermediates, step.outputs, step.sidecars)

    async def _run_streamed(
        self,
        executor: Executor,
        plan: TaskPlan,
        feeds: Mapping[str, Feed],
        dump: StreamDump,
        deadline: float | None,
    ) -> None:
        """One step whose streamable inputs ffmpeg reads while they download (overlap.py)."""
        for each in feeds.values():
            await asyncio.to_thread(each.make)
        downloads: dict[str, asyncio.Future[int]] = {}
        for name, url in self.task.input_files.items():
            feed = feeds.get(name)
            if feed is None:
                downloads[name] = asyncio.ensure_future(self._download(name, url))
                continue
            downloads[name] = asyncio.ensure_future(self._feed_download(name, url, feed))
            feed.follow(downloads[name])
        if len(self.task.input_files) == 1 and len(feeds) == 1:
            ((name, feed),) = feeds.items()
            self._fed = lambda: feed.fed / size if (size := self._sizes.get(name)) else None
        step: asyncio.Future[None] | None = None
        feeders: list[asyncio.Future[None]] = []
        try:
            with self.ctx.telemetry.phase("fetch") as span:  # until ffmpeg can start
                span.set("inputs", len(downloads))
                span.set("streamed", len(feeds))
                for name, download in downloads.items():
                    feed = feeds.get(name)
                    if feed is None:
                        await download
                        await asyncio.to_thread(check_file, name, self.work / name)
                    else:
                        await wait_window(feed, download)
                        await asyncio.to_thread(feed.check_window, name)
            await self._start_processing()
            feeders = [f.start() for f in feeds.values()]
            step = asyncio.ensure_future(self._step(executor, plan, 0, dump, deadline))
            pending: set[asyncio.Future[Any]] = {step, *feeders}
            pending.update(downloads[name] for name in feeds)
            while not step.done():
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for finished in done:
                    if finished is not step and finished.exception() is not None:
                        raise finished.exception()  # type: ignore[misc]
            step.result()
        except FeedRestarted:
            # ffmpeg read bytes the download has since thrown away: run it on the whole file.
            log.info("task %s: an input download started over; running ffmpeg again", self.task.id)
            await self._stop_streams(step, feeders, feeds, {})
            step, feeders, self._fed = None, [], None
            await shielded(self.abort_growing())  # the rerun starts new uploads
            for name, download in downloads.items():
                await download
                if name in feeds:
                    await asyncio.to_thread(feeds[name].replace_with_download)
            await self._step(executor, plan, 0, dump, deadline)
        finally:
            await self._stop_streams(step, feeders, feeds, downloads)

    async def _feed_download(self, name: str, url: str, feed: Feed) -> int:
        with feed.watch(self.ctx.downloader, url):
            return await self._download(name, url, feed.download)

    @staticmethod
    async def _stop_streams(
        step: asyncio.Future[None] | None,
        feeders: Sequence[asyncio.Future[None]],
        feeds: Mapping[str, Feed],
        downloads: Mapping[str, asyncio.Future[Any]],
    ) -> None:
        """ffmpeg first (a closed FIFO would read as the end of the input), then the rest."""
        if step is not None:
            await cancel_and_wait(step)
        for feed in feeds.values():
            feed.stop.set()
        for feeder in feeders:
            await asyncio.wait([feeder])  # its thread ends: stop flag, or ffmpeg gone
            if not feeder.cancelled():
                feeder.exception()  # seen; the run's own outcome is what counts
        for download in downloads.values():
            await cancel_and_wait(download)

    def _start_growing(self, plan: TaskPlan) -> list[asyncio.Task[None]]:
        """Start uploading declared outputs while ffmpeg writes them, where the storage can
        (``begin``) and no option rewrites a whole file at the end (``faststart``)."""
        storage = self.ctx.storage
        if not isinstance(storage, GrowingStorage) or not self.ctx.overlap_outputs:
            return []
        if any("faststart" in token for token in plan.steps[0].args):
            return []
        for name in plan.outputs:
            self._growing[name] = storage.begin(
                self.work / name, f"{self.task.id}/{name}", content_type=content_type_for(name)
            )
        return [asyncio.create_task(g.grow()) for g in self._growing.values()]

    async def abort_growing(self) -> None:
        """Abort uploads started while ffmpeg ran that never completed (leave nothing)."""
        growing, self._growing = list(self._growing.values()), {}
        for upload in growing:
            try:
                await upload.abort()
            except Exception:
                log.warning("task %s: could not abort an early upload", self.task.id)

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

    async def _download(self, name: str, url: str, dest: Path | None = None) -> int:
        dest = self.work / name if dest is None else dest

        def progress(done: int, total: int | None) -> None:
            if total is not None:
                self._sizes[name] = total
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
            growing = self._growing.pop(name, None)
            try:
                stored = None
                if growing is not None:  # parts already sent while ffmpeg ran
                    stored = await growing.finish(progress)
                if stored is None:
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
