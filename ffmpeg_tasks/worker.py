"""The saq worker, under its old name: it lives in :mod:`ffmpeg_tasks.backends.saq_worker`.

Kept so that ``from ffmpeg_tasks.worker import run_worker`` goes on working.
"""

from .backends.saq_worker import (
    MANAGER_KEY,
    add_worker_parser,
    run_task,
    run_worker,
    worker_main,
)

__all__ = ["MANAGER_KEY", "add_worker_parser", "run_task", "run_worker", "worker_main"]
