"""Where submitted tasks run when not in this process: the ``Backend`` protocol and ``SaqBackend``.

``SaqBackend`` imports saq only when it is created, so this package imports without it.
"""

from .base import Backend
from .saq import JOB_FUNCTION, SaqBackend, job_key

__all__ = ["JOB_FUNCTION", "Backend", "SaqBackend", "job_key"]
