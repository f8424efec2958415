"""Local files as inputs: absolute paths, ``pathlib.Path`` values and ``file://`` URLs.

    LocalFileDownloader(roots=["/data/media"])

Only files below one of ``roots`` are read (a root may also be one file).  The check
is made twice: on the path as given (``check_input``: at ``register``/``plan``), and
again by the kernel as the file is opened — relative to the root's directory descriptor
with ``openat2(RESOLVE_BENEATH)`` where Linux has it (5.6+), else walking component by
component with ``O_NOFOLLOW`` and resolving each symlink by hand — so a symlink that
leads out of the root is refused and no check-then-open race exists.  Symlinks that
stay inside the root are followed.

The file is then cloned into the work dir (a reflink: instant, no extra space, on btrfs,
XFS, bcachefs …) or else copied with ``copy_file_range`` in a thread.  Never hard-linked:
the sandboxed ffmpeg may write in its work dir, and must not reach the original.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import os
import posixpath
import stat
import sys
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from .._lifecycle import AsyncResource
from ..errors import DownloadError, DownloadTooLargeError
from .base import DownloadProgress

__all__ = ["LocalFileDownloader"]

_FICLONE = 0x40049409  # ioctl(dest, FICLONE, src): share the source's extents
_COPY_CHUNK = 64 * 1024 * 1024
_MAX_LINKS = 40  # as the kernel's own limit on symlinks followed in one lookup
_O_PATHWALK = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class LocalFileDownloader(AsyncResource):
    """Reads inputs from local files below ``roots``; see the module docstring.

    ``max_bytes`` caps every file (a ``fetch(max_bytes=...)`` can only lower it).
    """

    def __init__(
        self, roots: Iterable[str | os.PathLike[str]], *, max_bytes: int | None = None
    ) -> None:
        self.roots = tuple(Path(os.path.abspath(os.fspath(root))) for root in roots)
        self.max_bytes = max_bytes
        #: How the last fetch got its file into the work dir: "reflink" or "copy".
        self.last_method: str | None = None

    def __repr__(self) -> str:
        return f"LocalFileDownloader(roots={[str(r) for r in self.roots]!r})"

    # -- the static check ---------------------------------------------------------

    def check_input(self, url: str) -> None:
        """Refuse ``url`` now if it can never be read: not a local path, or outside the roots."""
        self._locate(url)

    def _locate(self, url: str) -> tuple[Path, PurePosixPath]:
        """The root ``url`` lies below and the path inside it."""
        path = _local_path(url)
        if ".." in path.parts:
            raise _refused(url, "has a '..' segment")
        for root in self.roots:
            try:
                inside = path.relative_to(root)
            except ValueError:
                continue
            return root, PurePosixPath(inside)
        if not self.roots:
            raise _refused(url, "cannot be read: LocalFileDownloader has no roots")
        raise _refused(url, "is outside the directories this manager may read")

    # -- fetching -----------------------------------------------------------------

    async def fetch(
        self,
        url: str,
        dest: Path,
        *,
        max_bytes: int | None = None,
        progress: DownloadProgress | None = None,
        resume: bool = False,
    ) -> int:
        """Clone or copy the file ``url`` names to ``dest``; return its size."""
        root, inside = self._locate(url)
        caps = [c for c in (self.max_bytes, max_bytes) if c is not None]
        cap = min(caps) if caps else None
        size, method = await asyncio.to_thread(_copy_beneath, url, root, inside, Path(dest), cap)
        self.last_method = method
        if progress is not None:
            progress(size, size)
        return size

    async def aclose(self) -> None:
        """Nothing to release."""


# -- paths ------------------------------------------------------------------------


def _refused(url: str, why: str) -> DownloadError:
    return DownloadError(f"local input {url}: {why}", url=url, code="url_not_allowed")


def _local_path(url: str) -> PurePosixPath:
    """The absolute path an input names: ``/x``, ``file:///x`` or ``file://localhost/x``."""
    if url.startswith("/"):
        text = url
    elif url[:5].lower() == "file:":
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise _refused(url, "must be file:///absolute/path (no host, query or fragment)")
        text = unquote(parts.path)
    else:
        raise _refused(url, "is not an absolute path or a file:// URL")
    if not text.startswith("/") or "\x00" in text:
        raise _refused(url, "is not an absolute path")
    return PurePosixPath(posixpath.normpath(text) if ".." not in text.split("/") else text)


# -- opening beneath a root -------------------------------------------------------------


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


_RESOLVE_BENEATH = 0x08
_RESOLVE_NO_MAGICLINKS = 0x02
_SYS_OPENAT2 = 437  # the same number on x86_64, aarch64 and the other modern ABIs
_openat2_works: bool | None = None


