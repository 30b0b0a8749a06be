"""Type names for asyncpg objects shared by the db modules."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A plain connection or one borrowed from the pool: both answer the same calls.
Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy
