"""``async with`` support shared by every backend, and cleanup that must not be cut short."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Coroutine, Iterable
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

from .errors import TaskFailure

T = TypeVar("T")


@runtime_checkable
class WarmUp(Protocol):
    """A backend with one-time setup worth starting before it is needed.

    The sandbox self-test, the S3 client's service model: a run starts these in the
    background while it does something else (see ``runner.LocalRuns.warm_up``).
    """

    async def warm_up(self) -> None: ...


async def run_to_end(aw: Awaitable[T]) -> asyncio.Future[T]:
    """Await ``aw`` to its end even if the caller is cancelled meanwhile, again and again.

    Only for cleanup inside an ``except CancelledError`` block, which re-raises
    afterwards (the caller is already being cancelled; further cancels add nothing).
    Returns the finished future; its exception, if any, is not raised.
    """
    future = asyncio.ensure_future(aw)
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([future])
    return future


async def shielded(aw: Awaitable[T]) -> T:
    """Await ``aw`` to its end even if cancelled meanwhile (any number of times).

    Returns its result or raises its error; if the caller was cancelled meanwhile,
    raises ``CancelledError`` once ``aw`` has ended instead.
    """
    future = asyncio.ensure_future(aw)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await run_to_end(future)
        if not future.cancelled():
            future.exception()  # seen: the cancel is what the caller gets
        raise


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel a helper task of ours and wait until it has ended.

    Its own ``CancelledError`` is not raised, another error is; a cancel of the
    *caller* while waiting propagates (``suppress(CancelledError)`` around
    ``await task`` would swallow it).
    """
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and (error := task.exception()) is not None:
        raise error


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


async def all_or_nothing(coros: Iterable[Coroutine[Any, Any, Any]]) -> None:
    """Run concurrently; on the first failure cancel the rest and raise that error itself
    (a ``TaskFailure`` before others when several fail at once)."""
    try:
        async with asyncio.TaskGroup() as group:
            for coro in coros:
                group.create_task(coro)
    except BaseExceptionGroup as group_error:
        leaves: list[BaseException] = []
        stack: list[BaseException] = [group_error]
        while stack:
            exc = stack.pop(0)
            if isinstance(exc, BaseExceptionGroup):
                stack.extend(exc.exceptions)
            else:
                leaves.append(exc)
        first = next((e for e in leaves if isinstance(e, TaskFailure)), leaves[0])
        raise first from None


@runtime_checkable
class StoreBound(Protocol):
    """An event handler that keeps state in the task store (a webhook's outbox).

    The manager calls ``bind(store)`` as it starts and ``unbind()`` before it closes
    the store.
    """

    async def bind(self, store: Any) -> None: ...
    async def unbind(self) -> None: ...
