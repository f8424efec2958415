"""The guarantees a job-engine backend gives, as checks you can run against yours.

    kit = Conformance(
        EngineSetup(
            name="celery-rabbitmq",
            backend=lambda: CeleryBackend(BROKER, queue=NAME),
            store=lambda: RedisTaskStore(REDIS, prefix=NAME),
            worker_argv=[sys.executable, "-m", "ffmpeg_tasks", "worker", "--engine", "celery",
                         "--queue", BROKER, "--queue-name", NAME, "--store", REDIS,
                         "--store-prefix", NAME, "--storage-dir", OUT,
                         "--allow-private-networks", "--shutdown-grace", "2", "-v"],
        ),
        input_url="http://127.0.0.1:8000/clip.mp4",   # a clip of 10 s or more
        storage_dir=OUT,
        log_dir=tmp_path,
    )
    async with kit:
        await kit.completes_once()
        await kit.kill_9_reruns_elsewhere()

Each check starts real worker processes with ``worker_argv`` (the engine's public
entry point), submits real ffmpeg tasks through a ``TaskManager`` with the backend,
and raises ``AssertionError`` naming what broke.  What it assumes of the workers: they
are processes on this host (Linux: it reads ``/proc``) whose ``TaskManager`` names them
``host:pid:…`` (the default worker id), ffmpeg runs below that pid, and they store
outputs with ``LocalStorage`` in ``storage_dir``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import attrs

from .._lifecycle import AsyncResource
from ..backends.base import Backend, engine_name
from ..manager import TaskManager
from ..models import Phase, Task, TaskStatus
from ..storage.local import LocalStorage
from ..store.base import TaskStore

__all__ = [
    "CHECKS",
    "Conformance",
    "EngineSetup",
    "WorkerProcesses",
    "descendants",
    "ffmpeg_under",
    "worker_pid",
]

#: ``-re`` reads the input at its native rate, so a task is reliably mid-run for seconds.
SLOW = "-re -i in.mp4 -t {t} -c:v libx264 -preset ultrafast -an out.mp4"

#: The checks, in the order :meth:`Conformance.run_all` runs them.
CHECKS = (
    "completes_once",
    "enqueue_twice_is_harmless",
    "events_reach_any_process",
    "remote_cancel_stops_ffmpeg",
    "kill_9_reruns_elsewhere",
    "sigterm_puts_the_task_back",
)


@attrs.frozen
class EngineSetup:
    """How to reach one engine: an API-side backend, the shared store, a worker command."""

    name: str
    backend: Callable[[], Backend]
    store: Callable[[], TaskStore]
    #: Starts one worker process; it must log a line containing ``ready_text`` when it
    #: takes work, and give running tasks at most a few seconds on SIGTERM.
    worker_argv: Sequence[str]
    worker_env: Mapping[str, str] = attrs.field(factory=dict)
    ready_text: str = "ready"
    #: Seconds from a worker's kill -9 until its task may run elsewhere (a broker's
    #: visibility timeout, a heartbeat sweep …), added to the waits.
    recovery_delay: float = 0.0


class WorkerProcesses:
    """Worker processes of one check; every one (and its process group) ends at ``stop_all``."""

    def __init__(self, setup: EngineSetup, log_dir: Path) -> None:
        self.setup = setup
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def log_path(self, proc: subprocess.Popen[bytes]) -> Path:
        return self.log_dir / f"{self.setup.name}-worker-{proc.pid}.log"

    async def spawn(self, *, ready_timeout: float = 60.0) -> subprocess.Popen[bytes]:
        """Start a worker and wait for its ``ready`` line."""
        env = {**os.environ, **self.setup.worker_env}
        proc = await asyncio.to_thread(self._popen, env)
        log = self.log_path(proc)
        self.procs.append(proc)
        loop = asyncio.get_running_loop()
        until = loop.time() + ready_timeout
        while self.setup.ready_text not in log.read_text(errors="replace"):
            if proc.poll() is not None or loop.time() > until:
                raise AssertionError(
                    f"{self.setup.name}: the worker did not become ready:\n{self.logs()}"
                )
            await asyncio.sleep(0.1)
        return proc

    def _popen(self, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        tmp = self.log_dir / f"{self.setup.name}-worker-new.log"
        with tmp.open("wb") as out:
            proc = subprocess.Popen(
                list(self.setup.worker_argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        tmp.rename(self.log_path(proc))
        return proc

    def logs(self) -> str:
        return "\n".join(
            f"--- worker {p.pid} ---\n{self.log_path(p).read_text(errors='replace')[-4000:]}"
            for p in self.procs
            if self.log_path(p).exists()
        )

    async def stop_all(self) -> None:
        for proc in self.procs:
            await asyncio.to_thread(_stop, proc)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever the worker left in its group
    if proc.poll() is None:
        proc.wait(5)


def descendants(pid: int) -> dict[int, str]:
    """Live descendants of ``pid`` with their command lines (``/proc``)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found: dict[int, str] = {}
    stack = list(parents.get(pid, []))
    while stack:
        child = stack.pop()
        try:
            found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        stack.extend(parents.get(child, []))
    return found


