"""What a fault test starts, and stops again whatever happens.

A ``Lab`` owns one temporary directory, every process it started (gateways, sink workers, a
redis-server) and a stack of clean-ups (a database to drop, a PostgreSQL cluster to stop, Redis
keys to delete). ``Lab.close`` kills its own processes by their pid, runs the clean-ups and
deletes the directory; on the way it prints the tail of each process's log, which pytest shows
when the test failed.
"""
from __future__ import annotations

import asyncio
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parents[2]
LOYALTY = str(Path(sys.executable).with_name("loyalty"))
SECRET = "faults-secret-0123456789abcdef"
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SERVICE_VARIABLES = ("DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "LOYALTY_SECRET", "LOG_LEVEL",
                     "IDEMPOTENCY_LEASE_SECONDS", "OUTBOX_LEASE_SECONDS", "OUTBOX_RETENTION_DAYS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    return shutil.which(name) or name


class Lab:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="loyalty-faults-"))
        self.processes: list[Process] = []
        self._cleanups: list[Callable[[], Awaitable[None]]] = []
        self.t0 = time.monotonic()

    def on_close(self, cleanup: Callable[[], Awaitable[None]]) -> None:
        self._cleanups.append(cleanup)

    def clock(self) -> float:
        """Seconds since the lab opened (for the timings printed on failure)."""
        return time.monotonic() - self.t0

    def env(self, **values: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
        env.update(LOYALTY_SECRET=SECRET, LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
        env.update(values)
        return env

    async def close(self) -> None:
        for process in reversed(self.processes):
            process.kill()
        for cleanup in reversed(self._cleanups):
            try:
                await cleanup()
            except Exception as error:  # keep cleaning up; say what failed
                print(f"lab clean-up failed: {type(error).__name__}: {error}")
        for process in self.processes:
            process.print_tail()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- processes -----------------------------------------------------------------------------
    def process(self, name: str, argv: list[str], env: dict[str, str]) -> "Process":
        process = Process(self, name, argv, env)
        self.processes.append(process)
        return process

    async def gateway(self, name: str, env: dict[str, str]) -> "Gateway":
        gateway = Gateway(self, name, env)
        self.processes.append(gateway)
        gateway.start()
        await gateway.ready()
        return gateway

    async def run(self, *argv: str, env: dict[str, str], timeout: float = 60) -> str:
        """A command to completion; its standard output (fails the test on a non-zero exit)."""
        process = await asyncio.create_subprocess_exec(*argv, env=env, cwd=REPO, stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"{argv} did not finish in {timeout} s") from None
        assert process.returncode == 0, f"{argv} exited {process.returncode}: {err.decode()[-2000:]}"
        return out.decode()

    # --- databases and Redis ---------------------------------------------------------------------
    async def database(self, admin_url: str = POSTGRES_URL) -> str:
        """A fresh database on that server, migrated with ``loyalty migrate``, dropped on close."""
        name = f"loyalty_faults_{uuid.uuid4().hex[:12]}"
        await admin_execute(admin_url, f'CREATE DATABASE "{name}"')
        self.on_close(lambda: admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        url = admin_url.rsplit("/", 1)[0] + "/" + name
        await self.run(LOYALTY, "migrate", env=self.env(DATABASE_URL=url))
        return url

    async def chain(self, database_url: str, name: str = "Fault Chain") -> dict:
        """``loyalty chain create``: {"chain_id", "admin_key"}."""
        return json.loads(await self.run(LOYALTY, "chain", "create", name, env=self.env(DATABASE_URL=database_url)))

    def redis_prefix(self, redis_url: str = REDIS_URL) -> str:
        """A key prefix of its own on a shared Redis; its keys are deleted on close."""
        prefix = f"loyalty-faults:{uuid.uuid4().hex[:12]}:"

        async def forget() -> None:
            from redis.asyncio import Redis

            client = Redis.from_url(redis_url, socket_timeout=5)
            try:
                async for key in client.scan_iter(match=prefix + "*"):
                    await client.delete(key)
            finally:
                await client.aclose()

        self.on_close(forget)
        return prefix

    async def postgres(self) -> "PostgresCluster":
        cluster = PostgresCluster(self)
        self.on_close(cluster.destroy)
        await cluster.create()
        return cluster

    async def redis_server(self) -> "RedisServer":
        server = RedisServer(self)
        self.processes.append(server)
        server.start()
        await server.ready()
        return server

    async def served(self, application: web.Application, path: str = "") -> str:
        """An aiohttp application (a fake platform) on a free loopback port until the lab closes;
        its URL (with ``path``)."""
        runner = web.AppRunner(application)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.on_close(runner.cleanup)
        return f"http://127.0.0.1:{port}{path}"

    async def receiver(self) -> "Receiver":
        receiver = Receiver()
        await receiver.start()
        self.on_close(receiver.stop)
        return receiver


async def admin_execute(admin_url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url.replace("postgres://", "postgresql://", 1), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class Process:
    """One child process; its output goes to a log file in the lab's directory."""

    def __init__(self, lab: Lab, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.lab, self.name, self.argv, self.env = lab, name, argv, env
        self.log = lab.dir / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self.pids: list[int] = []

    def start(self) -> None:
        assert not self.alive, f"{self.name} runs already"
        with open(self.log, "ab") as log:
            log.write(f"--- start at {self.lab.clock():.2f} s\n".encode())
            self.popen = subprocess.Popen(self.argv, env=self.env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT)
        self.pids.append(self.popen.pid)

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, to this process's own pid."""
        if self.alive:
            assert self.popen is not None
            self.popen.kill()
            self.popen.wait(10)

    async def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then wait (SIGKILL after ``timeout``)."""
        if not self.alive:
            return
        assert self.popen is not None
        self.popen.terminate()
        deadline = time.monotonic() + timeout
        while self.popen.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.kill()

    def signal(self, sig: int) -> None:
        assert self.popen is not None and self.alive
        self.popen.send_signal(sig)

    def print_tail(self, lines: int = 30) -> None:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return
        print(f"===== {self.name} (pids {self.pids}): its errors, then the last {lines} lines of its log =====")
        for line in text:
            if '"level": "error"' in line:  # a JSON log line with a traceback: its event and last words
                print(line[:120], "...", line[-300:])
        print("\n".join(line[:1000] for line in text[-lines:]))


class Gateway(Process):
    """``loyalty serve`` on a port of its own."""

    def __init__(self, lab: Lab, name: str, env: dict[str, str]) -> None:
        self.port = free_port()
        super().__init__(lab, name, [LOYALTY, "serve", "--workers", "1", "--host", "127.0.0.1", "--port", str(self.port)], env)
        self.url = f"http://127.0.0.1:{self.port}"

    async def ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                assert self.alive, f"{self.name} exited: see its log"
                try:
                    async with session.get(self.url + "/healthz") as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} did not answer /healthz within {timeout} s")


class PostgresCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (run as the ``postgres`` OS user: initdb refuses root)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="loyalty-faults-pg-"))
        user = pwd.getpwnam("postgres")
        os.chown(self.dir, user.pw_uid, user.pw_gid)
        self.data = self.dir / "data"
        self.admin_url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    async def _as_postgres(self, *argv: str, timeout: float = 60) -> None:
        await self.lab.run("runuser", "-u", "postgres", "--", *argv, env=self.lab.env(), timeout=timeout)

    async def create(self) -> None:
        await self._as_postgres(postgres_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                                "--no-sync", "-E", "UTF8")
        await self.start()

    async def start(self) -> None:
        options = f"-k {self.dir} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        await self._as_postgres(postgres_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                                str(self.dir / "server.log"), "-w", "-t", "30", "start")

    async def stop(self, mode: str = "fast") -> None:
        await self._as_postgres(postgres_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def processes(self) -> list[int]:
        """The postmaster this cluster runs and its children (backends, checkpointer ...)."""
        postmaster = self.postmaster_pid()
        if postmaster is None:
            return []
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        return [postmaster, *map(int, children)]

    def pause(self) -> None:
        """Freeze the whole cluster (SIGSTOP): connections stay open and nothing answers, as
        with a hung server or a network that drops packets."""
        postmaster = self.postmaster_pid()
        assert postmaster is not None, "the cluster is not running"
        os.kill(postmaster, signal.SIGSTOP)  # first, so that it forks no backend meanwhile
        for pid in self.processes():
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.processes():
            os.kill(pid, signal.SIGCONT)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    async def destroy(self) -> None:
        try:
            self.resume()
            if self.postmaster_pid() is not None:
                await self.stop("immediate")
        finally:
            pid = self.postmaster_pid()
            if pid is not None:  # pg_ctl could not stop it: the postmaster this cluster started
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer(Process):
    """A throwaway redis-server on 127.0.0.1 whose writes survive a restart (append-only file,
    fsync on every write), as a production Redis with persistence would."""

    def __init__(self, lab: Lab) -> None:
        self.port = free_port()
        self.data = lab.dir / "redis"
        self.data.mkdir()
        super().__init__(lab, "redis-server", [
            shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.data), "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            "--protected-mode", "no"], lab.env())
        self.url = f"redis://127.0.0.1:{self.port}/0"

    async def ready(self, timeout: float = 15) -> None:
        from redis.asyncio import Redis

        deadline = time.monotonic() + timeout
        client = Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            while time.monotonic() < deadline:
                assert self.alive, "redis-server exited: see its log"
                try:
                    if await client.ping():
                        return
                except Exception:  # not up yet (refused, or loading its data)
                    pass
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        raise AssertionError(f"redis-server did not answer PING within {timeout} s")


class Receiver:
    """A chain's webhook receiver on loopback: records each event id it is sent, in order.

    ``hold(event)`` picks one event whose first delivery is answered only once ``release`` is set;
    ``held`` is set when it arrived (the test then kills the worker that sent it)."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.hold: Callable[[dict], bool] | None = None
        self.held = asyncio.Event()
        self.held_event: dict | None = None
        self.release = asyncio.Event()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/events"
        self._runner: web.AppRunner | None = None

    def counts(self) -> Counter:
        return Counter(self.received)

    async def _event(self, request: web.Request) -> web.Response:
        event = await request.json()
        self.received.append(event["event_id"])
        if self.hold is not None and self.held_event is None and self.hold(event):
            self.held_event = event
            self.held.set()
            await self.release.wait()
        return web.json_response({"received": event["event_id"]})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/events", self._event)
        self._runner = web.AppRunner(app, shutdown_timeout=2)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
