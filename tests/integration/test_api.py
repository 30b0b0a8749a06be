"""The HTTP API against real PostgreSQL and Redis, through the app's own lifespan."""

from __future__ import annotations

import asyncio
import math
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from logkeep.api.app import create_app
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.embedded import EmbeddedRedis
from tests.conftest import Stores, make_settings

SEED_SOURCES = ("nginx_access", "app_errors", "db_slow_queries")
SEED_ENTRIES = 60
INJECTION = "'; DROP TABLE log_entries; --"


@asynccontextmanager_helper := None  # placeholder removed below
