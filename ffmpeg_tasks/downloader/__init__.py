"""Downloaders: fetch one input (a URL or a local path) into one local file."""

from typing import TYPE_CHECKING, Any

from .base import ConditionalDownloader, Downloader, DownloadProgress, Revalidated, Validator
from .cache import DownloadCache
from .caching import CacheStats, CachingDownloader
from .fake import FakeDownloader
from .http import HttpDownloader
from .local import LocalFileDownloader
from .router import DownloaderRouter, StaticCheck

if TYPE_CHECKING:
    from .s3 import S3Downloader

__all__ = [
    "CacheStats",
    "CachingDownloader",
    "ConditionalDownloader",
    "DownloadCache",
    "DownloadProgress",
    "Downloader",
    "DownloaderRouter",
    "FakeDownloader",
    "HttpDownloader",
    "LocalFileDownloader",
    "Revalidated",
    "S3Downloader",
    "StaticCheck",
    "Validator",
]


def __getattr__(name: str) -> Any:
    """``S3Downloader`` imports aiobotocore: only on first use."""
    if name == "S3Downloader":
        from .s3 import S3Downloader

        return S3Downloader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
