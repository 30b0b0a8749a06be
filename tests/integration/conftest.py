"""Fixtures shared by the integration tests that run the `logkeep` command."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import Stores, delete_keys


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory with no .env file in it."""
    path = tmp_path / "cwd"
    path.mkdir()
    return path


@pytest.fixture
async def redis_prefix(stores: Stores) -> AsyncIterator[str]:
    prefix = f"test-cli:{uuid.uuid4().hex[:12]}:"
    yield prefix
    await delete_keys(stores.redis_url, prefix)
