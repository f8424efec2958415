"""Store outputs in a local directory.

Each file is copied (in a thread) to a temporary file next to its destination and
renamed into place, so a reader never sees a half-written output.  The path below
``root`` is walked with directory file descriptors opened ``O_NOFOLLOW``: a symlink
planted anywhere in the destination path is refused, never followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import secrets
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from .._lifecycle import AsyncResource, run_to_end
from ..errors import StorageError
from .base import StoredFile, UploadProgress

__all__ = ["LocalStorage", "default_root"]

_CHUNK = 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def default_root() -> Path:
    """``$FFMPEG_TASKS_STORAGE_DIR`` or ``./ffmpeg-tasks-output``."""
    return Path(os.environ.get("FFMPEG_TASKS_STORAGE_DIR") or "ffmpeg-tasks-output")


class _Cancelled(Exception):
    """The copy was cancelled from the event loop."""


def split_key(key: str) -> list[str]:
    """The ``/``-separated parts of ``key``; refuses anything that could leave the root."""
    bad = (
        not key
        or "\x00" in key
        or "\\" in key
        or key.startswith("/")
        or any(part in ("", ".", "..") for part in key.split("/"))
    )
    if bad:
        raise StorageError(
            f"refusing storage key {key!r}: must be a relative path without '..', '.', "
            "empty segments, backslashes or NUL",
            code="invalid_key",
        )
    return key.split("/")


class LocalStorage(AsyncResource):
    """Copy outputs to ``root/<key>``.

    >>> storage = LocalStorage("/srv/media", base_url="https://media.example.com/")

    ``url`` is ``base_url`` + key when ``base_url`` is set, otherwise the ``file://`` URI
    of the stored file (``uri`` is always that file URI).
    """

    def __init__(self, root: str | Path | None = None, *, base_url: str | None = None) -> None:
        self.root = Path(root if root is not None else default_root()).expanduser().absolute()
        self.base_url = base_url

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r}, base_url={self.base_url!r})"

    def path_for(self, key: str) -> Path:
        """Where ``key`` is stored (after checking the key)."""
        return self.root.joinpath(*split_key(key))

    def _url(self, key: str) -> str:
        if self.base_url:
            return self.base_url.rstrip("/") + "/" + quote(key, safe="/~")
        return self.path_for(key).as_uri()

    # -- protocol -----------------------------------------------------------------

    async def put(
        self,
        path: Path,
        key: str,
        *,
        content_type: str,
        progress: UploadProgress | None = None,
    ) -> StoredFile:
        """Copy ``path`` to ``root/key`` atomically.  ``content_type`` is not recorded."""
        parts = split_key(key)
        loop = asyncio.get_running_loop()
        cancel = threading.Event()

        def report(done: int, total: int) -> None:
            if progress is not None:
                with contextlib.suppress(RuntimeError):  # loop already closed
                    loop.call_soon_threadsafe(progress, done, total)

        job = asyncio.ensure_future(
            asyncio.to_thread(self._copy, Path(path), key, parts, cancel, report)
        )
        try:
            size = await asyncio.shield(job)
        except asyncio.CancelledError:
            # Stop the copy between chunks; the thread removes its temporary file.
            cancel.set()
            await run_to_end(job)  # even if cancelled again: the thread must be done
            if not job.cancelled() and job.exception() is None:
                # The copy had already finished: cancelled means nothing stored.
                await asyncio.to_thread(self._delete, key, parts)
            raise
        return StoredFile(key=key, uri=self.path_for(key).as_uri(), url=self._url(key), size=size)

    async def url(self, key: str) -> str:
        return self._url(key)

    async def delete(self, key: str) -> None:
        """Remove ``root/key``; missing is fine.  Symlinked directories are not followed."""
        parts = split_key(key)
        await asyncio.to_thread(self._delete, key, parts)

    async def check(self) -> None:
        """Raise StorageError unless ``root`` is, or can be made, a writable directory.

        Creates nothing: ``root`` is made by the first :meth:`put`.
        """
        await asyncio.to_thread(self._check, create=False)

    # -- thread side --------------------------------------------------------------

    def _check(self, *, create: bool) -> None:
        if create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(  # reaches the task's caller: no host path
                    f"cannot create the storage directory: {exc.strerror or type(exc).__name__}"
                ) from exc
        target = self.root
        while not target.exists() and not target.is_symlink() and target != target.parent:
            target = target.parent  # the directory the first put would create root in
        # These messages can reach a task's caller: they name no host path.
        where = "the storage directory" if target == self.root else "a parent of it"
        if not target.is_dir():
            raise StorageError(f"cannot use the storage directory: {where} is not a directory")
        if not os.access(target, os.W_OK | os.X_OK):
            raise StorageError(f"cannot use the storage directory: {where} is not writable")

    def _open_dirs(self, key: str, dirs: list[str], *, create: bool) -> int:
        """A descriptor of ``root/dirs…``, walked without following symlinks."""
        if create:
            self._check(create=True)
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for name in dirs:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o755, dir_fd=fd)
                try:
                    child = os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise StorageError(
                            f"refusing key {key!r}: {name!r} in its path is a symlink "
                            "or not a directory",
                            code="invalid_key",
                        ) from exc
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _copy(
        self,
        src: Path,
        key: str,
        parts: list[str],
        cancel: threading.Event,
        report: Callable[[int, int], None],
    ) -> int:
        try:
            with open(src, "rb", opener=_open_nofollow) as reader:
                st = os.fstat(reader.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise StorageError(f"cannot store {src.name!r} as {key!r}: not a regular file")
                dfd = self._open_dirs(key, parts[:-1], create=True)
                try:
                    return self._copy_into(reader, st.st_size, dfd, parts[-1], cancel, report)
                finally:
                    os.close(dfd)
        except (StorageError, _Cancelled):
            raise
        except OSError as exc:
            # Name the task's file and the key, never a host path (work dir, root): the
            # message reaches the task's caller.
            if exc.errno == errno.ELOOP and exc.filename == str(src):
                raise StorageError(
                    f"cannot store {src.name!r} as {key!r}: it is a symlink"
                ) from exc
            raise StorageError(
                f"cannot store {src.name!r} as {key!r}: {exc.strerror or type(exc).__name__}"
            ) from exc

    @staticmethod
    def _copy_into(
        reader: io.BufferedIOBase,
        total: int,
        dfd: int,
        name: str,
        cancel: threading.Event,
        report: Callable[[int, int], None],
    ) -> int:
        tmp = f".tmp-{secrets.token_hex(8)}"
        tfd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | _NOFOLLOW, 0o644, dir_fd=dfd
        )
        done = 0
        try:
            with os.fdopen(tfd, "wb") as out:
                buf = bytearray(_CHUNK)
                view = memoryview(buf)
                while n := reader.readinto(buf):
                    if cancel.is_set():
                        raise _Cancelled
                    out.write(view[:n])
                    done += n
                    report(done, total)
                out.flush()
                os.fsync(out.fileno())
            if cancel.is_set():
                raise _Cancelled
            # rename(2) replaces a symlink at the destination instead of following it.
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            with contextlib.suppress(OSError):
                os.fsync(dfd)  # make the rename durable
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        if total == 0:
            report(0, 0)
        return done

    def _delete(self, key: str, parts: list[str]) -> None:
        try:
            dfd = self._open_dirs(key, parts[:-1], create=False)
        except FileNotFoundError:
            return
        try:
            os.unlink(parts[-1], dir_fd=dfd)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(
                f"cannot delete {key!r}: {exc.strerror or type(exc).__name__}"
            ) from exc
        finally:
            os.close(dfd)


def _open_nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | _NOFOLLOW | os.O_CLOEXEC)
