"""``loyalty``: serve, worker, migrate, chain create, import members, demo, verify (and pos-curl for trying the
POS API)."""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path

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
    _import_parser(sub)
    demo = sub.add_parser("demo", help="migrate, seed the demo chain, print its keys, serve (with the worker's "
                                       "loop in the same process)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--no-serve", action="store_true", help="seed and print, then exit")
    demo.set_defaults(run=cmd_demo)
    sub.add_parser("verify", help="recompute balances from the journal; exit 1 on any difference").set_defaults(
        run=cmd_verify)
    sub.add_parser("fill-birth-months", help="the birth month (for the birthday job) of members registered "
                                             "before migration 0014, from their encrypted birthday").set_defaults(
        run=cmd_fill_birth_months)
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
    app = create_app(settings, with_worker=with_worker)
    app.on_startup.append(processes.settle_heap)  # after the database and Redis are connected
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None,
                reuse_port=getattr(args, "reuse_port", False) or None)
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


def cmd_fill_birth_months(settings: Settings, args) -> int:
    from loyalty_core.crypto import Vault
    from loyalty_core.members import fill_birth_months

    async def run() -> int:
        await db.open_database(settings.database_url, command_timeout=None)
        try:
            return await fill_birth_months(Vault(settings.require_secret()))
        finally:
            await db.close_database()

    print(f"birth months filled: {asyncio.run(run())}")
    return 0


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
    fake = settings.wechat_api_base_url if settings.wechat_api_base_url.startswith("http://127.0.0.1") else None
    print(demo.banner(seeded, args.host, args.port, fake))
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


def _import_parser(sub) -> None:
    imports = sub.add_parser("import", help="bulk imports").add_subparsers(required=True, metavar="WHAT")
    members = imports.add_parser("members", help="import a chain's members from a CSV file (docs/import.md)")
    members.add_argument("file", type=Path, metavar="FILE.csv")
    members.add_argument("--chain", type=int, required=True, metavar="CHAIN_ID")
    members.add_argument("--checkpoint", type=Path, metavar="PATH", help="default: FILE.csv.checkpoint")
    members.add_argument("--report", type=Path, metavar="PATH",
                         help="rows not imported, by line (default: FILE.csv.report.csv)")
    members.add_argument("--batch-size", type=int, default=1000, metavar="N", help="rows per transaction (1000)")
    members.add_argument("--parallel", type=int, default=2, metavar="N",
                         help="batches written at once, each on its own database connection (2)")
    members.add_argument("--no-welcome", action="store_true", help="no welcome points for the imported members")
    members.add_argument("--encoding", default="utf-8-sig", help="the file's encoding (default UTF-8, with or "
                                                                  "without a BOM; gb18030 for a Chinese Excel export)")
    members.set_defaults(run=cmd_import_members)


def cmd_import_members(settings: Settings, args) -> int:
    """Exit 0: every row imported or skipped as a member already; 1: some rows rejected (see the
    report); 2: nothing done (settings, chain, file, header or checkpoint refused); 3: stopped
    before the end (interrupted, database gone): the same command goes on from the checkpoint."""
    import codecs

    from loyalty_core.clock import Clock
    from loyalty_core.crypto import Vault
    from loyalty_core.imports import ImportOptions, ImportRefused, import_file

    vault = Vault(settings.require_secret())
    if not args.file.is_file():
        print(f"loyalty: no file {args.file}", file=sys.stderr)
        return 2
    try:
        codecs.lookup(args.encoding)
    except LookupError:
        print(f"loyalty: unknown encoding {args.encoding!r}", file=sys.stderr)
        return 2
    options = ImportOptions(checkpoint=args.checkpoint, report=args.report, batch_size=args.batch_size,
                            parallel=args.parallel, welcome=not args.no_welcome, encoding=args.encoding)
    bar = ProgressBar(sys.stderr)

    async def run():
        await db.open_database(settings.database_url)
        try:
            return await import_file(args.chain, args.file, vault, Clock(), options, bar.show)
        finally:
            await db.close_database()

    try:
        summary = asyncio.run(run())
    except ImportRefused as refused:
        print(f"loyalty: {refused.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        bar.end()
        print("loyalty: interrupted; run the same command again to go on after the last committed batch",
              file=sys.stderr)
        return 3
    except Exception as error:
        bar.end()
        print(f"loyalty: import stopped: {type(error).__name__}: {error}"[:500], file=sys.stderr)
        print("loyalty: run the same command again to go on after the last committed batch", file=sys.stderr)
        return 3
    bar.end()
    print(import_summary(summary))
    return 1 if summary.counts.rejected else 0


def import_summary(summary) -> str:
    counts, run = summary.counts, summary.run
    if summary.already_done:
        head = [f"{summary.file}: imported already (checkpoint {summary.checkpoint}); delete the checkpoint to "
                "import it again"]
    else:
        rate = (summary.last_line - summary.first_line) / summary.seconds if summary.seconds else 0.0
        head = [f"{summary.file}: lines {summary.first_line + 1}-{summary.last_line} read in {summary.seconds:.1f} s "
                f"({rate:,.0f} rows/s)" + (", resumed from the checkpoint" if summary.resumed else "")]
    this_run = f" ({run.imported:,} in this run)" if summary.resumed else ""
    return "\n".join(head + [
        f"imported:                 {counts.imported:,}{this_run}",
        f"skipped (members already): {counts.skipped:,}",
        f"rejected (bad rows):      {counts.rejected:,}",
        f"welcome points given to:  {counts.welcomed:,}",
        f"report of rows not imported: {summary.report}",
    ])


class ProgressBar:
    """Rows done of the file's lines, rate and ETA on stderr: redrawn in place on a terminal, a
    line every 10 s otherwise (a log file, CI)."""

    def __init__(self, stream, every: float = 10.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.every = every if not self.tty else 0.2
        self.last = 0.0
        self.drawn = False

    def show(self, progress) -> None:
        now = time.monotonic()
        if now - self.last < self.every and progress.line < progress.total:
            return
        self.last = now
        total = max(progress.total - 1, progress.done, 1)
        share = progress.done / total
        rate = progress.rate
        eta = (total - progress.done) / rate if rate else 0
        filled = int(share * 30)
        text = (f"[{'#' * filled}{'-' * (30 - filled)}] {progress.done:,}/{total:,} rows {share:6.1%} "
                f"{rate:,.0f} rows/s ETA {int(eta) // 60}m{int(eta) % 60:02d}s  "
                f"imported {progress.counts.imported:,} skipped {progress.counts.skipped:,} "
                f"rejected {progress.counts.rejected:,}")
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")
            self.drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def end(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


if __name__ == "__main__":
    sys.exit(main())
