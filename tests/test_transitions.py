"""Status changes as pure functions (transitions.py): every rule of the life cycle, no I/O."""

from __future__ import annotations

import os
import socket

import pytest

from ffmpeg_tasks import transitions as t
from ffmpeg_tasks.models import Phase, Task, TaskStatus


def pending() -> Task:
    return Task(id="abc", commands=("-i a.mp4 b.mp4",), input_files={}, output_files=("b.mp4",))


def test_start_counts_runs_and_names_the_worker() -> None:
    task = pending()
    running = t.start(task, "host:1:w")
    assert (running.status, running.phase, running.worker) == (
        TaskStatus.RUNNING,
        Phase.DOWNLOADING,
        "host:1:w",
    )
    assert running.attempts["run"] == 1 and running.started_at is not None
    assert running.version == task.version + 1
    assert t.start(t.release(running), "host:2:w").attempts["run"] == 2


def test_finish_records_the_end() -> None:
    running = t.start(pending(), "w")
    failed = t.finish(running, TaskStatus.FAILED, error="boom", error_code="ffmpeg_failed")
    assert (failed.status, failed.phase, failed.error, failed.error_code) == (
        TaskStatus.FAILED,
        Phase.DONE,
        "boom",
        "ffmpeg_failed",
    )
    assert failed.finished_at is not None
    done = t.finish(running, TaskStatus.COMPLETED, progress=100.0)
    assert done.error is None and done.progress == 100.0


def test_cancel_paths() -> None:
    task = pending()
    assert t.cancel_unstarted(task).error_code == "cancelled"
    asked = t.request_cancel(t.start(task, "w"))
    assert asked.cancel_requested
    assert t.request_cancel(asked) is asked  # asking twice changes nothing
    ended = t.finish(t.start(task, "w"), TaskStatus.COMPLETED)
    assert t.request_cancel(ended) is ended


def test_release_and_recovery() -> None:
    running = t.start(pending(), "w")
    released = t.release(running)
    assert (released.status, released.phase, released.worker) == (
        TaskStatus.PENDING,
        Phase.QUEUED,
        None,
    )
    assert t.requeue(running).phase is Phase.CREATED
    lost = t.interrupted(running)
    assert (lost.status, lost.error_code) == (TaskStatus.FAILED, "interrupted")
    assert t.queue(pending()).phase is Phase.QUEUED


def test_ownership() -> None:
    running = t.start(pending(), "me")
    t.check_owner(running, "me")
    with pytest.raises(t.LostOwnership):
        t.check_owner(running, "someone-else")
    with pytest.raises(t.LostOwnership):
        t.check_owner(t.finish(running, TaskStatus.COMPLETED), "me")


def test_worker_liveness() -> None:
    me = t.new_worker_id()
    assert me.startswith(f"{socket.gethostname()}:{os.getpid()}:")
    assert not t.worker_is_dead(me)  # this process
    assert not t.worker_is_dead("other-host:1:x")  # not ours to judge
    assert t.worker_is_dead(f"{socket.gethostname()}:{2**22 + 12345}:x")  # no such pid
