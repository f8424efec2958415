"""Run ffmpeg as a local subprocess: bounded, limited, sandboxed and always reaped.

>>> async with LocalExecutor(timeout=600) as ex:
...     result = await ex.run(["-i", "in.mp4", "out.webm"], workdir)

Each run gets a minimal environment, its own process group (and, with bubblewrap,
its own namespaces), resource limits, and at most ``max_concurrency`` runs at once.
A run that is cancelled, times out or stalls is SIGKILLed at once: it returns no
result, so its output is discarded and ffmpeg need not finish writing it.
``aclose()`` stops runs it finds gracefully (SIGTERM, ``grace_period`` seconds,
then SIGKILL): their callers get the result.  A stopped process is always reaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from .._lifecycle import AsyncResource, shielded
from ..errors import (
    ConfigurationError,
    ExecutionStalledError,
    ExecutionTimeoutError,
    SandboxUnavailableError,
)
from ..ffmpeg import find_ffmpeg, probe_version, spawn
from ._pipes import OutputPipes
from .base import PROGRESS_FLAGS, ExecResult, ProgressCallback
from .output import LineSplitter, ProgressParser, StderrTail, progress_marker
from .priority import SessionShare, autogroups_enabled, stat_fields
from .sandbox import (
    BWRAP_HINT,
    ResourceLimits,
    bwrap_argv,
    bwrap_missing_reason,
    bwrap_self_test,
    discover_bwrap,
    find_nice,
    find_prlimit,
    find_setpriv,
    minimal_env,
    pdeathsig_prefix,
)

__all__ = ["LocalExecutor", "SandboxMode"]

log = logging.getLogger(__name__)

SandboxMode = Literal["auto", "require", "off"]
_MAX_STDERR_LINE = 4096
_SANDBOX_EXIT = 2.0  # seconds for bwrap to exit once the processes inside are killed
_DRAIN_AFTER_EXIT = 5.0  # seconds to wait for pipes to close once the process is gone


class _Stop(Exception):
    """Internal: the watchdog decided to stop the run."""

    def __init__(self, error: ExecutionTimeoutError | ExecutionStalledError) -> None:
        super().__init__(str(error))
        self.error = error


@attrs.frozen
class _Job:
    """One process to run: the program, its arguments and how to watch it."""

    program: str
    args: Sequence[str]
    timeout: float | None
    stall_timeout: float | None
    progress: ProgressCallback | None
    on_stderr: Callable[[str], None] | None
    stdout: Callable[[bytes], None] | None = None
    name: str = "ffmpeg"  # for error messages


class _Activity:
    """When the run last showed life, for stall detection."""

    def __init__(self, now: float) -> None:
        self.last = now
        self.marker: tuple[str | None, ...] | None = None


class LocalExecutor(AsyncResource):
    """Runs the ffmpeg binary found by :func:`~ffmpeg_tasks.ffmpeg.find_ffmpeg`.

    ``timeout`` is the default per-run limit when :meth:`run` gets none.
    ``sandbox="auto"`` uses bubblewrap when its self-test passes, ``"require"`` raises
    :class:`SandboxUnavailableError` when it cannot, ``"off"`` never uses it.
    ``env`` adds variables (e.g. ``FONTCONFIG_FILE``) to the minimal environment.
    ``nice`` (0 to 19, default 10) runs ffmpeg that many steps below the host's CPU
    priority (coreutils ``nice``), so the host's event loop and uploads come first
    when the CPUs are busy; an idle machine still gives ffmpeg all of them.  ``0``
    runs it at the host's priority.  ``grace_period`` is how long ffmpeg may finish
    its files when :meth:`aclose` stops a run (a cancelled or timed-out run gets none).
    """

    def __init__(
        self,
        ffmpeg_path: str | os.PathLike[str] | None = None,
        *,
        max_concurrency: int = 2,
        timeout: float | None = None,
        grace_period: float = 5.0,
        stderr_tail_bytes: int = 64 * 1024,
        limits: ResourceLimits | None = ResourceLimits(),  # noqa: B008 - frozen value
        sandbox: SandboxMode = "auto",
        env: Mapping[str, str] | None = None,
        bwrap_path: str | os.PathLike[str] | None = None,
        nice: int = 10,
    ) -> None:
        if max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        if timeout is not None and timeout <= 0:
            raise ConfigurationError(f"timeout must be > 0 seconds, got {timeout!r}")
        if grace_period < 0:
            raise ConfigurationError(f"grace_period must be >= 0 seconds, got {grace_period!r}")
        if stderr_tail_bytes < 0:
            raise ConfigurationError(f"stderr_tail_bytes must be >= 0, got {stderr_tail_bytes!r}")
        if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= 19:
            raise ConfigurationError(f"nice must be an integer from 0 to 19, got {nice!r}")
        if sandbox not in ("auto", "require", "off"):
            raise ConfigurationError(f"sandbox must be 'auto', 'require' or 'off', got {sandbox!r}")
        for key, value in (env or {}).items():
            if not key or "=" in key or "\0" in key or "\0" in value:
                raise ConfigurationError(f"invalid environment variable {key!r} in env=")
        binary = find_ffmpeg(ffmpeg_path)
        self.ffmpeg_path = binary.path
        self.ffmpeg_source = binary.source
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.grace_period = grace_period
        self.stderr_tail_bytes = stderr_tail_bytes
        self.limits = limits
        self.sandbox_mode: SandboxMode = sandbox
        self.env = dict(env or {})
        self._prlimit = find_prlimit() if limits is not None else None
        self._setpriv = find_setpriv()
        self.nice = nice
        nice_path = find_nice() if nice else None
        self._nice_prefix = [nice_path, "-n", str(nice)] if nice_path else []
        self._autogroup_nice = nice if nice and autogroups_enabled() else 0
        self._death_prefix: list[str] | None = None  # probed on first run
        found = discover_bwrap(bwrap_path) if sandbox != "off" else None
        self._bwrap = found.path if found else None
        self.bwrap_source = found.source if found else None
        self._sandbox_checked = sandbox == "off" or self._bwrap is None
        self._sandbox_warned = False
        self._sandbox_reason: str | None
        if sandbox == "off":
            self._sandbox_reason = "disabled (sandbox='off')"
        elif self._bwrap is None:
            self._sandbox_reason = bwrap_missing_reason(bwrap_path)
            if sandbox == "require":
                raise SandboxUnavailableError(f"sandbox='require' but {self._sandbox_reason}")
        else:
            self._sandbox_reason = None
        self._sandbox_lock = asyncio.Lock()
        self._death_lock = asyncio.Lock()
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._procs: set[asyncio.subprocess.Process] = set()
        self._probe_procs: set[asyncio.subprocess.Process] = set()  # not in running/pids
        self._version: str | None = None
        self._closed = False
        self._active = 0  # runs past the semaphore, spawning or running
        self._idle = asyncio.Event()
        self._idle.set()

    # -- public ----------------------------------------------------------------

    @property
    def running(self) -> int:
        """How many ffmpeg processes this executor has running now (probes not counted)."""
        return len(self._procs)

    @property
    def pids(self) -> frozenset[int]:
        """Process ids (= process group ids) of the running processes."""
        return frozenset(p.pid for p in self._procs)

    async def sandboxed(self) -> bool:
        """Whether runs use bubblewrap (runs the self-test once, then cached)."""
        if not self._sandbox_checked:
            async with self._sandbox_lock:
                if not self._sandbox_checked:
                    assert self._bwrap is not None
                    self._sandbox_reason = await bwrap_self_test(
                        self._bwrap, self.ffmpeg_path, self._limit_prefix()
                    )
                    self._sandbox_checked = True
        if self._sandbox_reason is not None and self.sandbox_mode == "auto":
            self._warn_unsandboxed()
        return self._sandbox_reason is None

    def _warn_unsandboxed(self) -> None:
        """Say once per executor that ``auto`` fell back to running ffmpeg unconfined."""
        if self._sandbox_warned:
            return
        self._sandbox_warned = True
        fix = "" if BWRAP_HINT in (self._sandbox_reason or "") else f"; to fix: {BWRAP_HINT}"
        log.warning(
            "ffmpeg runs WITHOUT a sandbox (sandbox='auto'): %s%s; sandbox='off' silences this",
            self._sandbox_reason,
            fix,
        )

    async def warm_up(self) -> None:
        """Do the first run's one-time checks now: sandbox self-test, else pdeathsig probe.

        The manager calls this in the background when a task starts downloading, so
        the checks (~0.2 s) overlap the download instead of delaying ffmpeg.
        """
        if not await self.sandboxed():
            await self._probe_pdeathsig()

    async def _probe_pdeathsig(self) -> None:
        if self._death_prefix is None:
            async with self._death_lock:
                if self._death_prefix is None:
                    self._death_prefix = await pdeathsig_prefix(self._setpriv)

    async def run(
        self,
        args: Sequence[str],
        cwd: Path,
        *,
        timeout: float | None = None,
        stall_timeout: float | None = None,
        progress: ProgressCallback | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ) -> ExecResult:
        """Run ``ffmpeg *args`` in ``cwd``; see :class:`~ffmpeg_tasks.executor.base.Executor`."""
        timeout = self.timeout if timeout is None else timeout
        if stall_timeout is not None and stall_timeout <= 0:
            raise ConfigurationError(f"stall_timeout must be > 0 seconds, got {stall_timeout!r}")
        if progress is not None and "-progress" not in args:
            args = [*PROGRESS_FLAGS, *args]
        workdir, env, sandboxed = await self._prepare(args, cwd, timeout)
        async with self._semaphore:
            with self._activity():
                return await self._run(
                    _Job(self.ffmpeg_path, args, timeout, stall_timeout, progress, on_stderr),
                    workdir,
                    env,
                    sandboxed,
                )

    async def probe(
        self,
        args: Sequence[str],
        cwd: Path,
        *,
        program: str,
        timeout: float | None = 30.0,
        max_stdout: int = 1024 * 1024,
    ) -> ExecResult:
        """Run ``program *args`` (ffprobe) in ``cwd`` confined exactly like :meth:`run`.

        The same bubblewrap sandbox (only ``cwd`` visible, no network), rlimits, minimal
        environment and ``nice``; stdout comes back in ``ExecResult.stdout`` (cut at
        ``max_stdout`` bytes).  A probe is short and does not wait for a
        ``max_concurrency`` slot, so it is never queued behind other tasks' ffmpeg runs.
        """
        workdir, env, sandboxed = await self._prepare(args, cwd, timeout)
        out = bytearray()

        def collect(chunk: bytes) -> None:
            if len(out) < max_stdout:
                out.extend(chunk[: max_stdout - len(out)])

        with self._activity():
            result = await self._run(
                _Job(program, args, timeout, None, None, None, stdout=collect, name="ffprobe"),
                workdir,
                env,
                sandboxed,
            )
        return attrs.evolve(result, stdout=bytes(out))

    async def _prepare(
        self, args: Sequence[str], cwd: Path, timeout: float | None
    ) -> tuple[str, dict[str, str], bool]:
        """Checks shared by every run: ``(work dir, environment, sandboxed)``."""
        if self._closed:
            raise ConfigurationError("LocalExecutor is closed")
        if isinstance(args, str | bytes):
            raise TypeError("args must be a sequence of arguments, not a string")
        if timeout is not None and timeout <= 0:
            raise ConfigurationError(f"timeout must be > 0 seconds, got {timeout!r}")
        workdir = await asyncio.to_thread(_workdir, cwd)
        sandboxed = await self.sandboxed()
        if not sandboxed and self.sandbox_mode == "require":
            raise SandboxUnavailableError(f"sandbox='require' but {self._sandbox_reason}")
        env = minimal_env(workdir, self.env)
        if not sandboxed:  # bwrap's --die-with-parent does this in the sandbox
            await self._probe_pdeathsig()
        return workdir, env, sandboxed

    @contextlib.contextmanager
    def _activity(self) -> Iterator[None]:
        """Count a run as active, so :meth:`aclose` waits for it."""
        if self._closed:
            raise ConfigurationError("LocalExecutor is closed")
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    async def describe(self) -> Mapping[str, Any]:
        """Binary, version, sandbox and limits in force; errors go into ``"error"``."""
        info: dict[str, Any] = {
            "ffmpeg_path": self.ffmpeg_path,
            "ffmpeg_source": self.ffmpeg_source,
        }
        try:
            if self._version is None:
                version = await probe_version(self.ffmpeg_path)
                if not version.startswith("ffmpeg version"):
                    raise ConfigurationError(
                        f"{self.ffmpeg_path!r} -version printed {version[:200]!r}"
                    )
                self._version = version
            info["ffmpeg_version"] = self._version
        except (OSError, TimeoutError, ConfigurationError) as exc:
            info["ffmpeg_version"] = None
            info["error"] = f"cannot run {self.ffmpeg_path!r}: {exc}"
        try:
            sandboxed = await self.sandboxed()
        except OSError as exc:  # pragma: no cover - self-test already maps start errors
            sandboxed, self._sandbox_reason = False, str(exc)
        info["sandbox"] = "bwrap" if sandboxed else "none"
        info["bwrap_path"] = self._bwrap
        info["bwrap_source"] = self.bwrap_source
        info["sandbox_mode"] = self.sandbox_mode
        info["sandbox_reason"] = self._sandbox_reason
        info["rlimits"] = self.limits.as_dict() if self.limits is not None else {}
        info["rlimits_method"] = (
            "none" if self.limits is None else "prlimit" if self._prlimit else "setrlimit"
        )
        info["nice"] = self.nice if self._nice_prefix else 0
        info["max_concurrency"] = self.max_concurrency
        info["running"] = self.running
        return info

    async def aclose(self) -> None:
        """Stop every process still running (SIGTERM, grace period, SIGKILL) and reap it.

        Their runs return what the stopped ffmpeg wrote.  Runs being started stop
        themselves once their process exists; new runs raise
        :class:`ConfigurationError`.  Returns when no run is left.
        """
        self._closed = True
        procs = [*self._procs, *self._probe_procs]
        if procs:
            stops = (self._stop(p, self.grace_period) for p in procs)
            await asyncio.gather(*stops, return_exceptions=True)
        await self._idle.wait()

    # -- internals -------------------------------------------------------------

    def _limit_prefix(self) -> list[str]:
        if self.limits is not None and self._prlimit is not None:
            return self.limits.prlimit_args(self._prlimit)
        return []

    async def _run(
        self, job: _Job, workdir: str, env: dict[str, str], sandboxed: bool
    ) -> ExecResult:
        loop = asyncio.get_running_loop()
        progress = job.progress
        preexec = None
        if self.limits is not None and self._prlimit is None:
            preexec = self.limits.preexec()
        # In the sandbox, bwrap's own --die-with-parent ties it to this process (one
        # exec fewer per run); outside it, setpriv does.
        death = [] if sandboxed else self._death_prefix or []
        argv = [*self._nice_prefix, *death, *self._limit_prefix()]
        share = SessionShare(self._autogroup_nice, with_info=sandboxed and self._autogroup_nice > 0)
        activity = _Activity(loop.time())
        tail = StderrTail(self.stderr_tail_bytes)
        handlers = {2: _stderr_reader(tail, activity, job.on_stderr, watch=progress is None)}
        if progress is not None:
            handlers[1] = _progress_reader(activity, progress)
        elif job.stdout is not None:
            handlers[1] = job.stdout
        pipes = OutputPipes(handlers)
        try:
            if sandboxed:
                assert self._bwrap is not None
                argv += bwrap_argv(self._bwrap, job.program, env, workdir, info_fd=share.info_write)
            argv += [job.program, *job.args]
            started = activity.last = loop.time()
            clock = time.monotonic()
            proc = await spawn(
                *argv,
                protocol=pipes,
                cwd=workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if 1 in handlers else asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                preexec_fn=preexec,
                pass_fds=share.pass_fds,
            )
        except BaseException:
            share.close()
            pipes.close()  # a process spawn() started, then reaped: its transport closes
            raise
        procs = self._probe_procs if job.stdout is not None else self._procs  # probe()s
        procs.add(proc)
        try:
            share.started(proc.pid)
            if self._closed:  # aclose() ran while the process was starting
                await shielded(self._stop(proc, self.grace_period))
            try:
                await self._watch(proc, started, job, activity)
            except _Stop as stop:  # no result: the output is discarded, no graceful stop
                await shielded(self._stop(proc, None))
                stop.error.returncode = _returncode(proc, sandboxed)
                raise stop.error from None
            except BaseException:  # cancelled: the same
                await shielded(self._stop(proc, None))
                raise
            self._kill_group(proc.pid)  # stragglers that left the leader behind
            await self._finish_reading(pipes)
        finally:
            share.close()
            pipes.close()
            procs.discard(proc)
        return ExecResult(_returncode(proc, sandboxed), tail.text(), time.monotonic() - clock)

    async def _watch(
        self,
        proc: asyncio.subprocess.Process,
        started: float,
        job: _Job,
        activity: _Activity,
    ) -> None:
        """Wait for the process; raise :class:`_Stop` on timeout or stall."""
        loop = asyncio.get_running_loop()
        timeout, stall_timeout, has_progress = job.timeout, job.stall_timeout, bool(job.progress)
        program = job.name
        waiter = asyncio.ensure_future(proc.wait())
        try:
            while True:
                now = loop.time()
                delays: list[float] = []
                if timeout is not None:
                    left = started + timeout - now
                    if left <= 0:
                        raise _Stop(
                            ExecutionTimeoutError(
                                f"{program} ran longer than its timeout of {timeout:g}s "
                                "and was stopped"
                            )
                        )
                    delays.append(left)
                if stall_timeout is not None:
                    left = activity.last + stall_timeout - now
                    if left <= 0:
                        what = "progress" if has_progress else "output on stderr"
                        raise _Stop(
                            ExecutionStalledError(
                                f"{program} made no {what} for {stall_timeout:g}s "
                                "(stall_timeout) and was stopped"
                            )
                        )
                    delays.append(left)
                done, _ = await asyncio.wait({waiter}, timeout=min(delays) if delays else None)
                if done:
                    return
        finally:
            if not waiter.done():
                waiter.cancel()

    async def _finish_reading(self, pipes: OutputPipes) -> None:
        """Let the pipes reach EOF; give up if a leaked descriptor keeps one open."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(pipes.closed), _DRAIN_AFTER_EXIT)

    async def _stop(self, proc: asyncio.subprocess.Process, grace: float | None) -> None:
        """SIGTERM and ``grace`` seconds to exit (None: none), SIGKILL; reap; sweep the group."""
        if proc.returncode is None and grace is not None:
            await self._signal(proc, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), grace)
        if proc.returncode is None:
            await self._signal(proc, signal.SIGKILL)
            await proc.wait()
        self._kill_group(proc.pid)

    async def _signal(self, proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
        """Signal the process group, or the processes inside the sandbox when there are any.

        bwrap runs ffmpeg in its own session and PID namespace.  Signalling the processes
        inside first lets ffmpeg exit cleanly and lets bwrap reap them and exit itself, so
        nothing is left for the system init to reap; bwrap's group is killed only if it
        outlives its children.
        """
        children = await asyncio.to_thread(_descendants, proc.pid)
        for child in children:
            with contextlib.suppress(OSError):
                os.kill(child, sig)
        if children and sig == signal.SIGKILL:
            try:
                await asyncio.wait_for(proc.wait(), _SANDBOX_EXIT)
            except TimeoutError:
                pass
            else:
                return
        if not children or sig == signal.SIGKILL:
            self._kill_group(proc.pid, sig)

    @staticmethod
    def _kill_group(pgid: int, sig: signal.Signals = signal.SIGKILL) -> None:
        with contextlib.suppress(OSError):
            os.killpg(pgid, sig)


def _stderr_reader(
    tail: StderrTail,
    activity: _Activity,
    on_stderr: Callable[[str], None] | None,
    *,
    watch: bool,
) -> Callable[[bytes], None]:
    """Feed stderr into ``tail`` and ``on_stderr`` line by line (``b""`` flushes)."""
    loop = asyncio.get_running_loop()
    lines = LineSplitter(_MAX_STDERR_LINE)

    def feed(chunk: bytes) -> None:
        if chunk and watch:  # without progress, stall watches stderr
            activity.last = loop.time()
        for raw, overwritable in lines.feed(chunk) if chunk else lines.flush():
            line = raw.decode("utf-8", "replace")
            tail.add(line, overwritable=overwritable)
            if on_stderr is not None and line:
                _call(on_stderr, line)

    return feed


def _progress_reader(activity: _Activity, callback: ProgressCallback) -> Callable[[bytes], None]:
    """Parse ``-progress`` blocks, mark activity when they move, pass each to ``callback``."""
    loop = asyncio.get_running_loop()
    parser = ProgressParser()

    def feed(chunk: bytes) -> None:
        for block in parser.feed(chunk) if chunk else parser.flush():
            marker = progress_marker(block)
            if marker != activity.marker:
                activity.marker = marker
                activity.last = loop.time()
            _call(callback, block)

    return feed


def _returncode(proc: asyncio.subprocess.Process, sandboxed: bool) -> int:
    """The exit status, with bwrap's ``128 + signal`` turned back into ``-signal``."""
    code = proc.returncode
    assert code is not None
    if sandboxed and 128 < code <= 128 + 64:
        return 128 - code
    return code


def _workdir(cwd: Path) -> str:
    path = Path(cwd).resolve()
    if not path.is_dir():
        raise ConfigurationError(f"work dir {str(cwd)!r} does not exist")
    return str(path)


def _call(callback: Callable[[Any], None], value: Any) -> None:
    try:
        callback(value)
    except Exception:
        log.exception("ffmpeg output callback %r failed", callback)


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, read from ``/proc`` (empty where there is none)."""
    parents: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        fields = stat_fields(entry)
        if len(fields) > 1:
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found
