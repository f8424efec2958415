"""Bounded parsing of ffmpeg's output streams.

* :class:`LineSplitter` cuts a byte stream into lines ending at ``\\n``, ``\\r\\n`` or a
  bare ``\\r`` (ffmpeg's stats line), never holding more than ``max_line`` bytes.
* :class:`ProgressParser` turns ``-progress pipe:1`` output (``key=value`` lines, each
  block closed by ``progress=continue`` or ``progress=end``) into dicts.
* :class:`StderrTail` keeps the last N bytes of stderr as readable lines.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping

__all__ = ["LineSplitter", "ProgressParser", "StderrTail", "progress_marker"]

_EOL = re.compile(rb"\r\n|\r|\n")

#: Keys whose change means ffmpeg made progress (used by stall detection).
ADVANCE_KEYS = ("out_time_us", "out_time_ms", "frame", "total_size")


def progress_marker(block: Mapping[str, str]) -> tuple[str | None, ...]:
    """The values that must change between blocks for the run to count as advancing."""
    return tuple(block.get(key) for key in ADVANCE_KEYS)


class LineSplitter:
    """Split bytes into ``(line, ended_by_bare_cr)`` pairs; lines longer than ``max_line`` are cut.

    The part of an over-long line past ``max_line`` is dropped, so memory stays bounded
    whatever the producer writes.
    """

    def __init__(self, max_line: int = 4096) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be >= 1, got {max_line!r}")
        self.max_line = max_line
        self._buf = b""
        self._skipping = False  # dropping the rest of an over-long line

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        """Lines completed by ``data``."""
        buf = self._buf + data
        out: list[tuple[bytes, bool]] = []
        pos = 0
        for match in _EOL.finditer(buf):
            eol = match.group()
            if eol == b"\r" and match.end() == len(buf):
                break  # may be the first half of "\r\n": decide on the next feed
            line = buf[pos : match.start()]
            pos = match.end()
            if self._skipping:
                self._skipping = False
                continue
            out.append((line[: self.max_line], eol == b"\r"))
        rest = buf[pos:]
        if self._skipping:
            rest = b"\r" if rest.endswith(b"\r") else b""
        elif len(rest) > self.max_line + 1:
            out.append((rest[: self.max_line], False))
            self._skipping = True
            rest = b"\r" if rest.endswith(b"\r") else b""
        self._buf = rest
        return out

    def flush(self) -> list[tuple[bytes, bool]]:
        """The unterminated last line, if any (call at EOF)."""
        rest, self._buf = self._buf, b""
        skipping, self._skipping = self._skipping, False
        if skipping or not rest:
            return []
        cr = rest.endswith(b"\r")
        return [((rest[:-1] if cr else rest)[: self.max_line], cr)]


class ProgressParser:
    """Parse ``-progress`` output into blocks: ``feed(bytes) -> list[dict[str, str]]``.

    Lines longer than ``max_line`` are cut and a block never holds more than
    ``max_keys`` keys, so garbage on stdout cannot grow memory.
    """

    def __init__(self, *, max_line: int = 1024, max_keys: int = 128) -> None:
        self._lines = LineSplitter(max_line)
        self._max_keys = max_keys
        self._block: dict[str, str] = {}

    def feed(self, data: bytes) -> list[dict[str, str]]:
        """Blocks completed by ``data`` (each ends with its ``progress`` key)."""
        return self._parse(self._lines.feed(data))

    def flush(self) -> list[dict[str, str]]:
        """Blocks completed by an unterminated last line (call at EOF)."""
        return self._parse(self._lines.flush())

    def _parse(self, lines: list[tuple[bytes, bool]]) -> list[dict[str, str]]:
        blocks: list[dict[str, str]] = []
        for raw, _ in lines:
            key, sep, value = raw.decode("utf-8", "replace").strip().partition("=")
            key = key.strip()
            if not sep or not key:
                continue
            if key in self._block or len(self._block) < self._max_keys:
                self._block[key] = value.strip()
            if key == "progress":
                self._block["progress"] = value.strip()
                blocks.append(self._block)
                self._block = {}
        return blocks


class StderrTail:
    """The last ``limit`` bytes of stderr, as lines.

    A line that ended with a bare ``\\r`` (ffmpeg's stats line) is replaced by the
    next line, the way a terminal shows it, so the tail keeps log lines rather than
    hundreds of ``frame=…`` updates.
    """

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"stderr tail limit must be >= 0, got {limit!r}")
        self.limit = limit
        self._lines: collections.deque[str] = collections.deque()
        self._size = 0  # encoded bytes held, counting one separator per line
        self._overwrite_last = False

    def add(self, line: str, *, overwritable: bool = False) -> None:
        """Append ``line``; drop the oldest lines beyond the limit."""
        if not line:  # a blank "\n" ends the overwritable line; a blank "\r" changes nothing
            if not overwritable:
                self._overwrite_last = False
            return
        if self._overwrite_last and self._lines:
            old = self._lines.pop()
            self._size -= len(old.encode()) + 1
        self._overwrite_last = overwritable
        self._lines.append(line)
        self._size += len(line.encode()) + 1
        while self._size > self.limit + 1 and len(self._lines) > 1:
            old = self._lines.popleft()
            self._size -= len(old.encode()) + 1

    def text(self) -> str:
        """The tail, lines joined by ``\\n``, at most ``limit`` UTF-8 bytes."""
        data = "\n".join(self._lines).encode()
        if len(data) > self.limit:
            data = data[len(data) - self.limit :]
        return data.decode("utf-8", "ignore")
