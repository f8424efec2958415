"""Where outputs go: S3 (or compatible), a local directory, or memory (for tests)."""

from typing import TYPE_CHECKING, Any

from .base import Storage, StoredFile, UploadProgress
from .content_types import content_type_for
from .local import LocalStorage
from .memory import MemoryStorage

if TYPE_CHECKING:
    from .s3 import S3Storage


def __getattr__(name: str) -> Any:
    # S3Storage pulls in aiobotocore/botocore (~0.3 s): imported on first use only.
    if name == "S3Storage":
        from .s3 import S3Storage

        return S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LocalStorage",
    "MemoryStorage",
    "S3Storage",
    "Storage",
    "StoredFile",
    "UploadProgress",
    "content_type_for",
]
