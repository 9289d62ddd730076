"""Exit 0 when the PostgreSQL and Redis of the test run answer (used by `make test`)."""
from __future__ import annotations

import asyncio
import os
import sys


async def reachable() -> list[str]:
    import asyncpg
    from redis.asyncio import Redis

    missing = []
    url = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    try:
        conn = await asyncio.wait_for(asyncpg.connect(url.replace("postgres://", "postgresql://", 1)), 5)
        await conn.close()
    except Exception as error:  # a probe: report, never raise
        missing.append(f"PostgreSQL at {url}: {error}")
    redis = Redis.from_url(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"), socket_timeout=5)
    try:
        await redis.ping()
    except Exception as error:
        missing.append(f"Redis: {error}")
    finally:
        await redis.aclose()
    return missing


if __name__ == "__main__":
    problems = asyncio.run(reachable())
    for line in problems:
        print(line, file=sys.stderr)
    sys.exit(1 if problems else 0)
