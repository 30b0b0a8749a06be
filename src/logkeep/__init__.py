"""logkeep: a self-hosted log store on PostgreSQL and Redis.

The names below load on first use (PEP 562), so that `import logkeep.handler` in an
application, or a CLI command that only talks HTTP, does not pay for asyncpg, redis-py and
pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from logkeep.db.database import Database
    from logkeep.db.repositories import LogRepository, SourceRepository, UserRepository
    from logkeep.domain.entry import InvalidLogEntry, Level, LogEntry

_WHERE = {
    "Database": "logkeep.db.database",
    "LogRepository": "logkeep.db.repositories",
    "SourceRepository": "logkeep.db.repositories",
    "UserRepository": "logkeep.db.repositories",
    "InvalidLogEntry": "logkeep.domain.entry",
    "Level": "logkeep.domain.entry",
    "LogEntry": "logkeep.domain.entry",
}

__all__ = [
    "Database",
    "InvalidLogEntry",
    "Level",
    "LogEntry",
    "LogRepository",
    "SourceRepository",
    "UserRepository",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'logkeep' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
