"""A scripted executor for tests of code that runs ffmpeg: no ffmpeg needed.

>>> fake = FakeExecutor(outputs={"out.mp4": fake_media("out.mp4")})
>>> result = await fake.run(["-i", "in.mp4", "out.mp4"], workdir)
>>> fake.calls[0].args
('-i', 'in.mp4', 'out.mp4')

Or pass a callable ``script(args, cwd) -> ExecResult`` (sync or async) to decide per call.
``probes={"out.mp4": {...}}`` is the JSON :meth:`FakeExecutor.probe` prints for a file
(what ``ffprobe -show_format -show_streams -of json`` would); other files fail to probe.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .._lifecycle import AsyncResource
from ..errors import ExecutionTimeoutError, InvalidSpecError
from ..filenames import extension
from .base import ExecResult, ProgressCallback

__all__ = ["FakeCall", "FakeExecutor", "Script", "fake_media"]

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
        probes: Mapping[str, Mapping[str, Any]] | None = None,
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
        self.probes = {name: dict(data) for name, data in (probes or {}).items()}
        self.calls: list[FakeCall] = []
        self.ffmpeg_path = "fake"
        self.probe_calls: list[FakeCall] = []
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

    async def probe(
        self,
        args: Sequence[str],
        cwd: Path,
        *,
        program: str,
        timeout: float | None = None,
        max_stdout: int = 1024 * 1024,
    ) -> ExecResult:
        """Record the call; print ``probes[name]`` for the file named last (``file:NAME``)."""
        self.probe_calls.append(FakeCall(tuple(args), Path(cwd), timeout, None))
        name = args[-1].removeprefix("file:") if args else ""
        if name not in self.probes:
            return ExecResult(1, f"{name}: no fake probe result", 0.0)
        return ExecResult(0, "", 0.0, stdout=json.dumps(self.probes[name]).encode()[:max_stdout])

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


#: First bytes of each output kind, enough for the manager's output check.
_HEADS = {
    **dict.fromkeys(
        ("mp4", "m4v", "m4a", "mov", "3gp", "m4s"), b"\x00\x00\x00\x10ftypisom\x00\x00\x02\x00"
    ),
    **dict.fromkeys(("mkv", "mka", "webm"), b"\x1a\x45\xdf\xa3"),
    **dict.fromkeys(("ogg", "oga", "ogv", "opus"), b"OggS"),
    **dict.fromkeys(("jpg", "jpeg"), b"\xff\xd8\xff\xe0"),
    **dict.fromkeys(("png", "apng"), b"\x89PNG\r\n\x1a\n"),
    "ts": (b"\x47" + b"\xff" * 187) * 2,
    "mp3": b"ID3\x04\x00\x00\x00\x00\x00\x00",
    "aac": b"\xff\xf1",
    "flac": b"fLaC",
    "wav": b"RIFF\x00\x00\x00\x00WAVE",
    "avi": b"RIFF\x00\x00\x00\x00AVI ",
    "webp": b"RIFF\x00\x00\x00\x00WEBP",
    "gif": b"GIF89a",
    "flv": b"FLV\x01",
    "m3u8": b"#EXTM3U\n",
    "vtt": b"WEBVTT\n\n",
    "srt": b"1\n00:00:00,000 --> 00:00:01,000\n",
}


def fake_media(name: str, body: bytes = b"fake media") -> bytes:
    """``body`` after the first bytes of the kind ``name`` names (an ``ftyp`` box for ``.mp4`` …).

    The manager stores only outputs whose bytes are what their names say, so a fake
    ``out.mp4`` must start like an MP4:
    ``FakeExecutor(outputs={"out.mp4": fake_media("out.mp4")})``.
    """
    return _HEADS.get(extension(name), b"") + body
