"""Input overlap: ffmpeg reads an input while it is still downloading.

For a container that a demuxer reads front to back (MPEG-TS, Matroska/WebM, FLV,
MPEG-PS, MP3, WAV, FLAC, Ogg, NUT, Y4M), the input's name in the work dir is a FIFO:
the download goes to ``.in/<name>`` beside it, and a feeder thread copies each byte to
the FIFO as soon as it is on disk (``sendfile``), closing it when the download ends.
ffmpeg thus starts after the first MiB (sniffed like any input) instead of after the
last byte.  Everything else is downloaded first; :func:`choose` says why, and
``TaskManager.plan()`` shows it.

Only a one-step task, an input named once in the argv (as ``-i``'s value) with no input
option that seeks (``-ss``, ``-stream_loop``, ``-sseof``), fetched by a downloader that writes
front to back (``HttpDownloader``: the file's size is how far it is complete) or says
how far its front is complete (``S3Downloader.watching``: parallel ranges into a sparse
file).  If the download restarts from zero (a server without ``Range``, a retried S3
fetch), what ffmpeg already read cannot be taken back: the run stops and the step runs
again from the complete file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import stat
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .downloader.base import Downloader
from .downloader.router import DownloaderRouter
from .filenames import extension
from .plan import TaskPlan
from .sniff import PROBE_WINDOW, check_input

__all__ = ["STREAMABLE", "Feed", "FeedRestarted", "choose"]

#: Extensions whose demuxers read front to back, with no seek to the end.
STREAMABLE = frozenset(
    {"ts", "mts", "m2ts", "mkv", "mka", "webm", "flv", "mpg", "mpeg", "vob", "mp3", "wav",
     "flac", "ogg", "oga", "opus", "nut", "y4m"}
)  # fmt: skip

#: Input options that seek in the input (on a FIFO, ``-ss`` with ``-c copy`` would copy
#: from the start: ffmpeg 5.1 only warns "could not seek").
_SEEKING_OPTIONS = frozenset({"-stream_loop", "-sseof", "-ss"})

#: Bytes of an input that must be on disk (and sniffed) before ffmpeg starts.
FIRST_WINDOW = PROBE_WINDOW

DOWNLOAD_DIR = ".in"

#: The FIFO's buffer (Linux's default is 64 KiB; unprivileged processes may ask up to
#: /proc/sys/fs/pipe-max-size, 1 MiB): ffmpeg and the feeder wake each other 16x less.
#: It counts towards the user's pipe quota (/proc/sys/fs/pipe-user-pages-soft, 64 MiB).
PIPE_SIZE = 1 << 20


def feeding(downloader: Downloader, url: str) -> Downloader | None:
    """The downloader that fetches ``url`` if it can feed ffmpeg as it goes, else None."""
    from .downloader.http import HttpDownloader
    from .downloader.s3 import S3Downloader

    if isinstance(downloader, DownloaderRouter):
        try:
            downloader = downloader.route(url)
        except Exception:
            return None
    return downloader if isinstance(downloader, HttpDownloader | S3Downloader) else None


def choose(
    plan: TaskPlan, inputs: Mapping[str, str], downloader: Downloader, *, enabled: bool = True
) -> dict[str, str | None]:
    """For each input: None when ffmpeg reads it while it downloads, else why it is first
    downloaded whole."""
    result: dict[str, str | None] = {}
    argv = plan.steps[0].args if plan.steps else ()
    for name, url in inputs.items():
        ext = extension(name)
        reason: str | None = None
        if not enabled:
            reason = "input overlap is off: TaskManager(overlap_inputs=True)"
        elif len(plan.steps) != 1:
            reason = "chained steps read it"
        elif ext not in STREAMABLE:
            reason = f".{ext or '?'} may need seeking (moov or index at the end)"
        elif feeding(downloader, url) is None:
            reason = "its downloader does not write front to back"
        else:
            at = [i for i, token in enumerate(argv) if token == name]
            if len(at) != 1 or at[0] == 0 or argv[at[0] - 1] != "-i":
                reason = "the command names it more than once, or not as -i"
            elif any(name in token for i, token in enumerate(argv) if i != at[0]):
                # e.g. subtitles=in.mkv: a filter would be a second reader of the FIFO
                reason = "another argument names it too (a filter may read it)"
            elif _SEEKING_OPTIONS.intersection(argv[: at[0]]):
                reason = "an input option seeks in it"
        result[name] = reason
    return result


class FeedRestarted(Exception):
    """The download started over: what ffmpeg read so far is no longer the file."""


class Feed:
    """One input streamed to ffmpeg through a FIFO while it downloads."""

    def __init__(self, work: Path, name: str) -> None:
        self.fifo = work / name
        self.download = work / DOWNLOAD_DIR / name
        self.part = self.download.with_name(self.download.name + ".part")
        self.finished = threading.Event()  # the download is complete at ``download``
        self.stop = threading.Event()
        self.fed = 0
        #: How many leading bytes are complete, where the file's size does not say
        #: (S3's sparse file); None: its size does.
        self.limit: int | None = None
        #: The reported front went back: a new attempt writes a new file (sticky, as the
        #: feeder may not look while the front climbs again).
        self.restarted = False

    def contiguous(self, n: int) -> None:
        """The first ``n`` bytes of the download are complete (S3Downloader.watching)."""
        if self.limit is not None and n < self.limit:
            self.restarted = True
        self.limit = n

    def start(self) -> asyncio.Future[None]:
        """:meth:`run` in a thread of its own (it waits for ffmpeg to open the FIFO:
        in a shared pool, feeders of tasks waiting for ffmpeg could hold every thread)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle(error: BaseException | None) -> None:
            if done.done():
                return
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

        def target() -> None:
            error: BaseException | None = None
            try:
                self.run()
            except BaseException as exc:  # handed to the loop, raised there
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                loop.call_soon_threadsafe(settle, error)

        threading.Thread(target=target, name=f"feed {self.fifo.name}", daemon=True).start()
        return done

    def watch(self, downloader: Downloader, url: str) -> contextlib.AbstractContextManager[Any]:
        """Around the download of ``url``: where the file's size does not say how far it
        is complete, have its downloader tell this feed."""
        from .downloader.s3 import S3Downloader

        source = feeding(downloader, url)
        if not isinstance(source, S3Downloader):
            return contextlib.nullcontext()
        self.limit = 0
        return source.watching(self.download, self.contiguous)

    def make(self) -> None:
        """Create the FIFO and the download dir (blocking)."""
        self.download.parent.mkdir(mode=0o700, exist_ok=True)
        os.mkfifo(self.fifo, 0o600)

    def follow(self, download: asyncio.Future[Any]) -> None:
        """Mark the feed finished when ``download`` completes successfully."""

        def done(future: asyncio.Future[Any]) -> None:
            if not future.cancelled() and future.exception() is None:
                self.finished.set()

        download.add_done_callback(done)

    def window_ready(self) -> bool:
        """True once the first window is on disk (or the whole input is)."""
        if self.finished.is_set():
            return True
        try:
            size = self.part.stat().st_size
        except FileNotFoundError:
            return False
        return min(size, self.limit if self.limit is not None else size) >= FIRST_WINDOW

    def check_window(self, name: str) -> None:
        """Sniff the first window like any downloaded input (blocking)."""
        src = self._open_source()
        if src is None:
            return
        try:
            data = os.pread(src, FIRST_WINDOW, 0)
        finally:
            os.close(src)
        check_input(name, data)

    def discard(self) -> None:
        """Delete the download once ffmpeg is done with it (blocking; beside the upload):
        the kernel drops its dirty pages instead of writing them back.  Never raises:
        what is left goes with the work dir."""
        with contextlib.suppress(OSError):
            for path in (self.download, self.part):
                path.unlink(missing_ok=True)
            self.download.parent.rmdir()  # fails while other inputs' downloads are there

    def replace_with_download(self) -> None:
        """Fallback: the complete download takes the FIFO's place (blocking)."""
        os.replace(self.download, self.fifo)

    def run(self) -> None:
        """Copy the download into the FIFO until it is complete (blocking, in a thread).

        Returns when all was fed, when ffmpeg closed its end (it read what it needed),
        or when asked to stop; raises :class:`FeedRestarted` if the file shrank.
        """
        out = self._open_fifo()
        if out is None:
            return
        try:
            src = self._open_source()
            if src is None:
                return
            try:
                self._copy(src, out)
            finally:
                os.close(src)
        finally:
            os.close(out)

    def _open_fifo(self) -> int | None:
        while not self.stop.is_set():
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: ffmpeg has not opened it yet
                    raise
                time.sleep(0.005)
                continue
            os.set_blocking(fd, True)
            resize = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
            with contextlib.suppress(OSError):  # above the user's pipe quota: keep 64 KiB
                if resize is not None:
                    fcntl.fcntl(fd, resize, PIPE_SIZE)
            return fd
        return None

    def _open_source(self) -> int | None:
        while not self.stop.is_set():
            for path in (self.part, self.download):
                with contextlib.suppress(FileNotFoundError):
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        os.close(fd)
                        raise FeedRestarted("the download is not a regular file")
                    return fd
            time.sleep(0.01)
        return None

    def _copy(self, src: int, out: int) -> None:
        while not self.stop.is_set():
            if self.restarted:
                raise FeedRestarted("the download started over")
            finished = self.finished.is_set()  # read before the size: no byte is missed
            limit = self.limit
            size = os.fstat(src).st_size
            if limit is not None and not finished:
                size = min(size, limit)
            if size < self.fed:
                raise FeedRestarted("the download started over")
            if size > self.fed:
                try:
                    self.fed += os.sendfile(out, src, self.fed, min(size - self.fed, 1 << 22))
                except BrokenPipeError:
                    return  # ffmpeg closed the input: it has what it needs
                continue
            if finished:
                self._check_same_file(src, self.download)
                return
            self._check_same_file(src, self.part)
            time.sleep(0.005)

    @staticmethod
    def _check_same_file(src: int, path: Path) -> None:
        """The download may have started over in a new file (its part file replaced)."""
        mine = os.fstat(src)
        try:
            now = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return  # between an unlink and the next attempt's create: look again
        if (now.st_ino, now.st_dev) != (mine.st_ino, mine.st_dev):
            raise FeedRestarted("the download started over")


async def wait_window(feed: Feed, download: asyncio.Future[Any]) -> None:
    """Wait until the first window of ``feed`` is on disk; raise the download's error."""
    while not feed.window_ready():
        if download.done():
            download.result()  # its error, or: it finished (``finished`` is set by then)
            if not feed.window_ready():
                return
        await asyncio.sleep(0.005)
