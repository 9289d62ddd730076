"""What the bench commands share on their command line: the service options and running a bench
until it ends, is interrupted (Ctrl-C) or is sent SIGTERM, cleaning up either way."""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Awaitable, Callable

POSTGRES_DEFAULT = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_DEFAULT = "redis://127.0.0.1:6379/0"


def add_postgres_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL", POSTGRES_DEFAULT),
                        help=f"a PostgreSQL admin URL (default TEST_POSTGRES_URL or {POSTGRES_DEFAULT})")


def add_redis_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", default=os.environ.get("TEST_REDIS_URL", REDIS_DEFAULT),
                        help=f"Redis (default TEST_REDIS_URL or {REDIS_DEFAULT}); keys under a prefix of the run's own")


def postgres_url(args: argparse.Namespace) -> str:
    """``--postgres-url`` spelt ``postgres://`` (``postgresql://`` is accepted)."""
    return args.postgres_url.replace("postgresql://", "postgres://", 1)


def run(bench: Callable[[], Awaitable[int | None]]) -> int:
    """Run ``bench()``; SIGTERM cancels it like Ctrl-C, and both answer 130 after its clean-up."""
    async def guarded() -> int | None:
        task = asyncio.current_task()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await bench()

    try:
        return asyncio.run(guarded()) or 0
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; cleaned up", file=sys.stderr)
        return 130
