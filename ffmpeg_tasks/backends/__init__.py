"""Where submitted tasks run when not in this process: the ``Backend`` protocol,
``SaqBackend`` and ``CeleryBackend``.

Each imports its engine only when it is created, so this package imports without them.
"""

from typing import TYPE_CHECKING, Any

from .base import Backend
from .saq import JOB_FUNCTION, SaqBackend, job_key

if TYPE_CHECKING:
    from .celery import CeleryBackend


def __getattr__(name: str) -> Any:
    # The Celery worker side imports the manager, which imports this package.
    if name == "CeleryBackend":
        from .celery import CeleryBackend

        return CeleryBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["JOB_FUNCTION", "Backend", "CeleryBackend", "SaqBackend", "job_key"]