def ffmpeg_under(pid: int) -> list[int]:
    """Descendants of ``pid`` whose program is ffmpeg or bwrap, running a job: the
    sandbox's self-test (``ffmpeg -version``, a worker's first task) does not count."""
    found = []
    for child, cmd in descendants(pid).items():
        words = cmd.split()
        program = os.path.basename(words[0]) if words else ""
        if words[-1:] == ["-version"]:
            continue
        if program in ("ffmpeg", "bwrap") or program.startswith("ffmpeg-"):  # imageio's
            found.append(child)
    return found


def worker_pid(task: Task) -> int:
    """The pid in a task's worker id (``host:pid:…``)."""
    assert task.worker is not None, f"task {task.id} has no worker"
    return int(task.worker.split(":")[1])


class Conformance(AsyncResource):
    """The checks of one engine, with an API-side ``TaskManager`` on its backend."""

    def __init__(
        self, setup: EngineSetup, *, input_url: str, storage_dir: Path, log_dir: Path
    ) -> None:
        self.setup = setup
        self.input_url = input_url
        self.storage_dir = Path(storage_dir)
        self.log_dir = Path(log_dir)
        self.backend = setup.backend()
        self.manager = TaskManager(
            store=setup.store(), storage=LocalStorage(self.storage_dir), backend=self.backend
        )

    async def __aenter__(self) -> Self:
        await self.manager.__aenter__()
        return self

    async def aclose(self) -> None:
        """Close the API-side manager (and its backend)."""
        await self.manager.aclose()

    async def run_all(self, names: Sequence[str] = CHECKS) -> None:
        """Run the named checks in order."""
        for name in names:
            await getattr(self, name)()

    # -- helpers -------------------------------------------------------------------

    async def _submit(self, seconds: float) -> Task:
        task = await self.manager.register(
            SLOW.format(t=seconds), {"in.mp4": self.input_url}, "out.mp4"
        )
        return await self.manager.submit(task.id)

    async def _until(
        self, task_id: str, what: str, predicate: Callable[[Task], bool], timeout: float
    ) -> Task:
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout + self.setup.recovery_delay
        while True:
            task = await self.manager.status(task_id)
            if predicate(task):
                return task
            if loop.time() > until:
                raise AssertionError(f"{self.setup.name}: task never {what}; it is {task!r}")
            await asyncio.sleep(0.1)

    async def wait_running(self, task_id: str, timeout: float = 60.0) -> Task:
        """The task once a worker runs its ffmpeg step (phase ``processing``)."""
        return await self._until(
            task_id,
            "ran ffmpeg",
            lambda t: t.status is TaskStatus.RUNNING and t.phase is Phase.PROCESSING,
            timeout,
        )

    async def wait_finished(self, task_id: str, timeout: float = 90.0) -> Task:
        """The task once it has ended."""
        return await self._until(task_id, "finished", lambda t: t.status.is_terminal, timeout)

    def _assert(self, ok: bool, message: str, workers: WorkerProcesses) -> None:
        if not ok:
            raise AssertionError(f"{self.setup.name}: {message}\n{workers.logs()}")

    async def _with_workers(self, n: int, check: Callable[[WorkerProcesses], Any]) -> None:
        workers = WorkerProcesses(self.setup, self.log_dir)
        try:
            for _ in range(n):
                await workers.spawn()
            await check(workers)
        finally:
            await workers.stop_all()

    def _stored(self, task: Task) -> list[str]:
        root = self.storage_dir / task.id
        return sorted(p.name for p in root.iterdir()) if root.is_dir() else []

    # -- the checks ----------------------------------------------------------------

    async def completes_once(self) -> None:
        """A submitted task runs once on a worker and completes with its output stored."""

        async def check(workers: WorkerProcesses) -> None:
            task = await self._submit(1)
            final = await self.wait_finished(task.id)
            self._assert(final.status is TaskStatus.COMPLETED, f"ended {final!r}", workers)
            self._assert(final.attempts.get("run") == 1, f"ran {final.attempts}", workers)
            engine = engine_name(self.backend)
            self._assert(final.engine == engine, f"task.engine is not {engine!r}", workers)
            self._assert(self._stored(final) == ["out.mp4"], "output not stored", workers)

        await self._with_workers(1, check)

    async def enqueue_twice_is_harmless(self) -> None:
        """A second enqueue of the same task (a retry of the submit) runs nothing twice."""

        async def check(workers: WorkerProcesses) -> None:
            task = await self._submit(3)
            await self.backend.enqueue(task)
            final = await self.wait_finished(task.id)
            self._assert(final.status is TaskStatus.COMPLETED, f"ended {final!r}", workers)
            await asyncio.sleep(3)  # a duplicate would have started by now
            again = await self.manager.status(task.id)
            self._assert(again.attempts.get("run") == 1, f"ran {again.attempts}", workers)
            self._assert(again == final, "changed after it completed", workers)

        await self._with_workers(2, check)

    async def events_reach_any_process(self) -> None:
        """``events()`` in the API process sees progress and ends with the terminal event."""

        async def check(workers: WorkerProcesses) -> None:
            task = await self._submit(3)
            events = []
            async with asyncio.timeout(90 + self.setup.recovery_delay):
                async for event in self.manager.events(task.id):
                    events.append(event)
            kinds = [e.type.value for e in events]
            self._assert(kinds[-1] == "completed", f"events ended with {kinds[-1:]}", workers)
            self._assert(
                any(k in ("downloading", "running", "uploading", "started") for k in kinds),
                f"no progress event before the end: {kinds}",
                workers,
            )

        await self._with_workers(1, check)

    async def remote_cancel_stops_ffmpeg(self) -> None:
        """``cancel()`` from the API process ends a running task CANCELLED and stops ffmpeg."""

        async def check(workers: WorkerProcesses) -> None:
            task = await self._submit(10)
            running = await self.wait_running(task.id)
            pid = worker_pid(running)
            until = time.monotonic() + 15  # the phase is written just before ffmpeg starts
            while not ffmpeg_under(pid) and time.monotonic() < until:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            self._assert(bool(ffmpeg_under(pid)), "no ffmpeg under the worker", workers)
            started = time.monotonic()
            done = await self.manager.cancel(task.id)
            self._assert(done.status is TaskStatus.CANCELLED, f"ended {done!r}", workers)
            until = time.monotonic() + 15
            while ffmpeg_under(pid) and time.monotonic() < until:  # noqa: ASYNC110 (polls /proc)
                await asyncio.sleep(0.1)
            self._assert(not ffmpeg_under(pid), "ffmpeg still runs after the cancel", workers)
            self._assert(time.monotonic() - started < 30, "the cancel took over 30 s", workers)

        await self._with_workers(1, check)

    async def kill_9_reruns_elsewhere(self) -> None:
        """A worker killed mid-run: the task runs again on another and completes exactly once."""

        async def check(workers: WorkerProcesses) -> None:
            task = await self._submit(4)
            running = await self.wait_running(task.id)
            victim = worker_pid(running)
            os.kill(victim, signal.SIGKILL)
            final = await self.wait_finished(task.id, timeout=120)
            self._assert(final.status is TaskStatus.COMPLETED, f"ended {final!r}", workers)
            self._assert(worker_pid(final) != victim, "completed by the killed worker?", workers)
            self._assert(final.attempts.get("run") == 2, f"ran {final.attempts}", workers)
            self._assert(self._stored(final) == ["out.mp4"], "outputs differ", workers)

        await self._with_workers(2, check)

    async def sigterm_puts_the_task_back(self) -> None:
        """SIGTERM to a busy worker: after its grace the task goes back and runs elsewhere."""

        async def check(workers: WorkerProcesses) -> None:
            task = await self._submit(8)
            running = await self.wait_running(task.id)
            first = worker_pid(running)
            target = next((p for p in workers.procs if p.pid == first), None)
            self._assert(target is not None, f"task ran on {running.worker}, no worker", workers)
            assert target is not None
            target.send_signal(signal.SIGTERM)
            final = await self.wait_finished(task.id, timeout=120)
            self._assert(final.status is TaskStatus.COMPLETED, f"ended {final!r}", workers)
            self._assert(worker_pid(final) != first, "the stopping worker finished it", workers)
            self._assert(final.attempts.get("run") == 2, f"ran {final.attempts}", workers)

        await self._with_workers(2, check)
