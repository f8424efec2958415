"""``DownloadCache``: complete input files on disk, keyed by URL plus validator, LRU-capped.

    cache = DownloadCache("/var/cache/ffmpeg-tasks", max_bytes=50 * GiB)
    TaskManager(downloader=CachingDownloader({"https": HttpDownloader(), ...}, cache))

Layout under ``directory`` (created 0o700)::

    entries/<sha256(url, validator)>   complete bodies, mode 0o444; atime = last use
    index/<sha256(url)>.json           the newest validator seen for a URL, the entry's
                                       size and mtime (no URL: it may hold a signature)
    tmp/<random>                       downloads in progress
    lock                               flock'd while evicting

Entries are written under a random temp name and renamed into place once complete; the
URL's index record, the only way to find an entry, is written next.  No fsync is on that
path: the record names the kernel's boot id, and a record not yet marked ``synced`` is
trusted only in the boot that wrote it (a power loss, the one way to lose page-cached
data, means a new boot).  :meth:`DownloadCache.sync` fsyncs an entry later, when its
data has mostly been written back and the fsync is cheap, and marks its record synced:
from then on it outlives a reboot.  A reader finds a complete file or none (a crash
before the record leaves an unindexed file that ages out of the LRU).  Several processes
may share one directory: names never collide (128 random bits), renames are atomic,
eviction holds ``lock``, and an entry that vanishes under another process's eviction
before it is handed over is fetched again, never handed over broken.  Concurrent
fetches of one URL are shared within a process
(:class:`~ffmpeg_tasks.downloader.caching.CachingDownloader`), not across processes.

An entry goes to a work dir as a reflink where the filesystem has them (btrfs, XFS …),
else as a hard link (same filesystem), else as a copy; always mode 0o444.  A hard link
shares the inode: a process with CAP_DAC_OVERRIDE (root, also root inside bubblewrap)
could still write through it, so each reuse first compares the entry's size and mtime
with those recorded at commit and drops an entry that changed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import os
import secrets
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Literal

import attrs

from ..errors import ConfigurationError
from .base import Validator

__all__ = ["CacheEntry", "DownloadCache", "EntryGone", "Handover", "Known"]

_FICLONE = 0x40049409  # ioctl(dest, FICLONE, src): share the source's extents
_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP, errno.EACCES})

#: How an entry reached a work dir.
Handover = Literal["reflink", "link", "copy"]


class EntryGone(Exception):
    """The entry was evicted (by another process) before it could be handed over."""


@attrs.frozen
class CacheEntry:
    """A complete body on disk; ``cached`` False: a temp file of a body without a
    validator, removed once handed over."""

    path: Path
    size: int
    cached: bool = True


@attrs.frozen
class Known:
    """The newest version of a URL in the cache."""

    validator: Validator
    entry: CacheEntry


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@functools.cache
def boot_id() -> str | None:
    """This boot's id (Linux), or None where there is none: records are then fsync'd."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


