"""Work dirs: one private directory per run, locked by the process that owns it.

A run's directory is ``ffmpeg-tasks-<task>-<host>-<pid>-<random>`` under the manager's
``work_dir`` (default: the temp dir), and the run holds an exclusive ``flock`` on it
from the moment it is made until it is removed.  A process killed with ``kill -9``
cannot remove it, but the kernel drops its lock; :func:`sweep_work_dirs` (run by every
manager on start and every ``SWEEP_EVERY`` seconds) removes work dirs older than a
minute whose lock it can take.  So a live run's directory is never removed — whatever
the host names, pids or containers sharing the directory — and ffmpeg, which only
writes inside, cannot forge the name or the lock.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from pathlib import Path

from .errors import TaskFailure

__all__ = ["SWEEP_EVERY", "make_work_dir", "sweep_work_dirs", "work_dir_path"]

log = logging.getLogger("ffmpeg_tasks")

#: Seconds between two sweeps of a running manager.
SWEEP_EVERY = 600.0

_NAME = re.compile(r"ffmpeg-tasks-[A-Za-z0-9_]{1,12}-[0-9a-f]{6}-\d+-[0-9a-f]{8}")


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def work_dir_path(root: Path | None, task_id: str) -> Path:
    """Where one run's private directory goes: a new name under ``root`` (default: temp)."""
    base = root if root is not None else Path(tempfile.gettempdir())
    safe_id = re.sub(r"[^A-Za-z0-9_]", "_", task_id[:12]) or "_"
    return base / f"ffmpeg-tasks-{safe_id}-{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"


def make_work_dir(path: Path) -> int:
    """Create ``path`` for this run only and lock it (blocking); return the lock's fd,
    to close after the directory is removed.  Errors name no host path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        raise TaskFailure(
            f"cannot create the task's work dir: {exc.strerror or type(exc).__name__}",
            code="disk_full" if full else "failed",
        ) from None
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new: nobody else can hold it
    return fd


def sweep_work_dirs(root: Path | None = None, *, min_age: float = 60.0) -> list[str]:
    """Remove work dirs under ``root`` that no live process holds (blocking).

    Returns the names removed.  Anything not named like a work dir, younger than
    ``min_age`` seconds or locked by its run is kept.
    """
    base = root if root is not None else Path(tempfile.gettempdir())
    removed: list[str] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if _NAME.fullmatch(entry.name) is None:
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if now - entry.stat(follow_symlinks=False).st_mtime < min_age:
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live run holds it
            shutil.rmtree(entry.path, ignore_errors=True)  # never follows symlinks
        finally:
            os.close(fd)
        if not os.path.lexists(entry.path):
            removed.append(entry.name)
    if removed:
        log.info("removed %d work dir(s) left by stopped processes", len(removed))
    return removed
