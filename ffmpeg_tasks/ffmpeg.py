"""Finding the ffmpeg (and optional ffprobe) binaries and asking their version.

Discovery order: explicit path → ``FFMPEG_TASKS_FFMPEG`` (or ``FFMPEG_BINARY``)
environment variable → ``ffmpeg`` on ``PATH`` → the binary bundled by the optional
``imageio-ffmpeg`` package (``pip install ffmpeg-tasks[ffmpeg]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ._lifecycle import run_to_end
from .errors import FFmpegNotFoundError

__all__ = [
    "FFmpegBinary",
    "find_ffmpeg",
    "find_ffprobe",
    "kill_session",
    "probe_version",
    "run_capture",
    "spawn",
]

ENV_VARS = ("FFMPEG_TASKS_FFMPEG", "FFMPEG_BINARY")
FFPROBE_ENV_VARS = ("FFMPEG_TASKS_FFPROBE", "FFPROBE_BINARY")


@attrs.frozen
class FFmpegBinary:
    """A resolved binary and where it was found (``explicit``, ``env``, ``path``, ``imageio``)."""

    path: str
    source: str


def _executable(path: str | os.PathLike[str]) -> str | None:
    p = Path(path)
    if p.is_file() and os.access(p, os.X_OK):
        return str(p.resolve())
    found = shutil.which(str(path))
    return str(Path(found).resolve()) if found else None


def find_ffmpeg(explicit: str | os.PathLike[str] | None = None) -> FFmpegBinary:
    """Resolve the ffmpeg binary or raise :class:`FFmpegNotFoundError`."""
    if explicit is not None:
        found = _executable(explicit)
        if not found:
            raise FFmpegNotFoundError(
                f"ffmpeg binary {str(explicit)!r} does not exist or is not executable"
            )
        return FFmpegBinary(found, "explicit")
    for var in ENV_VARS:
        value = os.environ.get(var)
        if value:
            found = _executable(value)
            if not found:
                raise FFmpegNotFoundError(f"{var}={value!r} does not name an executable ffmpeg")
            return FFmpegBinary(found, "env")
    found = shutil.which("ffmpeg")
    if found:
        return FFmpegBinary(str(Path(found).resolve()), "path")
    try:
        import imageio_ffmpeg
    except ImportError:
        pass
    else:
        try:
            return FFmpegBinary(str(imageio_ffmpeg.get_ffmpeg_exe()), "imageio")
        except RuntimeError:
            pass
    raise FFmpegNotFoundError(
        "ffmpeg not found: pass ffmpeg_path=, set FFMPEG_TASKS_FFMPEG, put ffmpeg on PATH, "
        "or `pip install ffmpeg-tasks[ffmpeg]` for a bundled binary"
    )


def find_ffprobe(
    explicit: str | os.PathLike[str] | None = None, ffmpeg: FFmpegBinary | None = None
) -> str | None:
    """Resolve ffprobe (optional): explicit → env → next to ffmpeg → ``PATH``; else None."""
    if explicit is not None:
        return _executable(explicit)
    for var in FFPROBE_ENV_VARS:
        value = os.environ.get(var)
        if value:
            return _executable(value)
    if ffmpeg is not None:
        sibling = Path(ffmpeg.path).with_name("ffprobe")
        if sibling.is_file() and os.access(sibling, os.X_OK):
            return str(sibling)
    found = shutil.which("ffprobe")
    return str(Path(found).resolve()) if found else None


async def run_capture(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    max_output: int = 4 * 1024 * 1024,
) -> tuple[int, bytes]:
    """Run a short helper command; return (exit status, stdout cut at ``max_output``).

    stdin is closed and stderr discarded; on timeout or cancellation the process
    (in its own session) is killed and reaped before the error propagates.
    """
    proc = await spawn(
        *argv,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(timeout):
            out = bytearray()
            while len(out) < max_output:
                chunk = await proc.stdout.read(max_output - len(out))
                if not chunk:
                    break
                out += chunk
            if len(out) >= max_output:
                kill_session(proc)
            return await proc.wait(), bytes(out)
    finally:
        if proc.returncode is None:
            kill_session(proc)
            await proc.wait()


async def spawn(
    *argv: str,
    protocol: asyncio.SubprocessProtocol | None = None,
    **kwargs: Any,
) -> asyncio.subprocess.Process:
    """``create_subprocess_exec`` in a new session, safe to cancel while it starts.

    A cancel that arrives while the process starts would otherwise make asyncio kill
    only the direct child, leaving what it already forked (bubblewrap's inner
    process) orphaned; here the whole session is killed and reaped, then the cancel
    propagates.  ``protocol`` (with ``stdin``, ``stdout`` and ``stderr`` attributes,
    ``None`` where it reads the pipe itself) replaces asyncio's stream readers.
    """
    start = asyncio.ensure_future(_start(argv, protocol, kwargs))
    try:
        return await asyncio.shield(start)
    except asyncio.CancelledError:
        await run_to_end(start)
        if not start.cancelled() and start.exception() is None:
            proc = start.result()
            kill_session(proc)
            await run_to_end(proc.wait())
        raise


async def _start(
    argv: Sequence[str], protocol: asyncio.SubprocessProtocol | None, kwargs: dict[str, Any]
) -> asyncio.subprocess.Process:
    if protocol is None:
        return await asyncio.create_subprocess_exec(*argv, start_new_session=True, **kwargs)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.subprocess_exec(
        lambda: protocol, *argv, start_new_session=True, **kwargs
    )
    return asyncio.subprocess.Process(transport, protocol, loop)


def kill_session(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the process group of ``proc``, started with ``start_new_session=True``.

    Killing only ``proc`` can leave what it forked running, holding its pipes open,
    and then ``proc.wait()`` never returns (asyncio waits for the pipes to close).
    bubblewrap cancelled while it sets up is such a case.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def probe_version(binary: str, *, timeout: float = 10.0) -> str:
    """First line of ``binary -version`` (e.g. ``ffmpeg version 5.1.9 …``)."""
    _, out = await run_capture([binary, "-hide_banner", "-version"], timeout=timeout)
    line = out.decode("utf-8", "replace").splitlines()
    return line[0].strip() if line else ""
