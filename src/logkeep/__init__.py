"""logkeep: a self-hosted log store on PostgreSQL and Redis."""

from logkeep.db.database import Database
from logkeep.db.repositories import LogRepository, SourceRepository, UserRepository
from logkeep.domain.entry import InvalidLogEntry, Level, LogEntry

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
