"""Routes: stats (see issue notes)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
