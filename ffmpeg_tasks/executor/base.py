"""The executor protocol: run one ffmpeg (or ffprobe) argv in a directory."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs

__all__ = ["PROGRESS_FLAGS", "ExecResult", "Executor", "ProgressCallback"]

#: What an executor puts before the args of a run whose progress is followed.
PROGRESS_FLAGS = ("-progress", "pipe:1", "-nostats")

#: Called with one block of ffmpeg's ``-progress`` output (``frame``, ``out_time_us`` …).
ProgressCallback = Callable[[Mapping[str, str]], None]


@attrs.frozen
class ExecResult:
    """How a run ended.  ``stderr_tail`` is the bounded end of its stderr.

    ``stdout`` is what a :meth:`Executor.probe` run printed (bounded); empty for ffmpeg runs.
    """

    returncode: int
    stderr_tail: str
    duration: float
    stdout: bytes = b""


@runtime_checkable
class Executor(Protocol):
    """Runs ffmpeg.

    ``args`` excludes the program name: the executor owns the ffmpeg binary and
    prepends it.  The run happens with ``cwd`` as working directory; stdin is closed.
    When ``progress`` is given, the executor asks ffmpeg for its progress report
    (:data:`PROGRESS_FLAGS`, unless ``args`` already hold ``-progress``) and parses
    stdout into blocks.  On ``timeout`` it raises
    :class:`~ffmpeg_tasks.errors.ExecutionTimeoutError`, on ``stall_timeout`` seconds
    without progress :class:`~ffmpeg_tasks.errors.ExecutionStalledError`; when the
    awaiting task is cancelled it stops the process group (gracefully, then by force)
    before re-raising.  A non-zero exit is *returned*, not raised.  ``on_stderr`` is
    called with each stderr line as it arrives (lines end at ``\n`` or ``\r``;
    very long lines are cut), so callers can read input durations and stream info.
    """

    #: The ffmpeg binary this executor runs (what ``plan()`` shows as the argv's first item).
    ffmpeg_path: str

    async def run(
        self,
        args: Sequence[str],
        cwd: Path,
        *,
        timeout: float | None = None,
        stall_timeout: float | None = None,
        progress: ProgressCallback | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ) -> ExecResult: ...

    async def probe(
        self,
        args: Sequence[str],
        cwd: Path,
        *,
        program: str,
        timeout: float | None = None,
        max_stdout: int = 1024 * 1024,
    ) -> ExecResult:
        """Run ``program *args`` (ffprobe) in ``cwd`` under the same confinement as :meth:`run`.

        Same sandbox (only ``cwd`` visible, no network), resource limits, environment
        and priority; the caller puts the protocol and format whitelists into ``args``.
        Returns its stdout in :attr:`ExecResult.stdout`, cut at ``max_stdout`` bytes;
        raises :class:`~ffmpeg_tasks.errors.ExecutionTimeoutError` on ``timeout`` and
        stops the process when cancelled, as :meth:`run` does.
        """
        ...

    async def describe(self) -> Mapping[str, Any]:
        """Facts for ``health()``: binary path, version, protections in force."""
        ...

    async def aclose(self) -> None: ...
