"""The app factory: everything a gateway process needs, wired once, connected on start-up."""
from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from adapters.marketplaces import OpenApis
from adapters.wechat.client import WeChat
from loyalty_core.clock import Clock
from loyalty_core.crypto import Vault

from . import db, worker
from .metrics import metrics_middleware
from .problems import problem_middleware
from .redis import KeySpace, connect
from .routes import API
from .routes import (admin, channel_admin, coupon_admin, hooks, mall_admin, mp, pos,  # noqa: F401  (registers their operations)
                     reports, review_admin, segment_admin, system, webhook_admin)
from .services import SERVICES, Services
from .settings import Settings

MAX_BODY = 2 * 1024 * 1024
log = structlog.get_logger("gateway")


def create_app(settings: Settings, clock: Clock | None = None, with_worker: bool = False) -> web.Application:
    """The gateway. ``with_worker`` also runs the worker's loop in this process (the demo: one
    process on one SQLite file, so nothing waits on another process's write lock)."""
    app = web.Application(middlewares=[metrics_middleware, problem_middleware], client_max_size=MAX_BODY)
    app[SERVICES] = Services(settings=settings, vault=Vault(settings.require_secret()), clock=clock or Clock(),
                             cache=None)  # type: ignore[arg-type]
    app.cleanup_ctx.append(_database(settings))
    app.cleanup_ctx.append(_redis(settings))
    if with_worker:
        app.cleanup_ctx.append(_worker)
    API.install(app)
    return app


async def _worker(app: web.Application):
    stop = asyncio.Event()
    services = app[SERVICES]
    task = asyncio.create_task(worker.run(services.clock, stop, settings=services.settings, cache=services.cache))
    yield
    stop.set()
    await task


def _database(settings: Settings):
    async def context(app: web.Application):
        await db.open_database(settings.database_url)
        yield
        await db.close_database()

    return context


def _redis(settings: Settings):
    async def context(app: web.Application):
        if not settings.redis_url:
            log.warning("redis.stand_in", detail="REDIS_URL is not set: nonces and member codes live in this "
                                                 "process only; run a single gateway process or set REDIS_URL")
        redis = connect(settings.redis_url)
        services = app[SERVICES]
        services.cache = KeySpace(redis, settings.redis_prefix)
        services.wechat = WeChat(settings.wechat_api_base_url, services.cache)
        services.marketplaces = OpenApis(settings.platform_base_urls, services.vault, services.cache, services.clock)
        yield
        services.wechat.close()
        await services.marketplaces.close()
        await redis.aclose()

    return context
