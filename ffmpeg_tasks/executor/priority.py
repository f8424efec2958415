"""ffmpeg's CPU share: below the host's, also on kernels that schedule by session (autogroup)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os

__all__ = ["SessionShare", "autogroups_enabled", "set_autogroup_nice", "stat_fields"]


class SessionShare:
    """Lowers the CPU share of a run's session on kernels with autogroup scheduling.

    There every session gets an equal share of the CPUs whatever its processes' nice
    values, and each run is a session of its own (bubblewrap's ``--new-session`` makes
    another inside the sandbox), so ``nice`` alone would not put ffmpeg behind the
    host.  ``/proc/PID/autogroup`` takes a session's nice value.  The sandbox's process
    is named by bwrap's ``--info-fd``; its session is lowered once it has called
    ``setsid``.  Done from a timer that starts at 0.1 s: runs shorter than that never
    pay for it.
    """

    def __init__(self, nice: int, *, with_info: bool) -> None:
        self.nice = nice
        self._info: tuple[int, int] | None = os.pipe() if with_info else None
        self._pid: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._delay = 0.1

    @property
    def info_write(self) -> int | None:
        return self._info[1] if self._info else None

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self._info[1],) if self._info else ()

    def started(self, pid: int) -> None:
        if self._info:  # the child has its copy; reads now end at bwrap's write
            os.close(self._info[1])
            self._info = (self._info[0], -1)
            os.set_blocking(self._info[0], False)
        else:  # unsandboxed: ffmpeg itself leads the run's session
            self._pid = pid
        if self.nice:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._poll)

    def _poll(self) -> None:
        self._timer = None
        if self._lowered():
            self.close()
            return
        self._delay *= 2
        if self._delay < 2.0:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._poll)

    def _lowered(self) -> bool:
        """Lower the session if it exists by now; True when there is nothing left to do."""
        if self._pid is None:
            assert self._info is not None
            try:
                self._pid = int(json.loads(os.read(self._info[0], 4096))["child-pid"])
            except BlockingIOError:
                return False  # not written yet
            except (OSError, ValueError, KeyError, TypeError):
                return True  # an old bwrap: nothing to go by
        session = _session_of(self._pid)
        if session == self._pid:
            set_autogroup_nice(self._pid, self.nice)
        return session is None or session == self._pid

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._info is not None:
            for fd in self._info:
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._info = None


def stat_fields(pid: int | str) -> list[bytes]:
    """``/proc/PID/stat`` after the command name: state, ppid, pgrp, session, …; [] if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return []
    return stat[stat.rfind(b")") + 2 :].split()


def _session_of(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[3]) if len(fields) > 3 else None


def set_autogroup_nice(pid: int, nice: int) -> None:
    try:
        fd = os.open(f"/proc/{pid}/autogroup", os.O_WRONLY)
    except OSError:
        return  # the process is gone
    try:
        os.write(fd, str(nice).encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def autogroups_enabled() -> bool:
    """Whether the kernel schedules by autogroup (sessions share CPUs equally)."""
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled", "rb") as f:
            return f.read().strip() == b"1"
    except OSError:
        return False