def _openat2(dir_fd: int, path: str, flags: int) -> int | None:
    """``openat2(RESOLVE_BENEATH)``; None where the kernel or libc lacks it."""
    global _openat2_works
    if _openat2_works is False or not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    how = _OpenHow(flags, 0, _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS)
    fd = libc.syscall(_SYS_OPENAT2, dir_fd, path.encode(), ctypes.byref(how), ctypes.sizeof(how))
    if fd >= 0:
        _openat2_works = True
        return int(fd)
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EPERM) and _openat2_works is None:
        _openat2_works = False  # old kernel, or a seccomp filter that refuses it
        return None
    raise OSError(err, os.strerror(err))


def _walk_beneath(root_fd: int, inside: PurePosixPath, flags: int) -> int:
    """Open ``inside`` below ``root_fd`` without ever leaving it: ``O_NOFOLLOW`` on each
    component, symlinks resolved by hand and refused when they climb out."""
    todo = list(inside.parts)
    done: list[str] = []  # where we are, as components below the root
    fds = [os.dup(root_fd)]
    links = 0
    try:
        while todo:
            name = todo.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                if not done:
                    raise OSError(errno.EXDEV, "leads out of the root")
                done.pop()
                os.close(fds.pop())
                continue
            last = not todo
            try:
                fd = os.open(name, (flags | os.O_NOFOLLOW) if last else _O_PATHWALK, dir_fd=fds[-1])
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                try:
                    target = os.readlink(name, dir_fd=fds[-1])
                except OSError:
                    raise exc from None
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, "too many symlinks") from None
                if target.startswith("/"):
                    raise OSError(errno.EXDEV, "an absolute symlink") from None
                todo = [*PurePosixPath(target).parts, *todo]
                continue
            if last:
                return fd
            fds.append(fd)
            done.append(name)
        raise OSError(errno.EISDIR, "names a directory")
    finally:
        for fd in fds:
            os.close(fd)


def _open_beneath(url: str, root: Path, inside: PurePosixPath) -> int:
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO must not block the open
    try:
        directory = root if inside.parts else root.parent
        root_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise DownloadError(
            f"local input {url}: its directory cannot be opened ({exc.strerror})",
            url=url,
            code="read_failed",
        ) from None
    try:
        if not inside.parts:  # the root is this very file: opened as it is, no link followed
            return os.open(root.name, flags | os.O_NOFOLLOW, dir_fd=root_fd)
        fd = _openat2(root_fd, str(inside), flags)
        return fd if fd is not None else _walk_beneath(root_fd, inside, flags)
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.ELOOP):
            raise _refused(url, "leads out of the allowed directories (a symlink)") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise DownloadError(
                f"local input {url}: no such file", url=url, code="not_found"
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise DownloadError(
                f"local input {url}: permission denied", url=url, code="access_denied"
            ) from None
        raise DownloadError(
            f"local input {url}: cannot be opened ({exc.strerror})", url=url, code="read_failed"
        ) from None
    finally:
        os.close(root_fd)


# -- copying ----------------------------------------------------------------------------


def _copy_beneath(
    url: str, root: Path, inside: PurePosixPath, dest: Path, cap: int | None
) -> tuple[int, str]:
    """Open safely, check, then clone or copy to ``dest`` (blocking: run in a thread)."""
    src = _open_beneath(url, root, inside)
    try:
        info = os.fstat(src)
        if not stat.S_ISREG(info.st_mode):
            raise _refused(url, "is not a regular file")
        if cap is not None and info.st_size > cap:
            raise DownloadTooLargeError(
                f"local input {url}: {info.st_size} bytes is more than the limit of {cap}",
                url=url,
            )
        fcntl.fcntl(src, fcntl.F_SETFL, fcntl.fcntl(src, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        try:
            out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise DownloadError(
                f"local input {url}: cannot write {dest.name!r} ({exc.strerror})",
                url=url,
                code="disk_full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "write_failed",
            ) from None
        try:
            return _clone_or_copy(url, src, out, info.st_size, cap)
        except BaseException:
            os.close(out)
            out = -1
            dest.unlink(missing_ok=True)
            raise
        finally:
            if out >= 0:
                os.close(out)
    finally:
        os.close(src)


def _clone_or_copy(url: str, src: int, out: int, size: int, cap: int | None) -> tuple[int, str]:
    try:
        fcntl.ioctl(out, _FICLONE, src)
        return size, "reflink"
    except OSError:
        pass  # not a CoW filesystem, or not the same one: copy
    done = 0
    try:
        while True:
            want = _COPY_CHUNK if cap is None else min(_COPY_CHUNK, cap + 1 - done)
            if want <= 0:
                raise DownloadTooLargeError(
                    f"local input {url}: grew beyond the limit of {cap} bytes", url=url
                )
            got = os.copy_file_range(src, out, want)
            if got == 0:
                return done, "copy"
            done += got
    except OSError as exc:
        raise DownloadError(
            f"local input {url}: copy failed ({exc.strerror})",
            url=url,
            code="disk_full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "read_failed",
        ) from None
