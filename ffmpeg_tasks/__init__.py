"""ffmpeg_tasks: run FFmpeg jobs on remote files from asyncio.

async with TaskManager() as tm:
    task = await tm.run("-i in.mp4 -c:v libx264 out.mp4",
                        {"in.mp4": "https://example.com/video.mp4"}, "out.mp4")
    print(task.status, task.output_url)
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .backends.base import Backend
from .downloader import (
    CachingDownloader,
    DownloadCache,
    Downloader,
    FakeDownloader,
    HttpDownloader,
    LocalFileDownloader,
)
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .events import Event, EventType
from .executor import (
    ExecResult,
    Executor,
    FakeExecutor,
    LocalExecutor,
    ResourceLimits,
    fake_media,
)
from .ffmpeg import find_ffmpeg, find_ffprobe
from .manager import TaskManager
from .metadata import OutputMetadata, StreamMetadata
from .models import Phase, StoredObject, Task, TaskStatus
from .plan import TaskPlan
from .policy import CommandLimits, CommandPlan, CommandPolicy
from .retry import RetryPolicy
from .spec import SpecLimits
from .storage import LocalStorage, MemoryStorage, Storage, StoredFile
from .store import MemoryTaskStore, SQLiteTaskStore, TaskStore
from .telemetry import Telemetry

if TYPE_CHECKING:
    from .backends.celery import CeleryBackend
    from .backends.saq import SaqBackend
    from .downloader.s3 import S3Downloader
    from .progressbar import PlainBar, follow
    from .storage.s3 import S3Storage
    from .store.postgres import PostgresTaskStore
    from .store.redis import RedisTaskStore
    from .webhooks import Webhook, verify_signature, verify_standard

_LAZY = {
    "S3Storage": ".storage.s3",
    "S3Downloader": ".downloader.s3",
    "RedisTaskStore": ".store.redis",
    "PostgresTaskStore": ".store.postgres",
    "SaqBackend": ".backends.saq",
    "CeleryBackend": ".backends.celery",
    "Webhook": ".webhooks",
    "verify_signature": ".webhooks",
    "verify_standard": ".webhooks",
    "follow": ".progressbar",
    "PlainBar": ".progressbar",
}


def __getattr__(name: str) -> Any:
    """Heavier parts (aiobotocore, saq, tqdm) are imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


__all__ = [
    *_errors_all,
    "Backend",
    "CachingDownloader",
    "CommandLimits",
    "CommandPlan",
    "CommandPolicy",
    "DownloadCache",
    "Downloader",
    "Event",
    "EventType",
    "ExecResult",
    "Executor",
    "FakeDownloader",
    "FakeExecutor",
    "HttpDownloader",
    "LocalExecutor",
    "LocalFileDownloader",
    "LocalStorage",
    "MemoryStorage",
    "MemoryTaskStore",
    "OutputMetadata",
    "Phase",
    "PlainBar",
    "PostgresTaskStore",
    "RedisTaskStore",
    "ResourceLimits",
    "RetryPolicy",
    "S3Downloader",
    "S3Storage",
    "SQLiteTaskStore",
    "SaqBackend",
    "CeleryBackend",
    "SpecLimits",
    "Storage",
    "StoredFile",
    "StoredObject",
    "StreamMetadata",
    "Task",
    "TaskManager",
    "TaskPlan",
    "TaskStatus",
    "TaskStore",
    "Telemetry",
    "Webhook",
    "fake_media",
    "find_ffmpeg",
    "find_ffprobe",
    "follow",
    "verify_signature",
    "verify_standard",
    "__version__",
]
