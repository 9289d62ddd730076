"""``python -m tests.faults.sink_worker URL``: the real worker loop (``gateway.worker.run``: relay,
jobs, retention) with one route for every topic, which POSTs each event to ``URL`` as a chain's
webhook would receive it: ``{"event_id", "topic", "payload"}``; anything but a 2xx is a failed
delivery (retried by the relay). Settings come from the environment (``DATABASE_URL``,
``OUTBOX_LEASE_SECONDS`` ...), as for ``loyalty worker``; stops on SIGTERM or SIGINT.
"""
from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp

from gateway import db, worker
from gateway.logging import configure
from gateway.settings import Settings
from loyalty_core.clock import Clock
from loyalty_core.models import OutboxEvent


async def main(url: str) -> None:
    settings = Settings.from_env()
    configure(settings.log_level)
    await db.open_database(settings.database_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def post(event: OutboxEvent) -> None:
            body = {"event_id": event.event_id, "topic": event.topic, "payload": event.payload}
            async with session.post(url, json=body) as response:
                if response.status >= 300:
                    raise RuntimeError(f"receiver answered {response.status}")

        try:
            await worker.run(Clock(), stop, interval=0.2, settings=settings, routes={worker.ANY_TOPIC: [post]})
        finally:
            await db.close_database()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
