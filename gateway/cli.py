"""``loyalty``: serve, worker, migrate, chain create, demo, verify (and pos-curl for trying the POS API)."""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from aiohttp import web

from . import db, processes
from .logging import configure
from .settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    use_uvloop()
    try:
        settings = Settings.from_env()
        configure(settings.log_level)
        return args.run(settings, args) or 0
    except SettingsError as error:
        print(f"loyalty: {error}", file=sys.stderr)
        return 2


def use_uvloop() -> None:
    """Every command's event loop is uvloop's where it is installed (Linux, macOS): the same
    asyncio API, a faster loop and transports."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="loyalty", description="Loyalty gateway")
    sub = top.add_subparsers(required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the HTTP gateway")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=None, metavar="N",
                       help="gateway processes on the one port (default: one per core; one without REDIS_URL)")
    serve.add_argument("--single-process", action="store_true",
                       help="allow running without REDIS_URL on PostgreSQL: this must then be the only gateway "
                            "process (nonces and member codes live in its memory)")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # a child of --workers N
    serve.set_defaults(run=cmd_serve)
    work = sub.add_parser("worker", help="outbox delivery and scheduled jobs")
    work.add_argument("--processes", type=int, default=1, metavar="N", help="worker processes (default 1)")
    work.set_defaults(run=cmd_worker)
    sub.add_parser("migrate", help="bring the database schema up to date").set_defaults(run=cmd_migrate)
    chain = sub.add_parser("chain", help="chains").add_subparsers(required=True, metavar="ACTION")
    create = chain.add_parser("create", help="create a chain and print its first owner key")
    create.add_argument("name")
    create.add_argument("--timezone", default="Asia/Shanghai")
    create.set_defaults(run=cmd_chain_create)
    demo = sub.add_parser("demo", help="migrate, seed the demo chain, print its keys, serve (with the worker's "
                                       "loop in the same process)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--no-serve", action="store_true", help="seed and print, then exit")
    demo.set_defaults(run=cmd_demo)
    sub.add_parser("verify", help="recompute balances from the journal; exit 1 on any difference").set_defaults(
        run=cmd_verify)
    sign = sub.add_parser("pos-curl", help="print a signed curl command for a POS request (demo terminal)")
    sign.add_argument("method")
    sign.add_argument("path")
    sign.add_argument("body", nargs="?", default="")
    sign.add_argument("--url", default="http://127.0.0.1:8080")
    sign.set_defaults(run=cmd_pos_curl)
    return top


def cmd_serve(settings: Settings, args, with_worker: bool = False) -> int:
    from .app import create_app

    settings.require_secret()
    workers = _gateway_count(settings, args, with_worker)
    if workers > 1:
        return processes.supervise(["serve", "--workers", "1", "--reuse-port", "--host", args.host,
                                    "--port", str(args.port)], workers)
    web.run_app(create_app(settings, with_worker=with_worker), host=args.host, port=args.port, print=None,
                access_log=None, reuse_port=getattr(args, "reuse_port", False) or None)
    return 0


def _gateway_count(settings: Settings, args, with_worker: bool) -> int:
    """How many gateway processes: several only beside a shared Redis, where nonces and member
    codes live (the in-process stand-in is one process's own)."""
    if with_worker:
        return 1
    if settings.redis_url:
        workers = args.workers if args.workers is not None else processes.default_count()
        if workers < 1:
            raise SettingsError("--workers must be at least 1")
        return workers
    if args.workers is not None and args.workers > 1:
        raise SettingsError("--workers above 1 needs REDIS_URL: without it each process keeps its own nonces and "
                            "member codes, and a signed request could be replayed on another process.")
    if not settings.database_url.startswith("sqlite") and not args.single_process:
        raise SettingsError("REDIS_URL is required beside a shared database: without it each process keeps its own "
                            "nonces and member codes, and a signed request could be replayed on another process. "
                            "Set REDIS_URL, or pass --single-process if this is the only gateway process.")
    return 1


def cmd_migrate(settings: Settings, args) -> int:
    asyncio.run(db.migrate(settings.database_url))
    print("migrations applied")
    return 0


def cmd_chain_create(settings: Settings, args) -> int:
    from loyalty_core.chains import create_chain
    from loyalty_core.clock import is_timezone

    if not is_timezone(args.timezone):
        print(f"loyalty: unknown timezone {args.timezone!r}", file=sys.stderr)
        return 2

    async def run() -> dict:
        await db.open_database(settings.database_url)
        try:
            chain, key = await create_chain(args.name, args.timezone)
            return {"chain_id": chain.id, "admin_key": key.key}
        finally:
            await db.close_database()

    print(json.dumps(asyncio.run(run())))
    return 0


def cmd_verify(settings: Settings, args) -> int:
    from loyalty_core.verify import verify

    async def run():
        await db.open_database(settings.database_url, command_timeout=None)  # a large ledger takes time
        try:
            return await verify()
        finally:
            await db.close_database()

    differences = asyncio.run(run())
    for difference in differences:
        print(difference)
    print(f"{len(differences)} differences" if differences else "ledger verified: 0 differences")
    return 1 if differences else 0


def cmd_worker(settings: Settings, args) -> int:
    from loyalty_core.clock import Clock

    from . import worker

    if args.processes < 1:
        raise SettingsError("--processes must be at least 1")
    if args.processes > 1:
        return processes.supervise(["worker"], args.processes)

    async def run() -> None:
        await db.open_database(settings.database_url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await worker.run(Clock(), stop, settings=settings)
        finally:
            await db.close_database()

    asyncio.run(run())
    return 0


def cmd_demo(settings: Settings, args) -> int:
    from . import demo

    settings = settings.with_demo_secret()
    asyncio.run(db.migrate(settings.database_url))
    seeded = asyncio.run(demo.seed(settings))
    print(demo.banner(seeded, args.host, args.port))
    if args.no_serve:
        return 0
    return cmd_serve(settings, args, with_worker=True)


def cmd_pos_curl(settings: Settings, args) -> int:
    from . import demo

    seeded = demo.load_seed()
    if seeded is None:
        print("loyalty: no demo seed under ./var; run `make run` (or `loyalty demo`) first", file=sys.stderr)
        return 2
    print(demo.signed_curl(seeded, args.method, args.path, args.body, args.url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
