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


def interrupted(task: Task) -> Task:
    """A task whose process died, FAILED (``on_interrupted="fail"``)."""
    return finish(
        task,
        TaskStatus.FAILED,
        error=f"the process running this task ({task.worker}) stopped",
        error_code="interrupted",
    )


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
    """``host:pid:random``: names the process that runs a task."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def worker_is_local(worker: str) -> bool:
    """True when ``worker`` names a process on this host."""
    return worker.partition(":")[0] == socket.gethostname()


def worker_is_dead(worker: str) -> bool:
    """True when ``worker`` names a process on this host that no longer exists."""
    host, _, rest = worker.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # this process: its tasks are either running here or really stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A process that exited and waits for its parent to reap it (Linux ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state in (b"Z", b"X")
