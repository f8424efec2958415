"""The version is written once, in ffmpeg_tasks/_version.py; everything else reads it."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import ffmpeg_tasks
from ffmpeg_tasks.downloader.http import DEFAULT_USER_AGENT
from ffmpeg_tasks.webhooks import _USER_AGENT as WEBHOOK_USER_AGENT

PACKAGE = Path(ffmpeg_tasks.__file__).parent


def test_installed_metadata_matches_the_source() -> None:
    assert importlib.metadata.version("ffmpeg-tasks") == ffmpeg_tasks.__version__


def test_user_agents_carry_the_version() -> None:
    assert f"ffmpeg-tasks/{ffmpeg_tasks.__version__}" == DEFAULT_USER_AGENT
    assert f"ffmpeg-tasks-webhook/{ffmpeg_tasks.__version__}" == WEBHOOK_USER_AGENT


def test_no_other_module_writes_the_version() -> None:
    version = ffmpeg_tasks.__version__
    short = ".".join(version.split(".")[:2])
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_version.py":
            continue
        text = path.read_text()
        for literal in (f'"{version}"', f"/{version}", f"/{short} ", f'/{short}"'):
            assert literal not in text, f"{path.relative_to(PACKAGE)} writes {literal!r}"
