"""A scripted executor for tests of code that runs ffmpeg: no ffmpeg needed.

>>> fake = FakeExecutor(outputs={"out.mp4": b"not really a video"})
>>> result = await fake.run(["-i", "in.mp4", "out.mp4"], workdir)
>>> fake.calls[0].args
('-i', 'in.mp4', 'out.mp4')

Or pass a callable ``script(args, cwd) -> ExecResult`` (sync or async) to decide per call.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .._lifecycle import AsyncResource
from ..errors import ExecutionTimeoutError, InvalidSpecError
from .base import ExecResult, ProgressCallback

__all__ = ["FakeCall", "FakeExecutor", "Script"]

Script = Callable[[tuple[str, ...], Path], ExecResult | Awaitable[ExecResult]]


@attrs.frozen
class FakeCall:
    """One recorded :meth:`FakeExecutor.run` call."""

    args: tuple[str, ...]
    cwd: Path
    timeout: float | None
    stall_timeout: float | None


class FakeExecutor(AsyncResource):
    """Pretends to run ffmpeg: sleeps ``delay``, writes ``outputs`` to ``cwd``, calls ``progress``.

    A ``delay`` longer than the run's ``timeout`` raises
    :class:`~ffmpeg_tasks.errors.ExecutionTimeoutError`, as the real executor would.
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        outputs: Mapping[str, bytes] | None = None,
        returncode: int = 0,
        stderr: str = "",
        progress: Sequence[Mapping[str, str]] = (),
        delay: float = 0.0,
        max_concurrency: int = 2,
        ffmpeg_version: str = "ffmpeg version fake",
    ) -> None:
        for name in outputs or {}:
            path = Path(name)
            if path.is_absolute() or ".." in path.parts:
                raise InvalidSpecError(
                    f"fake output {name!r} must be a relative path", field="outputs"
                )
        self.script = script
        self.outputs = dict(outputs or {})
        self.returncode = returncode
        self.stderr = stderr
        self.progress = [dict(block) for block in progress]
        self.delay = delay
        self.max_concurrency = max_concurrency
        self.ffmpeg_version = ffmpeg_version
        self.calls: list[FakeCall] = []
        self.running = 0
        self.max_running = 0
        self._semaphore = asyncio.Semaphore(max_concurrency)

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
        """Record the call, then play the script."""
        call = FakeCall(tuple(args), Path(cwd), timeout, stall_timeout)
        self.calls.append(call)
        async with self._semaphore:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            try:
                return await self._play(call, progress, on_stderr)
            finally:
                self.running -= 1

    async def _play(
        self,
        call: FakeCall,
        progress: ProgressCallback | None,
        on_stderr: Callable[[str], None] | None,
    ) -> ExecResult:
        started = time.monotonic()
        if call.timeout is not None and self.delay > call.timeout:
            await asyncio.sleep(call.timeout)
            raise ExecutionTimeoutError(
                f"ffmpeg ran longer than its timeout of {call.timeout:g}s and was stopped"
            )
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.script is not None:
            result = self.script(call.args, call.cwd)
            if inspect.isawaitable(result):
                result = await result
            return result
        if self.outputs:
            await asyncio.to_thread(_write_outputs, call.cwd, self.outputs)
        for block in self.progress:
            if progress is not None:
                progress(dict(block))
        if on_stderr is not None:
            for line in self.stderr.splitlines():
                on_stderr(line)
        return ExecResult(self.returncode, self.stderr, time.monotonic() - started)

    async def describe(self) -> Mapping[str, Any]:
        return {
            "ffmpeg_path": "fake",
            "ffmpeg_source": "fake",
            "ffmpeg_version": self.ffmpeg_version,
            "sandbox": "none",
            "sandbox_reason": "FakeExecutor runs nothing",
            "rlimits": {},
            "max_concurrency": self.max_concurrency,
            "running": self.running,
        }


def _write_outputs(cwd: Path, outputs: Mapping[str, bytes]) -> None:
    for name, data in outputs.items():
        path = cwd / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
