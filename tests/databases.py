"""A throwaway database of a test's own, beside the run's shared one: a SQLite file under the
test's tmp_path, or a fresh PostgreSQL database on ``TEST_POSTGRES_URL``, dropped afterwards."""
from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from .conftest import BACKEND, POSTGRES_URL, _admin_execute


@asynccontextmanager
async def throwaway_database(tmp_path: Path, backend: str = BACKEND) -> AsyncIterator[str]:
    """The URL of an empty database (no migration applied)."""
    if backend != "postgres":
        yield f"sqlite://{tmp_path / f'throwaway-{uuid.uuid4().hex[:8]}.sqlite3'}"
        return
    name = f"loyalty_test_{uuid.uuid4().hex[:12]}"
    await _admin_execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        await _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
