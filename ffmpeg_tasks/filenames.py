"""What a file's name says: its extension, the one rule every module uses."""

from __future__ import annotations

__all__ = ["extension"]


def extension(name: str) -> str:
    """The lower-case extension without the dot: ``"Clip.MP4"`` → ``"mp4"``; ``""`` if none."""
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""
