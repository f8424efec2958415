"""Work dirs: one private directory per run, named after the process that owns it.

A run's directory is ``ffmpeg-tasks-<task>-<host>-<pid>-<random>`` under the manager's
``work_dir`` (default: the temp dir).  The run removes it when it ends; a process
killed with ``kill -9`` cannot, so :func:`sweep_work_dirs` (run by every manager on
start and then every ``SWEEP_EVERY`` seconds) removes directories whose owner on
this host is gone.  The owner is read from the name, which only the host writes,
never from a file inside (ffmpeg writes there).  A live run's directory is never
removed: same host, pid alive and started before the directory was made.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
from pathlib import Path

from .errors import TaskFailure

__all__ = ["SWEEP_EVERY", "make_work_dir", "sweep_work_dirs", "work_dir_path"]

log = logging.getLogger("ffmpeg_tasks")

#: Seconds between two sweeps of a running manager.
SWEEP_EVERY = 600.0

_NAME = re.compile(
    r"ffmpeg-tasks-[A-Za-z0-9_]{1,12}-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}"
)


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def work_dir_path(root: Path | None, task_id: str) -> Path:
    """Where one run's private directory goes: a new name under ``root`` (default: temp)."""
    base = root if root is not None else Path(tempfile.gettempdir())
    safe_id = re.sub(r"[^A-Za-z0-9_]", "_", task_id[:12]) or "_"
    return base / f"ffmpeg-tasks-{safe_id}-{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"


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


def sweep_work_dirs(root: Path | None = None) -> list[str]:
    """Remove work dirs under ``root`` whose owning process on this host is gone (blocking).

    Returns the names removed.  Directories of other hosts (a shared ``work_dir``),
    of this process and of live processes are kept, as is anything not named
    like a work dir.
    """
    base = root if root is not None else Path(tempfile.gettempdir())
    host = _host_tag()
    removed: list[str] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        match = _NAME.fullmatch(entry.name)
        if match is None or match["host"] != host:
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            made = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if not _owner_gone(int(match["pid"]), made):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)  # never follows symlinks
        if not os.path.lexists(entry.path):
            removed.append(entry.name)
    if removed:
        log.info("removed %d work dir(s) left by stopped processes", len(removed))
    return removed


def _owner_gone(pid: int, dir_mtime: float) -> bool:
    """True when process ``pid`` of this host no longer exists, or is a newer process."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, another user's
    started = _process_start(pid)
    # The pid was reused when its process started after the directory last changed.
    return started is not None and started > dir_mtime + 1.0


def _process_start(pid: int) -> float | None:
    """Unix time process ``pid`` started (Linux ``/proc``), or None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        ticks = int(stat.rpartition(")")[2].split()[19])
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
