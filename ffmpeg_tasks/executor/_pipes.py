"""Reading ffmpeg's stdout and stderr with few event-loop wakeups.

ffmpeg logs in many small writes: a one-frame run writes stderr ~110 times (each log
line in pieces).  asyncio's stream readers wake the loop, and the task reading, for
every one of them.  :class:`OutputPipes` hands each pipe's data straight to a
callback and, after a small read, stops watching that pipe for ``coalesce`` seconds
so the kernel's pipe buffer gathers the next writes into one read.  Large reads
(output flowing fast) keep the pipe watched, and the process's exit resumes every
pipe at once, so nothing waits on the timer at the end of a run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

__all__ = ["OutputPipes"]

log = logging.getLogger(__name__)

#: A read at least this large means the output is flowing fast: keep reading.
SMALL_READ = 16 * 1024


class OutputPipes(asyncio.SubprocessProtocol):
    """Subprocess protocol: ``handlers[fd](data)`` per read, ``handlers[fd](b"")`` at EOF.

    ``closed`` completes when every handled pipe has closed.  A handler that raises
    is logged and dropped; the pipe is still read to the end.  :meth:`close` stops
    reading early.
    """

    # asyncio.subprocess.Process copies these from its protocol.
    stdin = None
    stdout = None
    stderr = None

    def __init__(
        self,
        handlers: dict[int, Callable[[bytes], None]],
        *,
        coalesce: float = 0.02,
    ) -> None:
        self._handlers = dict(handlers)
        self._coalesce = coalesce
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.SubprocessTransport | None = None
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._open = set(handlers)
        self._exited = False
        self.closed: asyncio.Future[None] = self._loop.create_future()
        if not self._open:
            self.closed.set_result(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self._transport = transport

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        assert isinstance(data, bytes)
        self._deliver(fd, data)
        if self._exited or not self._coalesce or len(data) >= SMALL_READ or fd in self._timers:
            return
        pipe = self._pipe(fd)
        if pipe is not None:
            pipe.pause_reading()
            self._timers[fd] = self._loop.call_later(self._coalesce, self._resume, fd)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        timer = self._timers.pop(fd, None)
        if timer is not None:
            timer.cancel()
        if fd in self._open:
            self._open.discard(fd)
            self._deliver(fd, b"")
            if not self._open and not self.closed.done():
                self.closed.set_result(None)

    def process_exited(self) -> None:
        self._exited = True
        for fd in list(self._timers):
            self._timers.pop(fd).cancel()
            self._resume(fd)

    def connection_lost(self, exc: Exception | None) -> None:
        """The process has exited and every pipe is closed: close the transport.

        asyncio's own protocol does that too; a transport never closed warns
        ``unclosed transport`` when it is collected.
        """
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._transport is not None:
            self._transport.close()
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        """Stop reading: no more callbacks; pipes still open (a leaked descriptor) are closed."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._handlers.clear()
        for fd in list(self._open):
            pipe = self._pipe(fd)
            if pipe is not None:
                pipe.close()

    def _resume(self, fd: int) -> None:
        self._timers.pop(fd, None)
        pipe = self._pipe(fd)
        if pipe is not None:
            pipe.resume_reading()

    def _pipe(self, fd: int) -> asyncio.ReadTransport | None:
        if self._transport is None:
            return None
        pipe = self._transport.get_pipe_transport(fd)
        return pipe if isinstance(pipe, asyncio.ReadTransport) else None

    def _deliver(self, fd: int, data: bytes) -> None:
        handler = self._handlers.get(fd)
        if handler is None:
            return
        try:
            handler(data)
        except Exception:
            log.warning("reading ffmpeg's output (fd %d) failed", fd, exc_info=True)
            del self._handlers[fd]
