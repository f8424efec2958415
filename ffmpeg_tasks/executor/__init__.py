"""Executors run one ffmpeg argv in a work dir: the local one, and a scripted fake for tests."""

from .base import ExecResult, Executor, ProgressCallback
from .fake import FakeCall, FakeExecutor, fake_media
from .local import LocalExecutor
from .sandbox import ResourceLimits

__all__ = [
    "ExecResult",
    "Executor",
    "FakeCall",
    "FakeExecutor",
    "LocalExecutor",
    "ProgressCallback",
    "ResourceLimits",
    "fake_media",
]
