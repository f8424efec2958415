"""Facts about local processes from Linux ``/proc``: when one started, whether it is a zombie."""

from __future__ import annotations

__all__ = ["is_zombie", "start_ticks"]


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (exact, unlike a wall
    time derived from it); None when unknown (not Linux, gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rpartition(b")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def is_zombie(pid: int) -> bool:
    """A process that exited and waits for its parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state in (b"Z", b"X")
