"""What a file name may be, and what it says: one set of rules for the spec, the policy
and the output check.

Names become paths in the work dir and storage keys, so they are plain: letters, digits,
``.``, ``_``, ``-``, not starting with ``.`` or ``-``, never ``..``.  Output names may hold
one printf frame-number pattern (``thumb_%03d.jpg``).
"""

from __future__ import annotations

import re

__all__ = ["OUTPUT_NAME", "PLAIN_NAME", "extension", "is_plain_name"]

#: A plain file name (also check ``".." not in name``: :func:`is_plain_name` does).
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: An output name: a plain name that may hold one ``%d``/``%03d`` frame-number pattern.
OUTPUT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:%0?[1-9]?d[A-Za-z0-9._-]*)?")


def is_plain_name(name: str, pattern: re.Pattern[str] = PLAIN_NAME) -> bool:
    """Whether ``name`` matches ``pattern`` whole and holds no ``..``."""
    return pattern.fullmatch(name) is not None and ".." not in name


def extension(name: str) -> str:
    """The lower-case extension without the dot: ``"Clip.MP4"`` → ``"mp4"``; ``""`` if none."""
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""
