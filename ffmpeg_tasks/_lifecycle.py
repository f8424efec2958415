"""``async with`` support shared by every backend."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncResource:
    """Mixin: ``async with obj:`` calls ``obj.aclose()`` on exit."""

    async def aclose(self) -> None:
        """Release what the object holds.  Safe to call twice."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
