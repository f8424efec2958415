"""Task stores: where task records live.

``MemoryTaskStore`` (one process), ``SQLiteTaskStore`` (processes on one host),
``RedisTaskStore`` and ``PostgresTaskStore`` (shared by many hosts).  The Redis
and PostgreSQL drivers are imported only when such a store is created.
"""

from .base import TaskStore
from .memory import MemoryTaskStore
from .postgres import PostgresTaskStore
from .redis import RedisTaskStore
from .sqlite import SQLiteTaskStore

__all__ = [
    "MemoryTaskStore",
    "PostgresTaskStore",
    "RedisTaskStore",
    "SQLiteTaskStore",
    "TaskStore",
]
