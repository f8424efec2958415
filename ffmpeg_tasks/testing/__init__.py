"""For testing code that uses ffmpeg_tasks, and backends written for it.

- Test doubles of the backends, for a host application's own tests (no network, no
  ffmpeg): :class:`FakeDownloader`, :class:`FakeExecutor` (scripted), :class:`MemoryStorage`,
  :class:`MemoryTaskStore`.
- :mod:`ffmpeg_tasks.testing.conformance`: the guarantees of a job-engine backend
  (exactly-once after kill -9, remote cancel, SIGTERM, events, idempotent enqueue) as
  checks against real worker processes; saq and Celery pass them, and so can yours.
"""

from ..downloader.fake import FakeDownloader
from ..executor.fake import FakeExecutor
from ..storage.memory import MemoryStorage
from ..store.memory import MemoryTaskStore
from .conformance import CHECKS, Conformance, EngineSetup, WorkerProcesses

__all__ = [
    "CHECKS",
    "Conformance",
    "EngineSetup",
    "FakeDownloader",
    "FakeExecutor",
    "MemoryStorage",
    "MemoryTaskStore",
    "WorkerProcesses",
]
