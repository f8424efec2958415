"""Every change of a task's status, as pure ``Task -> Task`` functions, and who owns a run.

The manager, the run pipeline and the job-engine backends change a task only through
these functions (and store the result with a compare-and-set), so the rules of the life
cycle — pending → running → completed / failed / cancelled, and back to pending when a
run is released — are written once.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from ._procs import is_zombie, start_ticks
from .error_codes import ErrorCode
from .models import Phase, Task, TaskStatus, utcnow

__all__ = [
    "LostOwnership",
    "cancel_unstarted",
    "check_owner",
    "finish",
    "interrupted",
    "new_worker_id",
    "queue",
    "release",
    "request_cancel",
    "requeue",
    "start",
    "update_progress",
    "worker_is_dead",
    "worker_is_local",
]


def queue(task: Task, engine: str | None = None) -> Task:
    """A PENDING task waiting for a slot, or for a worker of the job engine ``engine``."""
    if engine is None:
        return task.evolve(phase=Phase.QUEUED)
    return task.evolve(phase=Phase.QUEUED, engine=engine)


def start(task: Task, worker: str) -> Task:
    """``worker`` starts a run (the first, or another after a release or a takeover)."""
    return task.evolve(
        status=TaskStatus.RUNNING,
        phase=Phase.DOWNLOADING,
        started_at=utcnow(),
        worker=worker,
        progress=None,
        attempts={**task.attempts, "run": task.attempts.get("run", 0) + 1},
    )


def update_progress(
    task: Task, progress: float | None, attempts: dict[str, int], **changes: Any
) -> Task:
    """A running task's progress, retry counts and phase."""
    return task.evolve(progress=progress, attempts={**task.attempts, **attempts}, **changes)


def finish(
    task: Task,
    status: TaskStatus,
    *,
    error: str | None = None,
    error_code: ErrorCode | None = None,
    **changes: Any,
) -> Task:
    """The end of a run: COMPLETED, FAILED (``error``, ``error_code``) or CANCELLED."""
    if error is not None:
        changes.update(error=error, error_code=error_code)
    return task.evolve(status=status, phase=Phase.DONE, finished_at=utcnow(), **changes)


def cancel_unstarted(task: Task) -> Task:
    """``task`` CANCELLED before a run started it."""
    return finish(
        task, TaskStatus.CANCELLED, error="cancelled before it started", error_code="cancelled",
        worker=None,
    )  # fmt: skip


def request_cancel(task: Task) -> Task:
    """Flag a task running in another process; its worker records CANCELLED."""
    if task.status.is_terminal or task.cancel_requested:
        return task
    return task.evolve(cancel_requested=True)


def release(task: Task) -> Task:
    """A run stopped for the engine's own reasons: PENDING again, to run once more."""
    return task.evolve(
        status=TaskStatus.PENDING, phase=Phase.QUEUED, worker=None, started_at=None, progress=None
    )


def requeue(task: Task) -> Task:
    """A task whose process died, put back to PENDING (``on_interrupted="requeue"``)."""
    return task.evolve(
        status=TaskStatus.PENDING, phase=Phase.CREATED, worker=None, started_at=None, progress=None
    )


def interrupted(task: Task, *, runs: int | None = None) -> Task:
    """A task whose process died, FAILED (``on_interrupted="fail"``, or after ``runs``
    runs of a job engine each ended by its worker's death)."""
    error = f"the process running this task ({task.worker}) stopped"
    if runs is not None:
        error = (
            f"{runs} runs of this task ended with their worker stopping; the last: {task.worker}"
        )
    return finish(task, TaskStatus.FAILED, error=error, error_code="interrupted")


# -- ownership -------------------------------------------------------------------------


class LostOwnership(Exception):
    """This process no longer owns the task: another worker took it over, or it ended."""

    def __init__(self, task: Task) -> None:
        super().__init__(f"task {task.id} is now {task.status.value} on {task.worker}")
        self.task = task


def check_owner(task: Task, worker: str) -> None:
    """Raise :class:`LostOwnership` unless ``worker`` is running ``task``."""
    if task.status is not TaskStatus.RUNNING or task.worker != worker:
        raise LostOwnership(task)


def new_worker_id() -> str:
    """``host:pid:random:start`` names the process that runs a task; ``start`` (its
    start time in clock ticks since boot, where known) tells a reused pid apart."""
    pid = os.getpid()
    ticks = start_ticks(pid)
    suffix = f":{ticks}" if ticks is not None else ""
    return f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:6]}{suffix}"


def worker_is_local(worker: str) -> bool:
    """True when ``worker`` names a process on this host."""
    return worker.partition(":")[0] == socket.gethostname()


def worker_is_dead(worker: str) -> bool:
    """True when ``worker`` names a process on this host that no longer exists: its pid
    is gone, a zombie, or now another process (a restarted container's pid 1)."""
    host, pid_text, _rand, *rest = [*worker.split(":"), "", ""][:4]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        if is_zombie(pid):
            return True
    recorded = rest[0] if rest else ""
    if not recorded.isdigit():
        return False  # an id without a start time: this pid's process is taken as the owner
    now = start_ticks(pid)
    return now is not None and now != int(recorded)
