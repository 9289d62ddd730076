"""A serving process moves what it loaded out of the garbage collector's reach once it is up, so
that a full collection never pauses the requests in flight for the whole heap's scan."""
from __future__ import annotations

import asyncio
import gc

from gateway import cli, processes


def test_serve_settles_the_heap_after_connecting(monkeypatch):
    started = []
    monkeypatch.setattr(cli.web, "run_app", lambda app, **options: started.append(app))
    monkeypatch.setattr(cli, "use_uvloop", lambda: None)  # the event loop policy is the whole test run's
    monkeypatch.setenv("LOYALTY_SECRET", "s" * 32)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert cli.main(["serve", "--port", "0"]) == 0
    (app,) = started
    assert list(app.on_startup)[-1] is processes.settle_heap  # after the database's and Redis's set-up


def test_a_settled_heap_is_not_scanned_again():
    before = gc.get_freeze_count()
    try:
        asyncio.run(processes.settle_heap())
        assert gc.get_freeze_count() > before + 10_000  # this process's modules, schemas and the rest
        gc.collect()
        assert gc.get_freeze_count() > before  # still out of reach after a full collection
    finally:
        gc.unfreeze()
