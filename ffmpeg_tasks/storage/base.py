"""The storage protocol: put one local file under a key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs

__all__ = ["Storage", "StoredFile", "UploadProgress"]

#: Called with (bytes uploaded so far, total bytes).
UploadProgress = Callable[[int, int], None]


@attrs.frozen
class StoredFile:
    """What a :class:`Storage` returns for one ``put``: full ``key``, canonical ``uri``,
    downloadable ``url``, ``size``.  The task records it as a
    :class:`~ffmpeg_tasks.models.StoredObject`, which adds the output's name and type.
    """

    key: str
    uri: str
    url: str
    size: int


@runtime_checkable
class Storage(Protocol):
    """Stores task outputs.

    ``key`` is relative (``<task_id>/<name>``) and already validated by the manager;
    a storage may prepend its own prefix.  ``put`` is all-or-nothing: on failure no
    partial object is left behind.  Raises :class:`~ffmpeg_tasks.errors.StorageError`.
    """

    async def put(
        self,
        path: Path,
        key: str,
        *,
        content_type: str,
        progress: UploadProgress | None = None,
    ) -> StoredFile: ...

    async def url(self, key: str) -> str:
        """A fresh downloadable URL for a stored ``key`` (as passed to ``put``)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove a stored object; missing objects are not an error."""
        ...

    async def check(self) -> None:
        """Raise :class:`~ffmpeg_tasks.errors.StorageError` when the storage is unusable."""
        ...

    async def aclose(self) -> None: ...
