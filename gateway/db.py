"""Database set-up: Tortoise init/close and the committed migrations."""
from __future__ import annotations

from pathlib import Path

from tortoise import Tortoise
from tortoise.connection import get_connection
from tortoise.migrations.api import migrate as migrate_api

from .settings import tortoise_config


def _ensure_sqlite_dir(database_url: str) -> None:
    if database_url.startswith("sqlite://") and ":memory:" not in database_url:
        Path(database_url.removeprefix("sqlite://").split("?")[0]).parent.mkdir(parents=True, exist_ok=True)


async def open_database(database_url: str) -> None:
    _ensure_sqlite_dir(database_url)
    await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)


async def close_database() -> None:
    await Tortoise.close_connections()


async def migrate(database_url: str) -> None:
    """Apply every committed migration not applied yet (``loyalty migrate``)."""
    _ensure_sqlite_dir(database_url)
    await migrate_api(config=tortoise_config(database_url))
    await Tortoise.close_connections()


async def ping() -> None:
    await get_connection("default").execute_query("SELECT 1")
