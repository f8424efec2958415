"""Retries with exponential backoff and full jitter for transient failures."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs

from .errors import TaskFailure

__all__ = ["RetryPolicy"]

T = TypeVar("T")


@attrs.frozen
class RetryPolicy:
    """How often and how patiently to retry a transient download or upload failure.

    ``attempts`` counts the first try.  Delays grow as ``base_delay * 2**n`` up to
    ``max_delay`` with full jitter; a server's ``Retry-After`` is honoured up to
    ``max_delay``.  Only errors with ``transient=True`` are retried — never ffmpeg errors.
    """

    attempts: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    base_delay: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    max_delay: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    jitter: bool = True

    @classmethod
    def none(cls) -> RetryPolicy:
        return cls(attempts=1)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(0, ceiling) if self.jitter else ceiling  # noqa: S311

    async def call(
        self,
        fn: Callable[[int], Awaitable[T]],
        *,
        on_retry: Callable[[int, TaskFailure, float], None] | None = None,
    ) -> T:
        """Run ``fn(attempt)`` until it succeeds, fails for good, or attempts run out."""
        attempt = 1
        while True:
            try:
                return await fn(attempt)
            except TaskFailure as exc:
                if not exc.transient or attempt >= self.attempts:
                    raise
                wait = self.delay(attempt, exc.retry_after)
                if on_retry is not None:
                    on_retry(attempt, exc, wait)
                await asyncio.sleep(wait)
                attempt += 1
