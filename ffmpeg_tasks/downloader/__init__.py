"""Downloaders: fetch one input URL into one local file."""

from .base import Downloader, DownloadProgress
from .fake import FakeDownloader
from .http import HttpDownloader

__all__ = ["DownloadProgress", "Downloader", "FakeDownloader", "HttpDownloader"]