class DownloadCache:
    """A size-capped LRU cache of downloaded inputs in ``directory``; see the module docstring.

    ``max_bytes`` caps the entries' total size (an entry in use by a task is not
    evicted while this process hands it over; one bigger than the cap is used once and
    then evicted).  Temp files older than ``max_temp_age`` seconds (left by a crashed
    process) are removed while evicting.  A new entry is fsync'd ``sync_after`` seconds
    after it lands (by :class:`CachingDownloader`; by then the kernel has written most of
    it back, and an fsync of a fresh GiB no longer holds up every other fsync on the
    filesystem, e.g. ext4's journal); until then, and for good with ``durable=False``, it
    is used only until the next reboot.  All methods block: call them in a thread.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int,
        max_temp_age: float = 86400.0,
        durable: bool = True,
        sync_after: float = 60.0,
    ) -> None:
        if max_bytes <= 0:
            raise ConfigurationError(f"DownloadCache: max_bytes={max_bytes!r} must be > 0")
        if sync_after < 0:
            raise ConfigurationError(f"DownloadCache: sync_after={sync_after!r} must be >= 0")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_temp_age = max_temp_age
        self.durable = durable
        self.sync_after = sync_after
        #: Entry names being handed over in this process: never evicted meanwhile.
        self.pins: Counter[str] = Counter()
        #: How entries reached work dirs, counted.
        self.handovers: Counter[Handover] = Counter()
        self._ready = False

    def __repr__(self) -> str:
        return f"DownloadCache({os.fspath(self.directory)!r}, max_bytes={self.max_bytes})"

    # -- layout ---------------------------------------------------------------------

    def _setup(self) -> None:
        if not self._ready:
            for sub in ("entries", "index", "tmp"):
                (self.directory / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
            self._ready = True

    def new_temp(self) -> Path:
        """A fresh name in ``tmp/`` for one download (nothing is created)."""
        self._setup()
        return self.directory / "tmp" / secrets.token_hex(16)

    def _index(self, url: str) -> Path:
        return self.directory / "index" / f"{_digest(url)}.json"

    def _entry(self, url: str, validator: Validator) -> Path:
        return self.directory / "entries" / _digest(url, validator.token)

    # -- lookup and commit -------------------------------------------------------------

    def lookup(self, url: str) -> Known | None:
        """The newest cached version of ``url``, if its entry is there and unchanged."""
        self._setup()
        try:
            record = json.loads(self._index(url).read_text())
            validator = Validator(**record["validator"])
            size, mtime = int(record["size"]), int(record["mtime_ns"])
            synced = record.get("synced", True)  # records without it were fsync'd first
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if not synced and record.get("boot") != boot_id():
            return None  # written before a reboot, never fsync'd: maybe not on disk
        path = self._entry(url, validator)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if st.st_size != size or st.st_mtime_ns != mtime or st.st_mode & 0o222:
            return None  # written through a link: fetched again, the new one replaces it
        return Known(validator, CacheEntry(path, size))

    def reuse(self, known: Known) -> CacheEntry | None:
        """Mark ``known``'s entry used now (LRU); None if it was evicted meanwhile."""
        path = known.entry.path
        try:
            st = path.stat()
            os.utime(path, ns=(time.time_ns(), st.st_mtime_ns))  # atime only: mtime is checked
        except FileNotFoundError:
            return None
        return known.entry

    def commit(self, url: str, validator: Validator, temp: Path, size: int) -> CacheEntry:
        """Make the complete download ``temp`` the entry for (``url``, ``validator``),
        ready to hand over; :meth:`settle` then makes it findable."""
        os.chmod(temp, 0o444)
        path = self._entry(url, validator)
        os.replace(temp, path)
        os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns))
        return CacheEntry(path, size)

    def settle(self, url: str, validator: Validator, entry: CacheEntry) -> bool:
        """Write a committed entry's index record: from now on :meth:`lookup` finds it.
        True if it is already on disk for good (fsync'd here where there is no boot id);
        else it is trusted in this boot only until :meth:`sync`."""
        synced = boot_id() is None and self.durable
        fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if synced:
                os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if synced:
            _fsync(entry.path.parent)
        self._write_record(url, validator, entry.size, st.st_mtime_ns, synced=synced)
        return synced

    def sync(self, url: str, validator: Validator, entry: CacheEntry) -> None:
        """fsync a settled entry and mark its record synced, if it is still the URL's
        newest version: it then outlives a reboot.  An entry evicted meanwhile is skipped;
        one whose fsync fails (its data may not be on disk) is dropped, then raised."""
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            os.fsync(fd)
            st = os.fstat(fd)
        except OSError:
            self._drop(url, validator, entry)
            raise
        finally:
            os.close(fd)
        _fsync(entry.path.parent)
        known = self.lookup(url)
        if known is not None and known.validator == validator:
            # Another process may write a newer record between the lookup and the
            # rename; it is then fetched again once (a 200 to the conditional GET).
            self._write_record(url, validator, entry.size, st.st_mtime_ns, synced=True)

    def _drop(self, url: str, validator: Validator, entry: CacheEntry) -> None:
        known = self.lookup(url)
        if known is not None and known.validator == validator:
            self._index(url).unlink(missing_ok=True)
        entry.path.unlink(missing_ok=True)

    def _write_record(
        self, url: str, validator: Validator, size: int, mtime_ns: int, *, synced: bool
    ) -> None:
        record = {
            "validator": attrs.asdict(validator),
            "size": size,
            "mtime_ns": mtime_ns,
            "synced": synced,
            "boot": boot_id(),
        }
        index = self._index(url)
        scratch = index.with_name(f"{index.name}.{secrets.token_hex(8)}")
        scratch.write_text(json.dumps(record))
        os.replace(scratch, index)

    def discard(self, temp: Path) -> None:
        """Remove a temp download (and the inner downloader's ``.part``), if any."""
        temp.unlink(missing_ok=True)
        temp.with_name(temp.name + ".part").unlink(missing_ok=True)

    # -- hand-over ----------------------------------------------------------------------

    def hand_over(self, entry: CacheEntry, dest: Path) -> Handover:
        """Put ``entry`` at ``dest`` read-only: reflink, else hard link, else copy.

        Raises :class:`EntryGone` if the entry is no longer there.
        """
        dest.unlink(missing_ok=True)
        try:
            src = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise EntryGone() from None
        try:
            how = _reflink_or_link(src, entry.path, dest)
        finally:
            os.close(src)
        self.handovers[how] += 1
        return how

    # -- eviction -----------------------------------------------------------------------

    def usage(self) -> int:
        """The entries' total size in bytes."""
        self._setup()
        return sum(e.stat().st_size for e in os.scandir(self.directory / "entries"))

    def evict(self, pinned: frozenset[str] = frozenset()) -> int:
        """Remove least recently used entries (not ``pinned``) until under ``max_bytes``;
        and stale temp files.  Returns the bytes removed."""
        self._setup()
        with open(self.directory / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = []
            for item in os.scandir(self.directory / "entries"):
                with contextlib.suppress(FileNotFoundError):
                    st = item.stat()
                    entries.append((st.st_atime_ns, item.name, st.st_size))
            total = sum(size for _, _, size in entries)
            removed = 0
            for _, name, size in sorted(entries):
                if total <= self.max_bytes:
                    break
                if name in pinned:
                    continue
                (self.directory / "entries" / name).unlink(missing_ok=True)
                total -= size
                removed += size
            cutoff = time.time() - self.max_temp_age
            for item in os.scandir(self.directory / "tmp"):
                with contextlib.suppress(FileNotFoundError):
                    if item.stat().st_mtime < cutoff:
                        os.unlink(item.path)
        return removed


def _reflink_or_link(src: int, source: Path, dest: Path) -> Handover:
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    try:
        fcntl.ioctl(out, _FICLONE, src)
        return "reflink"
    except OSError:
        pass
    finally:
        os.close(out)
    dest.unlink()
    try:
        os.link(source, dest)
        return "link"
    except FileNotFoundError:
        raise EntryGone() from None
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
    with open(src, "rb", closefd=False) as reader, open(dest, "xb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)
    os.chmod(dest, 0o444)
    return "copy"


def _fsync(path: Path) -> None:
    """fsync a file or a directory."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
