"""An in-memory storage for host applications' tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

from .._lifecycle import AsyncResource
from ..errors import StorageError
from .base import StoredFile, UploadProgress

__all__ = ["MemoryStorage"]


class MemoryStorage(AsyncResource):
    """Keeps stored files as bytes in ``objects`` (key -> bytes).

    Example:
        ```python
        storage = MemoryStorage()
        # ... run a task with it, then:
        head = storage.objects["task-id/out.mp4"][:4]
        ```

    ``content_types`` maps each key to the Content-Type it was stored with; URLs are
    ``memory://<key>``.  Set ``fail_with`` to an exception to make every ``put`` raise it.
    """

    def __init__(self, *, fail_with: BaseException | None = None) -> None:
        self.objects: dict[str, bytes] = {}
        self.content_types: dict[str, str] = {}
        self.fail_with = fail_with

    async def put(
        self,
        path: Path,
        key: str,
        *,
        content_type: str,
        progress: UploadProgress | None = None,
    ) -> StoredFile:
        if self.fail_with is not None:
            raise self.fail_with
        if not key or "\x00" in key:
            raise StorageError(f"refusing key {key!r}", code="invalid_key")
        try:
            data = await asyncio.to_thread(Path(path).read_bytes)
        except OSError as exc:
            raise StorageError(f"cannot store {path} as {key!r}: {exc}") from exc
        self.objects[key] = data
        self.content_types[key] = content_type
        if progress is not None:
            progress(len(data), len(data))
        url = f"memory://{key}"
        return StoredFile(key=key, uri=url, url=url, size=len(data))

    async def url(self, key: str) -> str:
        if key not in self.objects:
            raise StorageError(f"no stored object with key {key!r}")
        return f"memory://{key}"

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)
        self.content_types.pop(key, None)

    async def check(self) -> None:
        return None
