"""``async with`` support shared by every backend, and cleanup that must not be cut short."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from types import TracebackType
from typing import Self, TypeVar

T = TypeVar("T")


async def run_to_end(aw: Awaitable[T]) -> asyncio.Future[T]:
    """Await ``aw`` to its end even if the caller is cancelled meanwhile, again and again.

    For cleanup inside an ``except CancelledError`` block, which re-raises afterwards.
    Returns the finished future; its exception, if any, is not raised.
    """
    future = asyncio.ensure_future(aw)
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([future])
    return future


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
