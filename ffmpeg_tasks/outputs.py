"""Find the files a task produced: declared outputs and predicted sidecars.

Only regular files directly in the work dir are ever returned — never symlinks,
directories or devices — so ffmpeg cannot be tricked into making us upload
something outside the work dir.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Collection, Sequence
from pathlib import Path

from .errors import OutputError

__all__ = ["collect_outputs", "pattern_to_glob"]

_PRINTF = re.compile(r"%0?(\d*)d")


def pattern_to_glob(name: str) -> str | None:
    """``thumb_%03d.jpg`` → ``thumb_[0-9][0-9][0-9]*.jpg``; None for a plain name."""
    if not _PRINTF.search(name):
        return None
    escaped = re.sub(r"([\[\]*?])", r"[\1]", name)
    return _PRINTF.sub(lambda m: "[0-9]" * max(int(m.group(1) or 1), 1) + "*", escaped)


def _regular(path: Path) -> os.stat_result | None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def collect_outputs(
    work: Path,
    outputs: Sequence[str],
    sidecars: Sequence[str],
    *,
    exclude: Collection[str] = (),
    delete_excluded: bool = False,
) -> list[tuple[str, Path]]:
    """``(name, path)`` of every file to store; raises :class:`OutputError`.

    Each declared output must exist as a non-empty regular file (a pattern output
    must match at least one); sidecar globs may match nothing.  ``delete_excluded``
    first removes the ``exclude`` files (the inputs, once ffmpeg is done with them):
    the disk space is back before the upload, and the kernel drops a deleted
    file's dirty pages instead of writing them back while the upload runs.
    """
    if delete_excluded:
        for name in exclude:
            (work / name).unlink(missing_ok=True)
    entries = sorted(e for e in os.listdir(work) if e not in exclude and not e.endswith(".part"))
    found: list[tuple[str, Path]] = []
    seen: set[str] = set()

    def add(name: str) -> None:
        if name not in seen:
            seen.add(name)
            found.append((name, work / name))

    for name in outputs:
        glob = pattern_to_glob(name)
        if glob is None:
            path = work / name
            st = _regular(path)
            if st is None:
                what = "was not produced" if not os.path.lexists(path) else "is not a regular file"
                raise OutputError(f"output {name!r} {what}", code="output_missing")
            if st.st_size == 0:
                raise OutputError(f"output {name!r} is empty", code="output_empty")
            add(name)
            continue
        matches = [e for e in entries if fnmatch.fnmatchcase(e, glob) and _regular(work / e)]
        if not matches:
            raise OutputError(f"output pattern {name!r} matched no file", code="output_missing")
        for match in matches:
            add(match)
    for glob in sidecars:
        for entry in entries:
            if fnmatch.fnmatchcase(entry, glob) and _regular(work / entry):
                add(entry)
    return found
